// Fused attention on CUDA, forward and backward (FlashAttention-2's algorithm, our own code): the same params
// structs and semantics as attention_cpu.cpp (causal top-left, additive float mask, GQA, varlen, Philox dropout
// keyed exactly as the CPU kernel so both drop the same pairs). fp32, bf16 and fp16 storage.
//
// Status: compiled for sm_80 and sm_90; matched the float64 reference on an H200 (tests/test_cuda.py, 2026-11-28),
// at 38-77 TFLOP/s in bf16, 3-7x slower than flash-attention there. Two sets of kernels:
//   * attention_*_mma_kernel (forward, dQ, dK/dV): bf16/fp16 with head_dim == value_dim in {64, 128}, every matrix
//     product on tensor cores (mma.sync m16n8k16, fp32 accumulators; common/mma.cuh); see their sections below.
//   * attention_fwd_kernel, attention_bwd_dq_kernel, attention_bwd_dkdv_kernel: every other case (fp32, other
//     head dims up to 256): the correct-first version with CUDA-core fp32 FMAs, whose ceiling is the fp32 FMA
//     peak (~67 TFLOP/s on an H200 vs ~990 bf16 tensor-core); expect it to trail torch SDPA by an order of
//     magnitude. benchmarks/gpu_check.sh measures both when a GPU is lent.
//
// Layout of the work in the CUDA-core kernels (one scheme for all three, so they read alike):
//   * a block of 4 warps owns 16 rows of one side (query rows in the forward and dQ kernels, key rows in the
//     dK/dV kernel), 4 rows per warp, their fp32 accumulators in registers (lane owns dims lane, lane+32, ...);
//   * it streams 32-row tiles of the other side through shared memory;
//   * score phase: lane = the other side's row (32 dot products at once, no reduction needed; the shared
//     tile's row stride is odd, so the 32 lanes hit 32 different banks);
//   * accumulate phase: lane = output dim, the 32 probabilities broadcast by warp shuffles.
// Nothing is accumulated by atomics: dQ and dK/dV are separate kernels (the dQ kernel recomputes the scores),
// so results are deterministic.
#include "attention/attention_cuda.h"

#include <cuda_runtime.h>

#include <cmath>
#include <limits>
#include <type_traits>

#include "common/cuda_utils.cuh"
#include "common/mma.cuh"
#include "common/philox.h"

namespace pyfast {
namespace attention {
namespace {

using cuda::kFullWarp;
using cuda::load_elem;
using cuda::store_elem;
using cuda::warp_max;
using cuda::warp_sum;

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRowsPerWarp = 4;
constexpr int kOwnRows = kWarps * kRowsPerWarp;  // 16 rows owned by a block
constexpr int kTile = 32;                        // rows of the streamed side per tile: one per lane
constexpr int kDimsPerLane = static_cast<int>(kMaxHeadDim) / 32;  // 8 accumulator dims per lane at E = 256

__host__ __device__ inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
__host__ __device__ inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

// Shared-memory row stride for tiles read with lane = row: odd, so 32 lanes reading column d of 32 rows touch
// 32 distinct banks (an even stride like 64 would put every lane in the same bank).
__host__ __device__ inline int odd_stride(int64_t dim) { return static_cast<int>(dim | 1); }

struct SeqGeom {
  int64_t q_len, kv_len, q_row0, k_row0;
};

__device__ inline SeqGeom seq_geom(const AttentionParams& p, int64_t b) {
  SeqGeom g{p.q_len, p.kv_len, 0, 0};
  if (p.cu_seqlens_q != nullptr) {
    g.q_row0 = p.cu_seqlens_q[b];
    g.k_row0 = p.cu_seqlens_k[b];
    // Clamped to the declared maxima: the grid covers max_seqlen rows, and no read may go past the buffers.
    g.q_len = imin(static_cast<int64_t>(p.cu_seqlens_q[b + 1]) - g.q_row0, p.q_len);
    g.kv_len = imin(static_cast<int64_t>(p.cu_seqlens_k[b + 1]) - g.k_row0, p.kv_len);
    g.q_len = imax(g.q_len, 0);
    g.kv_len = imax(g.kv_len, 0);
  }
  return g;
}

// Element offset of (b, h, row 0 of this sequence), as attention_cpu.cpp's base_offset.
__device__ inline int64_t base_offset(const Strided& t, const AttentionParams& p, int64_t b, int64_t h,
                                      int64_t row0) {
  return (p.cu_seqlens_q != nullptr ? row0 * t.row_stride : b * t.batch_stride) + h * t.head_stride;
}
__device__ inline int64_t lse_offset(const AttentionParams& p, int64_t b, int64_t h, int64_t row0) {
  return (p.cu_seqlens_q != nullptr ? row0 : b * p.lse_batch_stride) + h * p.lse_head_stride;
}

// Dropout factor of pair (b, h, i, j): 0 or 1 / (1 - p). The keying is the CPU kernel's (attention_cpu.cpp,
// dropout_factors): counter = ((b * Hq + h) * L + i) * ceil(S / 4) + j / 4, word j % 4, stream kDropoutStream,
// with L, S the declared (max) lengths. One Philox per pair here (the CPU shares one across four keys); the
// backward regenerates the same factors.
__device__ inline float dropout_factor(const AttentionParams& p, int64_t b, int64_t h, int64_t i, int64_t j,
                                       float keep_scale) {
  const int64_t groups_per_row = (p.kv_len + 3) / 4;
  const uint64_t counter = static_cast<uint64_t>(((b * p.q_heads + h) * p.q_len + i) * groups_per_row + j / 4);
  const Philox4x32 r = philox_draw(p.seed, counter, kDropoutStream);
  return uint_to_unit_float(cuda::philox_word(r.v, static_cast<int>(j % 4))) >= p.dropout_p ? keep_scale : 0.0f;
}

__device__ inline float keep_scale_of(const AttentionParams& p) {
  return __fdiv_rn(1.0f, 1.0f - p.dropout_p);  // exact division whatever --use_fast_math says: as the CPU's
}

// Copies rows [row0, row0 + n) (n <= rows) of a strided (rows x dim) tensor into shared memory with row stride
// `ld`, times `scale`; rows past n are zero-filled. Coalesced along dim.
template <typename T>
__device__ inline void load_tile(const T* base, int64_t row_stride, int64_t row0, int64_t n, int rows, int64_t dim,
                                 float scale, float* dst, int ld) {
  for (int idx = threadIdx.x; idx < rows * dim; idx += blockDim.x) {
    const int r = idx / static_cast<int>(dim), d = idx % static_cast<int>(dim);
    dst[r * ld + d] = r < n ? scale * load_elem(base + (row0 + r) * row_stride + d) : 0.0f;
  }
}

// ---- forward ------------------------------------------------------------------------------------------------
// grid (ceil(L / 16), Hq, B). Shared: q (16 x E, pre-scaled), k tile (32 x odd(E)), v tile (32 x Ev).
template <typename T>
__global__ void __launch_bounds__(kThreads) attention_fwd_kernel(const AttentionParams p) {
  const int64_t b = blockIdx.z, h = blockIdx.y, i0 = static_cast<int64_t>(blockIdx.x) * kOwnRows;
  const SeqGeom seq = seq_geom(p, b);
  if (i0 >= seq.q_len) return;
  const int64_t kv_h = h / (p.q_heads / p.kv_heads);
  const int64_t E = p.head_dim, Ev = p.value_dim, L = seq.q_len, S = seq.kv_len;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int k_ld = odd_stride(E);

  extern __shared__ float smem[];
  float* q_s = smem;                   // kOwnRows x E
  float* k_s = q_s + kOwnRows * E;     // kTile x k_ld
  float* v_s = k_s + kTile * k_ld;     // kTile x Ev

  const T* qp = static_cast<const T*>(p.q.data) + base_offset(p.q, p, b, h, seq.q_row0);
  const T* kp = static_cast<const T*>(p.k.data) + base_offset(p.k, p, b, kv_h, seq.k_row0);
  const T* vp = static_cast<const T*>(p.v.data) + base_offset(p.v, p, b, kv_h, seq.k_row0);
  const float* mask = p.mask.data == nullptr ? nullptr
                                             : static_cast<const float*>(p.mask.data) + b * p.mask.batch_stride +
                                                   h * p.mask.head_stride;
  load_tile(qp, p.q.row_stride, i0, imin(kOwnRows, L - i0), kOwnRows, E, p.scale, q_s,
            static_cast<int>(E));

  float acc[kRowsPerWarp][kDimsPerLane];
  float row_max[kRowsPerWarp], row_sum[kRowsPerWarp];
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    row_max[rr] = -INFINITY;
    row_sum[rr] = 0.0f;
#pragma unroll
    for (int c = 0; c < kDimsPerLane; ++c) acc[rr][c] = 0.0f;
  }
  const bool dropout = p.dropout_p > 0.0f;
  const float keep_scale = keep_scale_of(p);
  // Causal: keys past the block's last row are invisible to all its rows.
  const int64_t kv_end = p.is_causal ? imin(S, imin(L, i0 + kOwnRows)) : S;

