// Attention forward on tensor cores, pipelined (issue #17 stage 1): bf16 / fp16 with head_dim == value_dim in
// {64, 128}, 16-byte aligned q / k / v rows and a positive scale (attention_cuda.cu falls back to
// attention_fwd_mma.cuh otherwise, and PYFAST_ATTENTION_FWD=mma selects that one for comparison). Same semantics
// and the same extra rounding (P to T before P V) as attention_fwd_mma.cuh; what differs is how tiles move:
//   - every tile copy is cp.async.cg (16 bytes, common/cp_async.cuh) and K/V go through 2 shared-memory stages:
//     tile j + 1 is in flight while tile j is multiplied;
//   - K and Q fragments come from row-major tiles with ldmatrix.x4, V's from a row-major tile with
//     ldmatrix.x4.trans (no transposed copy with scalar stores); rows are padded by 16 bytes, so the 8 row
//     addresses of one 8 x 8 matrix fall in 8 distinct 4-bank groups and the 16-byte cp.async stores of a quarter
//     warp in 32 distinct banks;
//   - scores stay in log2 units: the softmax is exp2(s * scale * log2(e) - max), one FMA before each exp2;
//   - bounds, causal and mask are tested only on the tiles that need them; an interior tile without a mask takes
//     a path with no per-element test;
//   - outputs are stored two elements (32 bits) at a time;
//   - (stage 2) 128 query rows per block with 8 warps at D = 64 (64 rows, 4 warps at D = 128, whose 252 registers
//     leave no room for more rows per warp), and a persistent grid: attention_cuda.cu launches as many blocks as fit
//     the GPU at once (SM count x occupancy) and each walks the (q block, head, batch) work items with a stride of
//     the grid, causal ones heaviest first (the last q blocks see the most keys), so the short ones fill the tail.
// Compiled, unverified on a GPU: checked by nvcc (sm_80, sm_90), the host emulator and the SASS (LDSM, LDGSTS).
#pragma once
#include "attention/attention_tile.cuh"
#include "common/cp_async.cuh"

