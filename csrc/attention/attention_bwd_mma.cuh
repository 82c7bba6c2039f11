// Attention backward on tensor cores (bf16 / fp16, head_dim == value_dim in {64, 128}): the CUDA-core backward's
// two kernels (dQ, then dK/dV; no atomics, deterministic) with every matrix product on mma.sync. P (dropped) and
// dS are rounded to T before their products, as in FlashAttention; softmax, dP - delta and every sum are fp32.
#pragma once
#include "attention/attention_tile.cuh"

namespace pyfast {
namespace attention {
namespace detail {

// A block of 4 warps owns 64 rows of one side (16 per warp: queries in the dQ kernel, keys in the dK/dV kernel)
// and streams 32-row tiles of the other side. All operands stay in shared memory as 16-bit values; A fragments of
// the owned side are reloaded per use (holding them, plus two fp32 accumulators of 16 x D, would pass 255
// registers at D = 128).
//   dQ kernel, per warp and key tile:   S = Q K^T, dP = dO V^T, dS = P (dP keep - delta), dQ += dS K
//   dK/dV kernel, per warp, query tile: S^T = K Q^T, dP^T = V dO^T, dV += (P keep)^T dO, dK += dS^T Q
constexpr int kMmaBwdN = 32;  // rows of the streamed side per tile
constexpr int kMmaBwdTiles = kMmaBwdN / 8;  // 8-column accumulator tiles of S / dP per warp

// Shared memory of both kernels: two owned tiles (64 rows each), two streamed tiles (32 rows each), all 16-bit with
// row stride D + kMmaPad, then fp32 lse and delta of whichever side holds the queries (64 or 32 rows).
template <int D>
constexpr size_t mma_bwd_smem_bytes() {
  return sizeof(uint16_t) * static_cast<size_t>(2 * kMmaBlockM + 2 * kMmaBwdN) * (D + kMmaPad) +
         sizeof(float) * 2 * kMmaBlockM;
}

struct MmaBwdSmem {
  uint16_t *own_x, *own_g;  // owned rows: q and dO (dQ kernel) or k and v (dK/dV kernel)
  uint16_t *str_x, *str_g;  // streamed tile: k and v, or q and dO
  float *lse, *delta;       // of the queries, lse -inf turned +inf
};

template <int D>
__device__ inline MmaBwdSmem mma_bwd_smem(int stat_rows) {
  constexpr int ld = D + kMmaPad;
  extern __shared__ uint4 mma_smem[];
  MmaBwdSmem sm;
  sm.own_x = reinterpret_cast<uint16_t*>(mma_smem);
  sm.own_g = sm.own_x + kMmaBlockM * ld;
  sm.str_x = sm.own_g + kMmaBlockM * ld;
  sm.str_g = sm.str_x + kMmaBwdN * ld;
  sm.lse = reinterpret_cast<float*>(sm.str_g + kMmaBwdN * ld);
  sm.delta = sm.lse + stat_rows;
  return sm;
}

// Copies rows [row0, row0 + n) of the pair (x, g) (q and dO, or k and v) of one head into two shared tiles.
template <int D, typename T>
__device__ inline void copy_tile_pair(const T* x, int64_t x_stride, const T* g, int64_t g_stride, int64_t row0,
                                      int64_t n, int rows, uint16_t* x_s, uint16_t* g_s) {
  copy_rows_16bit<D, false>(reinterpret_cast<const uint16_t*>(x), x_stride, row0, n, rows, x_s, D + kMmaPad);
  copy_rows_16bit<D, false>(reinterpret_cast<const uint16_t*>(g), g_stride, row0, n, rows, g_s, D + kMmaPad);
}

// Where a warp's accumulator entries sit in the (query, key) plane for one streamed tile. kKeysOnRows: the warp's
// rows are keys (dK/dV kernel) and the tile's columns queries, else the reverse (dQ kernel).
struct MmaBwdPlace {
  int64_t own[2];    // the warp's rows of accumulator row halves 0 and 1 (query or key index)
  int64_t own_len;   // L or S: rows at or past it are padding
  int64_t col0, n;   // the tile's first row of the streamed side and how many are real
  float own_lse[2];  // the queries-on-rows case: lse and delta of own[0], own[1]
  float own_delta[2];
};

// One streamed tile for the warp's 16 owned rows: S and dP by mma (unscaled), then in place
// s = P keep (the dropped probabilities) and dp = dS = P (dP keep - delta), all fp32.
template <typename T, int D, bool kKeysOnRows>
__device__ inline void mma_bwd_probs_ds(float (&s)[kMmaBwdTiles][4], float (&dp)[kMmaBwdTiles][4],
                                        const MmaBwdSmem& sm, int w_row0, const MmaBwdPlace& at,
                                        const HeadScores& hs, int lane) {
  const AttentionParams& p = hs.p;
  mma_rows_by_rows_t<T, D, kMmaBwdTiles>(s, sm.own_x, w_row0, sm.str_x, lane);   // S = Q K^T or S^T = K Q^T
  mma_rows_by_rows_t<T, D, kMmaBwdTiles>(dp, sm.own_g, w_row0, sm.str_g, lane);  // dP = dO V^T or dP^T = V dO^T
#pragma unroll
  for (int t = 0; t < kMmaBwdTiles; ++t)
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int col = 8 * t + cuda::mma_c_col(lane, 2 * hh);  // even; col + 1 holds the other entry of the pair
      const int64_t o = at.own[hh];
      float f[2] = {1.0f, 1.0f};
      // Queries on rows: the pair is keys j, j + 1 of one query, so one Philox draw serves both.
      if (!kKeysOnRows && hs.dropout && o < at.own_len) hs.dropout_pair(o, at.col0 + col, f[0], f[1]);
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int r = 2 * hh + e;
        const int64_t i = kKeysOnRows ? at.col0 + col + e : o, j = kKeysOnRows ? o : at.col0 + col + e;
        const bool visible = o < at.own_len && col + e < at.n && (!p.is_causal || j <= i);
        float prob_dropped = 0.0f, ds = 0.0f;
        if (visible) {
          const float lse = kKeysOnRows ? sm.lse[col + e] : at.own_lse[hh];
          const float delta = kKeysOnRows ? sm.delta[col + e] : at.own_delta[hh];
          const float x = s[t][r] * p.scale + hs.mask_at(i, j);
          const float prob = x == -INFINITY ? 0.0f : __expf(x - lse);
          if (kKeysOnRows && hs.dropout) f[e] = hs.dropout_at(i, j);
          prob_dropped = prob * f[e];
          ds = prob * (dp[t][r] * f[e] - delta);
        }
        s[t][r] = prob_dropped;
        dp[t][r] = ds;
      }
    }
}

// grid (ceil(L / 64), Hq, B). Writes delta (rowsum(dout * out), fp32) for the dK/dV kernel, then dQ.
template <typename T, int D>
__global__ void __launch_bounds__(kThreads) attention_bwd_dq_mma_kernel(const AttentionBackwardParams bp,
                                                                        float* delta) {
  const AttentionParams& p = bp.fwd;
  const int64_t b = blockIdx.z, h = blockIdx.y, i0 = static_cast<int64_t>(blockIdx.x) * kMmaBlockM;
  const SeqGeom seq = seq_geom(p, b);
  if (i0 >= seq.q_len) return;  // block-uniform
  const int64_t L = seq.q_len, S = seq.kv_len;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int w_row0 = warp * kMmaRowsPerWarp;
  const MmaBwdSmem sm = mma_bwd_smem<D>(kMmaBlockM);  // own q, dO; streamed k, v

  const QueryHead<T> qh = query_head<T>(bp, delta, seq, b, h);
  const HeadScores hs = head_scores(p, b, h);
  const T* op = head_ptr<const T>(p.out, p, b, h, seq.q_row0);
  const T* kp = head_ptr<const T>(p.k, p, b, kv_head_of(p, h), seq.k_row0);
  const T* vp = head_ptr<const T>(p.v, p, b, kv_head_of(p, h), seq.k_row0);
  float* delta_p = delta + lse_offset(p, b, h, seq.q_row0);  // written here, read by the dK/dV kernel
  copy_tile_pair<D>(qh.q, p.q.row_stride, qh.dout, bp.dout.row_stride, i0,
                    imin(kMmaBlockM, L - i0), kMmaBlockM, sm.own_x, sm.own_g);
  // delta_i = rowsum(dout_i * out_i) in fp32, one warp per row; a fully masked row's lse (-inf) becomes +inf so
  // that exp(s - lse) is exactly 0, as does a padding row's.
  for (int r = warp; r < kMmaBlockM; r += kWarps) {
    const int64_t i = i0 + r;
    float part = 0.0f;
    if (i < L)
      for (int d = lane; d < D; d += 32)
        part += load_elem(qh.dout + i * bp.dout.row_stride + d) * load_elem(op + i * p.out.row_stride + d);
    part = warp_sum(part);
    if (lane == 0) {
      sm.delta[r] = i < L ? part : 0.0f;
      const float l = i < L ? qh.lse[i] : INFINITY;
      sm.lse[r] = l == -INFINITY ? INFINITY : l;
      if (i < L) delta_p[i] = part;
    }
  }
  __syncthreads();

  MmaBwdPlace at{};
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    const int r = w_row0 + cuda::mma_c_row(lane, 2 * hh);
    at.own[hh] = i0 + r;
    at.own_lse[hh] = sm.lse[r];
    at.own_delta[hh] = sm.delta[r];
  }
  at.own_len = L;
  float dq[D / 8][4];
  fill_zero(dq);
  const int64_t kv_end = p.is_causal ? imin(S, imin(L, i0 + kMmaBlockM)) : S;
  const bool warp_has_rows = i0 + w_row0 < L;

