// A small cache of large host buffers for kernel outputs that are handed to torch (as DLPack capsules).
//
// Why: a fresh multi-MiB torch.empty is a fresh mmap, so every 4 KiB page faults on first touch. On the KVM
// guests we measure on that is ~2 us a page: the masking step's two 1 MiB outputs cost ~1.3 ms of faults
// against ~0.5 ms of real work. Buffers here are 2 MiB-aligned and advised for transparent huge pages (a
// fresh one faults once per 2 MiB), and when torch frees the last tensor on one (the DLPack deleter runs)
// it goes back to a per-size free list instead of to the kernel, so the next call of the same shape reuses
// warm, already-mapped memory. Reuse is safe by construction: a buffer is reused only after torch dropped
// its last reference. The cache is bounded (kHostPoolMaxCachedBytes); beyond it buffers are freed.
// Small requests (< kHostPoolMinBytes) skip the cache: malloc serves them from its heap without faults.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pyfast {

constexpr size_t kHostPoolMinBytes = size_t{256} << 10;         // below this: plain malloc/free
constexpr size_t kHostPoolMaxCachedBytes = size_t{128} << 20;   // free-list bound across all sizes

struct HostBuffer {
  void* ptr = nullptr;
  size_t capacity = 0;  // >= the bytes asked for; pass the whole struct back to host_pool_release
};

// A buffer of at least `bytes` bytes, 4 KiB-aligned (2 MiB-aligned from 2 MiB up). Throws std::bad_alloc.
// Its contents are whatever the last user left (like torch.empty). Safe to call from any thread.
HostBuffer host_pool_acquire(size_t bytes);
void host_pool_release(HostBuffer buffer) noexcept;

struct HostPoolStats {
  int64_t cached_buffers;
  int64_t cached_bytes;
  int64_t reused;     // acquisitions served from the cache since start
  int64_t allocated;  // acquisitions that allocated fresh memory
};
HostPoolStats host_pool_stats();
// Frees every cached buffer (tests, and users who want the memory back).
void host_pool_trim();

}  // namespace pyfast
