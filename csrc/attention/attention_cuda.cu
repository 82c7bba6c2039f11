// Fused attention on CUDA, host side: argument checks, launch shapes and the dispatch to the kernels
// (FlashAttention-2's algorithm, our own code; same params and semantics as attention_cpu.cpp, dropout keyed as the
// CPU's). bf16 / fp16 with head_dim == value_dim in {64, 128} run on tensor cores: the forward on the pipelined
// cp.async / ldmatrix kernel (attention_fwd_flash.cuh) when q, k, v rows are 16-byte aligned and the scale is
// positive, else (or with PYFAST_ATTENTION_FWD=mma, for comparison) on attention_fwd_mma.cuh; the backward on
// the single-kernel FlashAttention-2-order backward (attention_bwd_flash.cuh, dQ by fp32 atomics) when the caller
// gives it a dQ scratch buffer and q / k / v / dout rows are 16-byte aligned, else -- deterministic mode, or
// unaligned rows -- on the atomic-free two-kernel attention_bwd_mma.cuh. Every other case (fp32, other head dims up
// to 256) runs on CUDA cores (attention_{fwd,bwd}_simt.cuh), deterministic as well.
#include "attention/attention_cuda.h"

#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "attention/attention_bwd_flash.cuh"
#include "attention/attention_bwd_mma.cuh"
#include "attention/attention_checks.h"
#include "attention/attention_bwd_simt.cuh"
#include "attention/attention_fwd_flash.cuh"
#include "attention/attention_fwd_mma.cuh"
#include "attention/attention_fwd_simt.cuh"
#include "attention/attention_tile.cuh"
#include "common/dispatch.h"

namespace pyfast {
namespace attention {
namespace {

using namespace detail;  // NOLINT: the kernels and their launch shapes

// ---- dropout mask (tests) ---------------------------------------------------------------------------------------
__global__ void dropout_keep_mask_kernel(uint8_t* keep, AttentionParams p) {
  const int64_t n = p.batch * p.q_heads * p.q_len * p.kv_len;
  const float keep_scale = keep_scale_of(p);
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < n;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t j = idx % p.kv_len, row = idx / p.kv_len;
    const int64_t i = row % p.q_len, bh = row / p.q_len;
    keep[idx] = dropout_factor(p, bh / p.q_heads, bh % p.q_heads, i, j, keep_scale) != 0.0f ? 1 : 0;
  }
}

// ---- host side --------------------------------------------------------------------------------------------------
// The checks both backends share (attention_checks.h), then the CUDA grid's limits (batch and heads index grid y/z).
void check_params(const AttentionParams& p, const char* op) {
  check_attention_params(p, op);
  PYFAST_CHECK_ARG(p.batch <= 65535 && p.q_heads <= 65535, op, "batch and heads must be <= 65535 on CUDA");
}

// Launches `kernel` with `smem` bytes of dynamic shared memory, raising the per-kernel limit above the default
// 48 KiB when needed (E = 256 takes ~98 KiB; sm_80 allows 163 KiB, sm_90 227 KiB).
template <typename Kernel>
void allow_smem(Kernel kernel, size_t smem, const char* op) {
  if (smem > 48 * 1024)
    cuda::check_call(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
                     op, "cudaFuncSetAttribute(shared memory)");
}
// With `threads` threads per block (the kernels' own block size; most take kThreads).
template <typename Kernel, typename... Args>
void launch_threads(Kernel kernel, dim3 grid, int threads, size_t smem, cudaStream_t stream, const char* op,
                    Args... args) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
  allow_smem(kernel, smem, op);
  kernel<<<grid, threads, smem, stream>>>(args...);
  cuda::check_launch(op);
}
template <typename Kernel, typename... Args>
void launch(Kernel kernel, dim3 grid, size_t smem, cudaStream_t stream, const char* op, Args... args) {
  launch_threads(kernel, grid, kThreads, smem, stream, op, args...);
}

// The grid of a persistent kernel: as many blocks as the current GPU holds at once (SMs x blocks per SM for this
// kernel's registers and shared memory), at most one per work item. More would only queue behind the first wave;
// fewer leave SMs idle.
template <typename Kernel>
unsigned resident_grid(Kernel kernel, int threads, size_t smem, int64_t items, const char* op) {
  if (items <= 0) return 0;
  int device = 0, sms = 0, per_sm = 0;
  cuda::check_call(cudaGetDevice(&device), op, "cudaGetDevice");
  cuda::check_call(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), op,
                   "cudaDeviceGetAttribute(SM count)");
  allow_smem(kernel, smem, op);
  cuda::check_call(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem), op,
                   "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
  const int64_t resident = static_cast<int64_t>(sms > 0 ? sms : 1) * (per_sm > 0 ? per_sm : 1);
  return static_cast<unsigned>(imin(imin(items, resident), 0x7fffffff));
}

