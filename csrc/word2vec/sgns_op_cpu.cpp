// CPU kernels of the SGNS op (see sgns_op.h). Training a mean / sum loss uses the fused pass: unique ids
// (bitmap ranks), then pairs grouped by center (K+1 dot products, the loss and the center's gradient row while the
// rows are in L1), then items grouped by target (the out-gradient rows from the just-read center rows).
// reduction="none" and torch.compile use a forward that saves compact (N, D) buffers and a backward from them.
// Floors at V=50k, D=128, N=4096, K=5, fp32: 7N random row gathers (14.7 MB) — latency-bound on the benchmark
// machine at about the rate of torch.index_select (~2.5 ms for these rows, 2 threads); (U_in + U_out) gradient
// rows written (7-10 MB); the optimizer then reads them and read-modify-writes the same weight rows. The ~19 MFLOP
// of dot products and axpys are < 0.3 ms. See benchmarks/RESULTS.md.
// SIMD: AVX2+FMA when the module is compiled for it (host-native by default), a plain loop otherwise; float32
// terms take exp / log1p from SIMD polynomials (pair_terms), float64 terms from libm.
#include "word2vec/sgns_op.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "common/bits.h"
#include "common/checks.h"
#include "common/parallel.h"
#include "common/philox.h"
#include "common/simd.h"
#include "word2vec/sgns_op_checks.h"

namespace pyfast {
namespace {

// ---- vector helpers: dot and y += a * x over D elements (float32 / float64, one template: common/simd.h) ------
// Four independent accumulators: one FMA chain would stall on its 4-cycle latency; four keep both FMA ports busy.
template <typename T>
inline T dot_row(const T* a, const T* b, int64_t d) {
  int64_t i = 0;
  T s = 0;
#if defined(PYFAST_SIMD_AVX2)
  using S = simd::Avx2<T>;
  constexpr int64_t L = S::kLanes;
  auto s0 = S::zero(), s1 = S::zero(), s2 = S::zero(), s3 = S::zero();
  for (; i + 4 * L <= d; i += 4 * L) {
    s0 = S::fma(S::load(a + i), S::load(b + i), s0);
    s1 = S::fma(S::load(a + i + L), S::load(b + i + L), s1);
    s2 = S::fma(S::load(a + i + 2 * L), S::load(b + i + 2 * L), s2);
    s3 = S::fma(S::load(a + i + 3 * L), S::load(b + i + 3 * L), s3);
  }
  for (; i + L <= d; i += L) s0 = S::fma(S::load(a + i), S::load(b + i), s0);
  s = S::hsum(S::add(S::add(s0, s1), S::add(s2, s3)));
#endif
  for (; i < d; ++i) s += a[i] * b[i];  // tail: D not a multiple of the lanes (all of D without AVX2)
  return s;
}

template <typename T>
inline void axpy_row(T alpha, const T* x, T* y, int64_t d) {
  int64_t i = 0;
#if defined(PYFAST_SIMD_AVX2)
  using S = simd::Avx2<T>;
  const auto va = S::set1(alpha);
  for (; i + S::kLanes <= d; i += S::kLanes) S::store(y + i, S::fma(va, S::load(x + i), S::load(y + i)));
#endif
  for (; i < d; ++i) y[i] += alpha * x[i];
}

// The rows a pair reads are random in a table far larger than L2: ask for the next pair's rows while this
// one computes, so the gathers overlap instead of each paying a full memory latency.
template <typename T>
inline void prefetch_row(const T* row, int64_t d) {
#if defined(__GNUC__)
  const char* p = reinterpret_cast<const char*>(row);
  const int64_t bytes = d * static_cast<int64_t>(sizeof(T));
  for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off, 0, 1);
#else
  (void)row;
  (void)d;
#endif
}

// Target j's loss term and d term / d score from one exp and one log1p, in T's precision (float math for float32
// weights: ~3x cheaper than double exp/log1p, and 6 of each per pair are a visible part of the fused pass).
// label 1 (the context): term = softplus(-x), grad = sigmoid(x) - 1 = -sigmoid(-x);
// label 0 (a negative):  term = softplus(x),  grad = sigmoid(x).
template <typename T>
inline T target_term(T x, bool positive, T* grad) {
  const T y = positive ? -x : x;          // term = softplus(y), |grad| = sigmoid(y)
  const T e = std::exp(-std::fabs(y));    // in (0, 1]: no overflow either way
  const T sig = y >= 0 ? T(1) / (T(1) + e) : e / (T(1) + e);
  *grad = positive ? -sig : sig;
  return std::max(y, T(0)) + std::log1p(e);
}

// One pair's K+1 terms: replaces each score c_row[j] by scale * d term / d score and returns the pair's loss,
// summed in double in the order j = 0 .. K.
template <typename T>
inline double pair_terms(T* c_row, int64_t kp1, T scale) {
  double loss = 0.0;
  for (int64_t j = 0; j < kp1; ++j) {
    T g;
    loss += static_cast<double>(target_term<T>(c_row[j], j == 0, &g));
    c_row[j] = g * scale;
  }
  return loss;
}

#if defined(PYFAST_SIMD_AVX2)
// exp(z) for z <= 0, 8 lanes: z = n ln2 + r with |r| <= ln2 / 2 (ln2 split in two parts so n ln2 is exact),
// exp(r) by its degree-7 Taylor polynomial (truncation < 2e-8 relative, under float's 6e-8 rounding), times 2^n
// built in the exponent bits. z is clamped at -87 (exp = 1.6e-38, the normal range's end): a term that small
// changes neither the float loss nor the float gradient.
inline __m256 exp_nonpositive_ps(__m256 z) {
  z = _mm256_max_ps(_mm256_set1_ps(-87.0f), z);  // (max_ps returns its second operand for a NaN: kept)
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(z, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), z);   // ln2's high part: n * it is exact
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);       // ln2 - 0.693359375
  __m256 q = _mm256_set1_ps(1.0f / 5040);
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f / 720));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f / 120));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f / 24));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f / 6));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(0.5f));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f));
  const __m256i pow2n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(q, _mm256_castsi256_ps(pow2n));
}