  for (int64_t j0 = 0; j0 < kv_end; j0 += kMmaBwdN) {
    at.col0 = j0;
    at.n = imin(kMmaBwdN, kv_end - j0);
    __syncthreads();
    copy_tile_pair<D>(kp, p.k.row_stride, vp, p.v.row_stride, j0, at.n, kMmaBwdN, sm.str_x, sm.str_g);
    __syncthreads();
    if (!warp_has_rows || (p.is_causal && j0 > i0 + w_row0 + kMmaRowsPerWarp - 1)) continue;  // warp-uniform

    float s[kMmaBwdTiles][4], ds[kMmaBwdTiles][4];
    mma_bwd_probs_ds<T, D, false>(s, ds, sm, w_row0, at, hs, lane);
    mma_acc_by_rows<T, D>(dq, ds, sm.str_x, lane);  // dQ += dS K (times scale at the end)
  }

  T* dqp = head_ptr<T>(bp.dq, p, b, h, seq.q_row0);
#pragma unroll
  for (int hh = 0; hh < 2; ++hh)
    if (at.own[hh] < L) store_acc_row<D>(dqp + at.own[hh] * bp.dq.row_stride, dq, hh, p.scale, lane);
}

// grid (ceil(S / 64), Hkv, B): a block owns 64 keys of one kv head and streams 32-query tiles of every q head of
// its GQA group (so dK/dV sum over the group without atomics). Reads the dQ kernel's delta.
template <typename T, int D>
__global__ void __launch_bounds__(kThreads) attention_bwd_dkdv_mma_kernel(const AttentionBackwardParams bp,
                                                                          const float* delta) {
  const AttentionParams& p = bp.fwd;
  const int64_t b = blockIdx.z, kv_h = blockIdx.y, j0 = static_cast<int64_t>(blockIdx.x) * kMmaBlockM;
  const SeqGeom seq = seq_geom(p, b);
  if (j0 >= seq.kv_len) return;  // block-uniform
  const int64_t group = p.q_heads / p.kv_heads;
  const int64_t L = seq.q_len, S = seq.kv_len;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int w_row0 = warp * kMmaRowsPerWarp;
  const MmaBwdSmem sm = mma_bwd_smem<D>(kMmaBwdN);  // own k, v; streamed q, dO

  copy_tile_pair<D>(head_ptr<const T>(p.k, p, b, kv_h, seq.k_row0), p.k.row_stride,
                    head_ptr<const T>(p.v, p, b, kv_h, seq.k_row0), p.v.row_stride, j0, imin(kMmaBlockM, S - j0),
                    kMmaBlockM, sm.own_x, sm.own_g);

  MmaBwdPlace at{};
  at.own[0] = j0 + w_row0 + cuda::mma_c_row(lane, 0);
  at.own[1] = j0 + w_row0 + cuda::mma_c_row(lane, 2);
  at.own_len = S;
  float dk[D / 8][4], dv[D / 8][4];
  fill_zero(dk);
  fill_zero(dv);
  // Causal: queries before this block's first key see none of its keys.
  const int64_t i_begin = p.is_causal ? (j0 / kMmaBwdN) * kMmaBwdN : 0;
  const bool warp_has_keys = j0 + w_row0 < S;

  for (int64_t g = 0; g < group; ++g) {
    const int64_t h = kv_h * group + g;
    const QueryHead<T> qh = query_head<T>(bp, delta, seq, b, h);
    const HeadScores hs = head_scores(p, b, h);
    for (int64_t i0 = i_begin; i0 < L; i0 += kMmaBwdN) {
      at.col0 = i0;
      at.n = imin(kMmaBwdN, L - i0);
      __syncthreads();  // the previous tile is consumed (and, the first time, the owned k / v are written)
      copy_tile_pair<D>(qh.q, p.q.row_stride, qh.dout, bp.dout.row_stride, i0, at.n, kMmaBwdN, sm.str_x, sm.str_g);
      stage_lse_delta(qh.lse, qh.delta, i0, at.n, kMmaBwdN, sm.lse, sm.delta);
      __syncthreads();
      // Warp-uniform skips: a warp of padding keys, or (causal) a query tile wholly before the warp's first key.
      if (!warp_has_keys || (p.is_causal && i0 + at.n - 1 < j0 + w_row0)) continue;

      float prob_dropped[kMmaBwdTiles][4], ds[kMmaBwdTiles][4];
      mma_bwd_probs_ds<T, D, true>(prob_dropped, ds, sm, w_row0, at, hs, lane);
      mma_acc_by_rows<T, D>(dv, prob_dropped, sm.str_g, lane);  // dV += (P keep)^T dO
      mma_acc_by_rows<T, D>(dk, ds, sm.str_x, lane);            // dK += dS^T Q (times scale at the end)
    }
  }

  T* dkp = head_ptr<T>(bp.dk, p, b, kv_h, seq.k_row0);
  T* dvp = head_ptr<T>(bp.dv, p, b, kv_h, seq.k_row0);
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    const int64_t j = at.own[hh];
    if (j >= S) continue;
    store_acc_row<D>(dkp + j * bp.dk.row_stride, dk, hh, p.scale, lane);
    store_acc_row<D>(dvp + j * bp.dv.row_stride, dv, hh, 1.0f, lane);
  }
}

}  // namespace detail
}  // namespace attention
}  // namespace pyfast