  for (int64_t j0 = 0; j0 < kv_end; j0 += kTile) {
    const int64_t nk = imin(kTile, kv_end - j0);
    __syncthreads();  // the previous tile is consumed
    load_tile(kp, p.k.row_stride, j0, nk, kTile, E, 1.0f, k_s, k_ld);
    load_tile(vp, p.v.row_stride, j0, nk, kTile, Ev, 1.0f, v_s, static_cast<int>(Ev));
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
      const int r = warp * kRowsPerWarp + rr;
      const int64_t i = i0 + r;
      if (i >= L) continue;  // warp-uniform
      const int64_t j = j0 + lane;
      const bool visible = lane < nk && (!p.is_causal || j <= i);
      float s = -INFINITY;
      if (visible) {
        const float* qr = q_s + r * E;
        const float* kr = k_s + lane * k_ld;
        float dot = 0.0f;
        for (int d = 0; d < E; ++d) dot = fmaf(qr[d], kr[d], dot);
        s = dot + (mask != nullptr ? mask[i * p.mask.row_stride + j] : 0.0f);
      }
      const float new_max = fmaxf(row_max[rr], warp_max(s));
      if (new_max == -INFINITY) continue;  // nothing visible yet in this row (warp-uniform)
      const float rescale = __expf(row_max[rr] - new_max);  // 0 on the first visible tile
      float prob = s == -INFINITY ? 0.0f : __expf(s - new_max);
      row_sum[rr] = row_sum[rr] * rescale + warp_sum(prob);
      row_max[rr] = new_max;
      if (dropout && visible) prob *= dropout_factor(p, b, h, i, j, keep_scale);
#pragma unroll
      for (int c = 0; c < kDimsPerLane; ++c) acc[rr][c] *= rescale;
      for (int jj = 0; jj < nk; ++jj) {
        const float pj = __shfl_sync(kFullWarp, prob, jj);
        const float* vr = v_s + jj * Ev;
#pragma unroll
        for (int c = 0; c < kDimsPerLane; ++c) {
          const int d = lane + 32 * c;
          if (d < Ev) acc[rr][c] = fmaf(pj, vr[d], acc[rr][c]);
        }
      }
    }
  }

  T* op = static_cast<T*>(p.out.data) + base_offset(p.out, p, b, h, seq.q_row0);
  float* lse = p.lse + lse_offset(p, b, h, seq.q_row0);
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    const int64_t i = i0 + warp * kRowsPerWarp + rr;
    if (i >= L) continue;
    // A row whose mask allows no key: output 0, lse -inf (the CPU kernel's convention). NaN propagates.
    const bool any = row_sum[rr] > 0.0f || isnan(row_sum[rr]);
    const float inv = any ? 1.0f / row_sum[rr] : 0.0f;
#pragma unroll
    for (int c = 0; c < kDimsPerLane; ++c) {
      const int d = lane + 32 * c;
      if (d < Ev) store_elem(op + i * p.out.row_stride + d, acc[rr][c] * inv);
    }
    if (lane == 0) lse[i] = any ? row_max[rr] + logf(row_sum[rr]) : -INFINITY;
  }
}

// ---- backward: dQ (and delta) ---------------------------------------------------------------------------------
// grid (ceil(L / 16), Hq, B). Each warp first computes delta_i = rowsum(dout_i * out_i) for its rows and stores it
// (the dK/dV kernel, launched after on the same stream, reads it). Then, like the forward, it streams K/V tiles:
// P = exp(s - lse), dP = dout v^T, dS = P * (dP * keep - delta), dQ += dS k. dQ is written times scale.
// Shared: q (16 x E, scaled), dout (16 x Ev), k tile (32 x odd(E)), v tile (32 x odd(Ev)).
template <typename T>
__global__ void __launch_bounds__(kThreads) attention_bwd_dq_kernel(const AttentionBackwardParams bp, float* delta) {
  const AttentionParams& p = bp.fwd;
  const int64_t b = blockIdx.z, h = blockIdx.y, i0 = static_cast<int64_t>(blockIdx.x) * kOwnRows;
  const SeqGeom seq = seq_geom(p, b);
  if (i0 >= seq.q_len) return;
  const int64_t kv_h = h / (p.q_heads / p.kv_heads);
  const int64_t E = p.head_dim, Ev = p.value_dim, L = seq.q_len, S = seq.kv_len;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int k_ld = odd_stride(E), v_ld = odd_stride(Ev);

  extern __shared__ float smem[];
  float* q_s = smem;                    // kOwnRows x E
  float* do_s = q_s + kOwnRows * E;     // kOwnRows x Ev
  float* k_s = do_s + kOwnRows * Ev;    // kTile x k_ld
  float* v_s = k_s + kTile * k_ld;      // kTile x v_ld

  const T* qp = static_cast<const T*>(p.q.data) + base_offset(p.q, p, b, h, seq.q_row0);
  const T* dop = static_cast<const T*>(bp.dout.data) + base_offset(bp.dout, p, b, h, seq.q_row0);
  const T* op = static_cast<const T*>(p.out.data) + base_offset(p.out, p, b, h, seq.q_row0);
  const T* kp = static_cast<const T*>(p.k.data) + base_offset(p.k, p, b, kv_h, seq.k_row0);
  const T* vp = static_cast<const T*>(p.v.data) + base_offset(p.v, p, b, kv_h, seq.k_row0);
  const float* lse_p = p.lse + lse_offset(p, b, h, seq.q_row0);
  float* delta_p = delta + lse_offset(p, b, h, seq.q_row0);
  const float* mask = p.mask.data == nullptr ? nullptr
                                             : static_cast<const float*>(p.mask.data) + b * p.mask.batch_stride +
                                                   h * p.mask.head_stride;
  const int64_t n_rows = imin(kOwnRows, L - i0);
  load_tile(qp, p.q.row_stride, i0, n_rows, kOwnRows, E, p.scale, q_s, static_cast<int>(E));
  load_tile(dop, bp.dout.row_stride, i0, n_rows, kOwnRows, Ev, 1.0f, do_s, static_cast<int>(Ev));
  __syncthreads();

  float row_delta[kRowsPerWarp], row_lse[kRowsPerWarp], acc[kRowsPerWarp][kDimsPerLane];
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    const int r = warp * kRowsPerWarp + rr;
    const int64_t i = i0 + r;
    float part = 0.0f;
    if (i < L)
      for (int d = lane; d < Ev; d += 32) part += do_s[r * Ev + d] * load_elem(op + i * p.out.row_stride + d);
    row_delta[rr] = warp_sum(part);
    // A fully masked row (lse -inf) has probabilities 0: +inf makes exp(s - lse) exactly 0.
    const float l = i < L ? lse_p[i] : INFINITY;
    row_lse[rr] = l == -INFINITY ? INFINITY : l;
    if (i < L && lane == 0) delta_p[i] = row_delta[rr];
#pragma unroll
    for (int c = 0; c < kDimsPerLane; ++c) acc[rr][c] = 0.0f;
  }
  const bool dropout = p.dropout_p > 0.0f;
  const float keep_scale = keep_scale_of(p);
  const int64_t kv_end = p.is_causal ? imin(S, imin(L, i0 + kOwnRows)) : S;

  for (int64_t j0 = 0; j0 < kv_end; j0 += kTile) {
    const int64_t nk = imin(kTile, kv_end - j0);
    __syncthreads();
    load_tile(kp, p.k.row_stride, j0, nk, kTile, E, 1.0f, k_s, k_ld);
    load_tile(vp, p.v.row_stride, j0, nk, kTile, Ev, 1.0f, v_s, v_ld);
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
      const int r = warp * kRowsPerWarp + rr;
      const int64_t i = i0 + r;
      if (i >= L) continue;
      const int64_t j = j0 + lane;
      const bool visible = lane < nk && (!p.is_causal || j <= i);
      float ds = 0.0f;
      if (visible) {
        const float* qr = q_s + r * E;
        const float* kr = k_s + lane * k_ld;
        float s = 0.0f;
        for (int d = 0; d < E; ++d) s = fmaf(qr[d], kr[d], s);
        if (mask != nullptr) s += mask[i * p.mask.row_stride + j];
        const float prob = s == -INFINITY ? 0.0f : __expf(s - row_lse[rr]);
        const float* dor = do_s + r * Ev;
        const float* vr = v_s + lane * v_ld;
        float dp = 0.0f;
        for (int d = 0; d < Ev; ++d) dp = fmaf(dor[d], vr[d], dp);
        if (dropout) dp *= dropout_factor(p, b, h, i, j, keep_scale);
        ds = prob * (dp - row_delta[rr]);
      }
      for (int jj = 0; jj < nk; ++jj) {
        const float dsj = __shfl_sync(kFullWarp, ds, jj);
        const float* kr = k_s + jj * k_ld;
#pragma unroll
        for (int c = 0; c < kDimsPerLane; ++c) {
          const int d = lane + 32 * c;
          if (d < E) acc[rr][c] = fmaf(dsj, kr[d], acc[rr][c]);
        }
      }
    }
  }

  T* dqp = static_cast<T*>(bp.dq.data) + base_offset(bp.dq, p, b, h, seq.q_row0);
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    const int64_t i = i0 + warp * kRowsPerWarp + rr;
    if (i >= L) continue;
