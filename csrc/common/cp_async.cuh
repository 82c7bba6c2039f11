// Asynchronous global -> shared copies for the CUDA kernels: cp.async.cg 16-byte copies (sm_80+) with their
// commit_group / wait_group completion, and the host emulator's stand-in (tests/cuda_emu runs that, not the PTX).
// Included only by CUDA sources.
//
// Contract (PTX ISA, "Data Movement and Conversion Instructions: cp.async"): a thread's copies since its last
// commit form one group; wait_group<N> returns once at most N of the thread's committed groups are still pending.
// The data a thread copied is visible to that thread after its wait, and to the block's other threads only after a
// __syncthreads that follows the wait. The emulator holds exactly to that: a copy fills its destination with a
// poison pattern when issued and writes the data only at the wait that completes its group, so a kernel that reads
// a tile before the matching wait (or without the barrier after it) reads poison and fails its tests.
#pragma once
#include <cstdint>

#include "common/cuda_utils.cuh"

#if defined(PYFAST_CUDA_EMU)
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#endif

namespace pyfast {
namespace cuda {

#if defined(PYFAST_CUDA_EMU)
namespace emu_cp_async {
// The bytes a cp.async destination holds between issue and completion: 0xffff is a NaN in bf16 and fp16, so a
// premature read poisons every product it enters.
constexpr unsigned char kPoison = 0xff;

struct Copy {
  void* dst;
  unsigned char bytes[16];  // read at issue time (the source may change afterwards; the kernels never do that)
};
struct Queue {
  std::vector<Copy> open;                       // issued since the last commit
  std::vector<std::vector<Copy>> committed;     // oldest first
};
// One queue per emulated CUDA thread (each is an OS thread, created per block, so the queue starts empty).
inline thread_local Queue tl_queue;
}  // namespace emu_cp_async

// 16 bytes from gmem to smem (both 16-byte aligned); with valid = false nothing is read and smem gets 16 zero
// bytes (cp.async's src-size = 0 form), so callers can pad a tile's tail rows with the copy itself.
inline void cp_async_16(void* smem, const void* gmem, bool valid = true) {
  // The hardware faults on a misaligned address: so does the emulation (abort with a message, not wrong data).
  if (reinterpret_cast<uintptr_t>(smem) % 16 != 0 || (valid && reinterpret_cast<uintptr_t>(gmem) % 16 != 0)) {
    std::fprintf(stderr, "cp.async: 16-byte copy with a misaligned address (%p <- %p)\n", smem, gmem);
    std::abort();
  }
  emu_cp_async::Copy c;
  c.dst = smem;
  if (valid)
    std::memcpy(c.bytes, gmem, 16);
  else
    std::memset(c.bytes, 0, 16);
  std::memset(smem, emu_cp_async::kPoison, 16);
  emu_cp_async::tl_queue.open.push_back(c);
}
inline void cp_async_commit() {
  auto& q = emu_cp_async::tl_queue;
  q.committed.push_back(std::move(q.open));
  q.open.clear();
}
// Completes this thread's committed groups until at most N are pending (oldest first).
template <int N>
inline void cp_async_wait() {
  auto& q = emu_cp_async::tl_queue;
  while (q.committed.size() > static_cast<size_t>(N)) {
    for (const auto& c : q.committed.front()) std::memcpy(c.dst, c.bytes, 16);
    q.committed.erase(q.committed.begin());
  }
}
#else
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid = true) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  // .cg: cache in L2 only (tiles are streamed once per block; L1 would only evict other data).
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(smem)), "l"(gmem),
               "r"(valid ? 16 : 0));
#elif defined(__CUDA_ARCH__)
  __trap();  // the build targets sm_80 and sm_90 only
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  // "memory": no shared-memory read may be hoisted above the wait.
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}
#endif

}  // namespace cuda
}  // namespace pyfast
