// Test kernel for the warp mma helper (csrc/common/mma.cuh): each warp loads one 16x16 A and one 16x8 B into
// fragments through the documented layout functions, multiplies, and stores D through the C/D layout. A wrong
// layout (in the loads, in the emulation, or in the PTX on a GPU) shows up as D != A B + C in the tests.
#include "common/mma_check_cuda.h"

#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "common/mma.cuh"

namespace pyfast {
namespace cuda {
namespace {

constexpr int kCheckWarps = 2;  // two warps per block: the emulation must keep warps' scratch apart

template <typename T>
__global__ void mma_check_kernel(const T* a, const T* b, const float* c, float* d, int64_t n) {
  const int lane = threadIdx.x % 32;
  const int64_t w = static_cast<int64_t>(blockIdx.x) * kCheckWarps + threadIdx.x / 32;
  if (w >= n) return;  // warp-uniform
  const T* aw = a + w * 16 * 16;
  const T* bw = b + w * 16 * 8;
  uint32_t af[4], bf[2];
  float acc[4];
  for (int r = 0; r < 4; ++r) {
    const int row = mma_a_row(lane, r), col = mma_a_col(lane, r);
    af[r] = pack2(aw[row * 16 + col], aw[row * 16 + col + 1]);
  }
  for (int r = 0; r < 2; ++r) {
    const int k = mma_b_k(lane, r), col = mma_b_n(lane);
    bf[r] = pack2(bw[k * 8 + col], bw[(k + 1) * 8 + col]);
  }
  for (int r = 0; r < 4; ++r) acc[r] = c[w * 128 + mma_c_row(lane, r) * 8 + mma_c_col(lane, r)];
  mma_m16n8k16<T>(acc, af, bf);
  for (int r = 0; r < 4; ++r) d[w * 128 + mma_c_row(lane, r) * 8 + mma_c_col(lane, r)] = acc[r];
}

}  // namespace

void mma_m16n8k16_check_cuda(int dtype, std::uintptr_t a, std::uintptr_t b, std::uintptr_t c, std::uintptr_t d,
                             int64_t n, std::uintptr_t stream) {
  PYFAST_CHECK_ARG(dtype == 2 || dtype == 3, "mma_m16n8k16_check", "dtype must be 2 (bfloat16) or 3 (float16)");
  PYFAST_CHECK_ARG(n >= 0 && n <= 65535 * kCheckWarps, "mma_m16n8k16_check", "bad count ", n);
  if (n == 0) return;
  const unsigned blocks = static_cast<unsigned>((n + kCheckWarps - 1) / kCheckWarps);
  const cudaStream_t s = as_stream(stream);
  if (dtype == 2)
    mma_check_kernel<__nv_bfloat16><<<blocks, 32 * kCheckWarps, 0, s>>>(
        reinterpret_cast<const __nv_bfloat16*>(a), reinterpret_cast<const __nv_bfloat16*>(b),
        reinterpret_cast<const float*>(c), reinterpret_cast<float*>(d), n);
  else
    mma_check_kernel<__half><<<blocks, 32 * kCheckWarps, 0, s>>>(
        reinterpret_cast<const __half*>(a), reinterpret_cast<const __half*>(b), reinterpret_cast<const float*>(c),
        reinterpret_cast<float*>(d), n);
  check_launch("mma_m16n8k16_check");
}

}  // namespace cuda
}  // namespace pyfast