#pragma unroll
    for (int c = 0; c < kDimsPerLane; ++c) {
      const int d = lane + 32 * c;
      if (d < E) store_elem(dqp + i * bp.dq.row_stride + d, acc[rr][c] * p.scale);
    }
  }
}

// ---- backward: dK, dV -----------------------------------------------------------------------------------------
// grid (ceil(S / 16), Hkv, B): a block owns 16 keys of one kv head and streams 32-query tiles of every q head
// of its GQA group (so dK/dV sum over the group without atomics). Lane = query in the score phase.
// dV += (P * keep)^T dout, dK += dS^T (scale q). Shared: own k (16 x E), own v (16 x Ev), q tile (32 x odd(E)),
// dout tile (32 x odd(Ev)), lse and delta of the tile (32 each).
template <typename T>
__global__ void __launch_bounds__(kThreads) attention_bwd_dkdv_kernel(const AttentionBackwardParams bp,
                                                                      const float* delta) {
  const AttentionParams& p = bp.fwd;
  const int64_t b = blockIdx.z, kv_h = blockIdx.y, j0 = static_cast<int64_t>(blockIdx.x) * kOwnRows;
  const SeqGeom seq = seq_geom(p, b);
  if (j0 >= seq.kv_len) return;
  const int64_t group = p.q_heads / p.kv_heads;
  const int64_t E = p.head_dim, Ev = p.value_dim, L = seq.q_len, S = seq.kv_len;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int q_ld = odd_stride(E), do_ld = odd_stride(Ev);

  extern __shared__ float smem[];
  float* k_s = smem;                    // kOwnRows x E
  float* v_s = k_s + kOwnRows * E;      // kOwnRows x Ev
  float* q_s = v_s + kOwnRows * Ev;     // kTile x q_ld
  float* do_s = q_s + kTile * q_ld;     // kTile x do_ld
  float* lse_s = do_s + kTile * do_ld;  // kTile
  float* delta_s = lse_s + kTile;       // kTile

  const T* kp = static_cast<const T*>(p.k.data) + base_offset(p.k, p, b, kv_h, seq.k_row0);
  const T* vp = static_cast<const T*>(p.v.data) + base_offset(p.v, p, b, kv_h, seq.k_row0);
  const int64_t n_keys = imin(kOwnRows, S - j0);
  load_tile(kp, p.k.row_stride, j0, n_keys, kOwnRows, E, 1.0f, k_s, static_cast<int>(E));
  load_tile(vp, p.v.row_stride, j0, n_keys, kOwnRows, Ev, 1.0f, v_s, static_cast<int>(Ev));

  float dk[kRowsPerWarp][kDimsPerLane], dv[kRowsPerWarp][kDimsPerLane];
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr)
#pragma unroll
    for (int c = 0; c < kDimsPerLane; ++c) dk[rr][c] = dv[rr][c] = 0.0f;
  const bool dropout = p.dropout_p > 0.0f;
  const float keep_scale = keep_scale_of(p);
  // Causal: queries before this block's first key see none of its keys.
  const int64_t i_begin = p.is_causal ? (j0 / kTile) * kTile : 0;

  for (int64_t g = 0; g < group; ++g) {
    const int64_t h = kv_h * group + g;
    const T* qp = static_cast<const T*>(p.q.data) + base_offset(p.q, p, b, h, seq.q_row0);
    const T* dop = static_cast<const T*>(bp.dout.data) + base_offset(bp.dout, p, b, h, seq.q_row0);
    const float* lse_p = p.lse + lse_offset(p, b, h, seq.q_row0);
    const float* delta_p = delta + lse_offset(p, b, h, seq.q_row0);
    const float* mask = p.mask.data == nullptr ? nullptr
                                               : static_cast<const float*>(p.mask.data) + b * p.mask.batch_stride +
                                                     h * p.mask.head_stride;
    for (int64_t i0 = i_begin; i0 < L; i0 += kTile) {
      const int64_t nq = imin(kTile, L - i0);
      __syncthreads();
      load_tile(qp, p.q.row_stride, i0, nq, kTile, E, p.scale, q_s, q_ld);
      load_tile(dop, bp.dout.row_stride, i0, nq, kTile, Ev, 1.0f, do_s, do_ld);
      if (threadIdx.x < kTile) {
        const int64_t i = i0 + threadIdx.x;
        const float l = threadIdx.x < nq ? lse_p[i] : INFINITY;
        lse_s[threadIdx.x] = l == -INFINITY ? INFINITY : l;
        delta_s[threadIdx.x] = threadIdx.x < nq ? delta_p[i] : 0.0f;
      }
      __syncthreads();
#pragma unroll
      for (int rr = 0; rr < kRowsPerWarp; ++rr) {
        const int r = warp * kRowsPerWarp + rr;
        const int64_t j = j0 + r;
        if (r >= n_keys) continue;  // warp-uniform
        const int64_t i = i0 + lane;
        const bool visible = lane < nq && (!p.is_causal || j <= i);
        float prob_dropped = 0.0f, ds = 0.0f;
        if (visible) {
          const float* qr = q_s + lane * q_ld;
          const float* kr = k_s + r * E;
          float s = 0.0f;
          for (int d = 0; d < E; ++d) s = fmaf(qr[d], kr[d], s);
          if (mask != nullptr) s += mask[i * p.mask.row_stride + j];
          const float prob = s == -INFINITY ? 0.0f : __expf(s - lse_s[lane]);
          const float* dor = do_s + lane * do_ld;
          const float* vr = v_s + r * Ev;
          float dp = 0.0f;
          for (int d = 0; d < Ev; ++d) dp = fmaf(dor[d], vr[d], dp);
          const float f = dropout ? dropout_factor(p, b, h, i, j, keep_scale) : 1.0f;
          prob_dropped = prob * f;
          ds = prob * (dp * f - delta_s[lane]);
        }
        for (int ii = 0; ii < nq; ++ii) {
          const float pi = __shfl_sync(kFullWarp, prob_dropped, ii);
          const float dsi = __shfl_sync(kFullWarp, ds, ii);
          const float* dor = do_s + ii * do_ld;
          const float* qr = q_s + ii * q_ld;
#pragma unroll
          for (int c = 0; c < kDimsPerLane; ++c) {
            const int d = lane + 32 * c;
            if (d < Ev) dv[rr][c] = fmaf(pi, dor[d], dv[rr][c]);
            if (d < E) dk[rr][c] = fmaf(dsi, qr[d], dk[rr][c]);
          }
        }
      }
    }
  }

  T* dkp = static_cast<T*>(bp.dk.data) + base_offset(bp.dk, p, b, kv_h, seq.k_row0);
  T* dvp = static_cast<T*>(bp.dv.data) + base_offset(bp.dv, p, b, kv_h, seq.k_row0);
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    const int r = warp * kRowsPerWarp + rr;
    if (r >= n_keys) continue;
    const int64_t j = j0 + r;
#pragma unroll
    for (int c = 0; c < kDimsPerLane; ++c) {
      const int d = lane + 32 * c;
      if (d < E) store_elem(dkp + j * bp.dk.row_stride + d, dk[rr][c]);
      if (d < Ev) store_elem(dvp + j * bp.dv.row_stride + d, dv[rr][c]);
    }
  }
}

