// Thread-count state and the two parallel loops declared in parallel.h.
#include "common/parallel.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

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
#pragma omp parallel num_threads(workers)
  {
    try {
      fn(omp_get_thread_num());
    } catch (...) {
      first.capture();
    }
  }
#else
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
#endif
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

}  // namespace pyfast
