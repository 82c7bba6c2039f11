// Attention forward on CUDA cores (fp32 FMAs), for every case the tensor-core kernel does not take: fp32
// storage, head dims other than 64 / 128 (up to 256), head_dim != value_dim. Correct first: its ceiling is the
// fp32 FMA peak, an order of magnitude below the bf16 tensor cores.
#pragma once
#include "attention/attention_tile.cuh"

namespace pyfast {
namespace attention {
namespace detail {

// Shared: q (16 x E, pre-scaled), k tile (32 x odd(E)), v tile (32 x Ev).
inline size_t fwd_simt_smem_bytes(int64_t E, int64_t Ev) {
  return sizeof(float) * (kOwnRows * E + kTile * odd_stride(E) + kTile * Ev);
}

// grid (ceil(L / 16), Hq, B). A warp owns 4 query rows (fp32 accumulators in registers, lane owns dims lane,
// lane + 32, ...) and streams 32-key tiles: score phase lane = key, accumulate phase lane = output dim, the 32
// probabilities broadcast by warp shuffles; online softmax as FlashAttention-2.
template <typename T>
__global__ void __launch_bounds__(kThreads) attention_fwd_kernel(const AttentionParams p) {
  const int64_t b = blockIdx.z, h = blockIdx.y, i0 = static_cast<int64_t>(blockIdx.x) * kOwnRows;
  const SeqGeom seq = seq_geom(p, b);
  if (i0 >= seq.q_len) return;
  const int64_t E = p.head_dim, Ev = p.value_dim, L = seq.q_len, S = seq.kv_len;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int k_ld = odd_stride(E);

  extern __shared__ float smem[];
  float* q_s = smem;                // kOwnRows x E
  float* k_s = q_s + kOwnRows * E;  // kTile x k_ld
  float* v_s = k_s + kTile * k_ld;  // kTile x Ev

  const T* kp = head_ptr<const T>(p.k, p, b, kv_head_of(p, h), seq.k_row0);
  const T* vp = head_ptr<const T>(p.v, p, b, kv_head_of(p, h), seq.k_row0);
  const HeadScores hs = head_scores(p, b, h);
  load_tile(head_ptr<const T>(p.q, p, b, h, seq.q_row0), p.q.row_stride, i0, imin(kOwnRows, L - i0), kOwnRows, E,
            p.scale, q_s, static_cast<int>(E));

  float acc[kRowsPerWarp][kDimsPerLane];
  float row_max[kRowsPerWarp], row_sum[kRowsPerWarp];
  fill_zero(acc);
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    row_max[rr] = -INFINITY;
    row_sum[rr] = 0.0f;
  }
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
      const float s = visible ? dot_rows(q_s + r * E, k_s + lane * k_ld, E) + hs.mask_at(i, j) : -INFINITY;
      float new_max = fmaxf(row_max[rr], warp_max(s));
      // fmaxf drops NaN: a NaN score (a NaN in q, k or the mask) must poison its row, as on the CPU and tensor cores.
      if (__any_sync(kFullWarp, isnan(s))) new_max = NAN;
      if (new_max == -INFINITY) continue;  // nothing visible yet in this row (warp-uniform)
      const float rescale = __expf(row_max[rr] - new_max);  // 0 on the first visible tile
      float prob = s == -INFINITY ? 0.0f : __expf(s - new_max);
      row_sum[rr] = row_sum[rr] * rescale + warp_sum(prob);
      row_max[rr] = new_max;
      if (hs.dropout && visible) prob *= hs.dropout_at(i, j);
#pragma unroll
      for (int c = 0; c < kDimsPerLane; ++c) acc[rr][c] *= rescale;
      for (int jj = 0; jj < nk; ++jj)
        axpy_lane_dims(acc[rr], __shfl_sync(kFullWarp, prob, jj), v_s + jj * Ev, Ev, lane);
    }
  }

  T* op = head_ptr<T>(p.out, p, b, h, seq.q_row0);
  float* lse = p.lse + lse_offset(p, b, h, seq.q_row0);
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    const int64_t i = i0 + warp * kRowsPerWarp + rr;
    if (i >= L) continue;
    // A row whose mask allows no key: output 0, lse -inf (the CPU kernel's convention). NaN propagates.
    const bool any = row_sum[rr] > 0.0f || isnan(row_sum[rr]);
    store_lane_dims(op + i * p.out.row_stride, acc[rr], Ev, any ? 1.0f / row_sum[rr] : 0.0f, lane);
    if (lane == 0) lse[i] = any ? row_max[rr] + logf(row_sum[rr]) : -INFINITY;
  }
}

}  // namespace detail
}  // namespace attention
}  // namespace pyfast
