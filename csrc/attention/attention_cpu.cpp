// Fused attention on the CPU, forward and backward (FlashAttention-2's algorithm, our own code): scores are
// computed a kBlockQ x kBlockK tile at a time, softmax is online (running max and sum per query row), the
// forward keeps only the output and the row log-sum-exp, and the backward recomputes the probabilities from
// the lse. Memory is O(L + S) per head beyond the inputs. Every product runs through the 6x16 register-blocked
// micro-kernel of attention_gemm.h on fp32 copies of the tiles, so bf16 and fp16 inputs are converted once per
// head on packing and accumulate in fp32 (this CPU has no bf16/fp16 FMA).
//
// Parallelism: forward over (batch, head, q block); backward over (batch, kv head, kv chunk) with each chunk's
// dQ written to its own fp32 slice and summed in a fixed order afterwards, so the backward splits beyond
// batch x heads (torch's CPU kernel does not) and stays deterministic for a given thread count.
//
// Floors (benchmarks/RESULTS.md): compute-bound by ~100x at every benchmarked shape -- (4,8,512,64) moves 4 MiB
// (0.3 ms at 16 GB/s) for 2.1 GFLOP (23 ms at the 92 GFLOP/s fp32 GEMM peak of 2 AVX2 cores) -- so the target is
// the GEMM peak, and the micro-kernel, not memory traffic, is what matters.
#include "attention/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "attention/attention_checks.h"
#include "attention/attention_gemm.h"
#include "common/checks.h"
#include "common/dispatch.h"
#include "common/parallel.h"
#include "common/philox.h"