// log1p(e) for e in [0, 1], 8 lanes: 2 atanh(s) with s = e / (2 + e) in [0, 1/3], by its odd series through
// s^17 (the next term is < 2e-10 of the sum). Relative error ~1 ulp for every e, the tiny ones included, which
// is what log(1 + e) loses.
inline __m256 log1p_unit_ps(__m256 e) {
  const __m256 s = _mm256_div_ps(e, _mm256_add_ps(_mm256_set1_ps(2.0f), e));
  const __m256 s2 = _mm256_mul_ps(s, s);
  __m256 q = _mm256_set1_ps(1.0f / 17);
  q = _mm256_fmadd_ps(q, s2, _mm256_set1_ps(1.0f / 15));
  q = _mm256_fmadd_ps(q, s2, _mm256_set1_ps(1.0f / 13));
  q = _mm256_fmadd_ps(q, s2, _mm256_set1_ps(1.0f / 11));
  q = _mm256_fmadd_ps(q, s2, _mm256_set1_ps(1.0f / 9));
  q = _mm256_fmadd_ps(q, s2, _mm256_set1_ps(1.0f / 7));
  q = _mm256_fmadd_ps(q, s2, _mm256_set1_ps(1.0f / 5));
  q = _mm256_fmadd_ps(q, s2, _mm256_set1_ps(1.0f / 3));
  q = _mm256_fmadd_ps(q, s2, _mm256_set1_ps(1.0f));
  return _mm256_mul_ps(_mm256_add_ps(s, s), q);
}