// ---- forward on tensor cores (bf16 / fp16, head dim 64 or 128) ------------------------------------------------
// FlashAttention-2's forward with the two matrix products on mma.sync m16n8k16 (common/mma.cuh): a block of
// 4 warps owns 64 query rows, 16 per warp (one mma row tile), and streams 64-key tiles of K and V through shared
// memory. Per tile and warp: S (16 x 64) = Q K^T as 8 fp32 accumulator tiles (Q's A fragments stay in registers
// for the whole loop); scale, mask, causal and the online softmax act on those accumulators in fp32 (each lane
// holds 2 rows x 16 keys; row max and sum need only the 4 lanes of a quad); P is rounded to T and reused as the
// A operand of O += P V with no trip through shared memory, because an m16n8 accumulator pair has the same
// (row, column) layout as the A fragment of an m16n8k16 (mma.cuh: a0..a3 = C tile 2kk, a4..a7 = C tile 2kk + 1).
// Semantics are the CUDA-core kernel's above: same visibility rules, same dropout keying, same lse and the same
// fully-masked-row convention. The only extra rounding: P is rounded to bf16/fp16 before P V (as in
// FlashAttention); the row sum uses the unrounded fp32 P.
// Shared memory (16-bit elements): q (64 x (D + 8)), k (64 x (D + 8)), v transposed (D x 72). The 8-element row
// padding shifts each row by 4 banks, so the 8 rows x 4 words a fragment load touches hit 32 distinct banks.
// V is stored transposed so that a B fragment (two consecutive keys of one dim) is one 32-bit load (no ldmatrix:
// the host emulator would need it emulated too). Not yet done (each would be measured first on a GPU): cp.async
// double buffering, ldmatrix, exp2 with a folded log2(e) scale, a wider key tile for D = 64.
constexpr int kMmaRowsPerWarp = 16;
constexpr int kMmaBlockM = kWarps * kMmaRowsPerWarp;  // 64 query rows per block
constexpr int kMmaBlockN = 64;                        // keys per streamed tile
constexpr int kMmaPad = 8;                            // 16-bit elements of row padding in shared memory

template <int D>
constexpr size_t mma_fwd_smem_bytes() {
  return sizeof(uint16_t) * (static_cast<size_t>(kMmaBlockM + kMmaBlockN) * (D + kMmaPad) +
                             static_cast<size_t>(D) * (kMmaBlockN + kMmaPad));
}

// Copies rows [row0, row0 + n) (n <= rows) of a (rows x D) 16-bit tensor into shared memory (row stride ld),
// zero-filling rows past n (their keys are masked, but 0 * garbage could be NaN). 16-byte vector copies when the
// source rows are 16-byte aligned (the usual contiguous case), element copies otherwise. With `transpose`,
// element (r, d) goes to dst[d * ld + r] (V's layout for the P V product).
template <int D, bool transpose>
__device__ inline void copy_rows_16bit(const uint16_t* base, int64_t row_stride, int64_t row0, int64_t n, int rows,
                                       uint16_t* dst, int ld) {
  const bool vec = reinterpret_cast<uintptr_t>(base) % 16 == 0 && row_stride % 8 == 0;
  if (vec) {
    constexpr int kChunks = D / 8;
    for (int idx = threadIdx.x; idx < rows * kChunks; idx += blockDim.x) {
      const int r = idx / kChunks, c = (idx % kChunks) * 8;
      uint4 val = {0u, 0u, 0u, 0u};
      if (r < n) val = *reinterpret_cast<const uint4*>(base + (row0 + r) * row_stride + c);
      if (transpose) {
        const uint16_t* e = reinterpret_cast<const uint16_t*>(&val);
#pragma unroll
        for (int x = 0; x < 8; ++x) dst[(c + x) * ld + r] = e[x];
      } else {
        *reinterpret_cast<uint4*>(dst + r * ld + c) = val;  // ld * 2 bytes is a multiple of 16
      }
    }
  } else {
    for (int idx = threadIdx.x; idx < rows * D; idx += blockDim.x) {
      const int r = idx / D, d = idx % D;
      const uint16_t val = r < n ? base[(row0 + r) * row_stride + d] : static_cast<uint16_t>(0);
      dst[transpose ? d * ld + r : r * ld + d] = val;
    }
  }
}

// The dropout factors of keys j and j + 1 (j even) of row i: one Philox draw serves both, since the CPU's keying
// puts keys 4m .. 4m + 3 in one counter.
__device__ inline void dropout_factor_pair(const AttentionParams& p, int64_t b, int64_t h, int64_t i, int64_t j,
                                           float keep_scale, float& f0, float& f1) {
  const int64_t groups_per_row = (p.kv_len + 3) / 4;
  const uint64_t counter = static_cast<uint64_t>(((b * p.q_heads + h) * p.q_len + i) * groups_per_row + j / 4);
  const Philox4x32 r = philox_draw(p.seed, counter, kDropoutStream);
  const int w = static_cast<int>(j % 4);
  f0 = uint_to_unit_float(cuda::philox_word(r.v, w)) >= p.dropout_p ? keep_scale : 0.0f;
  f1 = uint_to_unit_float(cuda::philox_word(r.v, w + 1)) >= p.dropout_p ? keep_scale : 0.0f;
}

// grid (ceil(L / 64), Hq, B). T = __nv_bfloat16 or __half; D = head_dim = value_dim.
template <typename T, int D>
__global__ void __launch_bounds__(kThreads) attention_fwd_mma_kernel(const AttentionParams p) {
  static_assert(D % 16 == 0 && kMmaBlockN % 16 == 0, "mma tiles are 16 deep");
  constexpr int ld = D + kMmaPad, ldv = kMmaBlockN + kMmaPad;
  constexpr int kSteps = D / 16;         // k-steps of S = Q K^T
  constexpr int kKeyTiles = kMmaBlockN / 8;  // 8-key accumulator tiles of S
  constexpr int kDimTiles = D / 8;       // 8-dim accumulator tiles of O
  const int64_t b = blockIdx.z, h = blockIdx.y, i0 = static_cast<int64_t>(blockIdx.x) * kMmaBlockM;
  const SeqGeom seq = seq_geom(p, b);
  if (i0 >= seq.q_len) return;  // block-uniform
  const int64_t kv_h = h / (p.q_heads / p.kv_heads);
  const int64_t L = seq.q_len, S = seq.kv_len;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, quad_lane = lane & 3;
  const int w_row0 = warp * kMmaRowsPerWarp;  // this warp's first row within the block

  extern __shared__ uint4 mma_smem[];
  uint16_t* q_s = reinterpret_cast<uint16_t*>(mma_smem);  // kMmaBlockM x ld
  uint16_t* k_s = q_s + kMmaBlockM * ld;                   // kMmaBlockN x ld
  uint16_t* vt_s = k_s + kMmaBlockN * ld;                  // D x ldv (V transposed)

  const uint16_t* qp = reinterpret_cast<const uint16_t*>(static_cast<const T*>(p.q.data) +
                                                         base_offset(p.q, p, b, h, seq.q_row0));
  const uint16_t* kp = reinterpret_cast<const uint16_t*>(static_cast<const T*>(p.k.data) +
                                                         base_offset(p.k, p, b, kv_h, seq.k_row0));
  const uint16_t* vp = reinterpret_cast<const uint16_t*>(static_cast<const T*>(p.v.data) +
                                                         base_offset(p.v, p, b, kv_h, seq.k_row0));
  const float* mask = p.mask.data == nullptr ? nullptr
                                             : static_cast<const float*>(p.mask.data) + b * p.mask.batch_stride +
                                                   h * p.mask.head_stride;
  copy_rows_16bit<D, false>(qp, p.q.row_stride, i0, imin(kMmaBlockM, L - i0), kMmaBlockM, q_s, ld);
  __syncthreads();
  uint32_t q_frag[kSteps][4];
#pragma unroll
  for (int kk = 0; kk < kSteps; ++kk)
#pragma unroll
    for (int r = 0; r < 4; ++r)
      q_frag[kk][r] = cuda::load_pair(q_s + (w_row0 + cuda::mma_a_row(lane, r)) * ld + 16 * kk +
                                      cuda::mma_a_col(lane, r));

  // Accumulator entry r of a tile belongs to row half r >> 1: rows[0] = row g, rows[1] = row g + 8.
  const int64_t rows[2] = {i0 + w_row0 + cuda::mma_c_row(lane, 0), i0 + w_row0 + cuda::mma_c_row(lane, 2)};
  float o[kDimTiles][4];
#pragma unroll
  for (int n = 0; n < kDimTiles; ++n)
#pragma unroll
    for (int r = 0; r < 4; ++r) o[n][r] = 0.0f;
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};  // row_sum: this lane's part
  const bool dropout = p.dropout_p > 0.0f;
  const float keep_scale = keep_scale_of(p);
  const int64_t kv_end = p.is_causal ? imin(S, imin(L, i0 + kMmaBlockM)) : S;
  const bool warp_has_rows = i0 + w_row0 < L;

  for (int64_t j0 = 0; j0 < kv_end; j0 += kMmaBlockN) {
    const int64_t nk = imin(kMmaBlockN, kv_end - j0);
    __syncthreads();  // the previous tile is consumed
    copy_rows_16bit<D, false>(kp, p.k.row_stride, j0, nk, kMmaBlockN, k_s, ld);
    copy_rows_16bit<D, true>(vp, p.v.row_stride, j0, nk, kMmaBlockN, vt_s, ldv);
    __syncthreads();
    // Warp-uniform skips (the mma below needs all 32 lanes): a warp of padding rows, or (causal) a tile wholly
    // in the future of the warp's last row.
    if (!warp_has_rows || (p.is_causal && j0 > i0 + w_row0 + kMmaRowsPerWarp - 1)) continue;

    float s[kKeyTiles][4];
#pragma unroll
    for (int t = 0; t < kKeyTiles; ++t)
#pragma unroll
      for (int r = 0; r < 4; ++r) s[t][r] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < kSteps; ++kk)