namespace pyfast {
namespace attention {
namespace detail {

constexpr int kFlashBlockN = 64;  // keys per streamed tile
constexpr int kFlashStages = 2;   // K/V shared-memory stages
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Warps per block of the forward: 8 (128 query rows) at D = 64, 4 (64 rows) at D = 128.
template <int D>
__host__ __device__ constexpr int flash_fwd_warps() {
  return D <= 64 ? 8 : 4;
}
template <int D>
__host__ __device__ constexpr int flash_fwd_rows() {
  return kMmaRowsPerWarp * flash_fwd_warps<D>();
}

// Shared memory (16-bit elements, row stride D + kMmaPad): q (flash_fwd_rows rows), then per stage K (64 rows) and V
// (64 rows). D = 128: 87 KiB; D = 64: 54 KiB.
template <int D>
constexpr size_t flash_fwd_smem_bytes() {
  return sizeof(uint16_t) * static_cast<size_t>(flash_fwd_rows<D>() + 2 * kFlashStages * kFlashBlockN) *
         (D + kMmaPad);
}

// Issues the cp.async copies of rows [row0, row0 + n) (n <= kRows) of a (rows x D) 16-bit tensor into dst (row
// stride D + kMmaPad); rows past n are zero-filled by the copy itself (src-size 0 reads nothing), so a tail
// tile's padding keys give P = 0 against V = 0, never 0 * garbage. Base and row stride must be 16-byte aligned.
// kBlockThreads: the block's threads, which share the copies.
template <int D, int kRows, int kBlockThreads = kThreads>
__device__ inline void cp_async_rows(const uint16_t* base, int64_t row_stride, int64_t row0, int64_t n,
                                     uint16_t* dst) {
  constexpr int ld = D + kMmaPad, kChunks = D / 8;  // 16-byte chunks per row
  static_assert(kRows * kChunks % kBlockThreads == 0, "whole copies per thread");
#pragma unroll
  for (int it = 0; it < kRows * kChunks / kBlockThreads; ++it) {
    const int idx = it * kBlockThreads + threadIdx.x;  // consecutive threads: consecutive chunks of a row (coalesced)
    const int r = idx / kChunks, c = (idx % kChunks) * 8;
    const bool valid = r < n;
    cuda::cp_async_16(dst + r * ld + c, base + (row0 + (valid ? r : 0)) * row_stride + c, valid);
  }
}

// One warp's view of one key tile's scores: turns the raw Q K^T accumulators s into log2-unit logits (when
// kBounds or kMask) and updates the running max / sum / output scale of the warp's two row halves. Returns
// through s the unnormalised P (fp32, before dropout). kBounds: test i < L, j < S and causal per element; kMask:
// add the float mask (rows known < L when !kBounds). Neither: the interior mask-free path, whose logits are
// formed inside the exp2's FMA.
template <bool kBounds, bool kMask, int kKeyTiles, int kDimTiles>
__device__ inline void flash_softmax_tile(float (&s)[kKeyTiles][4], float (&o)[kDimTiles][4], float (&row_max)[2],
                                          float (&row_sum)[2], const HeadScores& hs, const int64_t (&rows)[2],
                                          int64_t j0, int64_t L, int64_t S, bool causal, float scale_log2,
                                          int lane) {
  constexpr bool kRaw = !kBounds && !kMask;  // s still raw: max over raw scores, scaled afterwards (scale > 0)
  float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int t = 0; t < kKeyTiles; ++t)
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      float x = s[t][r];
      if constexpr (!kRaw) {
        const int64_t i = rows[r >> 1], j = j0 + 8 * t + cuda::mma_c_col(lane, r);
        const bool visible = !kBounds || (i < L && j < S && (!causal || j <= i));
        // The mask is read only where visible: past L or S it is out of bounds.
        x = visible ? fmaf(x, scale_log2, kMask ? hs.mask_at(i, j) * kLog2e : 0.0f) : -INFINITY;
        s[t][r] = x;
      }
      tile_max[r >> 1] = fmaxf(tile_max[r >> 1], x);
    }
  float use_max[2];
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    // The 4 lanes of a quad hold one row's 64 keys between them.
    tile_max[hh] = fmaxf(tile_max[hh], __shfl_xor_sync(kFullWarp, tile_max[hh], 1));
    tile_max[hh] = fmaxf(tile_max[hh], __shfl_xor_sync(kFullWarp, tile_max[hh], 2));
    if constexpr (kRaw) tile_max[hh] *= scale_log2;
    const float new_max = fmaxf(row_max[hh], tile_max[hh]);
    use_max[hh] = new_max == -INFINITY ? 0.0f : new_max;  // nothing visible yet: every exp2 below is 0
    const float rescale = exp2f(row_max[hh] - use_max[hh]);  // exp2(-inf) = 0 for a row's first visible tile
    row_max[hh] = new_max;
    row_sum[hh] *= rescale;
#pragma unroll
    for (int n = 0; n < kDimTiles; ++n) {
      o[n][2 * hh] *= rescale;
      o[n][2 * hh + 1] *= rescale;
    }
  }
  const float mult = kRaw ? scale_log2 : 1.0f;
#pragma unroll
  for (int t = 0; t < kKeyTiles; ++t)
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      float& p0 = s[t][2 * hh];
      float& p1 = s[t][2 * hh + 1];
      p0 = exp2f(fmaf(p0, mult, -use_max[hh]));  // masked: exp2(-inf) = 0
      p1 = exp2f(fmaf(p1, mult, -use_max[hh]));
      row_sum[hh] += p0 + p1;
      if (hs.dropout && (p0 != 0.0f || p1 != 0.0f)) {
        float f0, f1;
        hs.dropout_pair(rows[hh], j0 + 8 * t + cuda::mma_c_col(lane, 2 * hh), f0, f1);
        p0 *= f0;
        p1 *= f1;
      }
    }
}

// The work items of the forward: (q block, head, batch) in launch order, the q block slowest so that causal ones run
// heaviest first. Item w: bh = w % (B Hq), q block = n_qblocks - 1 - w / (B Hq) when causal, else w / (B Hq).
struct FlashFwdItem {
  int64_t b, h, i0;
};
template <int D>
__device__ inline FlashFwdItem flash_fwd_item(const AttentionParams& p, int64_t w) {
  const int64_t bh_count = p.batch * p.q_heads, n_qblocks = ceil_div(p.q_len, flash_fwd_rows<D>());
  const int64_t bh = w % bh_count, qb = w / bh_count;
  return FlashFwdItem{bh / p.q_heads, bh % p.q_heads, (p.is_causal ? n_qblocks - 1 - qb : qb) * flash_fwd_rows<D>()};
}
template <int D>
__host__ __device__ inline int64_t flash_fwd_items(const AttentionParams& p) {
  return p.batch * p.q_heads * ((p.q_len + flash_fwd_rows<D>() - 1) / flash_fwd_rows<D>());
}

