// Attention backward on CUDA cores (fp32 FMAs), for every case the tensor-core kernels do not take (fp32, head
// dims other than 64 / 128, up to 256): a dQ kernel (which also writes delta) and a dK/dV kernel, launched in that
// order. No atomics (the dQ kernel recomputes the scores), so results are deterministic.
#pragma once
#include "attention/attention_tile.cuh"

namespace pyfast {
namespace attention {
namespace detail {

// Shared memory of both kernels (fp32): the owned pair of 16-row tiles (q and dout in the dQ kernel, k and v in
// the dK/dV kernel; q scaled), the streamed pair of 32-row tiles (row strides odd), then (dK/dV kernel only) the
// lse and delta of the streamed queries.
struct SimtBwdSmem {
  float *own_x, *own_g;  // kOwnRows x E, kOwnRows x Ev
  float *str_x, *str_g;  // kTile x x_ld, kTile x g_ld
  float *lse, *delta;    // kTile each
  int x_ld, g_ld;        // odd(E), odd(Ev)
};

__device__ inline SimtBwdSmem simt_bwd_smem(int64_t E, int64_t Ev) {
  extern __shared__ float smem[];
  SimtBwdSmem sm;
  sm.x_ld = odd_stride(E);
  sm.g_ld = odd_stride(Ev);
  sm.own_x = smem;
  sm.own_g = sm.own_x + kOwnRows * E;
  sm.str_x = sm.own_g + kOwnRows * Ev;
  sm.str_g = sm.str_x + kTile * sm.x_ld;
  sm.lse = sm.str_g + kTile * sm.g_ld;
  sm.delta = sm.lse + kTile;
  return sm;
}

inline size_t bwd_dq_simt_smem_bytes(int64_t E, int64_t Ev) {
  return sizeof(float) * (kOwnRows * E + kOwnRows * Ev + kTile * odd_stride(E) + kTile * odd_stride(Ev));
}
inline size_t bwd_dkdv_simt_smem_bytes(int64_t E, int64_t Ev) {
  return bwd_dq_simt_smem_bytes(E, Ev) + sizeof(float) * 2 * kTile;
}

// Pair (i, j) of the backward, one lane's: from the scaled q row, k row, dout row and v row in shared memory,
// P = exp(s - lse) and dS = P (dP keep - delta); returns dS, and P keep in prob_dropped.
__device__ inline float simt_prob_ds(const HeadScores& hs, int64_t i, int64_t j, const float* q_row,
                                     const float* k_row, const float* do_row, const float* v_row, float lse,
                                     float delta, float& prob_dropped) {
  const AttentionParams& p = hs.p;
  const float s = dot_rows(q_row, k_row, p.head_dim) + hs.mask_at(i, j);
  const float prob = s == -INFINITY ? 0.0f : __expf(s - lse);
  const float dp = dot_rows(do_row, v_row, p.value_dim);
  const float f = hs.dropout ? hs.dropout_at(i, j) : 1.0f;
  prob_dropped = prob * f;
  return prob * (dp * f - delta);
}

// grid (ceil(L / 16), Hq, B). Each warp first computes delta_i = rowsum(dout_i * out_i) for its 4 rows and stores
// it (the dK/dV kernel, launched after on the same stream, reads it). Then, like the forward, it streams K/V
// tiles (lane = key): dS = P (dP keep - delta), dQ += dS k (lane = dim). dQ is written times scale.
template <typename T>
__global__ void __launch_bounds__(kThreads) attention_bwd_dq_kernel(const AttentionBackwardParams bp, float* delta) {
  const AttentionParams& p = bp.fwd;
  const int64_t b = blockIdx.z, h = blockIdx.y, i0 = static_cast<int64_t>(blockIdx.x) * kOwnRows;
  const SeqGeom seq = seq_geom(p, b);
  if (i0 >= seq.q_len) return;
  const int64_t E = p.head_dim, Ev = p.value_dim, L = seq.q_len, S = seq.kv_len;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const SimtBwdSmem sm = simt_bwd_smem(E, Ev);
  float *q_s = sm.own_x, *do_s = sm.own_g, *k_s = sm.str_x, *v_s = sm.str_g;
  const int k_ld = sm.x_ld, v_ld = sm.g_ld;

  const T* op = head_ptr<const T>(p.out, p, b, h, seq.q_row0);
  const T* kp = head_ptr<const T>(p.k, p, b, kv_head_of(p, h), seq.k_row0);
  const T* vp = head_ptr<const T>(p.v, p, b, kv_head_of(p, h), seq.k_row0);
  const QueryHead<T> qh = query_head<T>(bp, delta, seq, b, h);
  const HeadScores hs = head_scores(p, b, h);
  float* delta_p = delta + lse_offset(p, b, h, seq.q_row0);  // written here, read by the dK/dV kernel
  const int64_t n_rows = imin(kOwnRows, L - i0);
  load_tile(qh.q, p.q.row_stride, i0, n_rows, kOwnRows, E, p.scale, q_s,
            static_cast<int>(E));
  load_tile(qh.dout, bp.dout.row_stride, i0, n_rows, kOwnRows, Ev, 1.0f, do_s, static_cast<int>(Ev));
  __syncthreads();

  float row_delta[kRowsPerWarp], row_lse[kRowsPerWarp], acc[kRowsPerWarp][kDimsPerLane];
  fill_zero(acc);
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    const int r = warp * kRowsPerWarp + rr;
    const int64_t i = i0 + r;
    float part = 0.0f;
    if (i < L)
      for (int d = lane; d < Ev; d += 32) part += do_s[r * Ev + d] * load_elem(op + i * p.out.row_stride + d);
    row_delta[rr] = warp_sum(part);
    // A fully masked row (lse -inf) has probabilities 0: +inf makes exp(s - lse) exactly 0.
    const float l = i < L ? qh.lse[i] : INFINITY;
    row_lse[rr] = l == -INFINITY ? INFINITY : l;
    if (i < L && lane == 0) delta_p[i] = row_delta[rr];
  }
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
      float ds = 0.0f, prob_dropped = 0.0f;  // the dropped P is the dK/dV kernel's; unused here
      if (lane < nk && (!p.is_causal || j <= i))
        ds = simt_prob_ds(hs, i, j, q_s + r * E, k_s + lane * k_ld, do_s + r * Ev, v_s + lane * v_ld, row_lse[rr],
                          row_delta[rr], prob_dropped);
      for (int jj = 0; jj < nk; ++jj) axpy_lane_dims(acc[rr], __shfl_sync(kFullWarp, ds, jj), k_s + jj * k_ld, E, lane);
    }
  }