#pragma unroll
      for (int t = 0; t < kKeyTiles; ++t) {
        // B = K^T: B[k][n] = K[key 8t + n][dim 16kk + k], two consecutive dims of one key row.
        const uint16_t* kr = k_s + (8 * t + cuda::mma_b_n(lane)) * ld + 16 * kk;
        const uint32_t k_frag[2] = {cuda::load_pair(kr + cuda::mma_b_k(lane, 0)),
                                    cuda::load_pair(kr + cuda::mma_b_k(lane, 1))};
        cuda::mma_m16n8k16<T>(s[t], q_frag[kk], k_frag);
      }

    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int t = 0; t < kKeyTiles; ++t)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int64_t i = rows[r >> 1], j = j0 + 8 * t + cuda::mma_c_col(lane, r);
        const bool visible = i < L && j < j0 + nk && (!p.is_causal || j <= i);
        float x = -INFINITY;
        if (visible) x = s[t][r] * p.scale + (mask != nullptr ? mask[i * p.mask.row_stride + j] : 0.0f);
        s[t][r] = x;
        tile_max[r >> 1] = fmaxf(tile_max[r >> 1], x);
      }
    float use_max[2];
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      // The 4 lanes of a quad hold one row's 64 keys between them.
      tile_max[hh] = fmaxf(tile_max[hh], __shfl_xor_sync(kFullWarp, tile_max[hh], 1));
      tile_max[hh] = fmaxf(tile_max[hh], __shfl_xor_sync(kFullWarp, tile_max[hh], 2));
      const float new_max = fmaxf(row_max[hh], tile_max[hh]);
      use_max[hh] = new_max == -INFINITY ? 0.0f : new_max;  // a row with nothing visible yet: every exp is 0
      const float rescale = row_max[hh] == -INFINITY ? 0.0f : __expf(row_max[hh] - use_max[hh]);
      row_max[hh] = new_max;
      row_sum[hh] *= rescale;
#pragma unroll
      for (int n = 0; n < kDimTiles; ++n) {
        o[n][2 * hh] *= rescale;
        o[n][2 * hh + 1] *= rescale;
      }
    }
#pragma unroll
    for (int t = 0; t < kKeyTiles; ++t)
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        float& p0 = s[t][2 * hh];
        float& p1 = s[t][2 * hh + 1];
        p0 = p0 == -INFINITY ? 0.0f : __expf(p0 - use_max[hh]);
        p1 = p1 == -INFINITY ? 0.0f : __expf(p1 - use_max[hh]);
        row_sum[hh] += p0 + p1;
        if (dropout && (p0 != 0.0f || p1 != 0.0f)) {
          float f0, f1;
          dropout_factor_pair(p, b, h, rows[hh], j0 + 8 * t + cuda::mma_c_col(lane, 2 * hh), keep_scale, f0, f1);
          p0 *= f0;
          p1 *= f1;
        }
      }
#pragma unroll
    for (int kk = 0; kk < kMmaBlockN / 16; ++kk) {
      const uint32_t p_frag[4] = {cuda::pack2_float<T>(s[2 * kk][0], s[2 * kk][1]),
                                  cuda::pack2_float<T>(s[2 * kk][2], s[2 * kk][3]),
                                  cuda::pack2_float<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                  cuda::pack2_float<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int n = 0; n < kDimTiles; ++n) {
        // B = V: B[k][n] = V[key 16kk + k][dim 8n + n] = vt_s[(8n + n) * ldv + 16kk + k].
        const uint16_t* vr = vt_s + (8 * n + cuda::mma_b_n(lane)) * ldv + 16 * kk;
        const uint32_t v_frag[2] = {cuda::load_pair(vr + cuda::mma_b_k(lane, 0)),
                                    cuda::load_pair(vr + cuda::mma_b_k(lane, 1))};
        cuda::mma_m16n8k16<T>(o[n], p_frag, v_frag);
      }
    }
  }

  T* op = static_cast<T*>(p.out.data) + base_offset(p.out, p, b, h, seq.q_row0);
  float* lse = p.lse + lse_offset(p, b, h, seq.q_row0);
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    row_sum[hh] += __shfl_xor_sync(kFullWarp, row_sum[hh], 1);
    row_sum[hh] += __shfl_xor_sync(kFullWarp, row_sum[hh], 2);
    const int64_t i = rows[hh];
    if (i >= L) continue;
    // A row whose mask allows no key: output 0, lse -inf (the CPU kernel's convention). NaN propagates.
    const bool any = row_sum[hh] > 0.0f || isnan(row_sum[hh]);
    const float inv = any ? 1.0f / row_sum[hh] : 0.0f;
#pragma unroll
    for (int n = 0; n < kDimTiles; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e)
        store_elem(op + i * p.out.row_stride + 8 * n + cuda::mma_c_col(lane, 2 * hh + e), o[n][2 * hh + e] * inv);
    if (quad_lane == 0) lse[i] = any ? row_max[hh] + logf(row_sum[hh]) : -INFINITY;
  }
}

// ---- backward on tensor cores (bf16 / fp16, head dim 64 or 128) -----------------------------------------------
// The CUDA-core backward's two kernels (dQ, then dK/dV; no atomics, deterministic) with every matrix product on
// mma.sync. A block of 4 warps owns 64 rows of one side (16 per warp: queries in the dQ kernel, keys in the dK/dV
// kernel) and streams 32-row tiles of the other side. All operands stay in shared memory as 16-bit values; A
// fragments of the owned side are reloaded per use (holding them, plus two fp32 accumulators of 16 x D, would
// pass 255 registers at D = 128). P (dropped) and dS are rounded to T before their products, as in FlashAttention;
// softmax, dP - delta and every accumulation are fp32.
//   dQ kernel, per warp and key tile:   S = Q K^T, dP = dO V^T, dS = P (dP keep - delta), dQ += dS K
//   dK/dV kernel, per warp, query tile: S^T = K Q^T, dP^T = V dO^T, dV += (P keep)^T dO, dK += dS^T Q
// B operands that run down a tile's rows (K in dS K, dO and Q in the dK/dV products) are read as two 16-bit
// loads (load_pair_strided) rather than from transposed copies.
constexpr int kMmaBwdN = 32;  // rows of the streamed side per tile

template <int D>
constexpr size_t mma_bwd_smem_bytes() {
  return sizeof(uint16_t) * static_cast<size_t>(2 * kMmaBlockM + 2 * kMmaBwdN) * (D + kMmaPad) +
         sizeof(float) * 2 * kMmaBlockM;
}

