// Attention backward on tensor cores in FlashAttention-2's order (issue #17 stage 3): one kernel per (key block,
// kv head, batch) does all five products of the backward, S = Q K^T, dP = dO V^T, dV += P^T dO, dK += dS^T Q and
// dQ += dS K, where the two-kernel backward (attention_bwd_mma.cuh) recomputes S and dP in each kernel (7 products).
// dQ is summed over key blocks with fp32 atomicAdd into a scratch buffer, so the result depends on the order the
// blocks reach memory: it is not bitwise repeatable. deterministic=True (or torch's deterministic algorithms)
// keeps the atomic-free two-kernel path; attention_cuda.cu chooses.
// Takes bf16 / fp16 with head_dim == value_dim in {64, 128}, q / k / v / dout rows 16-byte aligned (cp.async) and
// dk / dv rows 4-byte aligned (pair stores); every other problem falls back to the two-kernel path. Every feature of
// that path is kept: float masks (bool ones arrive as float), causal, varlen, GQA (a block loops over the q heads of
// its kv head's group, so dK / dV need no atomics), dropout keyed as the forward / CPU.
// Three launches: a preprocess (delta = rowsum(dO * O), and the fp32 dQ scratch zeroed), the main kernel, and a
// convert (dQ = scale * scratch, rounded to T).
// Compiled, unverified on a GPU: checked by nvcc (sm_80, sm_90), the host emulator and the SASS (LDSM, LDGSTS).
#pragma once
#include "attention/attention_fwd_flash.cuh"  // kLog2e, cp_async_rows
#include "attention/attention_tile.cuh"
#include "common/cp_async.cuh"