namespace pyfast {
namespace attention {
namespace {

// Tile sizes. kBlockK is a multiple of the 16-column panel; kBlockQ a multiple of the 6-row tile. 48 x 64
// fp32 scores (12 KiB) plus the q tile and one K panel stay inside a 32 KiB L1.
constexpr int64_t kBlockQ = 48;
constexpr int64_t kBlockK = 64;      // backward kv block (dK/dV accumulators of kBlockK rows stay in L1/L2)
#ifndef PYFAST_ATTN_FWD_BLOCK_K
#define PYFAST_ATTN_FWD_BLOCK_K 128
#endif
// Forward kv block: wider than the backward's because the output accumulator is re-read and rescaled once
// per kv block; 128 halves that traffic while the 48 x 128 score tile (24 KiB) still fits L1.
constexpr int64_t kBlockKFwd = PYFAST_ATTN_FWD_BLOCK_K;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
inline int64_t ceil_div(int64_t x, int64_t m) { return (x + m - 1) / m; }

// ---- element conversion -----------------------------------------------------------------------------------
inline float bf16_to_float(uint16_t x) {
  uint32_t bits = static_cast<uint32_t>(x) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
inline uint16_t float_to_bf16(float f) {  // round to nearest even; NaN stays NaN
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

// IEEE half <-> float. F16C does it in one instruction; the portable fallback rounds to nearest even too.
struct Half {
  uint16_t bits;
};
inline float half_to_float(uint16_t h) {
#if defined(__F16C__)
  return _cvtsh_ss(h);
#else
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  if (exponent == 0) {
    const float mag = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -mag : mag;
  }
  uint32_t bits = exponent == 31 ? (sign | 0x7f800000u | (mantissa << 13))
                                 : (sign | ((exponent + 112u) << 23) | (mantissa << 13));
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
#endif
}
inline uint16_t float_to_half(float f) {
#if defined(__F16C__)
  return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
#else
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) return sign | 0x7c00u | (x > 0x7f800000u ? 0x200u : 0u);  // inf, NaN
  if (x >= 0x477ff000u) return sign | 0x7c00u;                                     // rounds past 65504
  if (x < 0x38800000u) return sign | static_cast<uint16_t>(std::nearbyint(std::fabs(f) * 16777216.0f));  // subnormal
  x -= 0x38000000u;
  return sign | static_cast<uint16_t>((x + 0xfffu + ((x >> 13) & 1u)) >> 13);
#endif
}

template <typename T>
struct Elem;
template <>
struct Elem<float> {
  static float load(const float* p, int64_t i) { return p[i]; }
  static void store(float* p, int64_t i, float v) { p[i] = v; }
};
template <>
struct Elem<uint16_t> {  // bf16 bits
  static float load(const uint16_t* p, int64_t i) { return bf16_to_float(p[i]); }
  static void store(uint16_t* p, int64_t i, float v) { p[i] = float_to_bf16(v); }
};

template <>
struct Elem<Half> {
  static float load(const Half* p, int64_t i) { return half_to_float(p[i].bits); }
  static void store(Half* p, int64_t i, float v) { p[i].bits = float_to_half(v); }
};

// The CPU storage type of each DType the kernels take (PYFAST_DISPATCH_DTYPE gives the DType as a constant).
template <DType kDType>
struct Storage;
template <>
struct Storage<DType::kFloat32> {
  using type = float;
};
template <>
struct Storage<DType::kBFloat16> {
  using type = uint16_t;
};
template <>
struct Storage<DType::kFloat16> {
  using type = Half;
};
template <DType kDType>
using StorageOf = typename Storage<kDType>::type;

// dst[0:n_pad] = scale * src[0:n], zero-padded to n_pad.
template <typename T>
inline void load_row(const T* src, int64_t n, float scale, float* dst, int64_t n_pad) {
  for (int64_t c = 0; c < n; ++c) dst[c] = scale * Elem<T>::load(src, c);
  for (int64_t c = n; c < n_pad; ++c) dst[c] = 0.0f;
}
template <typename T>
inline void store_row(const float* src, int64_t n, float scale, T* dst) {
  for (int64_t c = 0; c < n; ++c) Elem<T>::store(dst, c, scale * src[c]);
}

// Rows [j0, j0 + nk) of a (rows x dim) matrix packed as ceil(nk/16) panels of (dim x 16), zero-padded keys:
// the B operand of Q K^T with contiguous 16-wide loads.
template <typename T>
void pack_panels(const T* base, int64_t row_stride, int64_t j0, int64_t nk, int64_t dim, float* dst) {
  const int64_t n_panels = ceil_div(nk, kPanel);
  std::fill(dst, dst + n_panels * dim * kPanel, 0.0f);
  for (int64_t j = 0; j < nk; ++j) {
    const T* row = base + (j0 + j) * row_stride;
    float* col = dst + (j / kPanel) * dim * kPanel + (j % kPanel);
    for (int64_t d = 0; d < dim; ++d) col[d * kPanel] = Elem<T>::load(row, d);
  }
}

// ---- sequence geometry ------------------------------------------------------------------------------------
struct Seq {
  int64_t q_len, kv_len;   // this batch entry's lengths
  int64_t q_row0, k_row0;  // varlen: its first token; padded layout: 0
};

inline Seq seq_of(const AttentionParams& p, int64_t b) {
  Seq s{p.q_len, p.kv_len, 0, 0};
  if (p.cu_seqlens_q != nullptr) {
    s.q_row0 = p.cu_seqlens_q[b];
    s.q_len = p.cu_seqlens_q[b + 1] - p.cu_seqlens_q[b];
    s.k_row0 = p.cu_seqlens_k[b];
    s.kv_len = p.cu_seqlens_k[b + 1] - p.cu_seqlens_k[b];
  }
  return s;
}

// Element offset of (b, h, row 0 of this sequence) in a Strided tensor.
inline int64_t base_offset(const Strided& t, const AttentionParams& p, int64_t b, int64_t h, int64_t row0) {
  return (p.cu_seqlens_q != nullptr ? row0 * t.row_stride : b * t.batch_stride) + h * t.head_stride;
}
inline int64_t lse_offset(const AttentionParams& p, int64_t b, int64_t h, int64_t row0) {
  return (p.cu_seqlens_q != nullptr ? row0 : b * p.lse_batch_stride) + h * p.lse_head_stride;
}

// ---- dropout ----------------------------------------------------------------------------------------------
// Keep factors for keys [j0, j0 + n) of query row i of (b, h): 0 or 1 / (1 - p). One Philox call gives four
// keys' uniforms (counter = (b, h, i, j / 4)), so the mask costs a quarter of a Philox per score.
inline void dropout_factors(const AttentionParams& p, int64_t b, int64_t h, int64_t i, int64_t j0, int64_t n,
                            float* factor) {
  const float keep_scale = 1.0f / (1.0f - p.dropout_p);
  const int64_t groups_per_row = ceil_div(p.kv_len, 4);
  const uint64_t row_counter = static_cast<uint64_t>(((b * p.q_heads + h) * p.q_len + i) * groups_per_row);
  int64_t j = j0;
  while (j < j0 + n) {
    const Philox4x32 r = philox_draw(p.seed, row_counter + static_cast<uint64_t>(j / 4), kDropoutStream);
    for (int64_t w = j % 4; w < 4 && j < j0 + n; ++w, ++j)
      factor[j - j0] = uint_to_unit_float(r.v[w]) >= p.dropout_p ? keep_scale : 0.0f;
  }
}

// ---- forward ----------------------------------------------------------------------------------------------
// Per-thread scratch. K and V of the current (batch, kv head) are packed once and reused by every q block the
// thread handles for that head (consecutive work items share heads).
struct FwdScratch {
  int64_t cached_b = -1, cached_h = -1;
  std::vector<float> k_panels;  // ceil(S/16) x E x 16
  std::vector<float> v_rows;    // S x Ev_pad
  std::vector<float> q_tile;    // kBlockQ x E, pre-scaled
  std::vector<float> scores;    // kBlockQ x kBlockKFwd
  std::vector<float> acc;       // kBlockQ x Ev_pad
  std::vector<float> row_max, row_sum, drop;
};

template <typename T>
void fwd_block(const AttentionParams& p, int64_t b, int64_t h, int64_t qb, FwdScratch& ws) {
  const Seq seq = seq_of(p, b);
  const int64_t i0 = qb * kBlockQ;
  if (i0 >= seq.q_len) return;
  const int64_t rows = std::min(kBlockQ, seq.q_len - i0);
  const int64_t E = p.head_dim, Ev = p.value_dim, Ev_pad = round_up(Ev, kPanel);
  const int64_t kv_h = h / (p.q_heads / p.kv_heads);
  const int64_t S = seq.kv_len;

  const T* qp = static_cast<const T*>(p.q.data) + base_offset(p.q, p, b, h, seq.q_row0);
  T* op = static_cast<T*>(p.out.data) + base_offset(p.out, p, b, h, seq.q_row0);
  float* lse = p.lse + lse_offset(p, b, h, seq.q_row0);
  // Keys this q block can see: causal stops at the block's last row (blocks above the diagonal are skipped).
  const int64_t kv_end = p.is_causal ? std::min(S, i0 + rows) : S;

  if (kv_end > 0 && (ws.cached_b != b || ws.cached_h != kv_h)) {
    const T* kp = static_cast<const T*>(p.k.data) + base_offset(p.k, p, b, kv_h, seq.k_row0);
    const T* vp = static_cast<const T*>(p.v.data) + base_offset(p.v, p, b, kv_h, seq.k_row0);
    ws.k_panels.resize(static_cast<size_t>(round_up(S, kPanel) * E));
    ws.v_rows.resize(static_cast<size_t>(S * Ev_pad));
    pack_panels(kp, p.k.row_stride, 0, S, E, ws.k_panels.data());
    for (int64_t j = 0; j < S; ++j) load_row(vp + j * p.v.row_stride, Ev, 1.0f, ws.v_rows.data() + j * Ev_pad, Ev_pad);
    ws.cached_b = b;
    ws.cached_h = kv_h;
  }
  float* q_tile = ws.q_tile.data();
  for (int64_t r = 0; r < rows; ++r) load_row(qp + (i0 + r) * p.q.row_stride, E, p.scale, q_tile + r * E, E);
  float* acc = ws.acc.data();
  std::fill(acc, acc + rows * Ev_pad, 0.0f);
  float* row_max = ws.row_max.data();
  float* row_sum = ws.row_sum.data();
  std::fill(row_max, row_max + rows, kNegInf);
  std::fill(row_sum, row_sum + rows, 0.0f);
  const float* mask = p.mask.data == nullptr
                          ? nullptr
                          : static_cast<const float*>(p.mask.data) + b * p.mask.batch_stride + h * p.mask.head_stride;

  for (int64_t j0 = 0; j0 < kv_end; j0 += kBlockKFwd) {
    const int64_t nk = std::min(kBlockKFwd, kv_end - j0);
    const int64_t n_panels = ceil_div(nk, kPanel);
    const int64_t width = n_panels * kPanel;
    float* scores = ws.scores.data();
    // scores (rows x width) = (scale q) k^T
    gemm_panels(rows, n_panels, E, q_tile, E, 1, ws.k_panels.data() + (j0 / kPanel) * E * kPanel, E * kPanel,
                kPanel, scores, kBlockKFwd, false);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = i0 + r;
      float* s = scores + r * kBlockKFwd;
      const int64_t n_valid = p.is_causal ? std::max<int64_t>(0, std::min(nk, i - j0 + 1)) : nk;
      if (mask != nullptr) {
        const float* m = mask + i * p.mask.row_stride + j0;
        for (int64_t c = 0; c < n_valid; ++c) s[c] += m[c];
      }
      for (int64_t c = n_valid; c < width; ++c) s[c] = kNegInf;
      const float block_max = row_max_nan(s, width);  // columns past n_valid hold -inf
      const float new_max = std::isnan(block_max) || block_max > row_max[r] ? block_max : row_max[r];
      if (new_max == kNegInf) {  // nothing visible yet in this row: probabilities 0, state unchanged
        std::fill(s, s + width, 0.0f);
        continue;
      }
      const float rescale = std::exp(row_max[r] - new_max);  // exp(-inf) = 0 on the first visible block
      row_sum[r] = row_sum[r] * rescale + exp_shifted_sum(s, new_max, s, width);
      row_max[r] = new_max;
      if (rescale != 1.0f) {
        float* a = acc + r * Ev_pad;
        for (int64_t c = 0; c < Ev_pad; ++c) a[c] *= rescale;
      }
      if (p.dropout_p > 0.0f) {
        float* f = ws.drop.data();
        dropout_factors(p, b, h, i, j0, nk, f);
        for (int64_t c = 0; c < nk; ++c) s[c] *= f[c];
      }
    }
    // acc (rows x Ev_pad) += P (rows x nk) v[j0 : j0 + nk]
    gemm_panels(rows, Ev_pad / kPanel, nk, scores, kBlockKFwd, 1, ws.v_rows.data() + j0 * Ev_pad, kPanel, Ev_pad, acc,
                Ev_pad, true);
  }
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = i0 + r;
    if (row_sum[r] > 0.0f || std::isnan(row_sum[r])) {
      store_row(acc + r * Ev_pad, Ev, 1.0f / row_sum[r], op + i * p.out.row_stride);
      lse[i] = row_max[r] + std::log(row_sum[r]);
    } else {  // the mask allows no key: output 0, lse -inf (torch's CPU flash kernel also returns 0)
      std::vector<float> zeros(static_cast<size_t>(Ev), 0.0f);
      store_row(zeros.data(), Ev, 1.0f, op + i * p.out.row_stride);
      lse[i] = kNegInf;
    }
  }
}

template <typename T>
void fwd_impl(const AttentionParams& p) {
  const int64_t n_qblocks = ceil_div(p.q_len, kBlockQ);
  const int64_t n_items = p.batch * p.q_heads * n_qblocks;
  const int64_t Ev_pad = round_up(p.value_dim, kPanel);
  parallel_for(n_items, 1, [&](int64_t begin, int64_t end, int) {
    FwdScratch ws;
    ws.q_tile.resize(static_cast<size_t>(kBlockQ * p.head_dim));
    ws.scores.resize(static_cast<size_t>(kBlockQ * kBlockKFwd));
    ws.acc.resize(static_cast<size_t>(kBlockQ * Ev_pad));
    ws.row_max.resize(kBlockQ);
    ws.row_sum.resize(kBlockQ);
    ws.drop.resize(kBlockKFwd);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t bh = item / n_qblocks, t = item % n_qblocks;
      // Zig-zag q blocks (0, n-1, 1, n-2, ...): with causal masking late blocks cost more, and threads take
      // contiguous item ranges, so pairing cheap with dear blocks balances them.
      const int64_t qb = (t % 2 == 0) ? t / 2 : n_qblocks - 1 - t / 2;
      fwd_block<T>(p, bh / p.q_heads, bh % p.q_heads, qb, ws);
    }
  });
}

// ---- backward ---------------------------------------------------------------------------------------------
struct BwdScratch {
  int64_t cached_b = -1, cached_h = -1;
  // Per q head of the current GQA group: scaled q (L x E_pad), dout (L x Ev_pad), delta and lse (L).
  std::vector<float> q_rows, do_rows, delta, lse;
  std::vector<float> k_panels, k_rows, v_panels;  // the current kv block
  std::vector<float> dk_acc, dv_acc;               // kBlockK x E_pad, kBlockK x Ev_pad
  std::vector<float> probs, dprobs;                // kBlockQ x kBlockK
  std::vector<float> drop;                         // kBlockQ x kBlockK dropout factors
};

template <typename T>
void bwd_item(const AttentionBackwardParams& bp, int64_t b, int64_t kv_h, int64_t chunk, int64_t n_chunks,
              float* dq_partial, BwdScratch& ws) {
  const AttentionParams& p = bp.fwd;
  const Seq seq = seq_of(p, b);
  const int64_t L = seq.q_len, S = seq.kv_len;
  const int64_t E = p.head_dim, Ev = p.value_dim;
  const int64_t E_pad = round_up(E, kPanel), Ev_pad = round_up(Ev, kPanel);
  const int64_t group = p.q_heads / p.kv_heads;
  const int64_t n_kblocks = ceil_div(S, kBlockK);
  const int64_t kb_begin = chunk * n_kblocks / n_chunks, kb_end = (chunk + 1) * n_kblocks / n_chunks;
  if (kb_begin >= kb_end) return;

  if (ws.cached_b != b || ws.cached_h != kv_h) {  // pack the group's q, dout, delta = rowsum(dout * out), lse
    ws.q_rows.resize(static_cast<size_t>(group * L * E_pad));
    ws.do_rows.resize(static_cast<size_t>(group * L * Ev_pad));
    ws.delta.resize(static_cast<size_t>(group * L));
    ws.lse.resize(static_cast<size_t>(group * L));
    for (int64_t g = 0; g < group; ++g) {
      const int64_t h = kv_h * group + g;
      const T* qp = static_cast<const T*>(p.q.data) + base_offset(p.q, p, b, h, seq.q_row0);
      const T* dop = static_cast<const T*>(bp.dout.data) + base_offset(bp.dout, p, b, h, seq.q_row0);
      const T* op = static_cast<const T*>(p.out.data) + base_offset(p.out, p, b, h, seq.q_row0);
      const float* lse = p.lse + lse_offset(p, b, h, seq.q_row0);
      for (int64_t i = 0; i < L; ++i) {
        load_row(qp + i * p.q.row_stride, E, p.scale, ws.q_rows.data() + (g * L + i) * E_pad, E_pad);
        float* dorow = ws.do_rows.data() + (g * L + i) * Ev_pad;
        load_row(dop + i * bp.dout.row_stride, Ev, 1.0f, dorow, Ev_pad);
        float delta = 0.0f;
        for (int64_t c = 0; c < Ev; ++c) delta += dorow[c] * Elem<T>::load(op + i * p.out.row_stride, c);
        ws.delta[g * L + i] = delta;
        // A fully masked row (lse -inf) has probabilities 0: +inf makes exp(s - lse) exactly 0.
        ws.lse[g * L + i] = lse[i] == kNegInf ? std::numeric_limits<float>::infinity() : lse[i];
      }
    }
    ws.cached_b = b;
    ws.cached_h = kv_h;
  }

  const T* kp = static_cast<const T*>(p.k.data) + base_offset(p.k, p, b, kv_h, seq.k_row0);
  const T* vp = static_cast<const T*>(p.v.data) + base_offset(p.v, p, b, kv_h, seq.k_row0);
  T* dkp = static_cast<T*>(bp.dk.data) + base_offset(bp.dk, p, b, kv_h, seq.k_row0);
  T* dvp = static_cast<T*>(bp.dv.data) + base_offset(bp.dv, p, b, kv_h, seq.k_row0);
  float* probs = ws.probs.data();
  float* dprobs = ws.dprobs.data();
  const bool dropout = p.dropout_p > 0.0f;

  for (int64_t kb = kb_begin; kb < kb_end; ++kb) {
    const int64_t j0 = kb * kBlockK;
    const int64_t nk = std::min(kBlockK, S - j0);
    const int64_t n_panels = ceil_div(nk, kPanel);
    const int64_t width = n_panels * kPanel;
    pack_panels(kp, p.k.row_stride, j0, nk, E, ws.k_panels.data());
    pack_panels(vp, p.v.row_stride, j0, nk, Ev, ws.v_panels.data());
    for (int64_t j = 0; j < nk; ++j)
      load_row(kp + (j0 + j) * p.k.row_stride, E, 1.0f, ws.k_rows.data() + j * E_pad, E_pad);
    float* dk_acc = ws.dk_acc.data();
    float* dv_acc = ws.dv_acc.data();
    std::fill(dk_acc, dk_acc + nk * E_pad, 0.0f);
    std::fill(dv_acc, dv_acc + nk * Ev_pad, 0.0f);

    for (int64_t g = 0; g < group; ++g) {
      const int64_t h = kv_h * group + g;
      const float* mask = p.mask.data == nullptr ? nullptr
                                                 : static_cast<const float*>(p.mask.data) +
                                                       b * p.mask.batch_stride + h * p.mask.head_stride;
      const float* q_rows = ws.q_rows.data() + g * L * E_pad;
      const float* do_rows = ws.do_rows.data() + g * L * Ev_pad;
      float* dq = dq_partial + ((chunk * p.batch + b) * p.q_heads + h) * p.q_len * E_pad;
      // Causal: q blocks wholly above this kv block see none of it and are skipped.
      const int64_t ib_begin = p.is_causal ? j0 / kBlockQ : 0;
      for (int64_t i0 = ib_begin * kBlockQ; i0 < L; i0 += kBlockQ) {
        const int64_t rows = std::min(kBlockQ, L - i0);
        // probs (rows x width) = exp((scale q) k^T + mask - lse)
        gemm_panels(rows, n_panels, E, q_rows + i0 * E_pad, E_pad, 1, ws.k_panels.data(), E * kPanel, kPanel, probs,
                    kBlockK, false);
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t i = i0 + r;
          float* s = probs + r * kBlockK;
          const int64_t n_valid = p.is_causal ? std::max<int64_t>(0, std::min(nk, i - j0 + 1)) : nk;
          if (mask != nullptr) {
            const float* m = mask + i * p.mask.row_stride + j0;
            for (int64_t c = 0; c < n_valid; ++c) s[c] += m[c];
          }
          for (int64_t c = n_valid; c < width; ++c) s[c] = kNegInf;
          exp_shifted_sum(s, ws.lse[g * L + i], s, width);
        }
        // With dropout, dV sees the dropped probabilities: drop = P * keep / (1 - p).
        const float* p_for_dv = probs;
        if (dropout) {
          float* drop = ws.drop.data();
          for (int64_t r = 0; r < rows; ++r) {
            dropout_factors(p, b, h, i0 + r, j0, nk, drop + r * kBlockK);
            for (int64_t c = nk; c < width; ++c) drop[r * kBlockK + c] = 0.0f;
          }
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < width; ++c)
              dprobs[r * kBlockK + c] = probs[r * kBlockK + c] * drop[r * kBlockK + c];
          p_for_dv = dprobs;
        }
        // dv (nk x Ev_pad) += P^T (nk x rows) dout (rows x Ev_pad)
        gemm_panels(nk, Ev_pad / kPanel, rows, p_for_dv, 1, kBlockK, do_rows + i0 * Ev_pad, kPanel, Ev_pad, dv_acc,
                    Ev_pad, true);
        // dP (rows x width) = dout v^T
        gemm_panels(rows, n_panels, Ev, do_rows + i0 * Ev_pad, Ev_pad, 1, ws.v_panels.data(), Ev * kPanel, kPanel,
                    dprobs, kBlockK, false);
        // dS = P * (dP * keep - delta): the softmax backward, row by row
        for (int64_t r = 0; r < rows; ++r) {
          const float delta = ws.delta[g * L + i0 + r];
          float* ds = dprobs + r * kBlockK;
          const float* pr = probs + r * kBlockK;
          if (dropout) {
            const float* f = ws.drop.data() + r * kBlockK;
            for (int64_t c = 0; c < width; ++c) ds[c] = pr[c] * (ds[c] * f[c] - delta);
          } else {
            for (int64_t c = 0; c < width; ++c) ds[c] = pr[c] * (ds[c] - delta);
          }
        }
        // dk (nk x E_pad) += dS^T (nk x rows) (scale q) (rows x E_pad)
        gemm_panels(nk, E_pad / kPanel, rows, dprobs, 1, kBlockK, q_rows + i0 * E_pad, kPanel, E_pad, dk_acc, E_pad,
                    true);
        // dq (rows x E_pad) += dS (rows x nk) k (nk x E_pad); scaled once at the end
        gemm_panels(rows, E_pad / kPanel, nk, dprobs, kBlockK, 1, ws.k_rows.data(), kPanel, E_pad, dq + i0 * E_pad,
                    E_pad, true);
      }
    }
    for (int64_t j = 0; j < nk; ++j) {
      store_row(dk_acc + j * E_pad, E, 1.0f, dkp + (j0 + j) * bp.dk.row_stride);
      store_row(dv_acc + j * Ev_pad, Ev, 1.0f, dvp + (j0 + j) * bp.dv.row_stride);
    }
  }
}

