// Attention forward on tensor cores: bf16 / fp16 with head_dim == value_dim in {64, 128}, both matrix products on
// mma.sync m16n8k16 with fp32 accumulators (common/mma.cuh). Same semantics as the CUDA-core forward; the only
// extra rounding is P rounded to bf16/fp16 before P V (as in FlashAttention), the row sum using the fp32 P.
#pragma once
#include "attention/attention_tile.cuh"

namespace pyfast {
namespace attention {
namespace detail {

constexpr int kMmaBlockN = 64;  // keys per streamed tile

// Shared memory (16-bit elements): q (64 x (D + 8)), k (64 x (D + 8)), v transposed (D x 72).
template <int D>
constexpr size_t mma_fwd_smem_bytes() {
  return sizeof(uint16_t) * (static_cast<size_t>(kMmaBlockM + kMmaBlockN) * (D + kMmaPad) +
                             static_cast<size_t>(D) * (kMmaBlockN + kMmaPad));
}

// grid (ceil(L / 64), Hq, B); T = __nv_bfloat16 or __half, D = head_dim = value_dim. FlashAttention-2's forward:
// a block of 4 warps owns 64 query rows, 16 per warp, and streams 64-key tiles of K and V through shared memory.
// Per tile and warp: S (16 x 64) = Q K^T as 8 fp32 accumulator tiles (Q's A fragments stay in registers for the
// whole loop); scale, mask, causal and the online softmax act on those accumulators in fp32 (each lane holds
// 2 rows x 16 keys; row max and sum need only the 4 lanes of a quad); P is rounded to T and reused as the A
// operand of O += P V (a_frag_of_acc). V is stored transposed so that a B fragment (two consecutive keys of one
// dim) is one 32-bit load (no ldmatrix: the host emulator would need it emulated too). Not yet done (each would
// be measured first on a GPU): cp.async double buffering, ldmatrix, exp2 with a folded log2(e) scale, a wider key
// tile for D = 64.
template <typename T, int D>
__global__ void __launch_bounds__(kThreads) attention_fwd_mma_kernel(const AttentionParams p) {
  static_assert(D % 16 == 0 && kMmaBlockN % 16 == 0, "mma tiles are 16 deep");
  constexpr int ld = D + kMmaPad, ldv = kMmaBlockN + kMmaPad;
  constexpr int kSteps = D / 16;             // k-steps of S = Q K^T
  constexpr int kKeyTiles = kMmaBlockN / 8;  // 8-key accumulator tiles of S
  constexpr int kDimTiles = D / 8;           // 8-dim accumulator tiles of O
  const int64_t b = blockIdx.z, h = blockIdx.y, i0 = static_cast<int64_t>(blockIdx.x) * kMmaBlockM;
  const SeqGeom seq = seq_geom(p, b);
  if (i0 >= seq.q_len) return;  // block-uniform
  const int64_t L = seq.q_len, S = seq.kv_len;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, quad_lane = lane & 3;
  const int w_row0 = warp * kMmaRowsPerWarp;  // this warp's first row within the block

  extern __shared__ uint4 mma_smem[];
  uint16_t* q_s = reinterpret_cast<uint16_t*>(mma_smem);  // kMmaBlockM x ld
  uint16_t* k_s = q_s + kMmaBlockM * ld;                   // kMmaBlockN x ld
  uint16_t* vt_s = k_s + kMmaBlockN * ld;                  // D x ldv (V transposed)

  const uint16_t* kp = head_ptr<const uint16_t>(p.k, p, b, kv_head_of(p, h), seq.k_row0);
  const uint16_t* vp = head_ptr<const uint16_t>(p.v, p, b, kv_head_of(p, h), seq.k_row0);
  const HeadScores hs = head_scores(p, b, h);
  copy_rows_16bit<D, false>(head_ptr<const uint16_t>(p.q, p, b, h, seq.q_row0), p.q.row_stride, i0,
                            imin(kMmaBlockM, L - i0), kMmaBlockM, q_s, ld);
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
  fill_zero(o);
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};  // row_sum: this lane's part
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
    fill_zero(s);
#pragma unroll
    for (int kk = 0; kk < kSteps; ++kk)
#pragma unroll
      for (int t = 0; t < kKeyTiles; ++t) {
        uint32_t k_frag[2];  // B = K^T: two consecutive dims of one key row
        b_frag_of_rows(k_frag, k_s, ld, t, kk, lane);
        cuda::mma_m16n8k16<T>(s[t], q_frag[kk], k_frag);
      }

    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int t = 0; t < kKeyTiles; ++t)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int64_t i = rows[r >> 1], j = j0 + 8 * t + cuda::mma_c_col(lane, r);
        const bool visible = i < L && j < j0 + nk && (!p.is_causal || j <= i);
        const float x = visible ? s[t][r] * p.scale + hs.mask_at(i, j) : -INFINITY;
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
        if (hs.dropout && (p0 != 0.0f || p1 != 0.0f)) {
          float f0, f1;
          hs.dropout_pair(rows[hh], j0 + 8 * t + cuda::mma_c_col(lane, 2 * hh), f0, f1);
          p0 *= f0;
          p1 *= f1;
        }
      }
#pragma unroll
    for (int kk = 0; kk < kMmaBlockN / 16; ++kk) {
      uint32_t p_frag[4];
      a_frag_of_acc<T>(p_frag, s, kk);
#pragma unroll
      for (int n = 0; n < kDimTiles; ++n) {
        uint32_t v_frag[2];  // B = V: B[k][n] = V[key 16kk + k][dim 8n + n] = vt_s[(8n + n) * ldv + 16kk + k]
        b_frag_of_rows(v_frag, vt_s, ldv, n, kk, lane);
        cuda::mma_m16n8k16<T>(o[n], p_frag, v_frag);
      }
    }
  }

  T* op = head_ptr<T>(p.out, p, b, h, seq.q_row0);
  float* lse = p.lse + lse_offset(p, b, h, seq.q_row0);
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    row_sum[hh] += __shfl_xor_sync(kFullWarp, row_sum[hh], 1);
    row_sum[hh] += __shfl_xor_sync(kFullWarp, row_sum[hh], 2);
    const int64_t i = rows[hh];
    if (i >= L) continue;
    // A row whose mask allows no key: output 0, lse -inf (the CPU kernel's convention). NaN propagates.
    const bool any = row_sum[hh] > 0.0f || isnan(row_sum[hh]);
    store_acc_row<D>(op + i * p.out.row_stride, o, hh, any ? 1.0f / row_sum[hh] : 0.0f, lane);
    if (quad_lane == 0) lse[i] = any ? row_max[hh] + logf(row_sum[hh]) : -INFINITY;
  }
}

}  // namespace detail
}  // namespace attention
}  // namespace pyfast
