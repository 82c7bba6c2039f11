// A host-side emulator of the small part of CUDA that pyfast's kernels use, for checking their LOGIC on a machine
// without a GPU (tests/cuda_emu/build.sh compiles csrc/*/*.cu with g++ against this header). Every CUDA thread is
// an OS thread; the blocks of a launch run one after another (so __shared__ can be a function-local static);
// __syncthreads and the warp primitives are std::barrier rendezvous; atomics take one global lock.
// What it checks: indexing, scans, sorts, keying, bounds, the Python <-> binding argument order. What it cannot
// check: the GPU memory model, timing-dependent races beyond what real threads expose, fast-math, performance.
// A kernel passing here is still "compiled, unverified on a GPU".
#pragma once
// Defined for code that must differ under the emulator (inline PTX, e.g. csrc/common/mma.cuh's mma.sync, has a
// C++ stand-in there). Always set: build.sh force-includes this header.
#define PYFAST_CUDA_EMU 1
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

namespace emu {

struct Block {
  unsigned threads = 0;
  std::unique_ptr<std::barrier<>> block_barrier;
  std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
  std::vector<uint64_t> exchange;          // one slot per thread, for the warp primitives
  std::vector<uint32_t> warp_scratch;      // kScratchWords per thread: fragment registers for emulated mma.sync
  std::vector<unsigned char> dynamic_smem;  // extern __shared__
};

constexpr unsigned kScratchWords = 8;
inline thread_local Block* tl_block = nullptr;
inline thread_local dim3 tl_thread;
inline thread_local dim3 tl_block_index;
inline dim3 g_block_dim, g_grid_dim;
inline std::mutex g_atomic_lock;

inline unsigned linear_tid() {
  return tl_thread.x + g_block_dim.x * (tl_thread.y + g_block_dim.y * tl_thread.z);
}

template <typename T>
T* dynamic_smem() {
  return reinterpret_cast<T*>(tl_block->dynamic_smem.data());
}

template <typename T>
T warp_exchange(T v, int (*source)(int lane, int arg), int arg, bool keep_own_when_out_of_range) {
  static_assert(sizeof(T) <= 8, "warp exchange of at most 8 bytes");
  Block& b = *tl_block;
  const unsigned t = linear_tid();
  const int lane = static_cast<int>(t & 31);
  const unsigned base = t - lane;
  uint64_t slot = 0;
  std::memcpy(&slot, &v, sizeof(T));
  b.exchange[t] = slot;
  b.warp_barriers[t / 32]->arrive_and_wait();
  const int src = source(lane, arg);
  T out = v;
  if (src >= 0 && src < 32 && base + src < b.threads) {
    const uint64_t got = b.exchange[base + src];
    std::memcpy(&out, &got, sizeof(T));
  } else if (!keep_own_when_out_of_range) {
    out = v;
  }
  b.warp_barriers[t / 32]->arrive_and_wait();
  return out;
}

// Warp-collective: every lane of the warp deposits n <= kScratchWords registers, then (after a warp rendezvous)
// may read every lane's: lane l's register r is at the returned pointer [l * kScratchWords + r]. The caller must
// call warp_scratch_release() when done reading, so no lane overwrites its slot before all have read.
inline const uint32_t* warp_scratch_deposit(const uint32_t* regs, unsigned n) {
  Block& b = *tl_block;
  const unsigned t = linear_tid();
  for (unsigned r = 0; r < n && r < kScratchWords; ++r) b.warp_scratch[t * kScratchWords + r] = regs[r];
  b.warp_barriers[t / 32]->arrive_and_wait();
  return b.warp_scratch.data() + (t - (t & 31)) * kScratchWords;
}
inline void warp_scratch_release() { tl_block->warp_barriers[linear_tid() / 32]->arrive_and_wait(); }

template <typename Kernel, typename... Args>
void launch(Kernel kernel, dim3 grid, dim3 block, size_t smem, void* /*stream*/, Args... args) {
  g_grid_dim = grid;
  g_block_dim = block;
  const unsigned n = block.x * block.y * block.z;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        Block b;
        b.threads = n;
        b.block_barrier = std::make_unique<std::barrier<>>(static_cast<std::ptrdiff_t>(n));
        for (unsigned w = 0; w < (n + 31) / 32; ++w) {
          const unsigned members = std::min(32u, n - 32 * w);
          b.warp_barriers.push_back(std::make_unique<std::barrier<>>(static_cast<std::ptrdiff_t>(members)));
        }
        b.exchange.assign(n, 0);
        b.warp_scratch.assign(static_cast<size_t>(n) * kScratchWords, 0);
        b.dynamic_smem.assign(smem, 0);
        std::vector<std::thread> threads;
        threads.reserve(n);
        for (unsigned t = 0; t < n; ++t) {
          threads.emplace_back([&, t] {
            tl_block = &b;
            tl_thread = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
            tl_block_index = dim3(bx, by, bz);
            kernel(args...);
            // An exited thread no longer takes part in the block's or its warp's barriers.
            b.warp_barriers[t / 32]->arrive_and_drop();
            b.block_barrier->arrive_and_drop();
          });
        }
        for (auto& th : threads) th.join();
      }
}

}  // namespace emu

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define threadIdx (::emu::tl_thread)
#define blockIdx (::emu::tl_block_index)
#define blockDim (::emu::g_block_dim)
#define gridDim (::emu::g_grid_dim)