// acc[t] += A (16 rows of `a_s` from row a_row0, all D columns) * B, where B[k][n] = b_s[(8t + n) * ld + k]: the
// product of 16 owned rows with the transpose of kTiles * 8 streamed rows (S = Q K^T and its three siblings).
template <typename T, int D, int kTiles>
__device__ inline void mma_rows_by_rows_t(float (&acc)[kTiles][4], const uint16_t* a_s, int a_row0,
                                          const uint16_t* b_s, int lane) {
  constexpr int ld = D + kMmaPad;
#pragma unroll
  for (int t = 0; t < kTiles; ++t)
#pragma unroll
    for (int r = 0; r < 4; ++r) acc[t][r] = 0.0f;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    uint32_t a[4];
#pragma unroll
    for (int r = 0; r < 4; ++r)
      a[r] = cuda::load_pair(a_s + (a_row0 + cuda::mma_a_row(lane, r)) * ld + 16 * kk + cuda::mma_a_col(lane, r));
#pragma unroll
    for (int t = 0; t < kTiles; ++t) {
      const uint16_t* br = b_s + (8 * t + cuda::mma_b_n(lane)) * ld + 16 * kk;
      const uint32_t bf[2] = {cuda::load_pair(br + cuda::mma_b_k(lane, 0)), cuda::load_pair(br + cuda::mma_b_k(lane, 1))};
      cuda::mma_m16n8k16<T>(acc[t], a, bf);
    }
  }
}

// acc (16 x D) += X (16 x kMmaBwdN, fp32 accumulator tiles, rounded to T here) * b_s (kMmaBwdN x D rows of the
// streamed tile): dQ += dS K, dV += P^T dO, dK += dS^T Q. X's accumulator tiles 2kk, 2kk + 1 are the A fragment
// of k-step kk (the same identity as P in the forward).
template <typename T, int D>
__device__ inline void mma_acc_by_rows(float (&acc)[D / 8][4], const float (&x)[kMmaBwdN / 8][4],
                                       const uint16_t* b_s, int lane) {
  constexpr int ld = D + kMmaPad;
#pragma unroll
  for (int kk = 0; kk < kMmaBwdN / 16; ++kk) {
    const uint32_t a[4] = {cuda::pack2_float<T>(x[2 * kk][0], x[2 * kk][1]),
                           cuda::pack2_float<T>(x[2 * kk][2], x[2 * kk][3]),
                           cuda::pack2_float<T>(x[2 * kk + 1][0], x[2 * kk + 1][1]),
                           cuda::pack2_float<T>(x[2 * kk + 1][2], x[2 * kk + 1][3])};
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      // B[k][n] = b_s[(16kk + k) * ld + 8n + n]: rows k and k + 1 of one column.
      const uint16_t* bc = b_s + 16 * kk * ld + 8 * n + cuda::mma_b_n(lane);
      const uint32_t bf[2] = {cuda::load_pair_strided(bc + cuda::mma_b_k(lane, 0) * ld, ld),
                              cuda::load_pair_strided(bc + cuda::mma_b_k(lane, 1) * ld, ld)};
      cuda::mma_m16n8k16<T>(acc[n], a, bf);
    }
  }
}

// grid (ceil(L / 64), Hq, B). Writes delta (rowsum(dout * out), fp32) for the dK/dV kernel, then dQ.
template <typename T, int D>
__global__ void __launch_bounds__(kThreads) attention_bwd_dq_mma_kernel(const AttentionBackwardParams bp,
                                                                        float* delta) {
  const AttentionParams& p = bp.fwd;
  constexpr int ld = D + kMmaPad;
  constexpr int kKeyTiles = kMmaBwdN / 8, kDimTiles = D / 8;
  const int64_t b = blockIdx.z, h = blockIdx.y, i0 = static_cast<int64_t>(blockIdx.x) * kMmaBlockM;
  const SeqGeom seq = seq_geom(p, b);
  if (i0 >= seq.q_len) return;  // block-uniform
  const int64_t kv_h = h / (p.q_heads / p.kv_heads);
  const int64_t L = seq.q_len, S = seq.kv_len;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int w_row0 = warp * kMmaRowsPerWarp;

  extern __shared__ uint4 mma_smem[];
  uint16_t* q_s = reinterpret_cast<uint16_t*>(mma_smem);  // kMmaBlockM x ld
  uint16_t* do_s = q_s + kMmaBlockM * ld;                  // kMmaBlockM x ld
  uint16_t* k_s = do_s + kMmaBlockM * ld;                  // kMmaBwdN x ld
  uint16_t* v_s = k_s + kMmaBwdN * ld;                     // kMmaBwdN x ld
  float* lse_s = reinterpret_cast<float*>(v_s + kMmaBwdN * ld);  // kMmaBlockM
  float* delta_s = lse_s + kMmaBlockM;                             // kMmaBlockM

  const T* qp = static_cast<const T*>(p.q.data) + base_offset(p.q, p, b, h, seq.q_row0);
  const T* dop = static_cast<const T*>(bp.dout.data) + base_offset(bp.dout, p, b, h, seq.q_row0);
  const T* op = static_cast<const T*>(p.out.data) + base_offset(p.out, p, b, h, seq.q_row0);
  const T* kp = static_cast<const T*>(p.k.data) + base_offset(p.k, p, b, kv_h, seq.k_row0);
  const T* vp = static_cast<const T*>(p.v.data) + base_offset(p.v, p, b, kv_h, seq.k_row0);
  const float* lse_p = p.lse + lse_offset(p, b, h, seq.q_row0);
  float* delta_p = delta + lse_offset(p, b, h, seq.q_row0);
  const float* mask = p.mask.data == nullptr ? nullptr
                                             : static_cast<const float*>(p.mask.data) + b * p.mask.batch_stride +
                                                   h * p.mask.head_stride;
  const int64_t n_rows = imin(kMmaBlockM, L - i0);
  copy_rows_16bit<D, false>(reinterpret_cast<const uint16_t*>(qp), p.q.row_stride, i0, n_rows, kMmaBlockM, q_s, ld);
  copy_rows_16bit<D, false>(reinterpret_cast<const uint16_t*>(dop), bp.dout.row_stride, i0, n_rows, kMmaBlockM,
                            do_s, ld);
  // delta_i = rowsum(dout_i * out_i) in fp32, one warp per row; a fully masked row's lse (-inf) becomes +inf so
  // that exp(s - lse) is exactly 0, as does a padding row's.
  for (int r = warp; r < kMmaBlockM; r += kWarps) {
    const int64_t i = i0 + r;
    float part = 0.0f;
    if (i < L)
      for (int d = lane; d < D; d += 32)
        part += load_elem(dop + i * bp.dout.row_stride + d) * load_elem(op + i * p.out.row_stride + d);
    part = warp_sum(part);
    if (lane == 0) {
      delta_s[r] = i < L ? part : 0.0f;
      const float l = i < L ? lse_p[i] : INFINITY;
      lse_s[r] = l == -INFINITY ? INFINITY : l;
      if (i < L) delta_p[i] = part;
    }
  }
  __syncthreads();

  const int64_t rows[2] = {i0 + w_row0 + cuda::mma_c_row(lane, 0), i0 + w_row0 + cuda::mma_c_row(lane, 2)};
  const float row_lse[2] = {lse_s[w_row0 + cuda::mma_c_row(lane, 0)], lse_s[w_row0 + cuda::mma_c_row(lane, 2)]};
  const float row_delta[2] = {delta_s[w_row0 + cuda::mma_c_row(lane, 0)], delta_s[w_row0 + cuda::mma_c_row(lane, 2)]};
  float dq[kDimTiles][4];
#pragma unroll
  for (int n = 0; n < kDimTiles; ++n)
#pragma unroll
    for (int r = 0; r < 4; ++r) dq[n][r] = 0.0f;
  const bool dropout = p.dropout_p > 0.0f;
  const float keep_scale = keep_scale_of(p);
  const int64_t kv_end = p.is_causal ? imin(S, imin(L, i0 + kMmaBlockM)) : S;
  const bool warp_has_rows = i0 + w_row0 < L;

  for (int64_t j0 = 0; j0 < kv_end; j0 += kMmaBwdN) {
    const int64_t nk = imin(kMmaBwdN, kv_end - j0);
    __syncthreads();
    copy_rows_16bit<D, false>(reinterpret_cast<const uint16_t*>(kp), p.k.row_stride, j0, nk, kMmaBwdN, k_s, ld);
    copy_rows_16bit<D, false>(reinterpret_cast<const uint16_t*>(vp), p.v.row_stride, j0, nk, kMmaBwdN, v_s, ld);
    __syncthreads();
    if (!warp_has_rows || (p.is_causal && j0 > i0 + w_row0 + kMmaRowsPerWarp - 1)) continue;  // warp-uniform

    float s[kKeyTiles][4], dp[kKeyTiles][4];
    mma_rows_by_rows_t<T, D, kKeyTiles>(s, q_s, w_row0, k_s, lane);
    mma_rows_by_rows_t<T, D, kKeyTiles>(dp, do_s, w_row0, v_s, lane);
#pragma unroll
    for (int t = 0; t < kKeyTiles; ++t)
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        const int64_t i = rows[hh], j = j0 + 8 * t + cuda::mma_c_col(lane, 2 * hh);  // j even; j + 1 is the pair
        float f[2] = {1.0f, 1.0f};
        if (dropout && i < L) dropout_factor_pair(p, b, h, i, j, keep_scale, f[0], f[1]);
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int r = 2 * hh + e;
          const bool visible = i < L && j + e < j0 + nk && (!p.is_causal || j + e <= i);
          float ds = 0.0f;
          if (visible) {
            const float x = s[t][r] * p.scale + (mask != nullptr ? mask[i * p.mask.row_stride + j + e] : 0.0f);
            const float prob = x == -INFINITY ? 0.0f : __expf(x - row_lse[hh]);
            ds = prob * (dp[t][r] * f[e] - row_delta[hh]);
          }
          s[t][r] = ds;
        }
      }
    mma_acc_by_rows<T, D>(dq, s, k_s, lane);
  }

  T* dqp = static_cast<T*>(bp.dq.data) + base_offset(bp.dq, p, b, h, seq.q_row0);
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    const int64_t i = rows[hh];
    if (i >= L) continue;