// One work item: T = __nv_bfloat16 or __half, D = head_dim = value_dim. A block of kWarps_ warps owns 16 kWarps_
// query rows from i0 (16 per warp, Q's A fragments in registers for the whole loop) and streams 64-key tiles of K
// and V. Starts and ends with every thread's copies complete and the shared memory free.
template <typename T, int D>
__device__ inline void attention_fwd_flash_block(const AttentionParams& p, int64_t b, int64_t h, int64_t i0) {
  static_assert(D % 16 == 0 && kFlashBlockN % 16 == 0, "mma tiles are 16 deep");
  constexpr int kBlockRows = flash_fwd_rows<D>(), kBlockThreads = 32 * flash_fwd_warps<D>();
  constexpr int ld = D + kMmaPad;
  constexpr int kSteps = D / 16;               // k-steps of S = Q K^T
  constexpr int kKeyTiles = kFlashBlockN / 8;  // 8-key accumulator tiles of S
  constexpr int kDimTiles = D / 8;             // 8-dim accumulator tiles of O
  constexpr int kStageElems = 2 * kFlashBlockN * ld;
  const SeqGeom seq = seq_geom(p, b);
  if (i0 >= seq.q_len) return;  // block-uniform
  const int64_t L = seq.q_len, S = seq.kv_len;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, quad_lane = lane & 3;
  const int w_row0 = warp * kMmaRowsPerWarp;  // this warp's first row within the block
  // ldmatrix addressing: lane l names row (l & 7) of matrix (l >> 3) of each x4 load.
  const int lm_row = cuda::ldmatrix_row(lane), lm_mat = cuda::ldmatrix_matrix(lane);

  extern __shared__ uint4 flash_smem[];
  uint16_t* q_s = reinterpret_cast<uint16_t*>(flash_smem);  // kBlockRows x ld
  uint16_t* kv_s = q_s + kBlockRows * ld;                    // stage st: K at kv_s + st * kStageElems, V after K

  const uint16_t* kp = head_ptr<const uint16_t>(p.k, p, b, kv_head_of(p, h), seq.k_row0);
  const uint16_t* vp = head_ptr<const uint16_t>(p.v, p, b, kv_head_of(p, h), seq.k_row0);
  const HeadScores hs = head_scores(p, b, h);
  const int64_t kv_end = p.is_causal ? imin(S, imin(L, i0 + kBlockRows)) : S;
  const int n_tiles = static_cast<int>(ceil_div(kv_end, kFlashBlockN));
  auto load_kv = [&](int j) {  // tile j's K and V into stage j % 2 (one commit group with whatever came before)
    const int64_t j0 = static_cast<int64_t>(j) * kFlashBlockN, nk = imin(kFlashBlockN, kv_end - j0);
    uint16_t* st = kv_s + (j % kFlashStages) * kStageElems;
    cp_async_rows<D, kFlashBlockN, kBlockThreads>(kp, p.k.row_stride, j0, nk, st);
    cp_async_rows<D, kFlashBlockN, kBlockThreads>(vp, p.v.row_stride, j0, nk, st + kFlashBlockN * ld);
  };

  // Group 0: Q and tile 0.
  cp_async_rows<D, kBlockRows, kBlockThreads>(head_ptr<const uint16_t>(p.q, p, b, h, seq.q_row0), p.q.row_stride, i0,
                                              imin(kBlockRows, L - i0), q_s);
  if (n_tiles > 0) load_kv(0);
  cuda::cp_async_commit();

  // Accumulator entry r of a tile belongs to row half r >> 1: rows[0] = row g, rows[1] = row g + 8.
  const int64_t rows[2] = {i0 + w_row0 + cuda::mma_c_row(lane, 0), i0 + w_row0 + cuda::mma_c_row(lane, 2)};
  const int64_t w_first = i0 + w_row0, w_last = w_first + kMmaRowsPerWarp - 1;
  const bool warp_has_rows = w_first < L, warp_rows_full = w_last < L;
  const float scale_log2 = p.scale * kLog2e;
  uint32_t q_frag[kSteps][4];
  float o[kDimTiles][4];
  fill_zero(o);
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};  // log2 units; row_sum: this lane's part

  for (int j = 0; j < n_tiles; ++j) {
    // Stage (j + 1) % 2 was last read in iteration j - 1, which ended with a barrier: refill it now, then wait
    // for everything but that newest group (tile j, and Q with tile 0, complete).
    if (j + 1 < n_tiles) {
      load_kv(j + 1);
      cuda::cp_async_commit();
      cuda::cp_async_wait<1>();
    } else {
      cuda::cp_async_wait<0>();
    }
    __syncthreads();  // every thread's copies of tile j (and Q) visible to all
    if (j == 0) {
#pragma unroll
      for (int kk = 0; kk < kSteps; ++kk)  // A fragment kk: matrix m = rows + 8 (m & 1), columns + 8 (m >> 1)
        cuda::ldmatrix_x4(q_frag[kk], q_s + (w_row0 + lm_row + 8 * (lm_mat & 1)) * ld + 16 * kk + 8 * (lm_mat >> 1));
    }
    const int64_t j0 = static_cast<int64_t>(j) * kFlashBlockN;
    // Warp-uniform skips (the mma below needs all 32 lanes): a warp of padding rows, or (causal) a tile wholly in
    // the future of the warp's last row.
    if (warp_has_rows && !(p.is_causal && j0 > w_last)) {
      const uint16_t* k_s = kv_s + (j % kFlashStages) * kStageElems;
      const uint16_t* v_s = k_s + kFlashBlockN * ld;
      float s[kKeyTiles][4];
      fill_zero(s);
#pragma unroll
      for (int kk = 0; kk < kSteps; ++kk)
#pragma unroll
        for (int t2 = 0; t2 < kKeyTiles / 2; ++t2) {
          // B = K^T of key tiles 2t2, 2t2 + 1: matrix m = keys 8 (2t2 + (m >> 1)) .., dims 16kk + 8 (m & 1) ..
          uint32_t kf[4];
          cuda::ldmatrix_x4(kf, k_s + (16 * t2 + 8 * (lm_mat >> 1) + lm_row) * ld + 16 * kk + 8 * (lm_mat & 1));
          const uint32_t b0[2] = {kf[0], kf[1]}, b1[2] = {kf[2], kf[3]};
          cuda::mma_m16n8k16<T>(s[2 * t2], q_frag[kk], b0);
          cuda::mma_m16n8k16<T>(s[2 * t2 + 1], q_frag[kk], b1);
        }
      // Interior: every key of the tile exists and (causal) is visible from the warp's first row.
      const bool keys_full = j0 + kFlashBlockN <= S && (!p.is_causal || j0 + kFlashBlockN - 1 <= w_first);
      if (keys_full && hs.mask == nullptr)
        flash_softmax_tile<false, false>(s, o, row_max, row_sum, hs, rows, j0, L, S, p.is_causal, scale_log2, lane);
      else if (keys_full && warp_rows_full)
        flash_softmax_tile<false, true>(s, o, row_max, row_sum, hs, rows, j0, L, S, p.is_causal, scale_log2, lane);
      else
        flash_softmax_tile<true, true>(s, o, row_max, row_sum, hs, rows, j0, L, S, p.is_causal, scale_log2, lane);
#pragma unroll
      for (int kk = 0; kk < kFlashBlockN / 16; ++kk) {
        uint32_t p_frag[4];
        a_frag_of_acc<T>(p_frag, s, kk);
#pragma unroll
        for (int n2 = 0; n2 < kDimTiles / 2; ++n2) {
          // B = V (keys 16kk .., dims 8 (2n2) .. 8 (2n2 + 1) + 7), row-major, transposed by ldmatrix: matrix m =
          // keys 16kk + 8 (m & 1) .., dims 8 (2n2 + (m >> 1)) ..
          uint32_t vf[4];
          cuda::ldmatrix_x4_trans(vf, v_s + (16 * kk + 8 * (lm_mat & 1) + lm_row) * ld + 8 * (2 * n2 + (lm_mat >> 1)));
          const uint32_t b0[2] = {vf[0], vf[1]}, b1[2] = {vf[2], vf[3]};
          cuda::mma_m16n8k16<T>(o[2 * n2], p_frag, b0);
          cuda::mma_m16n8k16<T>(o[2 * n2 + 1], p_frag, b1);
        }
      }
    }
    __syncthreads();  // stage j % 2 consumed by every warp before iteration j + 1 refills it
  }
  cuda::cp_async_wait<0>();  // no tile at all (kv_end == 0): Q's group is still pending

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
    const float inv = any ? 1.0f / row_sum[hh] : 0.0f;
    T* orow = op + i * p.out.row_stride;
