// word2vec training on a CUDA device (skip-gram with shared or per-pair negatives, CBOW; negative sampling): the
// semantics and draw keys are in word2vec.h (TrainCudaParams). A persistent grid of warps takes chunks of the
// corpus; a warp subsamples its chunk plus a `window` halo with ballot/popc compaction into shared memory, then
// trains each kept centre as one block (the window's contexts against the K+1 targets), rows staged in shared
// memory, dot products by a shared-memory transpose, updates by atomicAdd. Limits: the whole corpus lives on the
// device (no streaming of corpora larger than GPU memory); context rows are re-read per centre (FULL-W2V's
// window reuse is not done), so this is a first correct version, not the bandwidth floor.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "common/philox.h"
#include "word2vec/word2vec.h"

namespace pyfast::w2v {
namespace {

constexpr int kPartialStride = 33;  // (B*T, 32) per-lane partial dots, padded: lane r reads a row conflict-free
constexpr int kMaxWarpsPerBlock = 8;
constexpr int64_t kSmemPerBlock = 96 * 1024;   // what a block asks for at most (two blocks per SM fit on sm_80)
constexpr int64_t kSmemMax = 160 * 1024;       // one warp larger than this: refused (sm_80's opt-in limit ~163 KB)

__device__ __forceinline__ int64_t imin64(int64_t a, int64_t b) { return a < b ? a : b; }
__device__ __forceinline__ int64_t imax64(int64_t a, int64_t b) { return a > b ? a : b; }

PYFAST_HD Philox4x32 draw(const TrainCudaParams& p, int64_t pos, uint32_t kind) {
  const uint64_t u = static_cast<uint64_t>(pos);
  return philox4x32_10(static_cast<uint32_t>(u), static_cast<uint32_t>(u >> 32), static_cast<uint32_t>(p.epoch), kind,
                       static_cast<uint32_t>(p.seed), static_cast<uint32_t>(p.seed >> 32));
}

// AliasTable::sample with (lo, hi) as the 64-bit value's halves.
__device__ __forceinline__ int32_t noise_sample(const TrainCudaParams& p, uint32_t lo, uint32_t hi) {
  const uint32_t col = uint_below(lo, static_cast<uint32_t>(p.vocab_size));
  return static_cast<int32_t>(hi < p.noise_threshold[col] ? col : p.noise_alias[col]);
}

// Negative k (0-based) of the centre at pos: shared set (pair < 0) or context slot `pair`'s own set.
__device__ __forceinline__ int32_t negative_at(const TrainCudaParams& p, int64_t pos, int k, int pair) {
  const uint32_t base = pair < 0 ? kCudaDrawNegatives : kCudaDrawPairNegatives + static_cast<uint32_t>(pair) * 65536u;
  const Philox4x32 x = draw(p, pos, base + static_cast<uint32_t>(k / 2));
  return (k & 1) ? noise_sample(p, x.v[2], x.v[3]) : noise_sample(p, x.v[0], x.v[1]);
}

__device__ __forceinline__ void report(int64_t* error, int64_t value) {
  atomicMin(reinterpret_cast<unsigned long long*>(error), static_cast<unsigned long long>(value));
}

// Subsampling decision of position q (false for a bad id, which is reported and never used as a row index).
__device__ __forceinline__ bool keep_at(const TrainCudaParams& p, int64_t q, int32_t* id_out) {
  const int32_t id = p.ids[q];
  *id_out = id;
  if (id < 0 || id >= p.vocab_size) {
    report(p.error, q);
    return false;
  }
  const float keep = p.keep_prob[id];
  if (keep >= 1.0f) return true;
  return uint_to_unit_float(draw(p, q, kCudaDrawCentre).v[0]) < keep;
}

__device__ __forceinline__ double log_loss_d(float f, bool positive) {
  const double z = positive ? static_cast<double>(f) : -static_cast<double>(f);
  return z >= 0 ? log1p(exp(-z)) : -z + log1p(exp(z));
}

// The CPU's target_gradient with an exact sigmoid: target t of targets (t = 0 positive); a negative equal to the
// positive is skipped (no loss either), a logit outside (-kMaxExp, kMaxExp) gives no update but counts in the loss.
__device__ __forceinline__ float coefficient(float f, int t, const int32_t* targets, float alpha, bool compute_loss,
                                             double* loss) {
  if (t > 0 && targets[t] == targets[0]) return 0.0f;
  if (compute_loss) *loss += log_loss_d(f, t == 0);
  if (!(f > -kMaxExp && f < kMaxExp)) return 0.0f;
  const float s = 1.0f / (1.0f + expf(-f));
  return ((t == 0 ? 1.0f : 0.0f) - s) * alpha;
}

// One warp's shared memory, carved from the block's dynamic shared memory.
struct WarpScratch {
  int64_t* kpos;  // (cap,) positions of the kept words: halo before at [window - nb, window), centres from window
  int32_t* kid;   // (cap,) their ids
  int32_t* targets;  // (2, T) the current block's target ids: two buffers, alternating by block
  int32_t* ctx;      // (2, 2 window) its context ids, alternating likewise
  float* x;          // (2 window, dim) context rows as read on entry
  float* y;          // (T, dim) target rows as read on entry
  float* h;          // (dim,) CBOW hidden
  float* partial;    // (max(2 window, 1) * T, kPartialStride)
  float* g;          // (2 window, T) coefficients
};

struct Layout {
  int64_t kpos, kid, targets, ctx, x, y, h, partial, g, total;
};

PYFAST_HD int64_t align16(int64_t n) { return (n + 15) & ~int64_t{15}; }

PYFAST_HD Layout layout(int dim, int window, int negative, int max_chunk_len) {
  const int64_t cap = static_cast<int64_t>(max_chunk_len) + 2 * window, T = negative + 1, B = 2 * window;
  Layout l{};
  int64_t o = 0;
  l.kpos = o; o = align16(o + 8 * cap);
  l.kid = o; o = align16(o + 4 * cap);
  l.targets = o; o = align16(o + 8 * T);
  l.ctx = o; o = align16(o + 8 * B);
  l.x = o; o = align16(o + 4 * B * dim);
  l.y = o; o = align16(o + 4 * T * dim);
  l.h = o; o = align16(o + 4 * static_cast<int64_t>(dim));
  l.partial = o; o = align16(o + 4 * B * T * kPartialStride);
  l.g = o; o = align16(o + 4 * B * T);
  l.total = o;
  return l;
}

__device__ WarpScratch carve(unsigned char* base, const Layout& l) {
  WarpScratch s;
  s.kpos = reinterpret_cast<int64_t*>(base + l.kpos);
  s.kid = reinterpret_cast<int32_t*>(base + l.kid);
  s.targets = reinterpret_cast<int32_t*>(base + l.targets);
  s.ctx = reinterpret_cast<int32_t*>(base + l.ctx);
  s.x = reinterpret_cast<float*>(base + l.x);
  s.y = reinterpret_cast<float*>(base + l.y);
  s.h = reinterpret_cast<float*>(base + l.h);
  s.partial = reinterpret_cast<float*>(base + l.partial);
  s.g = reinterpret_cast<float*>(base + l.g);
  return s;
}

// Rows of the B contexts (ctx) and T targets (s.targets) into shared memory, lane l taking columns l, l + 32, ...:
// each lane later reads only its own columns, so no sync is needed before it uses them. Loads bypass L1 (__ldcg):
// the tables are updated by atomics, which land in L2, and a row this SM cached earlier would be stale.
__device__ __forceinline__ void gather_rows(const TrainCudaParams& p, const WarpScratch& s, const int32_t* ctx, int B,
                                            int T, int lane) {
  const int64_t d = p.dim;
  for (int b = 0; b < B; ++b) {
    const float* row = p.syn0 + static_cast<int64_t>(ctx[b]) * d;
    for (int64_t j = lane; j < d; j += 32) s.x[b * d + j] = __ldcg(row + j);
  }
  for (int t = 0; t < T; ++t) {
    const float* row = p.syn1neg + static_cast<int64_t>(s.targets[t]) * d;
    for (int64_t j = lane; j < d; j += 32) s.y[t * d + j] = __ldcg(row + j);
  }
}

// n dot products: row a_of(i) of `a` against row b_of(i) of s.y, i < n. Each lane sums its columns into
// s.partial[i][lane]; after one __syncwarp lane r adds row r's 32 partials in lane order (fixed, so the result does
// not depend on timing) and turns it into a coefficient: n shuffle-free reductions for two warp barriers.
template <typename Coef>
__device__ __forceinline__ void block_coefficients(const TrainCudaParams& p, const WarpScratch& s, const float* a,
                                                   int n, int T, int lane, Coef coef) {
  const int64_t d = p.dim;
  for (int i = 0; i < n; ++i) {
    const float* ar = a + static_cast<int64_t>(i / T) * d;
    const float* yr = s.y + static_cast<int64_t>(i % T) * d;
    float acc = 0.0f;
    for (int64_t j = lane; j < d; j += 32) acc += ar[j] * yr[j];
    s.partial[i * kPartialStride + lane] = acc;
  }
  __syncwarp();
  for (int i = lane; i < n; i += 32) {
    float f = 0.0f;
    for (int r = 0; r < 32; ++r) f += s.partial[i * kPartialStride + r];
    s.g[i] = coef(f, i % T);
  }
  __syncwarp();
}

// Skip-gram block: B contexts (ctx) against T targets (s.targets), all from the rows as they were on entry:
//   G (B, T) = (label - sigmoid(X Y^T)) * alpha;  syn1neg[targets] += G^T X;  syn0[contexts] += G Y.
// Duplicate ids among contexts or targets add their deltas (atomicAdd), as the CPU's sequential updates do.
__device__ void sg_block_warp(const TrainCudaParams& p, const WarpScratch& s, const int32_t* ctx, int B, int T,
                              float alpha, int lane, double* loss) {
  const int64_t d = p.dim;
  gather_rows(p, s, ctx, B, T, lane);
  const bool want_loss = p.compute_loss != 0;
  block_coefficients(p, s, s.x, B * T, T, lane, [&](float f, int t) {
    return coefficient(f, t, s.targets, alpha, want_loss, loss);
  });
  for (int64_t j = lane; j < d; j += 32) {
    for (int t = 0; t < T; ++t) {
      float dy = 0.0f;
      bool any = false;
      for (int b = 0; b < B; ++b) {
        const float gb = s.g[b * T + t];
        dy += gb * s.x[b * d + j];
        any |= gb != 0.0f;
      }
      if (any) atomicAdd(p.syn1neg + static_cast<int64_t>(s.targets[t]) * d + j, dy);
    }
    for (int b = 0; b < B; ++b) {
      float dx = 0.0f;
      for (int t = 0; t < T; ++t) dx += s.g[b * T + t] * s.y[t * d + j];
      atomicAdd(p.syn0 + static_cast<int64_t>(ctx[b]) * d + j, dx);
    }
  }
  // No barrier here: the next block's staging barrier (stage_targets) orders these writes before its gathers, and
  // no lane rewrites x / y / g before every lane has passed that barrier.
}

// CBOW block: h = mean (cbow_mean) or sum of the B context rows; g_t = (label_t - sigmoid(h . y_t)) * alpha;
// y_t += g_t h; every context row += e (mean) or e / B (sum), e = sum_t g_t y_t (the CPU's and gensim's rule).
__device__ void cbow_block_warp(const TrainCudaParams& p, const WarpScratch& s, int B, int T, float alpha, int lane,
                                double* loss) {
  const int64_t d = p.dim;
  gather_rows(p, s, s.ctx, B, T, lane);
  const float scale = p.cbow_mean ? 1.0f / static_cast<float>(B) : 1.0f;
  for (int64_t j = lane; j < d; j += 32) {
    float acc = 0.0f;
    for (int b = 0; b < B; ++b) acc += scale * s.x[b * d + j];
    s.h[j] = acc;
  }
  const bool want_loss = p.compute_loss != 0;
  block_coefficients(p, s, s.h, T, T, lane, [&](float f, int t) {
    return coefficient(f, t, s.targets, alpha, want_loss, loss);
  });
  const float e_scale = p.cbow_mean ? 1.0f : 1.0f / static_cast<float>(B);
  for (int64_t j = lane; j < d; j += 32) {
    float e = 0.0f;
    for (int t = 0; t < T; ++t) {
      const float gt = s.g[t];
      e += gt * s.y[t * d + j];
      if (gt != 0.0f) atomicAdd(p.syn1neg + static_cast<int64_t>(s.targets[t]) * d + j, gt * s.h[j]);
    }
    for (int b = 0; b < B; ++b) atomicAdd(p.syn0 + static_cast<int64_t>(s.ctx[b]) * d + j, e_scale * e);
  }
}

__device__ __forceinline__ float alpha_at(const TrainCudaParams& p, int64_t done) {
  const double progress = static_cast<double>(done) / static_cast<double>(p.total_words);
  const double a = p.alpha0 - (static_cast<double>(p.alpha0) - p.min_alpha) * progress;
  return static_cast<float>(a > p.min_alpha ? a : static_cast<double>(p.min_alpha));
}

// The block's targets and its B contexts (the kept words from lo, skipping the centre at i) into the buffer of
// parity `block & 1`, then the block's one staging barrier. One barrier suffices: a lane still updating the
// previous block reads only the other buffer and its own columns of x / y, and it must reach this barrier before
// any lane gets to the block after, which reuses the previous block's buffer. The barrier also
// orders the previous block's global writes before this block's gathers.
__device__ __forceinline__ WarpScratch stage_block(const TrainCudaParams& p, const WarpScratch& s, int64_t block,
                                                   int32_t centre, int64_t pos, int pair, int lo, int i, int B,
                                                   int lane) {
  WarpScratch sb = s;
  sb.targets = s.targets + (block & 1) * (p.negative + 1);
  sb.ctx = s.ctx + (block & 1) * 2 * p.window;
  for (int t = lane; t <= p.negative; t += 32) sb.targets[t] = t == 0 ? centre : negative_at(p, pos, t - 1, pair);
  for (int b = lane; b < B; b += 32) sb.ctx[b] = s.kid[lo + b + (lo + b >= i ? 1 : 0)];
  __syncwarp();
  return sb;
}

__device__ double warp_sum_d(double x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(cuda::kFullWarp, x, offset);
  return x;
}

// Launched with blockDim.x = 32 * warps_per_block; warp w of the grid takes chunks w, w + W, ... (W = all warps),
// so with one warp the chunks run in order. Every branch on chunk or centre data is warp-uniform (those values are
// read from shared memory or computed alike by all lanes), so the full-mask warp primitives are safe.
__global__ void __launch_bounds__(32 * kMaxWarpsPerBlock)
    w2v_train_kernel(const TrainCudaParams p, const Layout l, int warps_per_block) {
  extern __shared__ double w2v_smem[];
  const int lane = static_cast<int>(threadIdx.x & 31);
  const int warp_in_block = static_cast<int>(threadIdx.x >> 5);
  const WarpScratch s = carve(reinterpret_cast<unsigned char*>(w2v_smem) + warp_in_block * l.total, l);
  const int64_t warps_total = static_cast<int64_t>(gridDim.x) * warps_per_block;
  const int window = p.window, T = p.negative + 1;
  const unsigned lanes_below = (1u << lane) - 1u;
  int64_t blocks = 0;  // blocks this warp has staged: picks the ctx / targets buffer

  for (int64_t c = static_cast<int64_t>(blockIdx.x) * warps_per_block + warp_in_block; c < p.n_chunks;
       c += warps_total) {
    const int64_t c0 = p.chunks[4 * c], c1 = p.chunks[4 * c + 1], p0 = p.chunks[4 * c + 2], p1 = p.chunks[4 * c + 3];
    if (!(0 <= p0 && p0 <= c0 && c0 <= c1 && c1 <= p1 && p1 <= p.n_ids && c1 - c0 <= p.max_chunk_len)) {
      if (lane == 0) {
        report(p.error + 1, c);
        p.chunk_loss[c] = 0.0;
        p.chunk_counts[2 * c] = p.chunk_counts[2 * c + 1] = 0;
      }
      continue;
    }
    const float alpha = alpha_at(p, p.progress_base + c0);
    __syncwarp();  // the previous chunk's readers of kpos / kid (stage_block) are done
    // Halo before the chunk: the nearest `window` kept words of [p0, c0), nearest first by lane, stored so that
    // they end just before slot `window` in corpus order.
    int nb = 0;
    for (int64_t q0 = c0 - 1; q0 >= p0 && nb < window; q0 -= 32) {
      const int64_t q = q0 - lane;
      int32_t id = 0;
      const bool k = q >= p0 && keep_at(p, q, &id);
      const unsigned m = __ballot_sync(cuda::kFullWarp, k);
      const int rank = nb + __popc(m & lanes_below);
      if (k && rank < window) {
        s.kpos[window - 1 - rank] = q;
        s.kid[window - 1 - rank] = id;
      }
      nb += __popc(m);
    }
    nb = nb < window ? nb : window;
    // The chunk's own kept words (the centres), compacted in order from slot `window`.
    int nc = 0;
    for (int64_t q0 = c0; q0 < c1; q0 += 32) {
      const int64_t q = q0 + lane;
      int32_t id = 0;
      const bool k = q < c1 && keep_at(p, q, &id);
      const unsigned m = __ballot_sync(cuda::kFullWarp, k);
      if (k) {
        const int slot = window + nc + __popc(m & lanes_below);
        s.kpos[slot] = q;
        s.kid[slot] = id;
      }
      nc += __popc(m);
    }
    // Halo after: the first `window` kept words of [c1, p1).
    int nf = 0;
    for (int64_t q0 = c1; q0 < p1 && nf < window; q0 += 32) {
      const int64_t q = q0 + lane;
      int32_t id = 0;
      const bool k = q < p1 && keep_at(p, q, &id);
      const unsigned m = __ballot_sync(cuda::kFullWarp, k);
      const int rank = nf + __popc(m & lanes_below);
      if (k && rank < window) {
        s.kpos[window + nc + rank] = q;
        s.kid[window + nc + rank] = id;
      }
      nf += __popc(m);
    }
    nf = nf < window ? nf : window;
    __syncwarp();

    const int begin = window - nb, end = window + nc + nf;
    double loss = 0.0;  // per lane; summed over the warp at the chunk's end
    int64_t pairs = 0;
    for (int i = window; i < window + nc; ++i) {
      const int64_t pos = s.kpos[i];
      const int32_t centre = s.kid[i];
      const uint32_t window_draw = draw(p, pos, kCudaDrawCentre).v[1];
      const int reduce = p.shrink_windows ? static_cast<int>(uint_below(window_draw, static_cast<uint32_t>(window))) : 0;
      const int span = window - reduce;
      const int lo = static_cast<int>(imax64(begin, i - span)), hi = static_cast<int>(imin64(end - 1, i + span));
      const int B = hi - lo;  // the window minus the centre
      if (B == 0) continue;
      if (p.sg && !p.shared_negatives) {
        // Classic per-pair skip-gram: each context slot draws its own negatives, and pairs are applied in turn.
        for (int b = 0; b < B; ++b) {
          const WarpScratch sb = stage_block(p, s, blocks++, centre, pos, b, lo, i, B, lane);
          sg_block_warp(p, sb, sb.ctx + b, 1, T, alpha, lane, &loss);
        }
        pairs += B;
      } else {
        const WarpScratch sb = stage_block(p, s, blocks++, centre, pos, -1, lo, i, B, lane);
        if (p.sg) {
          sg_block_warp(p, sb, sb.ctx, B, T, alpha, lane, &loss);
          pairs += B;
        } else {
          cbow_block_warp(p, sb, B, T, alpha, lane, &loss);
          pairs += 1;
        }
      }
    }
    loss = warp_sum_d(loss);
    if (lane == 0) {
      p.chunk_loss[c] = loss;
      p.chunk_counts[2 * c] = nc;
      p.chunk_counts[2 * c + 1] = pairs;
    }
  }
}

__global__ void w2v_draws_kernel(const TrainCudaParams p, uint8_t* keep, int32_t* reduce, int32_t* negatives,
                                 int pair) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t q = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; q < p.n_ids; q += stride) {
    int32_t id = 0;
    keep[q] = keep_at(p, q, &id) ? 1 : 0;
    reduce[q] = static_cast<int32_t>(uint_below(draw(p, q, kCudaDrawCentre).v[1], static_cast<uint32_t>(p.window)));
    for (int k = 0; k < p.negative; ++k) negatives[q * p.negative + k] = negative_at(p, q, k, pair);
  }
}

