// See host_pool.h. A mutex-guarded multimap from capacity to free buffers: calls are per kernel output (a few
// per step), so a lock is nowhere near the cost of what it saves.
#include "common/host_pool.h"

#include <cstdlib>
#include <map>
#include <mutex>
#include <new>

#if defined(__linux__)
#include <pthread.h>
#include <sys/mman.h>
#endif

namespace pyfast {
namespace {

constexpr size_t kSmallGranule = size_t{64} << 10;  // capacities below 2 MiB round to 64 KiB
constexpr size_t kHugePage = size_t{2} << 20;

struct Pool {
  std::mutex mu;
  std::multimap<size_t, void*> free_buffers;  // capacity -> buffer
  size_t cached_bytes = 0;
  int64_t reused = 0;
  int64_t allocated = 0;
};

Pool& pool() {
  // Leaked on purpose: tensors freed during interpreter shutdown may still call release after static
  // destructors would have run.
  static Pool* p = [] {
    auto* created = new Pool();
#if defined(__linux__)
    // A fork (DataLoader workers) while another thread holds the lock would leave the child's copy locked
    // forever: hold it across the fork, release it on both sides.
    pthread_atfork([] { pool().mu.lock(); }, [] { pool().mu.unlock(); }, [] { pool().mu.unlock(); });
#endif
    return created;
  }();
  return *p;
}

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

size_t capacity_for(size_t bytes) { return bytes < kHugePage ? round_up(bytes, kSmallGranule) : round_up(bytes, kHugePage); }

void* allocate_fresh(size_t capacity) {
  const size_t alignment = capacity >= kHugePage ? kHugePage : 4096;
  void* p = std::aligned_alloc(alignment, capacity);
  if (p == nullptr) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  // One fault per 2 MiB instead of 512 when the system allows THP on request ("madvise" mode); a no-op
  // (EINVAL or ignored) elsewhere. Only whole aligned 2 MiB ranges can be huge, hence the alignment above.
  if (capacity >= kHugePage) (void)madvise(p, capacity, MADV_HUGEPAGE);
#endif
  return p;
}

}  // namespace

HostBuffer host_pool_acquire(size_t bytes) {
  if (bytes == 0) bytes = 1;
  if (bytes < kHostPoolMinBytes) {
    void* p = std::aligned_alloc(64, round_up(bytes, 64));
    if (p == nullptr) throw std::bad_alloc();
    return {p, bytes};
  }
  const size_t capacity = capacity_for(bytes);
  Pool& pl = pool();
  {
    std::lock_guard<std::mutex> lock(pl.mu);
    // The smallest cached buffer that fits, unless it is more than twice what is needed (a huge buffer
    // should not be pinned under a small tensor while the next big request allocates afresh).
    auto it = pl.free_buffers.lower_bound(capacity);
    if (it != pl.free_buffers.end() && it->first <= 2 * capacity) {
      HostBuffer b{it->second, it->first};
      pl.cached_bytes -= it->first;
      pl.free_buffers.erase(it);
      ++pl.reused;
      return b;
    }
    ++pl.allocated;
  }
  return {allocate_fresh(capacity), capacity};
}

void host_pool_release(HostBuffer buffer) noexcept {
  if (buffer.ptr == nullptr) return;
  if (buffer.capacity < kHostPoolMinBytes) {
    std::free(buffer.ptr);
    return;
  }
  Pool& pl = pool();
  {
    std::lock_guard<std::mutex> lock(pl.mu);
    if (pl.cached_bytes + buffer.capacity <= kHostPoolMaxCachedBytes) {
      pl.free_buffers.emplace(buffer.capacity, buffer.ptr);
      pl.cached_bytes += buffer.capacity;
      return;
    }
  }
  std::free(buffer.ptr);
}

HostPoolStats host_pool_stats() {
  Pool& pl = pool();
  std::lock_guard<std::mutex> lock(pl.mu);
  return {static_cast<int64_t>(pl.free_buffers.size()), static_cast<int64_t>(pl.cached_bytes), pl.reused,
          pl.allocated};
}

void host_pool_trim() {
  Pool& pl = pool();
  std::multimap<size_t, void*> drop;
  {
    std::lock_guard<std::mutex> lock(pl.mu);
    drop.swap(pl.free_buffers);
    pl.cached_bytes = 0;
  }
  for (auto& kv : drop) std::free(kv.second);
}

}  // namespace pyfast