  T* dqp = head_ptr<T>(bp.dq, p, b, h, seq.q_row0);
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    const int64_t i = i0 + warp * kRowsPerWarp + rr;
    if (i < L) store_lane_dims(dqp + i * bp.dq.row_stride, acc[rr], E, p.scale, lane);
  }
}

// grid (ceil(S / 16), Hkv, B): a block owns 16 keys of one kv head and streams 32-query tiles of every q head
// of its GQA group (so dK/dV sum over the group without atomics). Lane = query in the score phase.
// dV += (P keep)^T dout, dK += dS^T (scale q).
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
  const SimtBwdSmem sm = simt_bwd_smem(E, Ev);
  float *k_s = sm.own_x, *v_s = sm.own_g, *q_s = sm.str_x, *do_s = sm.str_g;
  const int q_ld = sm.x_ld, do_ld = sm.g_ld;

  const int64_t n_keys = imin(kOwnRows, S - j0);
  load_tile(head_ptr<const T>(p.k, p, b, kv_h, seq.k_row0), p.k.row_stride, j0, n_keys, kOwnRows, E, 1.0f, k_s,
            static_cast<int>(E));
  load_tile(head_ptr<const T>(p.v, p, b, kv_h, seq.k_row0), p.v.row_stride, j0, n_keys, kOwnRows, Ev, 1.0f, v_s,
            static_cast<int>(Ev));

  float dk[kRowsPerWarp][kDimsPerLane], dv[kRowsPerWarp][kDimsPerLane];
  fill_zero(dk);
  fill_zero(dv);
  // Causal: queries before this block's first key see none of its keys.
  const int64_t i_begin = p.is_causal ? (j0 / kTile) * kTile : 0;

  for (int64_t g = 0; g < group; ++g) {
    const int64_t h = kv_h * group + g;
    const QueryHead<T> qh = query_head<T>(bp, delta, seq, b, h);
    const HeadScores hs = head_scores(p, b, h);
    for (int64_t i0 = i_begin; i0 < L; i0 += kTile) {
      const int64_t nq = imin(kTile, L - i0);
      __syncthreads();
      load_tile(qh.q, p.q.row_stride, i0, nq, kTile, E, p.scale, q_s, q_ld);
      load_tile(qh.dout, bp.dout.row_stride, i0, nq, kTile, Ev, 1.0f, do_s, do_ld);
      stage_lse_delta(qh.lse, qh.delta, i0, nq, kTile, sm.lse, sm.delta);
      __syncthreads();
#pragma unroll
      for (int rr = 0; rr < kRowsPerWarp; ++rr) {
        const int r = warp * kRowsPerWarp + rr;
        if (r >= n_keys) continue;  // warp-uniform
        const int64_t i = i0 + lane, j = j0 + r;
        float prob_dropped = 0.0f, ds = 0.0f;
        if (lane < nq && (!p.is_causal || j <= i))
          ds = simt_prob_ds(hs, i, j, q_s + lane * q_ld, k_s + r * E, do_s + lane * do_ld, v_s + r * Ev,
                            sm.lse[lane], sm.delta[lane], prob_dropped);
        for (int ii = 0; ii < nq; ++ii) {
          axpy_lane_dims(dv[rr], __shfl_sync(kFullWarp, prob_dropped, ii), do_s + ii * do_ld, Ev, lane);
          axpy_lane_dims(dk[rr], __shfl_sync(kFullWarp, ds, ii), q_s + ii * q_ld, E, lane);
        }
      }
    }
  }

  T* dkp = head_ptr<T>(bp.dk, p, b, kv_h, seq.k_row0);
  T* dvp = head_ptr<T>(bp.dv, p, b, kv_h, seq.k_row0);
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    const int r = warp * kRowsPerWarp + rr;
    if (r >= n_keys) continue;
    const int64_t j = j0 + r;
    store_lane_dims(dkp + j * bp.dk.row_stride, dk[rr], E, 1.0f, lane);
    store_lane_dims(dvp + j * bp.dv.row_stride, dv[rr], Ev, 1.0f, lane);
  }
}

}  // namespace detail
}  // namespace attention
}  // namespace pyfast