template <typename T>
void bwd_impl(const AttentionBackwardParams& bp) {
  const AttentionParams& p = bp.fwd;
  const int64_t E = p.head_dim, Ev = p.value_dim;
  const int64_t E_pad = round_up(E, kPanel), Ev_pad = round_up(Ev, kPanel);
  const int64_t n_kblocks = std::max<int64_t>(1, ceil_div(p.kv_len, kBlockK));
  const int threads = get_num_threads();
  // Split each (batch, kv head) over kv chunks until there are >= 4 items per thread (or one block per chunk):
  // more parallelism than torch's batch x heads, at the price of one fp32 dQ slice per chunk.
  const int64_t heads = p.batch * p.kv_heads;
  int64_t n_chunks = 1;
  while (heads * n_chunks < 4 * threads && n_chunks < n_kblocks) ++n_chunks;
  const int64_t slice = p.batch * p.q_heads * p.q_len * E_pad;
  std::vector<float> dq_partial(static_cast<size_t>(n_chunks * slice), 0.0f);

  parallel_for(heads * n_chunks, 1, [&](int64_t begin, int64_t end, int) {
    BwdScratch ws;
    ws.k_panels.resize(static_cast<size_t>(kBlockK * E));
    ws.k_rows.resize(static_cast<size_t>(kBlockK * E_pad));
    ws.v_panels.resize(static_cast<size_t>(kBlockK * Ev));
    ws.dk_acc.resize(static_cast<size_t>(kBlockK * E_pad));
    ws.dv_acc.resize(static_cast<size_t>(kBlockK * Ev_pad));
    ws.probs.resize(static_cast<size_t>(kBlockQ * kBlockK));
    ws.dprobs.resize(static_cast<size_t>(kBlockQ * kBlockK));
    if (p.dropout_p > 0.0f) ws.drop.resize(static_cast<size_t>(kBlockQ * kBlockK));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t head = item / n_chunks, chunk = item % n_chunks;
      bwd_item<T>(bp, head / p.kv_heads, head % p.kv_heads, chunk, n_chunks, dq_partial.data(), ws);
    }
  });

  // dq = scale * sum over chunks, in chunk order (deterministic for a given thread count).
  const int64_t n_rows = p.batch * p.q_heads * p.q_len;
  parallel_for(n_rows, 256, [&](int64_t begin, int64_t end, int) {
    std::vector<float> row(static_cast<size_t>(E_pad));
    for (int64_t r = begin; r < end; ++r) {
      const int64_t bh = r / p.q_len, i = r % p.q_len;
      const int64_t b = bh / p.q_heads, h = bh % p.q_heads;
      const Seq seq = seq_of(p, b);
      if (i >= seq.q_len) continue;
      std::fill(row.begin(), row.end(), 0.0f);
      for (int64_t c = 0; c < n_chunks; ++c) {
        const float* src = dq_partial.data() + c * slice + r * E_pad;
        for (int64_t d = 0; d < E; ++d) row[d] += src[d];
      }
      T* dst = static_cast<T*>(bp.dq.data) + base_offset(bp.dq, p, b, h, seq.q_row0) + i * bp.dq.row_stride;
      store_row(row.data(), E, p.scale, dst);
    }
  });
}