// float32: target_term for 8 targets at once (the libm exp and log1p per target were ~20% of the fused pass).
template <>
inline double pair_terms<float>(float* c_row, int64_t kp1, float scale) {
  double loss = 0.0;
  const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  for (int64_t j0 = 0; j0 < kp1; j0 += 8) {
    const int lanes = static_cast<int>(std::min<int64_t>(8, kp1 - j0));
    alignas(32) float buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::copy(c_row + j0, c_row + j0 + lanes, buf);
    __m256 y = _mm256_load_ps(buf);
    // y = -x for the context (lane 0 of the first chunk), x for the negatives: term = softplus(y)
    const __m256 flip = j0 == 0 ? _mm256_setr_ps(-0.0f, 0, 0, 0, 0, 0, 0, 0) : zero;
    y = _mm256_xor_ps(y, flip);
    const __m256 e = exp_nonpositive_ps(_mm256_or_ps(y, sign));          // exp(-|y|)
    const __m256 inv = _mm256_div_ps(one, _mm256_add_ps(one, e));
    const __m256 sig = _mm256_blendv_ps(_mm256_mul_ps(e, inv), inv, _mm256_cmp_ps(y, zero, _CMP_GE_OQ));
    const __m256 grad = _mm256_mul_ps(_mm256_xor_ps(sig, flip), _mm256_set1_ps(scale));  // -sig for the context
    const __m256 term = _mm256_add_ps(_mm256_max_ps(zero, y), log1p_unit_ps(e));  // a NaN score stays NaN
    alignas(32) float g[8], t[8];
    _mm256_store_ps(g, grad);
    _mm256_store_ps(t, term);
    for (int i = 0; i < lanes; ++i) {
      loss += static_cast<double>(t[i]);
      c_row[j0 + i] = g[i];
    }
  }
  return loss;
}
#endif

void check_ids(const int64_t* ids, int64_t n, int64_t num_embeddings, const char* op, const char* what) {
  for (int64_t i = 0; i < n; ++i) {
    PYFAST_CHECK_ARG(ids[i] >= 0 && ids[i] < num_embeddings, op, what, " id ", ids[i], " at position ", i,
                     " is outside [0, ", num_embeddings, ")");
  }
}

void check_params(const SgnsParams& p, const char* op) {
  check_sgns_sizes(p, op);
  check_ids(p.centers, p.num_pairs, p.num_embeddings, op, "center");
  check_ids(p.contexts, p.num_pairs, p.num_embeddings, op, "context");
  check_ids(p.negatives, p.num_pairs * p.num_negatives, p.num_embeddings, op, "negative");
}

// Target j of pair n: the context for j = 0, negative j-1 otherwise.
inline int64_t target_id(const SgnsParams& p, int64_t n, int64_t j) {
  return j == 0 ? p.contexts[n] : p.negatives[n * p.num_negatives + (j - 1)];
}

// How many pairs ahead to prefetch: one pair's rows arrive in about a memory latency, and a pair's compute is
// far shorter, so prefetching only the next pair still leaves most of each gather exposed.
constexpr int64_t kPrefetchPairs = 2;

template <typename T>
void prefetch_pair(const SgnsParams& p, const T* in_w, const T* out_w, int64_t n) {
  prefetch_row(in_w + p.centers[n] * p.in_stride, p.dim);
  for (int64_t j = 0; j <= p.num_negatives; ++j) prefetch_row(out_w + target_id(p, n, j) * p.out_stride, p.dim);
}

template <typename T>
void forward_impl(const SgnsParams& p, T* loss, T* coef, T* center_rows, T* in_grad_dir) {
  const T* in_w = static_cast<const T*>(p.in_weight);
  const T* out_w = static_cast<const T*>(p.out_weight);
  const int64_t d = p.dim, kp1 = p.num_negatives + 1;
  const bool for_backward = center_rows != nullptr && in_grad_dir != nullptr;
  // ~(K+1) * D * 2 flops per pair: 256 pairs is ~0.4 MFLOP, enough to pay a thread's start-up.
  parallel_for(p.num_pairs, 256, [&](int64_t begin, int64_t end, int) {
    for (int64_t n = begin; n < std::min(end, begin + kPrefetchPairs); ++n) prefetch_pair(p, in_w, out_w, n);
    for (int64_t n = begin; n < end; ++n) {
      if (n + kPrefetchPairs < end) prefetch_pair(p, in_w, out_w, n + kPrefetchPairs);
      const T* u = in_w + p.centers[n] * p.in_stride;
      T* dir = for_backward ? in_grad_dir + n * d : nullptr;
      if (for_backward) {
        std::copy(u, u + d, center_rows + n * d);
        std::fill(dir, dir + d, T(0));
      }
      // All K+1 dot products first: they are independent, so the out-of-order core overlaps the K+1 row loads;
      // interleaving them with exp/log1p (long dependent chains) serialised the loads and cost 2x.
      T* c_row = coef + n * kp1;
      for (int64_t j = 0; j < kp1; ++j) c_row[j] = dot_row<T>(u, out_w + target_id(p, n, j) * p.out_stride, d);
      const double pair_loss = pair_terms<T>(c_row, kp1, T(1));
      if (for_backward)  // the K+1 rows are in L1 now; in the backward they would be random misses again
        for (int64_t j = 0; j < kp1; ++j) axpy_row<T>(c_row[j], out_w + target_id(p, n, j) * p.out_stride, dir, d);
      loss[n] = static_cast<T>(pair_loss);
    }
  });
}