// grid (ceil(rows / rows_per_block), heads, batch): the shape of every attention kernel's launch.
dim3 grid_of(int64_t rows, int rows_per_block, int64_t heads, int64_t batch) {
  return dim3(static_cast<unsigned>(ceil_div(rows, rows_per_block)), static_cast<unsigned>(heads),
              static_cast<unsigned>(batch));
}

// The head dim of the tensor-core kernels for this problem (64 or 128), or 0 for the CUDA-core ones.
template <typename T>
int64_t mma_head_dim(const AttentionParams& p) {
  const bool fits = !std::is_same_v<T, float> && p.head_dim == p.value_dim;
  return fits && (p.head_dim == 64 || p.head_dim == 128) ? p.head_dim : 0;
}

// Whether the pipelined forward can take this problem: cp.async copies 16-byte chunks, so every q / k / v row
// (data pointer, batch, head and row strides) must be 16-byte aligned; outputs are stored 4 bytes at a time; the
// softmax takes the max of raw scores, which is the max of scaled ones only for a positive scale.
// PYFAST_ATTENTION_FWD=mma keeps the earlier tensor-core forward (benchmarks compare the two).
bool aligned_rows(const Strided& t, int64_t elems, int64_t bytes_per_elem) {
  return reinterpret_cast<uintptr_t>(t.data) % (elems * bytes_per_elem) == 0 && t.batch_stride % elems == 0 &&
         t.head_stride % elems == 0 && t.row_stride % elems == 0;
}
bool use_flash_fwd(const AttentionParams& p) {
  const char* choice = std::getenv("PYFAST_ATTENTION_FWD");
  if (choice != nullptr && std::strcmp(choice, "mma") == 0) return false;
  return p.scale > 0.0f && aligned_rows(p.q, 8, 2) && aligned_rows(p.k, 8, 2) && aligned_rows(p.v, 8, 2) &&
         aligned_rows(p.out, 2, 2);
}

template <typename T>
void fwd_impl(const AttentionParams& p, cudaStream_t stream) {
  const char* op = "attention_fwd_cuda";
  PYFAST_DISPATCH_HEADDIM(mma_head_dim<T>(p), kHeadDim, {
    if constexpr (kHeadDim != 0 && !std::is_same_v<T, float>) {
      if (use_flash_fwd(p)) {
        const auto kernel = attention_fwd_flash_kernel<T, kHeadDim>;
        constexpr int threads = 32 * flash_fwd_warps<kHeadDim>();
        constexpr size_t smem = flash_fwd_smem_bytes<kHeadDim>();
        launch_threads(kernel, dim3(resident_grid(kernel, threads, smem, flash_fwd_items<kHeadDim>(p), op)), threads,
                       smem, stream, op, p);
      } else {
        launch(attention_fwd_mma_kernel<T, kHeadDim>, grid_of(p.q_len, kMmaBlockM, p.q_heads, p.batch),
               mma_fwd_smem_bytes<kHeadDim>(), stream, op, p);
      }
    } else {
      launch(attention_fwd_kernel<T>, grid_of(p.q_len, kOwnRows, p.q_heads, p.batch),
             fwd_simt_smem_bytes(p.head_dim, p.value_dim), stream, op, p);
    }
  });
}

// Whether the single-kernel backward can take this problem (T 16-bit, head dims checked by the caller): Q, dO, K, V
// tiles are cp.async'd (16-byte rows); dK, dV and dQ are stored two elements at a time (4-byte rows).
bool use_flash_bwd(const AttentionBackwardParams& bp) {
  const AttentionParams& p = bp.fwd;
  return aligned_rows(p.q, 8, 2) && aligned_rows(p.k, 8, 2) && aligned_rows(p.v, 8, 2) && aligned_rows(bp.dout, 8, 2) &&
         aligned_rows(bp.dq, 2, 2) && aligned_rows(bp.dk, 2, 2) && aligned_rows(bp.dv, 2, 2);
}

template <typename T>
bool flash_bwd_eligible(const AttentionBackwardParams& bp) {
  return !std::is_same_v<T, float> && mma_head_dim<T>(bp.fwd) != 0 && use_flash_bwd(bp);
}

