// Thread-count state and the two parallel loops declared in parallel.h.
#include "common/parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <pthread.h>
#include <unistd.h>
#endif
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

#if defined(PYFAST_HAVE_OPENMP)
#include <omp.h>
#endif
#if defined(__linux__)
#include <sched.h>
#endif

namespace pyfast {

int default_num_threads() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  const unsigned hc = std::thread::hardware_concurrency();
  return hc > 0 ? static_cast<int>(hc) : 1;
}

namespace {
std::atomic<int> g_num_threads{0};  // 0 = not yet set: use default_num_threads()

long current_pid() {
#if defined(__linux__)
  return static_cast<long>(getpid());
#else
  return 0;
#endif
}

#if defined(PYFAST_HAVE_OPENMP)
// libgomp's thread team does not survive fork(): a child of a process that has run an OpenMP region hangs in
// its own first region (measured: a forked child's parallel_for never returned). The parent may have used
// OpenMP through any library linked to the same runtime, so OpenMP regions run only in the process that loaded
// this module; a forked child (e.g. a DataLoader worker) runs the std::thread loop instead (~20-50 us to start
// each thread, paid per call, only there).
const long g_openmp_pid = current_pid();
bool openmp_usable() { return current_pid() == g_openmp_pid; }
#endif

// Collects the first exception from worker threads; rethrown by the caller.
struct FirstError {
  std::mutex mu;
  std::exception_ptr err;
  void capture() {
    std::lock_guard<std::mutex> lock(mu);
    if (!err) err = std::current_exception();
  }
};
}  // namespace

int get_num_threads() {
  const int n = g_num_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : default_num_threads();
}

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("set_num_threads: n must be >= 1, got " + std::to_string(n));
  g_num_threads.store(n, std::memory_order_relaxed);
}

bool have_openmp() {
#if defined(PYFAST_HAVE_OPENMP)
  return true;
#else
  return false;
#endif
}

void parallel_workers(int workers, const std::function<void(int)>& fn) {
  if (workers <= 1) {
    fn(0);
    return;
  }
  FirstError first;
#if defined(PYFAST_HAVE_OPENMP)
  if (openmp_usable()) {
#pragma omp parallel num_threads(workers)
    {
      // OpenMP may start fewer threads than asked (OMP_DYNAMIC, OMP_THREAD_LIMIT, a nested region): the threads
      // it did start take the missing workers' indices too, so every worker's part always runs.
      for (int w = omp_get_thread_num(); w < workers; w += omp_get_num_threads()) {
        try {
          fn(w);
        } catch (...) {
          first.capture();
        }
      }
    }
    if (first.err) std::rethrow_exception(first.err);
    return;
  }
#endif
  std::vector<std::thread> pool;
  pool.reserve(workers - 1);
  for (int w = 1; w < workers; ++w) {
    pool.emplace_back([&, w] {
      try {
        fn(w);
      } catch (...) {
        first.capture();
      }
    });
  }
  try {
    fn(0);
  } catch (...) {
    first.capture();
  }
  for (auto& t : pool) t.join();
  if (first.err) std::rethrow_exception(first.err);
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t max_chunks = (n + grain - 1) / grain;
  const int workers = static_cast<int>(std::min<int64_t>(get_num_threads(), max_chunks));
  if (workers <= 1) {
    fn(0, n, 0);
    return;
  }
  // Contiguous, balanced chunks: worker w takes [w*n/W, (w+1)*n/W).
  parallel_workers(workers, [&](int w) {
    const int64_t begin = n * w / workers;
    const int64_t end = n * (w + 1) / workers;
    if (begin < end) fn(begin, end, w);
  });
}