// Counting sort of items by slot: offsets (num_slots + 1) and items listed slot by slot, each slot's items in
// increasing order (so every row's sum runs in the same order whatever the thread count).
void build_csr(const int64_t* slot, int64_t n, int64_t num_slots, std::vector<int64_t>& offsets,
               std::vector<int64_t>& items) {
  offsets.assign(static_cast<size_t>(num_slots) + 1, 0);
  for (int64_t i = 0; i < n; ++i) ++offsets[slot[i] + 1];
  for (int64_t s = 0; s < num_slots; ++s) offsets[s + 1] += offsets[s];
  items.resize(static_cast<size_t>(n));
  std::vector<int64_t> fill(offsets.begin(), offsets.end() - 1);
  for (int64_t i = 0; i < n; ++i) items[fill[slot[i]]++] = i;
}

// Split rows [0, num_slots) among workers so each gets about the same number of items (frequent words own long
// lists; equal row counts would leave one thread with most of the work).
template <typename Fn>
void parallel_over_slots(const std::vector<int64_t>& offsets, int64_t row_cost, Fn&& fn) {
  const int64_t num_slots = static_cast<int64_t>(offsets.size()) - 1;
  const int64_t total = offsets.back() + num_slots;  // +1 per row for zeroing it
  const int64_t workers =
      std::max<int64_t>(1, std::min<int64_t>(get_num_threads(), total * row_cost / (1 << 16)));
  if (workers <= 1 || num_slots <= 1) {
    fn(int64_t{0}, num_slots);
    return;
  }
  parallel_workers(static_cast<int>(workers), [&](int w) {
    // First slot whose (items + rows) prefix reaches w / workers of the total.
    auto first_slot = [&](int64_t k) -> int64_t {
      const int64_t target = total * k / workers;
      int64_t lo = 0, hi = num_slots;
      while (lo < hi) {
        const int64_t mid = (lo + hi) / 2;
        if (offsets[mid] + mid < target) lo = mid + 1; else hi = mid;
      }
      return lo;
    };
    const int64_t begin = first_slot(w), end = first_slot(w + 1);
    if (begin < end) fn(begin, end);
  });
}

// out_rows[r] (num_slots, d) = sum over items i with slot[i] == r, in increasing i, of weight(i) * source(i): a row
// per unique id, summed by one thread in a fixed order (no atomics, the same result whatever the thread count).
template <typename T, typename Weight, typename Source>
void sum_rows_by_slot(const int64_t* slot, int64_t n_items, int64_t num_slots, int64_t d, T* out_rows,
                      std::vector<int64_t>& offsets, std::vector<int64_t>& items, Weight&& weight, Source&& source) {
  build_csr(slot, n_items, num_slots, offsets, items);
  parallel_over_slots(offsets, d, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      T* row = out_rows + r * d;
      std::fill(row, row + d, T(0));
      for (int64_t q = offsets[r]; q < offsets[r + 1]; ++q) axpy_row<T>(weight(items[q]), source(items[q]), row, d);
    }
  });
}