// dq_acc given (and the problem eligible): the single kernel, between its preprocess (delta, dq_acc = 0) and its
// convert (dq = scale * dq_acc). Else the two-kernel path, dQ first: it writes delta, which the dK/dV kernel (same
// stream) reads. A (B, Hkv, 0) problem launches nothing and leaves empty outputs empty; otherwise the grids cover
// every row of every sequence.
template <typename T>
void bwd_impl(const AttentionBackwardParams& bp, float* delta, float* dq_acc, cudaStream_t stream) {
  const AttentionParams& p = bp.fwd;
  const char *op_dq = "attention_bwd_cuda (dq)", *op_dkdv = "attention_bwd_cuda (dk, dv)";
  const float* delta_in = delta;
  const bool flash = dq_acc != nullptr && flash_bwd_eligible<T>(bp);
  PYFAST_DISPATCH_HEADDIM(mma_head_dim<T>(p), kHeadDim, {
    if constexpr (kHeadDim != 0 && !std::is_same_v<T, float>) {
      if (flash) {
        const char* op = "attention_bwd_cuda (flash)";
        const dim3 q_grid = grid_of(p.q_len, kMmaBlockM, p.q_heads, p.batch);
        launch(attention_bwd_flash_prep_kernel<T, kHeadDim>, q_grid, 0, stream, op, bp, delta, dq_acc);
        launch(attention_bwd_flash_kernel<T, kHeadDim>, grid_of(p.kv_len, kFlashBwdKeys, p.kv_heads, p.batch),
               flash_bwd_smem_bytes<kHeadDim>(), stream, op, bp, delta_in, dq_acc);
        launch(attention_bwd_flash_dq_kernel<T, kHeadDim>, q_grid, 0, stream, op, bp,
               static_cast<const float*>(dq_acc));
        return;
      }
      launch(attention_bwd_dq_mma_kernel<T, kHeadDim>, grid_of(p.q_len, kMmaBlockM, p.q_heads, p.batch),
             mma_bwd_smem_bytes<kHeadDim>(), stream, op_dq, bp, delta);
      launch(attention_bwd_dkdv_mma_kernel<T, kHeadDim>, grid_of(p.kv_len, kMmaBlockM, p.kv_heads, p.batch),
             mma_bwd_smem_bytes<kHeadDim>(), stream, op_dkdv, bp, delta_in);
    } else {
      launch(attention_bwd_dq_kernel<T>, grid_of(p.q_len, kOwnRows, p.q_heads, p.batch),
             bwd_dq_simt_smem_bytes(p.head_dim, p.value_dim), stream, op_dq, bp, delta);
      launch(attention_bwd_dkdv_kernel<T>, grid_of(p.kv_len, kOwnRows, p.kv_heads, p.batch),
             bwd_dkdv_simt_smem_bytes(p.head_dim, p.value_dim), stream, op_dkdv, bp, delta_in);
    }
  });
}

}  // namespace

void attention_fwd_cuda(const AttentionParams& params, std::uintptr_t stream) {
  check_params(params, "attention_fwd_cuda");
  PYFAST_DISPATCH_DTYPE(params.dtype, "attention_fwd_cuda", kDType,
                        { fwd_impl<cuda::ElemOf<kDType>>(params, cuda::as_stream(stream)); });
}

void attention_bwd_cuda(const AttentionBackwardParams& params, float* delta, float* dq_acc, std::uintptr_t stream) {
  check_params(params.fwd, "attention_bwd_cuda");
  PYFAST_DISPATCH_DTYPE(params.fwd.dtype, "attention_bwd_cuda", kDType,
                        { bwd_impl<cuda::ElemOf<kDType>>(params, delta, dq_acc, cuda::as_stream(stream)); });
}

bool attention_bwd_cuda_takes_dq_scratch(const AttentionBackwardParams& params) {
  bool eligible = false;
  PYFAST_DISPATCH_DTYPE(params.fwd.dtype, "attention_bwd_cuda", kDType,
                        { eligible = flash_bwd_eligible<cuda::ElemOf<kDType>>(params); });
  return eligible;
}

void attention_dropout_keep_mask_cuda(uint8_t* keep, int64_t batch, int64_t heads, int64_t q_len, int64_t kv_len,
                                      float dropout_p, uint64_t seed, std::uintptr_t stream) {
  const AttentionParams p =
      dropout_keep_mask_params(batch, heads, q_len, kv_len, dropout_p, seed, "attention_dropout_mask_cuda");
  const int64_t n = batch * heads * q_len * kv_len;
  if (n == 0) return;
  const unsigned blocks = static_cast<unsigned>(imin(ceil_div(n, 256), 65535));
  dropout_keep_mask_kernel<<<blocks, 256, 0, cuda::as_stream(stream)>>>(keep, p);
  cuda::check_launch("attention_dropout_mask_cuda");
}

}  // namespace attention
}  // namespace pyfast
