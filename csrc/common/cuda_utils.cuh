// Small helpers shared by the CUDA kernels: error checks that surface as Python RuntimeError, the storage type of a
// DType, element load/store for float / bf16 / fp16, warp reductions. Included only by CUDA sources (nvcc, or g++
// with tests/cuda_emu).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/checks.h"
#include "common/dispatch.h"

namespace pyfast {
namespace cuda {

// Every launch is followed by this: a bad configuration or a sticky fault becomes a RuntimeError naming the op
// (pybind11 turns std::runtime_error into RuntimeError) instead of a silent wrong result.
inline void check_launch(const char* op) {
  const cudaError_t st = cudaGetLastError();
  PYFAST_CHECK_STATE(st == cudaSuccess, op, "CUDA error: ", cudaGetErrorString(st));
}

inline void check_call(cudaError_t st, const char* op, const char* what) {
  PYFAST_CHECK_STATE(st == cudaSuccess, op, what, " failed: ", cudaGetErrorString(st));
}

inline cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

// The CUDA storage type of a floating DType (PYFAST_DISPATCH_DTYPE's constant): float, __nv_bfloat16, __half.
template <DType kDType>
struct StorageOf;
template <>
struct StorageOf<DType::kFloat32> { using type = float; };
template <>
struct StorageOf<DType::kBFloat16> { using type = __nv_bfloat16; };
template <>
struct StorageOf<DType::kFloat16> { using type = __half; };
template <DType kDType>
using ElemOf = typename StorageOf<kDType>::type;

// fp32 in registers whatever the storage type: bf16/fp16 are widened on load and rounded to nearest on store.
__device__ __forceinline__ float load_elem(const float* p) { return *p; }
__device__ __forceinline__ float load_elem(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ float load_elem(const __half* p) { return __half2float(*p); }
__device__ __forceinline__ void store_elem(float* p, float x) { *p = x; }
__device__ __forceinline__ void store_elem(__nv_bfloat16* p, float x) { *p = __float2bfloat16_rn(x); }
__device__ __forceinline__ void store_elem(__half* p, float x) { *p = __float2half_rn(x); }

constexpr unsigned kFullWarp = 0xffffffffu;

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(kFullWarp, x, offset);
  return x;
}

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) x = fmaxf(x, __shfl_xor_sync(kFullWarp, x, offset));
  return x;
}

// Word w (0..3) of a Philox block without a dynamically indexed local array.
__device__ __forceinline__ uint32_t philox_word(const uint32_t (&v)[4], int w) {
  return w == 0 ? v[0] : w == 1 ? v[1] : w == 2 ? v[2] : v[3];
}

}  // namespace cuda
}  // namespace pyfast