template <typename T>
void backward_impl(int64_t num_pairs, int64_t num_negatives, int64_t d, const T* coef, const T* grad_loss,
                   const T* center_rows, const T* in_grad_dir, const int64_t* center_slot, int64_t num_unique_centers,
                   const int64_t* target_slot, int64_t num_unique_targets, T* grad_in_rows, T* grad_out_rows) {
  const int64_t kp1 = num_negatives + 1, n_targets = num_pairs * kp1;
  std::vector<int64_t> offsets, items;
  // grad_out[t] = sum over (n, j) with target t of grad_loss[n] * coef[n, j] * center_rows[n]
  sum_rows_by_slot(
      target_slot, n_targets, num_unique_targets, d, grad_out_rows, offsets, items,
      [&](int64_t flat) { return grad_loss[flat / kp1] * coef[flat]; },
      [&](int64_t flat) { return center_rows + (flat / kp1) * d; });
  // grad_in[c] = sum over pairs n with center c of grad_loss[n] * in_grad_dir[n]
  sum_rows_by_slot(
      center_slot, num_pairs, num_unique_centers, d, grad_in_rows, offsets, items,
      [&](int64_t n) { return grad_loss[n]; }, [&](int64_t n) { return in_grad_dir + n * d; });
}

// ---- fused training forward (reduced loss): the whole gradient while the rows are hot ------------------------
// Items ahead to prefetch in phase 1 (pairs) and phase 2 (target items). Measured on the benchmark machine
// (phase 1, 0 to 8 pairs ahead: 2.59-2.64 ms, no measurable effect: the out-of-order core already overlaps a
// pair's K+1 independent row loads); kept because it costs nothing and helps cores with less reordering.
constexpr int64_t kFusedPrefetchPairs = 2, kFusedPrefetchTargets = 4;

