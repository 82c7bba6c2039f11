// Device code shared by the CUDA attention kernels (attention_{fwd,bwd}_{simt,mma}.cuh): block shape, sequence
// geometry and offsets, the score rules of a head (additive mask, Philox dropout keyed as the CPU kernel), tile
// copies into shared memory, and the mma.sync products over shared-memory tiles. Included (through the kernel
// headers) by attention_cuda.cu only.
#pragma once
#include <cmath>
#include <cstdint>

#include "attention/attention.h"
#include "common/cuda_utils.cuh"
#include "common/mma.cuh"
#include "common/philox.h"

namespace pyfast {
namespace attention {
namespace detail {

using cuda::kFullWarp;
using cuda::load_elem;
using cuda::store_elem;
using cuda::warp_max;
using cuda::warp_sum;

// ---- block shape ------------------------------------------------------------------------------------------------
constexpr int kWarps = 4;  // every kernel runs 4-warp blocks
constexpr int kThreads = kWarps * 32;
// CUDA-core kernels: a block owns 16 rows (4 per warp) and streams 32-row tiles of the other side (one per lane).
constexpr int kRowsPerWarp = 4;
constexpr int kOwnRows = kWarps * kRowsPerWarp;
constexpr int kTile = 32;
constexpr int kDimsPerLane = static_cast<int>(kMaxHeadDim) / 32;  // 8 accumulator dims per lane at E = 256
// Tensor-core kernels: a block owns 64 rows, 16 per warp (one mma row tile). The 8-element row padding of 16-bit
// shared tiles shifts each row by 4 banks, so the 8 rows x 4 words a fragment load touches hit 32 distinct banks.
constexpr int kMmaRowsPerWarp = 16;
constexpr int kMmaBlockM = kWarps * kMmaRowsPerWarp;
constexpr int kMmaPad = 8;

__host__ __device__ inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
__host__ __device__ inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
__host__ __device__ inline int64_t ceil_div(int64_t x, int64_t m) { return (x + m - 1) / m; }

// Shared-memory row stride for tiles read with lane = row: odd, so 32 lanes reading column d of 32 rows touch
// 32 distinct banks (an even stride like 64 would put every lane in the same bank).
__host__ __device__ inline int odd_stride(int64_t dim) { return static_cast<int>(dim | 1); }

// ---- geometry ---------------------------------------------------------------------------------------------------
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
// The kv head that q head h reads (GQA: Hq / Hkv consecutive q heads share one).
__device__ inline int64_t kv_head_of(const AttentionParams& p, int64_t h) { return h / (p.q_heads / p.kv_heads); }
// Row 0 of head (b, h) of this sequence in `t`, as a T* (T const for inputs).
template <typename T>
__device__ inline T* head_ptr(const Strided& t, const AttentionParams& p, int64_t b, int64_t h, int64_t row0) {
  return static_cast<T*>(t.data) + base_offset(t, p, b, h, row0);
}

// ---- the score rules of a head ------------------------------------------------------------------------------
__device__ inline float keep_scale_of(const AttentionParams& p) {
  return __fdiv_rn(1.0f, 1.0f - p.dropout_p);  // exact division whatever --use_fast_math says: as the CPU's
}

// The Philox block of pair (b, h, i, j), keyed as the CPU kernel (attention_cpu.cpp, dropout_factors):
// counter = ((b * Hq + h) * L + i) * ceil(S / 4) + j / 4, word j % 4, stream kDropoutStream, with L, S the
// declared (max) lengths. Keys 4m .. 4m + 3 of a row share one block; the backward regenerates the same draws.
__device__ inline Philox4x32 dropout_draw(const AttentionParams& p, int64_t b, int64_t h, int64_t i, int64_t j) {
  const int64_t groups_per_row = (p.kv_len + 3) / 4;
  const uint64_t counter = static_cast<uint64_t>(((b * p.q_heads + h) * p.q_len + i) * groups_per_row + j / 4);
  return philox_draw(p.seed, counter, kDropoutStream);
}
__device__ inline float keep_or_drop(const AttentionParams& p, const Philox4x32& r, int word, float keep_scale) {
  return uint_to_unit_float(cuda::philox_word(r.v, word)) >= p.dropout_p ? keep_scale : 0.0f;
}
// Dropout factor of pair (b, h, i, j): 0 or 1 / (1 - p).
__device__ inline float dropout_factor(const AttentionParams& p, int64_t b, int64_t h, int64_t i, int64_t j,
                                       float keep_scale) {
  return keep_or_drop(p, dropout_draw(p, b, h, i, j), static_cast<int>(j % 4), keep_scale);
}

// What the scores of one head (b, h) obey besides q k^T: its slice of the additive mask and the dropout keying.
// Causal visibility is checked by each kernel against its tile bounds.
struct HeadScores {
  const AttentionParams& p;
  int64_t b, h;
  const float* mask;  // row i of this head's mask at mask + i * p.mask.row_stride; nullptr for none
  bool dropout;
  float keep_scale;  // 1 / (1 - dropout_p)