void check_params(const TrainCudaParams& p, const char* op) {
  PYFAST_CHECK_ARG(p.syn0 && p.syn1neg && p.vocab_size > 0 && p.vocab_size < (int64_t{1} << 31) && p.dim > 0, op,
                   "empty model or vocab_size >= 2^31");
  PYFAST_CHECK_ARG(p.ids && p.keep_prob && p.noise_threshold && p.noise_alias, op, "missing device arrays");
  PYFAST_CHECK_ARG(p.window >= 1 && p.window <= 1024, op, "window must be in [1, 1024], got ", p.window);
  PYFAST_CHECK_ARG(p.negative >= 0 && p.negative <= kCudaMaxNegative, op, "negative must be in [0, ",
                   kCudaMaxNegative, "], got ", p.negative);
  PYFAST_CHECK_ARG(p.n_ids >= 0 && p.n_chunks >= 0 && p.max_chunk_len >= 1, op, "bad corpus sizes");
  PYFAST_CHECK_ARG(p.total_words > 0 && p.progress_base >= 0, op, "total_words must be > 0");
  PYFAST_CHECK_ARG(p.error != nullptr, op, "the CUDA kernel needs the error buffer");
}

}  // namespace

int64_t train_cuda_warp_bytes(int dim, int window, int negative, int max_chunk_len) {
  return layout(dim, window, negative, max_chunk_len).total;
}