// ---- parallel_for_elastic: a small pool whose caller never waits for a thread that has not started ----------
namespace {

struct ElasticJob {
  const std::function<void(int64_t, int64_t, int)>* fn = nullptr;  // valid while done < chunks (see run_chunks)
  int64_t n = 0, grain = 1, chunks = 0;
  int helpers = 0;                     // pool threads allowed to join (get_num_threads() - 1 at submit)
  std::atomic<int64_t> next{0};        // next chunk to claim
  std::atomic<int64_t> done{0};        // chunks finished
  FirstError error;
};

// Claims and runs chunks until none is left. A chunk is claimed before fn is touched, and the submitter waits
// for done == chunks, so fn (which lives on the submitter's stack) is only called while the submitter waits.
void run_chunks(ElasticJob& job, int worker) {
  for (;;) {
    const int64_t c = job.next.fetch_add(1, std::memory_order_relaxed);
    if (c >= job.chunks) return;
    const int64_t begin = c * job.grain;
    const int64_t end = std::min(job.n, begin + job.grain);
    try {
      (*job.fn)(begin, end, worker);
    } catch (...) {
      job.error.capture();
    }
    job.done.fetch_add(1, std::memory_order_acq_rel);
  }
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(_M_X64)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

class ElasticPool {
 public:
  // One pool per process: a child after fork() has none of the parent's threads, so it starts its own (the
  // parent's pool object is leaked there, never touched: its mutex may have been held at the fork).
  // The pool pointer is read without a lock; a fresh pool (first call, or first call in a forked child) is
  // published under a mutex that pthread_atfork holds across fork(), so a child never inherits it locked.
  static ElasticPool& instance() {
    static std::atomic<ElasticPool*> pool{nullptr};
    static std::atomic<long> pool_pid{-1};
    const long pid = current_pid();
    ElasticPool* p = pool.load(std::memory_order_acquire);
    if (p != nullptr && pool_pid.load(std::memory_order_acquire) == pid) return *p;
    static std::atomic<bool> atfork_registered{false};
    if (!atfork_registered.exchange(true)) {
#if defined(__linux__)
      pthread_atfork([] { create_mutex().lock(); }, [] { create_mutex().unlock(); },
                     [] { create_mutex().unlock(); });
#endif
    }
    std::lock_guard<std::mutex> lock(create_mutex());
    p = pool.load(std::memory_order_acquire);
    if (p == nullptr || pool_pid.load(std::memory_order_acquire) != pid) {
      p = new ElasticPool();  // leaked on purpose (a forked child's copy of the parent's pool is never touched)
      pool_pid.store(pid, std::memory_order_release);
      pool.store(p, std::memory_order_release);
    }
    return *p;
  }

  static std::mutex& create_mutex() {
    static std::mutex* mu = new std::mutex();  // leaked: atfork handlers may run during exit
    return *mu;
  }

  void run(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int)>& fn, int threads) {
    auto job = std::make_shared<ElasticJob>();
    job->fn = &fn;
    job->n = n;
    job->grain = grain;
    job->chunks = (n + grain - 1) / grain;
    job->helpers = threads - 1;
    ensure_threads(job->helpers);
    {
      std::lock_guard<std::mutex> lock(mu_);
      current_ = job;
      ++generation_;
      generation_seen_.store(generation_, std::memory_order_release);
    }
    cv_.notify_all();
    run_chunks(*job, 0);
    // Only chunks that a running helper has claimed are left: a short wait, bounded by one chunk.
    for (int spins = 0; job->done.load(std::memory_order_acquire) < job->chunks; ++spins)
      spins < 4096 ? cpu_relax() : std::this_thread::yield();  // yield if that helper lost its core
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (current_ == job) current_.reset();
    }
    if (job->error.err) std::rethrow_exception(job->error.err);
  }

 private:
  ElasticPool() : pid_(current_pid()) {}

  void ensure_threads(int helpers) {
    std::lock_guard<std::mutex> lock(mu_);
    while (threads_started_ < helpers) {
      const int index = threads_started_;
      std::thread([this, index] { helper_loop(index + 1); }).detach();  // lives as long as the process
      ++threads_started_;  // only once the thread exists (if creation throws, the caller runs every chunk)
    }
  }

  void helper_loop(int worker) {
    uint64_t seen = 0;
    for (;;) {
      // Spin briefly for the next job (back-to-back calls stay cheap), then sleep on the condition variable.
      const auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
      while (generation_seen_.load(std::memory_order_acquire) == seen &&
             std::chrono::steady_clock::now() < spin_until)
        for (int i = 0; i < 64; ++i) cpu_relax();
      std::shared_ptr<ElasticJob> job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        job = current_;
      }
      if (job && worker <= job->helpers) run_chunks(*job, worker);
    }
  }

  const long pid_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<ElasticJob> current_;
  uint64_t generation_ = 0;
  std::atomic<uint64_t> generation_seen_{0};  // generation_, readable without the lock (the spin)
  int threads_started_ = 0;
};

}  // namespace

void parallel_for_elastic(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int threads = static_cast<int>(std::min<int64_t>(get_num_threads(), (n + grain - 1) / grain));
  if (threads <= 1) {
    fn(0, n, 0);
    return;
  }
  ElasticPool::instance().run(n, grain, fn, threads);
}

}  // namespace pyfast