inline void __syncthreads() { ::emu::tl_block->block_barrier->arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) {
  ::emu::tl_block->warp_barriers[::emu::linear_tid() / 32]->arrive_and_wait();
}
template <typename T>
T __shfl_sync(unsigned, T v, int src_lane, int = 32) {
  return ::emu::warp_exchange(v, [](int, int a) { return a & 31; }, src_lane, true);
}
template <typename T>
T __shfl_up_sync(unsigned, T v, unsigned delta, int = 32) {
  return ::emu::warp_exchange(v, [](int lane, int d) { return lane - d; }, static_cast<int>(delta), true);
}
template <typename T>
T __shfl_xor_sync(unsigned, T v, int mask, int = 32) {
  return ::emu::warp_exchange(v, [](int lane, int m) { return lane ^ m; }, mask, true);
}
inline int __any_sync(unsigned, int pred) {
  ::emu::Block& b = *::emu::tl_block;
  const unsigned t = ::emu::linear_tid();
  const unsigned base = t - (t & 31);
  b.exchange[t] = pred != 0;
  b.warp_barriers[t / 32]->arrive_and_wait();
  int any = 0;
  for (unsigned i = base; i < base + 32 && i < b.threads; ++i) any |= b.exchange[i] != 0;
  b.warp_barriers[t / 32]->arrive_and_wait();
  return any;
}

// Bit l of the result is lane l's predicate (lanes of the warp that exist; the mask argument is not checked).
inline unsigned __ballot_sync(unsigned, int pred) {
  ::emu::Block& b = *::emu::tl_block;
  const unsigned t = ::emu::linear_tid();
  const unsigned base = t - (t & 31);
  b.exchange[t] = pred != 0;
  b.warp_barriers[t / 32]->arrive_and_wait();
  unsigned mask = 0;
  for (unsigned i = base; i < base + 32 && i < b.threads; ++i) mask |= (b.exchange[i] != 0 ? 1u : 0u) << (i - base);
  b.warp_barriers[t / 32]->arrive_and_wait();
  return mask;
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
// Cache-hinted loads (ld.global.cg: L2 only): plain loads here, the emulator has no caches.
template <typename T>
T __ldcg(const T* p) {
  return *p;
}

inline unsigned long long atomicMin(unsigned long long* a, unsigned long long v) {
  std::lock_guard<std::mutex> g(::emu::g_atomic_lock);
  const unsigned long long old = *a;
  if (v < old) *a = v;
  return old;
}
template <typename T>
T atomicAdd(T* a, T v) {
  std::lock_guard<std::mutex> g(::emu::g_atomic_lock);
  const T old = *a;
  *a = old + v;
  return old;
}

using std::isinf;  // CUDA's math functions are global; these are the ones <cmath> keeps in std only
using std::isnan;
using std::isfinite;

inline double __dmul_rn(double a, double b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __expf(float x) { return std::exp(x); }

// bf16 / fp16 storage types (round to nearest even on store).
struct __nv_bfloat16 {
  uint16_t bits;
};
inline float __bfloat162float(__nv_bfloat16 h) {
  const uint32_t u = static_cast<uint32_t>(h.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if (std::isnan(f)) return __nv_bfloat16{static_cast<uint16_t>((u >> 16) | 0x40)};
  u += 0x7fff + ((u >> 16) & 1);
  return __nv_bfloat16{static_cast<uint16_t>(u >> 16)};
}
struct __half {
  _Float16 v;
};
inline float __half2float(__half h) { return static_cast<float>(h.v); }
inline __half __float2half_rn(float f) { return __half{static_cast<_Float16>(f)}; }
// Bit casts (cuda_bf16.h / cuda_fp16.h): how the mma fragments pack two 16-bit values into one 32-bit register.
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.bits; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return __nv_bfloat16{u}; }
inline unsigned short __half_as_ushort(__half h) {
  unsigned short u;
  std::memcpy(&u, &h.v, 2);
  return u;
}
inline __half __ushort_as_half(unsigned short u) {
  __half h;
  std::memcpy(&h.v, &u, 2);
  return h;
}

// CUDA's 16-byte vector type (vector_types.h): 128-bit copies of 8 bf16/fp16 elements.
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};

// The runtime calls pyfast makes.
using cudaStream_t = void*;
enum cudaError_t { cudaSuccess = 0, cudaErrorNoDevice = 100 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "emulated error"; }
template <typename F>
cudaError_t cudaFuncSetAttribute(F, cudaFuncAttribute, int) { return cudaSuccess; }
// Host memory stands in for device memory, and a launch runs to completion before it returns: a memset is memset.
inline cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t = nullptr) {
  std::memset(dst, value, bytes);
  return cudaSuccess;
}
struct cudaDeviceProp {
  char name[256];
};
// A persistent kernel's grid (SMs x resident blocks) is 2 x 1 here: few blocks, each looping over many work items,
// so the emulated launch checks the loop (and runs no slower: blocks run one after another anyway).
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };
inline cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr, int) {
  *value = 2;
  return cudaSuccess;
}
template <typename F>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, F, int, size_t) {
  *blocks = 1;
  return cudaSuccess;
}
inline cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
  std::strcpy(p->name, "pyfast host emulator (not a GPU)");
  return cudaSuccess;
}