void train_epoch_cuda(const TrainCudaParams& p, std::uintptr_t stream) {
  const char* op = "word2vec (cuda)";
  check_params(p, op);
  PYFAST_CHECK_ARG(p.chunks && p.chunk_loss && p.chunk_counts && p.warps >= 1, op, "missing chunk arrays or warps");
  if (p.n_chunks == 0) return;
  const Layout l = layout(p.dim, p.window, p.negative, p.max_chunk_len);
  PYFAST_CHECK_ARG(l.total <= kSmemMax, op, "one warp needs ", l.total, " bytes of shared memory (dim ", p.dim,
                   ", window ", p.window, ", negative ", p.negative, "), more than ", kSmemMax,
                   ": use a smaller vector_size, window or negative");
  int64_t wpb = kSmemPerBlock / l.total;
  wpb = wpb < 1 ? 1 : wpb > kMaxWarpsPerBlock ? kMaxWarpsPerBlock : wpb;
  if (wpb > p.warps) wpb = p.warps;
  const int64_t blocks = (p.warps + wpb - 1) / wpb;
  const int64_t smem = wpb * l.total;
  if (smem > 48 * 1024)
    cuda::check_call(cudaFuncSetAttribute(w2v_train_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(smem)),
                     op, "cudaFuncSetAttribute");
  w2v_train_kernel<<<static_cast<unsigned>(blocks), static_cast<unsigned>(32 * wpb), static_cast<size_t>(smem),
                     cuda::as_stream(stream)>>>(p, l, static_cast<int>(wpb));
  cuda::check_launch(op);
}

void train_cuda_draws(const TrainCudaParams& p, uint8_t* keep, int32_t* reduce, int32_t* negatives, int pair,
                      std::uintptr_t stream) {
  const char* op = "word2vec (cuda) draws";
  check_params(p, op);
  PYFAST_CHECK_ARG(keep && reduce && (negatives || p.negative == 0), op, "missing outputs");
  PYFAST_CHECK_ARG(pair < 2 * p.window, op, "pair must be < 2 * window");
  if (p.n_ids == 0) return;
  const int64_t blocks = (p.n_ids + 127) / 128;
  w2v_draws_kernel<<<static_cast<unsigned>(blocks < 64 ? blocks : 64), 128, 0, cuda::as_stream(stream)>>>(
      p, keep, reduce, negatives, pair);
  cuda::check_launch(op);
}

}  // namespace pyfast::w2v