template <typename T>
void fused_impl(const SgnsParams& p, double scale, const int64_t* center_slot, int64_t num_unique_centers,
                const int64_t* target_slot, int64_t num_unique_targets, T* loss_out, T* grad_in_rows,
                T* grad_out_rows) {
  const T* in_w = static_cast<const T*>(p.in_weight);
  const T* out_w = static_cast<const T*>(p.out_weight);
  const int64_t d = p.dim, kp1 = p.num_negatives + 1, n = p.num_pairs;
  // coef[n, j] = scale * (sigmoid(score_nj) - label_j): phase 2 needs it; 4 (K+1) N bytes, stays in L2.
  std::vector<T> coef(static_cast<size_t>(n * kp1));
  std::vector<double> pair_loss(static_cast<size_t>(n));
  std::vector<int64_t> offsets, items;

  // Phase 1, pairs grouped by center (counting sort by center slot, each group in increasing n): a worker owns
  // whole groups, so grad_in[c] = scale * sum_n sum_j coef_nj v_nj is summed in a row that stays in L1, in a fixed
  // order, with no atomics and no (N, D) per-pair buffer; the center row u is loaded once per group.
  build_csr(center_slot, n, num_unique_centers, offsets, items);
  // The loop below zeroes a row when its group starts: every slot must own a pair (prepare's slots always do).
  for (int64_t r = 0; r < num_unique_centers; ++r)
    PYFAST_CHECK_ARG(offsets[r + 1] > offsets[r], "sgns_loss", "center slot ", r, " has no pair");
  parallel_over_slots(offsets, kp1 * d, [&](int64_t begin, int64_t end) {
    const int64_t q_begin = offsets[begin], q_end = offsets[end];
    for (int64_t q = q_begin; q < std::min(q_end, q_begin + kFusedPrefetchPairs); ++q)
      prefetch_pair(p, in_w, out_w, items[q]);
    int64_t slot = begin;
    T* row = nullptr;
    std::vector<T> dir(static_cast<size_t>(d));  // this pair's d loss / d u, in L1
    for (int64_t q = q_begin; q < q_end; ++q) {
      while (q == offsets[slot + 1]) ++slot;  // (every slot owns >= 1 pair: advances at most once)
      if (grad_in_rows != nullptr && q == offsets[slot]) {
        row = grad_in_rows + slot * d;
        std::fill(row, row + d, T(0));
      }
      if (q + kFusedPrefetchPairs < q_end) prefetch_pair(p, in_w, out_w, items[q + kFusedPrefetchPairs]);
      const int64_t pair = items[q];
      const T* u = in_w + p.centers[pair] * p.in_stride;
      T* c_row = coef.data() + pair * kp1;
      // All K+1 dot products first: independent, so the core overlaps the K+1 row loads (see forward_impl).
      for (int64_t j = 0; j < kp1; ++j) c_row[j] = dot_row<T>(u, out_w + target_id(p, pair, j) * p.out_stride, d);
      pair_loss[pair] = pair_terms<T>(c_row, kp1, static_cast<T>(scale));
      if (row != nullptr) {
        // Sum the pair's K+1 terms first, then add that to the row: a row of a frequent center sums thousands of
        // terms, and two levels keep float32's rounding error at that of torch's own backward (one level: ~50x).
        // The group's first pair sums straight into the zeroed row (bit-identical: 0 + 1 * dir == dir), which
        // spares the extra pass for most pairs (most centers occur once in a batch).
        const bool first = q == offsets[slot];
        T* acc = first ? row : dir.data();
        if (!first) std::fill(dir.begin(), dir.end(), T(0));
        for (int64_t j = 0; j < kp1; ++j)
          axpy_row<T>(c_row[j], out_w + target_id(p, pair, j) * p.out_stride, acc, d);
        if (!first) axpy_row<T>(T(1), dir.data(), row, d);
      }
    }
  });
  double total = 0.0;  // in pair order: the same sum whatever the thread count
  for (int64_t i = 0; i < n; ++i) total += pair_loss[i];
  *loss_out = static_cast<T>(total * scale);

  // Phase 2: grad_out[t] = sum over (n, j) with target t of coef_nj u_n, one row per unique target, summed in
  // increasing (n, j). The u_n are the <= N center rows phase 1 just read: L2/L3 hits, not a second random gather.
  if (grad_out_rows == nullptr) return;
  // build_csr by target slot, and beside each listed item (n, j) its center row u_n, found while walking the
  // pairs in order (no flat / (K+1): a division per lookup was ~10% of this phase).
  offsets.assign(static_cast<size_t>(num_unique_targets) + 1, 0);
  for (int64_t i = 0; i < n * kp1; ++i) ++offsets[target_slot[i] + 1];
  for (int64_t r = 0; r < num_unique_targets; ++r) offsets[r + 1] += offsets[r];
  items.resize(static_cast<size_t>(n * kp1));
  std::vector<const T*> item_u(items.size());
  {
    std::vector<int64_t> fill(offsets.begin(), offsets.end() - 1);
    for (int64_t pair = 0; pair < n; ++pair) {
      const T* u = in_w + p.centers[pair] * p.in_stride;
      for (int64_t i = pair * kp1; i < (pair + 1) * kp1; ++i) {
        const int64_t q = fill[target_slot[i]]++;
        items[q] = i;
        item_u[q] = u;
      }
    }
  }
  parallel_over_slots(offsets, d, [&](int64_t begin, int64_t end) {
    const int64_t q_end = offsets[end];
    for (int64_t r = begin; r < end; ++r) {
      T* row = grad_out_rows + r * d;
      std::fill(row, row + d, T(0));
      for (int64_t q = offsets[r]; q < offsets[r + 1]; ++q) {
        if (q + kFusedPrefetchTargets < q_end) prefetch_row(item_u[q + kFusedPrefetchTargets], d);
        axpy_row<T>(coef[items[q]], item_u[q], row, d);
      }
    }
  });
}

}  // namespace