  __device__ float mask_at(int64_t i, int64_t j) const {
    return mask != nullptr ? mask[i * p.mask.row_stride + j] : 0.0f;
  }
  __device__ float dropout_at(int64_t i, int64_t j) const { return dropout_factor(p, b, h, i, j, keep_scale); }
  // The factors of keys j and j + 1 (j even) of row i: one Philox draw serves both.
  __device__ void dropout_pair(int64_t i, int64_t j, float& f0, float& f1) const {
    const Philox4x32 r = dropout_draw(p, b, h, i, j);
    const int w = static_cast<int>(j % 4);
    f0 = keep_or_drop(p, r, w, keep_scale);
    f1 = keep_or_drop(p, r, w + 1, keep_scale);
  }
};

__device__ inline HeadScores head_scores(const AttentionParams& p, int64_t b, int64_t h) {
  const float* mask = p.mask.data == nullptr ? nullptr
                                             : static_cast<const float*>(p.mask.data) + b * p.mask.batch_stride +
                                                   h * p.mask.head_stride;
  return HeadScores{p, b, h, mask, p.dropout_p > 0.0f, keep_scale_of(p)};
}

// The lse and delta of a streamed tile's queries [i0, i0 + n) into shared memory (threads 0 .. rows - 1). A fully
// masked row's lse (-inf) and a padding row's become +inf, so that exp(s - lse) is exactly 0.
__device__ inline void stage_lse_delta(const float* lse, const float* delta, int64_t i0, int64_t n, int rows,
                                       float* lse_s, float* delta_s) {
  if (threadIdx.x < rows) {
    const int64_t i = i0 + threadIdx.x;
    const float l = threadIdx.x < n ? lse[i] : INFINITY;
    lse_s[threadIdx.x] = l == -INFINITY ? INFINITY : l;
    delta_s[threadIdx.x] = threadIdx.x < n ? delta[i] : 0.0f;
  }
}

// The rows of q head h of batch b the backward kernels read (row 0 of this sequence): q, dout, lse and delta.
template <typename T>
struct QueryHead {
  const T *q, *dout;
  const float *lse, *delta;
};

template <typename T>
__device__ inline QueryHead<T> query_head(const AttentionBackwardParams& bp, const float* delta, const SeqGeom& seq,
                                          int64_t b, int64_t h) {
  const AttentionParams& p = bp.fwd;
  const int64_t stats = lse_offset(p, b, h, seq.q_row0);
  return QueryHead<T>{head_ptr<const T>(p.q, p, b, h, seq.q_row0), head_ptr<const T>(bp.dout, p, b, h, seq.q_row0),
                      p.lse + stats, delta + stats};
}

template <int M, int N>
__device__ inline void fill_zero(float (&a)[M][N]) {
#pragma unroll
  for (int m = 0; m < M; ++m)
#pragma unroll
    for (int n = 0; n < N; ++n) a[m][n] = 0.0f;
}

// ---- CUDA-core tiles (fp32 in shared memory) --------------------------------------------------------------------
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

// One lane's dot product of two shared-memory rows (lane = the streamed side's row).
__device__ inline float dot_rows(const float* a, const float* b, int64_t n) {
  float dot = 0.0f;
  for (int d = 0; d < n; ++d) dot = fmaf(a[d], b[d], dot);
  return dot;
}

// acc (this lane's dims lane, lane + 32, ... of one owned row) += w * row[0 .. dim).
__device__ inline void axpy_lane_dims(float (&acc)[kDimsPerLane], float w, const float* row, int64_t dim, int lane) {
#pragma unroll
  for (int c = 0; c < kDimsPerLane; ++c) {
    const int d = lane + 32 * c;
    if (d < dim) acc[c] = fmaf(w, row[d], acc[c]);
  }
}

// row[0 .. dim) = acc * scale, acc in the lane-owns-dims layout above.
template <typename T>
__device__ inline void store_lane_dims(T* row, const float (&acc)[kDimsPerLane], int64_t dim, float scale,
                                       int lane) {
#pragma unroll
  for (int c = 0; c < kDimsPerLane; ++c) {
    const int d = lane + 32 * c;
    if (d < dim) store_elem(row + d, acc[c] * scale);
  }
}

// ---- tensor-core tiles (16-bit in shared memory, row stride D + kMmaPad) ------------------------------------
// Copies rows [row0, row0 + n) (n <= rows) of a (rows x D) 16-bit tensor into shared memory (row stride ld),
// zero-filling rows past n (their keys are masked, but 0 * garbage could be NaN). 16-byte vector copies when the
// source rows are 16-byte aligned (the usual contiguous case), element copies otherwise. With `transpose`,
// element (r, d) goes to dst[d * ld + r] (V's layout for the forward's P V product).
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

// The A fragment of k-step kk made of fp32 accumulator tiles 2kk and 2kk + 1, rounded to T: an m16n8 accumulator
// pair has the (row, column) layout of an m16n8k16 A fragment (mma.cuh: a0..a3 = C tile 2kk, a4..a7 = tile
// 2kk + 1), so P or dS feed the next product with no trip through shared memory.
template <typename T, int kTiles>
__device__ inline void a_frag_of_acc(uint32_t (&a)[4], const float (&x)[kTiles][4], int kk) {
  a[0] = cuda::pack2_float<T>(x[2 * kk][0], x[2 * kk][1]);
  a[1] = cuda::pack2_float<T>(x[2 * kk][2], x[2 * kk][3]);
  a[2] = cuda::pack2_float<T>(x[2 * kk + 1][0], x[2 * kk + 1][1]);
  a[3] = cuda::pack2_float<T>(x[2 * kk + 1][2], x[2 * kk + 1][3]);
}

// The B fragment of 8 rows of a row-major tile read as columns: B[k][n] = tile[(8t + n) * ld + 16kk + k] (K^T in
// S = Q K^T, V^T from V stored transposed), two consecutive elements of one row per register.
__device__ inline void b_frag_of_rows(uint32_t (&b)[2], const uint16_t* tile, int ld, int t, int kk, int lane) {
  const uint16_t* row = tile + (8 * t + cuda::mma_b_n(lane)) * ld + 16 * kk;
  b[0] = cuda::load_pair(row + cuda::mma_b_k(lane, 0));
  b[1] = cuda::load_pair(row + cuda::mma_b_k(lane, 1));
}

// acc[t] = A (16 rows of `a_s` from row a_row0, all D columns) * B, where B[k][n] = b_s[(8t + n) * ld + k]: the
// product of 16 owned rows with the transpose of kTiles * 8 streamed rows (S = Q K^T and its siblings). The A
// fragments are reloaded per call: kernels holding two fp32 16 x D accumulators have no registers to keep them.
template <typename T, int D, int kTiles>
__device__ inline void mma_rows_by_rows_t(float (&acc)[kTiles][4], const uint16_t* a_s, int a_row0,
                                          const uint16_t* b_s, int lane) {
  constexpr int ld = D + kMmaPad;
  fill_zero(acc);
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    uint32_t a[4];
#pragma unroll
    for (int r = 0; r < 4; ++r)
      a[r] = cuda::load_pair(a_s + (a_row0 + cuda::mma_a_row(lane, r)) * ld + 16 * kk + cuda::mma_a_col(lane, r));
#pragma unroll
    for (int t = 0; t < kTiles; ++t) {
      uint32_t bf[2];
      b_frag_of_rows(bf, b_s, ld, t, kk, lane);
      cuda::mma_m16n8k16<T>(acc[t], a, bf);
    }
  }
}

// acc (16 x D) += X (16 x 8 kTiles, fp32 accumulator tiles, rounded to T here) * b_s (8 kTiles x D rows of the
// streamed tile): dQ += dS K, dV += P^T dO, dK += dS^T Q.
template <typename T, int D, int kTiles>
__device__ inline void mma_acc_by_rows(float (&acc)[D / 8][4], const float (&x)[kTiles][4], const uint16_t* b_s,
                                       int lane) {
  constexpr int ld = D + kMmaPad;
#pragma unroll
  for (int kk = 0; kk < kTiles / 2; ++kk) {
    uint32_t a[4];
    a_frag_of_acc<T>(a, x, kk);
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      // B[k][n] = b_s[(16kk + k) * ld + 8n + n]: rows k and k + 1 of one column, two 16-bit loads (a transposed
      // copy in shared memory would cost more space).
      const uint16_t* bc = b_s + 16 * kk * ld + 8 * n + cuda::mma_b_n(lane);
      const uint32_t bf[2] = {cuda::load_pair_strided(bc + cuda::mma_b_k(lane, 0) * ld, ld),
                              cuda::load_pair_strided(bc + cuda::mma_b_k(lane, 1) * ld, ld)};
      cuda::mma_m16n8k16<T>(acc[n], a, bf);
    }
  }
}

// row[0 .. D) = row half hh (accumulator entries 2hh, 2hh + 1) of a warp's 16 x D accumulator tiles, times scale.
template <int D, typename T>
__device__ inline void store_acc_row(T* row, const float (&acc)[D / 8][4], int hh, float scale, int lane) {
#pragma unroll
  for (int n = 0; n < D / 8; ++n)
#pragma unroll
    for (int e = 0; e < 2; ++e) store_elem(row + 8 * n + cuda::mma_c_col(lane, 2 * hh + e), acc[n][2 * hh + e] * scale);
}

}  // namespace detail
}  // namespace attention
}  // namespace pyfast