#pragma unroll
    for (int n = 0; n < kDimTiles; ++n)  // dims 8n + 2t, 8n + 2t + 1: one 32-bit store (out rows 4-byte aligned)
      *reinterpret_cast<uint32_t*>(orow + 8 * n + 2 * quad_lane) =
          cuda::pack2_float<T>(o[n][2 * hh] * inv, o[n][2 * hh + 1] * inv);
    if (quad_lane == 0) lse[i] = any ? row_max[hh] * kLn2 + logf(row_sum[hh]) : -INFINITY;
  }
}

// Persistent grid (attention_cuda.cu: as many blocks as are resident at once, at most one per item) of
// 32 flash_fwd_warps<D> threads: block x takes items x, x + gridDim.x, ... (flash_fwd_item's order).
template <typename T, int D>
__global__ void __launch_bounds__(32 * flash_fwd_warps<D>()) attention_fwd_flash_kernel(const AttentionParams p) {
  const int64_t n_items = flash_fwd_items<D>(p);
  for (int64_t w = blockIdx.x; w < n_items; w += gridDim.x) {
    const FlashFwdItem it = flash_fwd_item<D>(p, w);
    attention_fwd_flash_block<T, D>(p, it.b, it.h, it.i0);
    __syncthreads();  // every warp is done with the shared memory (Q's fragments were read at tile 0) before reuse
  }
}

}  // namespace detail
}  // namespace attention
}  // namespace pyfast