#pragma unroll
    for (int n = 0; n < kDimTiles; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e)
        store_elem(dqp + i * bp.dq.row_stride + 8 * n + cuda::mma_c_col(lane, 2 * hh + e), dq[n][2 * hh + e] * p.scale);
  }
}

// grid (ceil(S / 64), Hkv, B): a block owns 64 keys of one kv head and streams 32-query tiles of every q head of
// its GQA group (so dK/dV sum over the group without atomics). Reads the dQ kernel's delta.
template <typename T, int D>
__global__ void __launch_bounds__(kThreads) attention_bwd_dkdv_mma_kernel(const AttentionBackwardParams bp,
                                                                          const float* delta) {
  const AttentionParams& p = bp.fwd;
  constexpr int ld = D + kMmaPad;
  constexpr int kQueryTiles = kMmaBwdN / 8, kDimTiles = D / 8;
  const int64_t b = blockIdx.z, kv_h = blockIdx.y, j0 = static_cast<int64_t>(blockIdx.x) * kMmaBlockM;
  const SeqGeom seq = seq_geom(p, b);
  if (j0 >= seq.kv_len) return;  // block-uniform
  const int64_t group = p.q_heads / p.kv_heads;
  const int64_t L = seq.q_len, S = seq.kv_len;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int w_row0 = warp * kMmaRowsPerWarp;

  extern __shared__ uint4 mma_smem[];
  uint16_t* k_s = reinterpret_cast<uint16_t*>(mma_smem);  // kMmaBlockM x ld
  uint16_t* v_s = k_s + kMmaBlockM * ld;                   // kMmaBlockM x ld
  uint16_t* q_s = v_s + kMmaBlockM * ld;                   // kMmaBwdN x ld
  uint16_t* do_s = q_s + kMmaBwdN * ld;                    // kMmaBwdN x ld
  float* lse_s = reinterpret_cast<float*>(do_s + kMmaBwdN * ld);  // kMmaBwdN
  float* delta_s = lse_s + kMmaBwdN;                                // kMmaBwdN

  const T* kp = static_cast<const T*>(p.k.data) + base_offset(p.k, p, b, kv_h, seq.k_row0);
  const T* vp = static_cast<const T*>(p.v.data) + base_offset(p.v, p, b, kv_h, seq.k_row0);
  const int64_t n_keys = imin(kMmaBlockM, S - j0);
  copy_rows_16bit<D, false>(reinterpret_cast<const uint16_t*>(kp), p.k.row_stride, j0, n_keys, kMmaBlockM, k_s, ld);
  copy_rows_16bit<D, false>(reinterpret_cast<const uint16_t*>(vp), p.v.row_stride, j0, n_keys, kMmaBlockM, v_s, ld);

  const int64_t keys[2] = {j0 + w_row0 + cuda::mma_c_row(lane, 0), j0 + w_row0 + cuda::mma_c_row(lane, 2)};
  float dk[kDimTiles][4], dv[kDimTiles][4];
#pragma unroll
  for (int n = 0; n < kDimTiles; ++n)
#pragma unroll
    for (int r = 0; r < 4; ++r) dk[n][r] = dv[n][r] = 0.0f;
  const bool dropout = p.dropout_p > 0.0f;
  const float keep_scale = keep_scale_of(p);
  const bool warp_has_keys = j0 + w_row0 < S;
  // Causal: queries before this block's first key see none of its keys.
  const int64_t i_begin = p.is_causal ? (j0 / kMmaBwdN) * kMmaBwdN : 0;

  for (int64_t g = 0; g < group; ++g) {
    const int64_t h = kv_h * group + g;
    const T* qp = static_cast<const T*>(p.q.data) + base_offset(p.q, p, b, h, seq.q_row0);
    const T* dop = static_cast<const T*>(bp.dout.data) + base_offset(bp.dout, p, b, h, seq.q_row0);
    const float* lse_p = p.lse + lse_offset(p, b, h, seq.q_row0);
    const float* delta_p = delta + lse_offset(p, b, h, seq.q_row0);
    const float* mask = p.mask.data == nullptr ? nullptr
                                               : static_cast<const float*>(p.mask.data) + b * p.mask.batch_stride +
                                                     h * p.mask.head_stride;
    for (int64_t i0 = i_begin; i0 < L; i0 += kMmaBwdN) {
      const int64_t nq = imin(kMmaBwdN, L - i0);
      __syncthreads();  // the previous tile is consumed (and, the first time, k_s / v_s are written)
      copy_rows_16bit<D, false>(reinterpret_cast<const uint16_t*>(qp), p.q.row_stride, i0, nq, kMmaBwdN, q_s, ld);
      copy_rows_16bit<D, false>(reinterpret_cast<const uint16_t*>(dop), bp.dout.row_stride, i0, nq, kMmaBwdN, do_s,
                                ld);
      if (threadIdx.x < kMmaBwdN) {
        const int64_t i = i0 + threadIdx.x;
        const float l = threadIdx.x < nq ? lse_p[i] : INFINITY;
        lse_s[threadIdx.x] = l == -INFINITY ? INFINITY : l;
        delta_s[threadIdx.x] = threadIdx.x < nq ? delta_p[i] : 0.0f;
      }
      __syncthreads();
      // Warp-uniform skips: a warp of padding keys, or (causal) a query tile wholly before the warp's first key.
      if (!warp_has_keys || (p.is_causal && i0 + nq - 1 < j0 + w_row0)) continue;

      float s[kQueryTiles][4], dp[kQueryTiles][4];
      mma_rows_by_rows_t<T, D, kQueryTiles>(s, k_s, w_row0, q_s, lane);   // S^T (keys x queries), unscaled
      mma_rows_by_rows_t<T, D, kQueryTiles>(dp, v_s, w_row0, do_s, lane);  // dP^T = V dO^T
#pragma unroll
      for (int t = 0; t < kQueryTiles; ++t)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int q_local = 8 * t + cuda::mma_c_col(lane, r);
          const int64_t j = keys[r >> 1], i = i0 + q_local;
          const bool visible = j < S && q_local < nq && (!p.is_causal || j <= i);
          float prob_dropped = 0.0f, ds = 0.0f;
          if (visible) {
            const float x = s[t][r] * p.scale + (mask != nullptr ? mask[i * p.mask.row_stride + j] : 0.0f);
            const float prob = x == -INFINITY ? 0.0f : __expf(x - lse_s[q_local]);
            const float f = dropout ? dropout_factor(p, b, h, i, j, keep_scale) : 1.0f;
            prob_dropped = prob * f;
            ds = prob * (dp[t][r] * f - delta_s[q_local]);
          }
          s[t][r] = prob_dropped;
          dp[t][r] = ds;
        }
      mma_acc_by_rows<T, D>(dv, s, do_s, lane);  // dV += (P keep)^T dO
      mma_acc_by_rows<T, D>(dk, dp, q_s, lane);  // dK += dS^T Q (times scale at the end)
    }
  }

  T* dkp = static_cast<T*>(bp.dk.data) + base_offset(bp.dk, p, b, kv_h, seq.k_row0);
  T* dvp = static_cast<T*>(bp.dv.data) + base_offset(bp.dv, p, b, kv_h, seq.k_row0);
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    const int64_t j = keys[hh];
    if (j >= S) continue;