namespace {
// Sorted unique ids of id_at(0 .. n-1) and each element's index among them (its slot). id_at(i) is read before
// inverse[i] is written and never after, so inverse may be the array id_at reads from (in place).
template <typename IdAt>
int64_t unique_impl(int64_t n, int64_t num_embeddings, IdAt&& id_at, int64_t* unique, int64_t* inverse) {
  if (num_embeddings <= 256 * n) {
    // A bitmap of the ids seen (V/8 bytes: 6 KB for V = 50k, so it stays in L1 however cold the caches are)
    // and each word's count of set bits before it: the unique ids come out sorted by scanning the words, and an
    // id's slot is its rank, prefix[w] + popcount of the lower bits of its word. Replaces a V-sized int32 map
    // (200 KB, L2 misses after the forward's gathers evict it): ~0.3-0.5 ms less per batch at N=4096, K=5.
    const int64_t words = (num_embeddings + 63) / 64;
    thread_local std::vector<uint64_t> bits;
    thread_local std::vector<int64_t> prefix;
    bits.assign(static_cast<size_t>(words), 0);
    prefix.resize(static_cast<size_t>(words));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t id = id_at(i);
      bits[id >> 6] |= uint64_t{1} << (id & 63);
    }
    int64_t count = 0;
    for (int64_t w = 0; w < words; ++w) {
      prefix[w] = count;
      for (uint64_t b = bits[w]; b != 0; b &= b - 1) unique[count++] = w * 64 + ctz64(b);
    }
    for (int64_t i = 0; i < n; ++i) {
      const int64_t id = id_at(i);
      const uint64_t below = bits[id >> 6] & ((uint64_t{1} << (id & 63)) - 1);
      inverse[i] = prefix[id >> 6] + popcount64(below);
    }
    return count;
  }
  // Large V, small batch: scanning V/64 words would cost more than sorting the few unique ids.
  // A V-sized id -> slot map per calling thread, kept at -1 between calls and reset only where touched, so a
  // call costs O(n) (plus a one-off O(V) allocation) instead of a sort of n (id, position) keys.
  thread_local std::vector<int32_t> slot_of;
  if (static_cast<int64_t>(slot_of.size()) < num_embeddings) slot_of.resize(static_cast<size_t>(num_embeddings), -1);
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t id = id_at(i);
    if (slot_of[id] < 0) {
      slot_of[id] = 0;
      unique[count++] = id;
    }
  }
  // Sorted ids make the sparse gradient coalesced (SparseAdam then skips its own sort).
  std::sort(unique, unique + count);
  for (int64_t s = 0; s < count; ++s) slot_of[unique[s]] = static_cast<int32_t>(s);
  for (int64_t i = 0; i < n; ++i) inverse[i] = slot_of[id_at(i)];
  for (int64_t s = 0; s < count; ++s) slot_of[unique[s]] = -1;
  return count;
}
}  // namespace

void sgns_forward_cpu(const SgnsForwardParams& f) {
  const SgnsParams& p = f.batch;
  check_params(p, "sgns_loss");
  PYFAST_DISPATCH_FLOAT(p.dtype, "sgns_loss", T, {
    forward_impl<T>(p, static_cast<T*>(f.loss), static_cast<T*>(f.coef), static_cast<T*>(f.center_rows),
                    static_cast<T*>(f.in_grad_dir));
  });
}

void sgns_unique_cpu(const SgnsUniqueParams& p) {
  const char* op = "sgns_loss";
  PYFAST_CHECK_ARG(p.num_pairs >= 0 && p.num_negatives >= 0 && p.num_embeddings >= 1, op, "bad sizes N=",
                   p.num_pairs, " K=", p.num_negatives, " V=", p.num_embeddings);
  const int64_t kp1 = p.num_negatives + 1, n_targets = p.num_pairs * kp1;
  PYFAST_CHECK_ARG(n_targets < (int64_t{1} << 31), op, "too many pairs x targets: ", n_targets);
  // Every id in [0, V) before anything is indexed by it.
  check_ids(p.centers, p.num_pairs, p.num_embeddings, op, "center");
  check_ids(p.contexts, p.num_pairs, p.num_embeddings, op, "context");
  check_ids(p.negatives, p.num_pairs * p.num_negatives, p.num_embeddings, op, "negative");
  auto centers_unique = [&] {
    p.counts[0] = unique_impl(p.num_pairs, p.num_embeddings, [&](int64_t i) { return p.centers[i]; },
                              p.unique_centers, p.center_slot);
  };
  auto targets_unique = [&] {
    // The flat (N, K+1) target ids go into target_slot first (no i / (K+1) per read: two divisions per id were
    // a third of this pass); unique_impl then overwrites each entry with its slot after reading it.
    int64_t* target_slot = p.target_slot;
    for (int64_t i = 0; i < p.num_pairs; ++i) {
      int64_t* row = target_slot + i * kp1;
      row[0] = p.contexts[i];
      for (int64_t j = 1; j < kp1; ++j) row[j] = p.negatives[i * p.num_negatives + j - 1];
    }
    p.counts[1] = unique_impl(n_targets, p.num_embeddings, [target_slot](int64_t i) { return target_slot[i]; },
                              p.unique_targets, target_slot);
  };
  // The two are independent: side by side on two threads (each has its own thread_local id map).
  if (get_num_threads() >= 2 && n_targets >= 4096) {
    parallel_workers(2, [&](int w) { w == 0 ? targets_unique() : centers_unique(); });
  } else {
    centers_unique();
    targets_unique();
  }
}

