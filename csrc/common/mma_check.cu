// Test kernel for the warp mma helper (csrc/common/mma.cuh): each warp loads one 16x16 A and one 16x8 B into
// fragments through the documented layout functions, multiplies, and stores D through the C/D layout. A wrong
// layout (in the loads, in the emulation, or in the PTX on a GPU) shows up as D != A B + C in the tests. Also the
// test kernels of ldmatrix (same header) and of cp.async (common/cp_async.cuh).
#include "common/mma_check_cuda.h"

#include "common/cp_async.cuh"

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

// One warp: the 32 rows of src (8 16-bit elements each) go to shared memory (row stride 16 elements, 16-byte
// aligned rows); lane l names row rows[l] as its ldmatrix address, and writes its four registers to out[4l ..].
__global__ void ldmatrix_check_kernel(const uint16_t* src, const int32_t* rows, uint32_t* out, bool trans) {
  __shared__ uint4 tile_words[32 * 16 / 8];  // uint4: 16-byte aligned rows
  uint16_t* tile = reinterpret_cast<uint16_t*>(tile_words);
  const int lane = threadIdx.x;
  for (int e = 0; e < 8; ++e) tile[lane * 16 + e] = src[lane * 8 + e];
  __syncthreads();
  uint32_t r[4];
  if (trans)
    ldmatrix_x4_trans(r, tile + rows[lane] * 16);
  else
    ldmatrix_x4(r, tile + rows[lane] * 16);
  for (int m = 0; m < 4; ++m) out[4 * lane + m] = r[m];
}

// kCpThreads threads copy 2 * kCpThreads 16-byte chunks src -> shared with cp.async (thread t: chunk t in group 0,
// chunk kCpThreads + t in group 1), then every chunk is read back by a thread that did not copy it. mode 0: wait
// for all, then __syncthreads (the correct use); 1: no wait (a bug the emulator must expose); 2: wait_group 1 (group
// 0 complete, group 1 maybe not); 3: as 0 with the odd chunks zero-filled (src-size 0).
constexpr int kCpThreads = 128;
__global__ void cp_async_check_kernel(const uint4* src, uint4* out, int mode) {
  __shared__ uint4 buf[2 * kCpThreads];
  const int t = threadIdx.x;
  for (int g = 0; g < 2; ++g) {
    const int c = g * kCpThreads + t;
    cp_async_16(buf + c, src + c, mode != 3 || c % 2 == 0);
    cp_async_commit();
  }
  if (mode == 0 || mode == 3) cp_async_wait<0>();
  if (mode == 2) cp_async_wait<1>();
  __syncthreads();
  for (int g = 0; g < 2; ++g) {
    const int c = (g * kCpThreads + t + 37) % (2 * kCpThreads);
    out[c] = buf[c];
  }
  __syncthreads();     // every read done before any late copy lands (mode 1, 2)
  cp_async_wait<0>();  // nothing may be left in flight when the block exits
}

}  // namespace

void ldmatrix_x4_check_cuda(std::uintptr_t src, std::uintptr_t rows, std::uintptr_t out, bool trans,
                            std::uintptr_t stream) {
  ldmatrix_check_kernel<<<1, 32, 0, as_stream(stream)>>>(reinterpret_cast<const uint16_t*>(src),
                                                        reinterpret_cast<const int32_t*>(rows),
                                                        reinterpret_cast<uint32_t*>(out), trans);
  check_launch("ldmatrix_x4_check");
}

void cp_async_check_cuda(std::uintptr_t src, std::uintptr_t out, int mode, std::uintptr_t stream) {
  PYFAST_CHECK_ARG(mode >= 0 && mode <= 3, "cp_async_check", "mode must be 0, 1, 2 or 3");
  cp_async_check_kernel<<<1, kCpThreads, 0, as_stream(stream)>>>(reinterpret_cast<const uint4*>(src),
                                                                reinterpret_cast<uint4*>(out), mode);
  check_launch("cp_async_check");
}

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