#pragma unroll
    for (int n = 0; n < kDimTiles; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int d = 8 * n + cuda::mma_c_col(lane, 2 * hh + e);
        store_elem(dkp + j * bp.dk.row_stride + d, dk[n][2 * hh + e] * p.scale);
        store_elem(dvp + j * bp.dv.row_stride + d, dv[n][2 * hh + e]);
      }
  }
}

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
void check_params(const AttentionParams& p, const char* op) {
  PYFAST_CHECK_ARG(p.batch >= 0 && p.q_len >= 0 && p.kv_len >= 0, op, "negative size");
  PYFAST_CHECK_ARG(p.q_heads >= 1 && p.kv_heads >= 1 && p.q_heads % p.kv_heads == 0, op, "q heads (", p.q_heads,
                   ") must be a multiple of kv heads (", p.kv_heads, ")");
  PYFAST_CHECK_ARG(p.head_dim >= 1 && p.head_dim <= kMaxHeadDim && p.value_dim >= 1 && p.value_dim <= kMaxHeadDim,
                   op, "head dims must be in [1, ", kMaxHeadDim, "], got ", p.head_dim, " and ", p.value_dim);
  PYFAST_CHECK_ARG(p.dropout_p >= 0.0f && p.dropout_p < 1.0f, op, "dropout_p must be in [0, 1), got ", p.dropout_p);
  PYFAST_CHECK_ARG(p.dtype == DType::kFloat32 || p.dtype == DType::kBFloat16 || p.dtype == DType::kFloat16,
                   op, "dtype must be float32, bfloat16 or float16");
  PYFAST_CHECK_ARG((p.cu_seqlens_q == nullptr) == (p.cu_seqlens_k == nullptr), op, "give both cu_seqlens or neither");
  PYFAST_CHECK_ARG(p.cu_seqlens_q == nullptr || p.mask.data == nullptr, op, "varlen takes no mask");
  PYFAST_CHECK_ARG(p.batch <= 65535 && p.q_heads <= 65535, op, "batch and heads must be <= 65535 on CUDA");
}

inline int64_t ceil_div(int64_t x, int64_t m) { return (x + m - 1) / m; }

// Launches `kernel` with `smem` bytes of dynamic shared memory, raising the per-kernel limit above the default
// 48 KiB when needed (E = 256 takes ~98 KiB; sm_80 allows 163 KiB, sm_90 227 KiB).
template <typename Kernel, typename... Args>
void launch(Kernel kernel, dim3 grid, size_t smem, cudaStream_t stream, const char* op, Args... args) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
  if (smem > 48 * 1024)
    cuda::check_call(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
                     op, "cudaFuncSetAttribute(shared memory)");
  kernel<<<grid, kThreads, smem, stream>>>(args...);
  cuda::check_launch(op);
}

template <typename T>
void fwd_impl(const AttentionParams& p, cudaStream_t stream) {
  const int64_t E = p.head_dim, Ev = p.value_dim;
  if constexpr (!std::is_same_v<T, float>) {
    // bf16 / fp16 at the common head dims: the tensor-core kernel. Other dims keep the CUDA-core kernel.
    if (E == Ev && (E == 64 || E == 128)) {
      const dim3 grid(static_cast<unsigned>(ceil_div(p.q_len, kMmaBlockM)), static_cast<unsigned>(p.q_heads),
                      static_cast<unsigned>(p.batch));
      if (E == 64)
        launch(attention_fwd_mma_kernel<T, 64>, grid, mma_fwd_smem_bytes<64>(), stream, "attention_fwd_cuda", p);
      else
        launch(attention_fwd_mma_kernel<T, 128>, grid, mma_fwd_smem_bytes<128>(), stream, "attention_fwd_cuda", p);
      return;
    }
  }
  const size_t smem = sizeof(float) * (kOwnRows * E + kTile * odd_stride(E) + kTile * Ev);
  const dim3 grid(static_cast<unsigned>(ceil_div(p.q_len, kOwnRows)), static_cast<unsigned>(p.q_heads),
                  static_cast<unsigned>(p.batch));
  launch(attention_fwd_kernel<T>, grid, smem, stream, "attention_fwd_cuda", p);
}

template <typename T>
void bwd_impl(const AttentionBackwardParams& bp, float* delta, cudaStream_t stream) {
  const AttentionParams& p = bp.fwd;
  const int64_t E = p.head_dim, Ev = p.value_dim;
  if constexpr (!std::is_same_v<T, float>) {
    if (E == Ev && (E == 64 || E == 128)) {  // the tensor-core kernels; dQ (which writes delta) first
      const dim3 grid_dq(static_cast<unsigned>(ceil_div(p.q_len, kMmaBlockM)), static_cast<unsigned>(p.q_heads),
                         static_cast<unsigned>(p.batch));
      const dim3 grid_dkdv(static_cast<unsigned>(ceil_div(p.kv_len, kMmaBlockM)), static_cast<unsigned>(p.kv_heads),
                           static_cast<unsigned>(p.batch));
      const float* delta_in = delta;
      if (E == 64) {
        launch(attention_bwd_dq_mma_kernel<T, 64>, grid_dq, mma_bwd_smem_bytes<64>(), stream,
               "attention_bwd_cuda (dq)", bp, delta);
        launch(attention_bwd_dkdv_mma_kernel<T, 64>, grid_dkdv, mma_bwd_smem_bytes<64>(), stream,
               "attention_bwd_cuda (dk, dv)", bp, delta_in);
      } else {
        launch(attention_bwd_dq_mma_kernel<T, 128>, grid_dq, mma_bwd_smem_bytes<128>(), stream,
               "attention_bwd_cuda (dq)", bp, delta);
        launch(attention_bwd_dkdv_mma_kernel<T, 128>, grid_dkdv, mma_bwd_smem_bytes<128>(), stream,
               "attention_bwd_cuda (dk, dv)", bp, delta_in);
      }
      return;
    }
  }
  const size_t smem_dq =
      sizeof(float) * (kOwnRows * E + kOwnRows * Ev + kTile * odd_stride(E) + kTile * odd_stride(Ev));
  const dim3 grid_dq(static_cast<unsigned>(ceil_div(p.q_len, kOwnRows)), static_cast<unsigned>(p.q_heads),
                     static_cast<unsigned>(p.batch));
  launch(attention_bwd_dq_kernel<T>, grid_dq, smem_dq, stream, "attention_bwd_cuda (dq)", bp, delta);
  const size_t smem_dkdv =
      sizeof(float) * (kOwnRows * E + kOwnRows * Ev + kTile * odd_stride(E) + kTile * odd_stride(Ev) + 2 * kTile);
  const dim3 grid_dkdv(static_cast<unsigned>(ceil_div(p.kv_len, kOwnRows)), static_cast<unsigned>(p.kv_heads),
                       static_cast<unsigned>(p.batch));
  // Keys nobody computes (none: every key row of every sequence is covered by the grid) would stay unwritten;
  // a (B, Hkv, 0) problem launches nothing and leaves empty outputs empty.
  launch(attention_bwd_dkdv_kernel<T>, grid_dkdv, smem_dkdv, stream, "attention_bwd_cuda (dk, dv)", bp,
         static_cast<const float*>(delta));
}

}  // namespace

void attention_fwd_cuda(const AttentionParams& params, std::uintptr_t stream) {
  check_params(params, "attention_fwd_cuda");
  const cudaStream_t s = cuda::as_stream(stream);
  switch (params.dtype) {
    case DType::kBFloat16: fwd_impl<__nv_bfloat16>(params, s); break;
    case DType::kFloat16: fwd_impl<__half>(params, s); break;
    default: fwd_impl<float>(params, s); break;
  }
}

void attention_bwd_cuda(const AttentionBackwardParams& params, float* delta, std::uintptr_t stream) {
  check_params(params.fwd, "attention_bwd_cuda");
  const cudaStream_t s = cuda::as_stream(stream);
  switch (params.fwd.dtype) {
    case DType::kBFloat16: bwd_impl<__nv_bfloat16>(params, delta, s); break;
    case DType::kFloat16: bwd_impl<__half>(params, delta, s); break;
    default: bwd_impl<float>(params, delta, s); break;
  }
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