namespace {
// Slots index the output rows: check them all before any write.
void check_slots(const int64_t* center_slot, int64_t num_pairs, int64_t num_unique_centers,
                 const int64_t* target_slot, int64_t n_targets, int64_t num_unique_targets, const char* op) {
  for (int64_t i = 0; i < num_pairs; ++i)
    PYFAST_CHECK_ARG(center_slot[i] >= 0 && center_slot[i] < num_unique_centers, op, "center slot out of range");
  for (int64_t i = 0; i < n_targets; ++i)
    PYFAST_CHECK_ARG(target_slot[i] >= 0 && target_slot[i] < num_unique_targets, op, "target slot out of range");
}
}  // namespace

void sgns_forward_fused_cpu(const SgnsFusedParams& f) {
  const SgnsParams& p = f.batch;
  const char* op = "sgns_loss";
  check_params(p, op);
  check_slots(f.center_slot, p.num_pairs, f.num_unique_centers, f.target_slot, p.num_pairs * (p.num_negatives + 1),
              f.num_unique_targets, op);
  PYFAST_DISPATCH_FLOAT(p.dtype, op, T, {
    fused_impl<T>(p, f.scale, f.center_slot, f.num_unique_centers, f.target_slot, f.num_unique_targets,
                  static_cast<T*>(f.loss), static_cast<T*>(f.grad_in_rows), static_cast<T*>(f.grad_out_rows));
  });
}

void sgns_backward_cpu(const SgnsBackwardParams& p) {
  const char* op = "sgns_loss_backward";
  PYFAST_CHECK_ARG(p.num_pairs >= 0 && p.num_negatives >= 0 && p.dim >= 1, op, "bad sizes N=", p.num_pairs,
                   " K=", p.num_negatives, " D=", p.dim);
  check_slots(p.center_slot, p.num_pairs, p.num_unique_centers, p.target_slot, p.num_pairs * (p.num_negatives + 1),
              p.num_unique_targets, op);
  PYFAST_DISPATCH_FLOAT(p.dtype, op, T, {
    backward_impl<T>(p.num_pairs, p.num_negatives, p.dim, static_cast<const T*>(p.coef),
                     static_cast<const T*>(p.grad_loss), static_cast<const T*>(p.center_rows),
                     static_cast<const T*>(p.in_grad_dir), p.center_slot, p.num_unique_centers, p.target_slot,
                     p.num_unique_targets, static_cast<T*>(p.grad_in_rows), static_cast<T*>(p.grad_out_rows));
  });
}

int64_t sgns_advise_hugepages(void* data, int64_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + static_cast<uintptr_t>(bytes)) & ~(kHuge - 1);
  if (bytes <= 0 || end <= begin) return 0;
  void* start = reinterpret_cast<void*>(begin);
  if (madvise(start, end - begin, MADV_HUGEPAGE) != 0) return 0;
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25  // Linux >= 6.1; older kernels answer EINVAL and khugepaged collapses later
#endif
  (void)madvise(start, end - begin, MADV_COLLAPSE);
  return static_cast<int64_t>(end - begin);
#else
  (void)data;
  (void)bytes;
  return 0;
#endif
}

}  // namespace pyfast