// The shared checks, then the cu_seqlens values (host memory here): every length within its declared maximum, so
// no sequence reads past a buffer.
void check_params(const AttentionParams& p, const char* op) {
  check_attention_params(p, op);
  if (p.cu_seqlens_q == nullptr) return;
  for (int64_t b = 0; b < p.batch; ++b) {
    const int64_t lq = p.cu_seqlens_q[b + 1] - p.cu_seqlens_q[b];
    const int64_t lk = p.cu_seqlens_k[b + 1] - p.cu_seqlens_k[b];
    PYFAST_CHECK_ARG(lq >= 0 && lq <= p.q_len && lk >= 0 && lk <= p.kv_len && p.cu_seqlens_q[b] >= 0 &&
                         p.cu_seqlens_k[b] >= 0,
                     op, "sequence ", b, " has lengths (", lq, ", ", lk, ") outside [0, max_seqlen]");
  }
}

}  // namespace

void attention_fwd_cpu(const AttentionParams& params) {
  check_params(params, "attention_fwd");
  PYFAST_DISPATCH_DTYPE(params.dtype, "attention_fwd", kDType, { fwd_impl<StorageOf<kDType>>(params); });
}

void attention_bwd_cpu(const AttentionBackwardParams& params) {
  check_params(params.fwd, "attention_bwd");
  PYFAST_DISPATCH_DTYPE(params.fwd.dtype, "attention_bwd", kDType, { bwd_impl<StorageOf<kDType>>(params); });
}

void attention_dropout_keep_mask(uint8_t* keep, int64_t batch, int64_t heads, int64_t q_len, int64_t kv_len,
                                 float dropout_p, uint64_t seed) {
  const AttentionParams p =
      dropout_keep_mask_params(batch, heads, q_len, kv_len, dropout_p, seed, "attention_dropout_mask");
  parallel_for(batch * heads * q_len, 64, [&](int64_t begin, int64_t end, int) {
    std::vector<float> f(static_cast<size_t>(kv_len));
    for (int64_t r = begin; r < end; ++r) {
      const int64_t bh = r / q_len, i = r % q_len;
      dropout_factors(p, bh / heads, bh % heads, i, 0, kv_len, f.data());
      for (int64_t j = 0; j < kv_len; ++j) keep[r * kv_len + j] = f[j] != 0.0f ? 1 : 0;
    }
  });
}

}  // namespace attention
}  // namespace pyfast