namespace pyfast {
namespace attention {
namespace detail {

// A block owns 64 keys (16 per warp: the rows of the warp's dK / dV accumulators, fp32 in registers) and streams
// query tiles of kFlashBwdRows<D> rows: 64 at D = 64, 32 at D = 128, where dK and dV alone take 128 registers of a
// lane and a 64-query tile's S and dP would take 64 more.
constexpr int kFlashBwdKeys = kMmaBlockM;
template <int D>
__host__ __device__ constexpr int flash_bwd_rows() {
  return D <= 64 ? 64 : 32;
}

// Shared memory (16-bit unless said): K and V (64 rows each, row stride D + kMmaPad, loaded once), two stages of
// (Q, dO) (flash_bwd_rows rows each), dS^T (64 keys x rows, stride rows + 8), then fp32 per stage lse (log2 units,
// +inf for an empty or padding row) and delta. D = 64: 64 KiB; D = 128: 73.5 KiB.
template <int D>
__host__ __device__ constexpr int flash_bwd_ds_ld() {
  return flash_bwd_rows<D>() + 8;  // 16-byte row padding: the 8 rows of an ldmatrix hit 8 distinct bank groups
}
template <int D>
constexpr size_t flash_bwd_smem_bytes() {
  constexpr size_t ld = D + kMmaPad, rows = flash_bwd_rows<D>();
  return sizeof(uint16_t) * (2 * kFlashBwdKeys * ld + 2 * kFlashStages * rows * ld +
                             kFlashBwdKeys * static_cast<size_t>(flash_bwd_ds_ld<D>())) +
         sizeof(float) * 2 * kFlashStages * rows;
}

// grid (ceil(L / 64), Hq, B), one warp per query row: delta_i = rowsum(dO_i * O_i) (fp32, laid out like lse) and
// row i of the fp32 dQ scratch (laid out like dq) set to 0.
template <typename T, int D>
__global__ void __launch_bounds__(kThreads) attention_bwd_flash_prep_kernel(const AttentionBackwardParams bp,
                                                                            float* delta, float* dq_acc) {
  const AttentionParams& p = bp.fwd;
  const int64_t b = blockIdx.z, h = blockIdx.y, i0 = static_cast<int64_t>(blockIdx.x) * kMmaBlockM;
  const SeqGeom seq = seq_geom(p, b);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const T* dop = head_ptr<const T>(bp.dout, p, b, h, seq.q_row0);
  const T* op = head_ptr<const T>(p.out, p, b, h, seq.q_row0);
  float* delta_p = delta + lse_offset(p, b, h, seq.q_row0);
  float* acc = dq_acc + base_offset(bp.dq, p, b, h, seq.q_row0);
  for (int64_t i = i0 + warp; i < imin(i0 + kMmaBlockM, seq.q_len); i += kWarps) {
    float part = 0.0f;
    for (int d = lane; d < D; d += 32) {
      part += load_elem(dop + i * bp.dout.row_stride + d) * load_elem(op + i * p.out.row_stride + d);
      acc[i * bp.dq.row_stride + d] = 0.0f;
    }
    part = warp_sum(part);
    if (lane == 0) delta_p[i] = part;
  }
}

// grid (ceil(L / 64), Hq, B): dq = scale * dQ scratch, rounded to T (two elements per 32-bit store).
template <typename T, int D>
__global__ void __launch_bounds__(kThreads) attention_bwd_flash_dq_kernel(const AttentionBackwardParams bp,
                                                                          const float* dq_acc) {
  const AttentionParams& p = bp.fwd;
  const int64_t b = blockIdx.z, h = blockIdx.y, i0 = static_cast<int64_t>(blockIdx.x) * kMmaBlockM;
  const SeqGeom seq = seq_geom(p, b);
  const int64_t offset = base_offset(bp.dq, p, b, h, seq.q_row0);
  const float* acc = dq_acc + offset;
  T* dqp = static_cast<T*>(bp.dq.data) + offset;
  constexpr int kPairs = D / 2;
  const int64_t rows = imin(kMmaBlockM, seq.q_len - i0);
  for (int64_t idx = threadIdx.x; idx < rows * kPairs; idx += kThreads) {
    const int64_t i = i0 + idx / kPairs, d = 2 * (idx % kPairs);
    const float* a = acc + i * bp.dq.row_stride + d;
    *reinterpret_cast<uint32_t*>(dqp + i * bp.dq.row_stride + d) = cuda::pack2_float<T>(a[0] * p.scale, a[1] * p.scale);
  }
}

// One warp, one query tile: turns S^T and dP^T (the warp's 16 keys x the tile's queries, raw accumulators) into
// s = P^T keep (the dropped probabilities) and dp = dS^T = P^T (dP^T keep - delta). kChecked: test bounds, causal and
// mask per element and draw dropout; else the interior path (every key of the warp < S and, causal, visible from
// the tile's first query; no mask, no dropout), where only lse = +inf zeroes a padding query.
template <bool kChecked, int kTiles>
__device__ inline void flash_bwd_probs_ds(float (&s)[kTiles][4], float (&dp)[kTiles][4], const float* lse_s,
                                          const float* delta_s, const HeadScores& hs, const int64_t (&keys)[2],
                                          int64_t i0, int64_t L, int64_t S, float scale_log2, int lane) {
  const AttentionParams& p = hs.p;
#pragma unroll
  for (int t = 0; t < kTiles; ++t)
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int c = 8 * t + cuda::mma_c_col(lane, r);  // the query's row in the tile
      const float lse = lse_s[c], delta = delta_s[c];
      float prob, keep = 1.0f;
      if constexpr (kChecked) {
        const int64_t i = i0 + c, j = keys[r >> 1];
        const bool visible = i < L && j < S && (!p.is_causal || j <= i);
        // The mask is read only where visible: past L or S it is out of bounds.
        const float x = visible ? fmaf(s[t][r], scale_log2, hs.mask_at(i, j) * kLog2e) : -INFINITY;
        prob = exp2f(x - lse);  // -inf (masked) or lse +inf (empty row): 0
        if (hs.dropout && visible) keep = hs.dropout_at(i, j);
      } else {
        prob = exp2f(fmaf(s[t][r], scale_log2, -lse));
      }
      s[t][r] = prob * keep;
      dp[t][r] = prob * (dp[t][r] * keep - delta);
    }
}

// grid (ceil(S / 64), Hkv, B); T = __nv_bfloat16 or __half, D = head_dim = value_dim. Reads delta (the preprocess
// kernel's) and adds this block's dS K to dq_acc (fp32, laid out like dq, scaled later).
template <typename T, int D>
__global__ void __launch_bounds__(kThreads) attention_bwd_flash_kernel(const AttentionBackwardParams bp,
                                                                       const float* delta, float* dq_acc) {
  static_assert(D % 16 == 0, "mma tiles are 16 deep");
  constexpr int ld = D + kMmaPad;
  constexpr int kRows = flash_bwd_rows<D>();   // queries per streamed tile
  constexpr int lds = flash_bwd_ds_ld<D>();    // row stride of dS^T in shared memory
  constexpr int kQTiles = kRows / 8;           // 8-query accumulator tiles of S^T / dP^T per warp
  constexpr int kDimTiles = D / 8;             // 8-dim accumulator tiles of dK / dV
  constexpr int kStrips = kRows / 16;          // 16-query strips of the dQ product
  constexpr int kDqDims = D / (kWarps / kStrips);  // dims of dQ per warp: 4 warps cover kStrips x D
  static_assert(kWarps % kStrips == 0 && kDqDims % 16 == 0, "the dQ product splits evenly over the warps");
  const AttentionParams& p = bp.fwd;
  const int64_t b = blockIdx.z, kv_h = blockIdx.y, j0 = static_cast<int64_t>(blockIdx.x) * kFlashBwdKeys;
  const SeqGeom seq = seq_geom(p, b);
  if (j0 >= seq.kv_len) return;  // block-uniform
  const int64_t L = seq.q_len, S = seq.kv_len, group = p.q_heads / p.kv_heads;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int w_row0 = warp * kMmaRowsPerWarp;
  const int lm_row = cuda::ldmatrix_row(lane), lm_mat = cuda::ldmatrix_matrix(lane);

  extern __shared__ uint4 flash_bwd_smem[];
  uint16_t* k_s = reinterpret_cast<uint16_t*>(flash_bwd_smem);
  uint16_t* v_s = k_s + kFlashBwdKeys * ld;
  uint16_t* qdo_s = v_s + kFlashBwdKeys * ld;  // stage st: Q at qdo_s + st * 2 kRows ld, dO after it
  uint16_t* ds_s = qdo_s + kFlashStages * 2 * kRows * ld;
  float* stats_s = reinterpret_cast<float*>(ds_s + kFlashBwdKeys * lds);  // stage st: lse, then delta

  // The streamed tiles, over the group's q heads and each head's query tiles: causal skips the queries before this
  // block's first key (they see none of its keys).
  const int64_t i_begin = p.is_causal ? (j0 / kRows) * kRows : 0;
  const int64_t tiles_per_head = L > i_begin ? ceil_div(L - i_begin, kRows) : 0;
  const int64_t n_tiles = group * tiles_per_head;
  auto load_tile = [&](int64_t t) {  // Q, dO by cp.async (joins the caller's next commit); lse, delta by plain loads
    const int64_t h = kv_h * group + t / tiles_per_head, i0 = i_begin + (t % tiles_per_head) * kRows;
    const int64_t n = imin(kRows, L - i0);
    const QueryHead<T> qh = query_head<T>(bp, delta, seq, b, h);
    uint16_t* st = qdo_s + (t % kFlashStages) * 2 * kRows * ld;
    cp_async_rows<D, kRows>(reinterpret_cast<const uint16_t*>(qh.q), p.q.row_stride, i0, n, st);
    cp_async_rows<D, kRows>(reinterpret_cast<const uint16_t*>(qh.dout), bp.dout.row_stride, i0, n, st + kRows * ld);
    float* stats = stats_s + (t % kFlashStages) * 2 * kRows;
    if (threadIdx.x < kRows) {
      const int64_t i = i0 + threadIdx.x;
      const float l = threadIdx.x < n ? qh.lse[i] : INFINITY;
      stats[threadIdx.x] = l == -INFINITY ? INFINITY : l * kLog2e;  // log2 units, as the scores below
      stats[kRows + threadIdx.x] = threadIdx.x < n ? qh.delta[i] : 0.0f;
    }
  };

  // Group 0: K, V and tile 0.
  const int64_t nk = imin(kFlashBwdKeys, S - j0);
  cp_async_rows<D, kFlashBwdKeys>(head_ptr<const uint16_t>(p.k, p, b, kv_h, seq.k_row0), p.k.row_stride, j0, nk, k_s);
  cp_async_rows<D, kFlashBwdKeys>(head_ptr<const uint16_t>(p.v, p, b, kv_h, seq.k_row0), p.v.row_stride, j0, nk, v_s);
  if (n_tiles > 0) load_tile(0);
  cuda::cp_async_commit();

  // Accumulator entry r of a key-row tile belongs to key keys[r >> 1].
  const int64_t keys[2] = {j0 + w_row0 + cuda::mma_c_row(lane, 0), j0 + w_row0 + cuda::mma_c_row(lane, 2)};
  const int64_t w_first = j0 + w_row0, w_last = w_first + kMmaRowsPerWarp - 1;
  const float scale_log2 = p.scale * kLog2e;
  float dk[kDimTiles][4], dv[kDimTiles][4];
  fill_zero(dk);
  fill_zero(dv);
  // The dQ product's share of this warp: queries strip * 16 .., dims dq_d0 ..
  const int dq_strip = warp % kStrips, dq_d0 = (warp / kStrips) * kDqDims;

  for (int64_t t = 0; t < n_tiles; ++t) {
    // Stage (t + 1) % 2 was last read before the middle barrier of iteration t - 1, which every thread has passed.
    if (t + 1 < n_tiles) {
      load_tile(t + 1);
      cuda::cp_async_commit();
      cuda::cp_async_wait<1>();
    } else {
      cuda::cp_async_wait<0>();
    }
    __syncthreads();  // tile t (and, the first time, K and V) visible to all; dS^T of tile t - 1 consumed
    const int64_t h = kv_h * group + t / tiles_per_head, i0 = i_begin + (t % tiles_per_head) * kRows;
    const HeadScores hs = head_scores(p, b, h);
    const uint16_t* q_s = qdo_s + (t % kFlashStages) * 2 * kRows * ld;
    const uint16_t* do_s = q_s + kRows * ld;
    const float* lse_s = stats_s + (t % kFlashStages) * 2 * kRows;
    const float* delta_s = lse_s + kRows;

    // Warp-uniform skips (mma needs all 32 lanes): a warp of padding keys, or (causal) a tile whose last query is
    // before the warp's first key. Such a warp's dS^T rows are 0 for the dQ product.
    if (w_first < S && !(p.is_causal && i0 + kRows - 1 < w_first)) {
      float s[kQTiles][4], dp[kQTiles][4];
      fill_zero(s);
      fill_zero(dp);
      // S^T = K_w Q^T, dP^T = V_w dO^T: A = 16 rows of K / V (ldmatrix), B = Q^T / dO^T from row-major Q / dO
      // (ldmatrix: a row of Q is a column of B).
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        uint32_t ka[4], va[4];
        const int a_off = (w_row0 + lm_row + 8 * (lm_mat & 1)) * ld + 16 * kk + 8 * (lm_mat >> 1);
        cuda::ldmatrix_x4(ka, k_s + a_off);
        cuda::ldmatrix_x4(va, v_s + a_off);
#pragma unroll
        for (int t2 = 0; t2 < kQTiles / 2; ++t2) {
          const int b_off = (16 * t2 + 8 * (lm_mat >> 1) + lm_row) * ld + 16 * kk + 8 * (lm_mat & 1);
          uint32_t qf[4], gf[4];
          cuda::ldmatrix_x4(qf, q_s + b_off);
          cuda::ldmatrix_x4(gf, do_s + b_off);
          const uint32_t q0[2] = {qf[0], qf[1]}, q1[2] = {qf[2], qf[3]}, g0[2] = {gf[0], gf[1]},
                         g1[2] = {gf[2], gf[3]};
          cuda::mma_m16n8k16<T>(s[2 * t2], ka, q0);
          cuda::mma_m16n8k16<T>(s[2 * t2 + 1], ka, q1);
          cuda::mma_m16n8k16<T>(dp[2 * t2], va, g0);
          cuda::mma_m16n8k16<T>(dp[2 * t2 + 1], va, g1);
        }
      }
      const bool interior = hs.mask == nullptr && !hs.dropout && w_last < S && (!p.is_causal || i0 >= w_last);
      if (interior)
        flash_bwd_probs_ds<false>(s, dp, lse_s, delta_s, hs, keys, i0, L, S, scale_log2, lane);
      else
        flash_bwd_probs_ds<true>(s, dp, lse_s, delta_s, hs, keys, i0, L, S, scale_log2, lane);

      // dV += (P keep)^T dO, dK += dS^T Q: the key-row accumulators of P^T and dS^T are A fragments as they stand
      // (a_frag_of_acc); B = dO / Q row-major along the queries (k), read with ldmatrix.trans.
#pragma unroll
      for (int kk = 0; kk < kRows / 16; ++kk) {
        uint32_t pa[4], dsa[4];
        a_frag_of_acc<T>(pa, s, kk);
        a_frag_of_acc<T>(dsa, dp, kk);
#pragma unroll
        for (int n2 = 0; n2 < kDimTiles / 2; ++n2) {
          const int b_off = (16 * kk + 8 * (lm_mat & 1) + lm_row) * ld + 8 * (2 * n2 + (lm_mat >> 1));
          uint32_t gf[4], qf[4];
          cuda::ldmatrix_x4_trans(gf, do_s + b_off);
          cuda::ldmatrix_x4_trans(qf, q_s + b_off);
          const uint32_t g0[2] = {gf[0], gf[1]}, g1[2] = {gf[2], gf[3]}, q0[2] = {qf[0], qf[1]},
                         q1[2] = {qf[2], qf[3]};
          cuda::mma_m16n8k16<T>(dv[2 * n2], pa, g0);
          cuda::mma_m16n8k16<T>(dv[2 * n2 + 1], pa, g1);
          cuda::mma_m16n8k16<T>(dk[2 * n2], dsa, q0);
          cuda::mma_m16n8k16<T>(dk[2 * n2 + 1], dsa, q1);
        }
      }
      // dS^T (rounded to T, as the products above take it) into shared memory for dQ = dS K, where the queries
      // are the rows: 32-bit stores of a lane's key-row pairs, read back transposed by ldmatrix.trans.
#pragma unroll
      for (int t8 = 0; t8 < kQTiles; ++t8)
#pragma unroll
        for (int hh = 0; hh < 2; ++hh)
          *reinterpret_cast<uint32_t*>(ds_s + (w_row0 + cuda::mma_c_row(lane, 2 * hh)) * lds + 8 * t8 +
                                       cuda::mma_c_col(lane, 2 * hh)) =
              cuda::pack2_float<T>(dp[t8][2 * hh], dp[t8][2 * hh + 1]);
    } else {
      for (int idx = lane; idx < kMmaRowsPerWarp * kRows / 2; idx += 32)
        reinterpret_cast<uint32_t*>(ds_s + (w_row0 + idx / (kRows / 2)) * lds)[idx % (kRows / 2)] = 0u;
    }
    __syncthreads();  // dS^T complete

    // dQ (queries of the warp's strip, its kDqDims dims) += dS K over the block's 64 keys: A = dS from dS^T
    // (ldmatrix.trans), B = K row-major along the keys (ldmatrix.trans). A strip of padding queries is skipped.
    if (i0 + 16 * dq_strip < L) {
      uint32_t dsa[kFlashBwdKeys / 16][4];
#pragma unroll
      for (int kk = 0; kk < kFlashBwdKeys / 16; ++kk)
        cuda::ldmatrix_x4_trans(dsa[kk], ds_s + (16 * kk + 8 * (lm_mat >> 1) + lm_row) * lds + 16 * dq_strip +
                                             8 * (lm_mat & 1));
      float* acc = dq_acc + base_offset(bp.dq, p, b, h, seq.q_row0);
      const int64_t rows[2] = {i0 + 16 * dq_strip + cuda::mma_c_row(lane, 0),
                               i0 + 16 * dq_strip + cuda::mma_c_row(lane, 2)};
#pragma unroll
      for (int n2 = 0; n2 < kDqDims / 16; ++n2) {
        float dq[2][4];
        fill_zero(dq);
#pragma unroll
        for (int kk = 0; kk < kFlashBwdKeys / 16; ++kk) {
          uint32_t kf[4];
          cuda::ldmatrix_x4_trans(kf, k_s + (16 * kk + 8 * (lm_mat & 1) + lm_row) * ld + dq_d0 + 16 * n2 +
                                          8 * (lm_mat >> 1));
          const uint32_t k0[2] = {kf[0], kf[1]}, k1[2] = {kf[2], kf[3]};
          cuda::mma_m16n8k16<T>(dq[0], dsa[kk], k0);
          cuda::mma_m16n8k16<T>(dq[1], dsa[kk], k1);
        }
        // Every block of the kv head adds to these rows: fp32 atomics (RED on the GPU; the add order varies).
#pragma unroll
        for (int x = 0; x < 2; ++x)
#pragma unroll
          for (int r = 0; r < 4; ++r) {
            const int64_t i = rows[r >> 1];
            if (i < L) atomicAdd(acc + i * bp.dq.row_stride + dq_d0 + 16 * n2 + 8 * x + cuda::mma_c_col(lane, r),
                                 dq[x][r]);
          }
      }
    }
  }
  cuda::cp_async_wait<0>();  // no tile at all: K and V's group is still pending

  T* dkp = head_ptr<T>(bp.dk, p, b, kv_h, seq.k_row0);
  T* dvp = head_ptr<T>(bp.dv, p, b, kv_h, seq.k_row0);
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    const int64_t j = keys[hh];
    if (j >= S) continue;
#pragma unroll
    for (int n = 0; n < kDimTiles; ++n) {  // dims 8n + 2t, 8n + 2t + 1: one 32-bit store each
      const int d = 8 * n + cuda::mma_c_col(lane, 2 * hh);
      *reinterpret_cast<uint32_t*>(dkp + j * bp.dk.row_stride + d) =
          cuda::pack2_float<T>(dk[n][2 * hh] * p.scale, dk[n][2 * hh + 1] * p.scale);
      *reinterpret_cast<uint32_t*>(dvp + j * bp.dv.row_stride + d) =
          cuda::pack2_float<T>(dv[n][2 * hh], dv[n][2 * hh + 1]);
    }
  }
}

}  // namespace detail
}  // namespace attention
}  // namespace pyfast
