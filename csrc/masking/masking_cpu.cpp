// CPU kernel for masked-token sampling (see masking.h for the keying scheme and the modes). Rows run in
// parallel. Per row: (1) draw all choose words in one SIMD Philox pass; (2) decide and write every position as
// if unchosen/chosen (per piece: one branch-free, vectorised pass; whole words: a scalar pass carrying the word's
// decision; exact-count and span: words gathered into scratch first); (3) queue the chosen columns; (4) one more
// SIMD Philox pass draws their replacements. O(L) memory per thread, nothing (L, L).
#include "masking/masking.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/bits.h"
#include "common/checks.h"
#include "common/dispatch.h"
#include "common/parallel.h"
#include "common/philox.h"
#include "masking/masking_checks.h"
#include "masking/philox_batch.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace pyfast {
namespace {

constexpr const char* kOp = "mask_tokens";

// Per-thread scratch, sized once per call (O(L)).
struct RowScratch {
  std::vector<uint32_t> block_index;  // (C / 4,) 0, 1, 2, ...: the low Philox index words of the choose blocks
  std::vector<uint32_t> choose;       // (C,) choose word of every column, C = L rounded up to 32
  std::vector<uint8_t> chosen;        // (C,) 1 where chosen (zero past L): word, exact and span modes
  std::vector<uint64_t> chosen_bits;  // (C / 64,) bit col & 63 of word col >> 6: the per-piece mode's flags
  std::vector<uint32_t> chosen_cols;  // (K,) chosen columns of this row, increasing
  std::vector<int64_t> chosen_ids;    // (K,) their original ids
  std::vector<uint32_t> replace;      // (4, K) replacement blocks
  std::vector<int64_t> ids;           // (L,) exact/span modes: the row's ids (read once, so out may alias input)
  std::vector<int64_t> out_stage;     // (L,) per-piece mode: the row's output, finished in L1, then streamed out
  std::vector<int32_t> word_start;    // (W,) column of each word's first piece
  std::vector<int32_t> word_len;      // (W,) pieces in each word
  std::vector<uint64_t> keys;         // (W,) exact-count ranking keys

  explicit RowScratch(int64_t L) {
    const int64_t C = (L + 31) / 32 * 32;
    block_index.resize(C / 4);
    for (int64_t b = 0; b < C / 4; ++b) block_index[b] = static_cast<uint32_t>(b);
    choose.resize(C);
    chosen.assign(C, 0);
    chosen_bits.assign(C / 64 + 1, 0);
    chosen_cols.reserve(L);
    chosen_ids.reserve(L);
    replace.reserve(4 * L);
    out_stage.resize(L);
  }
};

// Bit (id & 31) of word (id >> 5): 4 KB for a 30k vocabulary, so it stays in L1.
inline bool id_in_special_set(const uint32_t* bits, int64_t id) { return (bits[id >> 5] >> (id & 31)) & 1u; }

struct RowView {
  const MaskTokensParams& p;
  int64_t row;
  RowScratch& s;

  // All choose words of the row in one batched (SIMD) pass. Eight blocks 8q..8q+7 cover columns 32q..32q+31
  // and philox_blocks_soa stores word w of block j at 8w + j, which is exactly the column order of masking.h's
  // keying: the words land in column order with no shuffle.
  void draw_choose_words() const {
    const int64_t C = static_cast<int64_t>(s.choose.size());
    for (int64_t q = 0; q < C / 32; ++q)
      philox_blocks_soa(p.seed, static_cast<uint32_t>(row), kMaskStreamChoose, s.block_index.data() + 8 * q, 8,
                        s.choose.data() + 32 * q);
  }
  // The "choose" word c(row, col) of masking.h.
  uint32_t choose_word(int64_t col) const { return s.choose[col]; }

  int64_t checked_id(int64_t col) const {
    const int64_t id = p.input_ids[row * p.ids_row_stride + col];
    PYFAST_CHECK_ARG(id >= 0 && id < p.vocab_size, kOp, "input_ids[", row, ", ", col, "] = ", id,
                     " is outside the vocabulary [0, ", p.vocab_size, ")");
    return id;
  }

  bool is_eligible(int64_t col, int64_t id) const {
    if (p.special_mask != nullptr && p.special_mask[row * p.special_row_stride + col] != 0) return false;
    if (p.special_id_bits != nullptr && id_in_special_set(p.special_id_bits, id)) return false;
    return true;
  }

  bool marks_word_start(int64_t col) const {
    return p.word_starts == nullptr || col == 0 || p.word_starts[row * p.word_starts_row_stride + col] != 0;
  }

  int64_t* out_row() const { return p.out_ids + row * p.seq_len; }
  int64_t* labels_row() const { return p.labels + row * p.seq_len; }
};

// The outputs are written once and read by someone else later (the model, another step): non-temporal stores
// skip the read-for-ownership of each destination line, which on a cold buffer is a DRAM read per 64 bytes
// written: 5 MiB of traffic becomes 3 MiB for a 256 x 512 batch. Only where the row start is 32-byte aligned
// (pooled outputs are); elsewhere plain stores. Callers end with _mm_sfence() before the data is published.
inline bool can_stream(const void* p) {
#if defined(__AVX2__)
  return (reinterpret_cast<uintptr_t>(p) & 31) == 0;
#else
  (void)p;
  return false;
#endif
}

void store_row(int64_t* dst, const int64_t* src, int64_t n) {
  int64_t i = 0;
#if defined(__AVX2__)
  if (can_stream(dst))
    for (; i + 4 <= n; i += 4)
      _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + i),
                          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
#endif
  std::memcpy(dst + i, src + i, static_cast<size_t>(n - i) * sizeof(int64_t));
}

// Bernoulli choice per piece: every position gets out = id, labels = id or -100, and its chosen bit. No
// dependence between columns and no branches on the data (a 15% decision is the worst case for a branch
// predictor), so four columns go per AVX2 step; the scalar loop does the tail and non-AVX2 builds. An
// out-of-range id is never used as an index (0 is looked up instead) and raises after the row.
template <bool kHasSpecialMask, bool kHasSpecialSet>
void scan_row_pieces(const RowView& v) {
  const MaskTokensParams& p = v.p;
  const int64_t L = p.seq_len;
  const int64_t vocab = p.vocab_size;
  const int64_t* ids = p.input_ids + v.row * p.ids_row_stride;
  const uint8_t* special = kHasSpecialMask ? p.special_mask + v.row * p.special_row_stride : nullptr;
  const uint32_t* special_set = p.special_id_bits;
  const uint32_t* choose = v.s.choose.data();
  // Flags go to a bitmap, 64 columns a word, gathered in a register: one store per 64 columns, and the queue
  // pass then skips unchosen stretches a word at a time (a byte array cost a store-forwarding stall per read).
  uint64_t* chosen_bits = v.s.chosen_bits.data();
  uint64_t word = 0;
  int64_t* out = v.s.out_stage.data();  // finished by apply_replacements, then streamed to the output row
  int64_t* lab = v.labels_row();        // final here
  const bool stream_labels = can_stream(lab);
  const uint32_t threshold = mask_unit_threshold(p.mlm_probability);
  bool bad = false;
  int64_t col = 0;
#if defined(__AVX2__)
  {
    const __m256i vocab_v = _mm256_set1_epi64x(vocab);
    const __m256i minus_one = _mm256_set1_epi64x(-1);
    const __m256i ignore_v = _mm256_set1_epi64x(kIgnoreIndex);
    const __m256i low5 = _mm256_set1_epi64x(31);
    const __m256i one = _mm256_set1_epi64x(1);
    const __m128i threshold_v = _mm_set1_epi32(static_cast<int>(threshold));  // < 2^24: signed compare is fine
    __m256i bad_v = _mm256_setzero_si256();
    for (; col + 4 <= L; col += 4) {
      const __m256i id = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ids + col));
      // in range: 0 <= id < vocab, as two signed compares (id > -1 and vocab > id).
      const __m256i in_range = _mm256_and_si256(_mm256_cmpgt_epi64(id, minus_one), _mm256_cmpgt_epi64(vocab_v, id));
      bad_v = _mm256_or_si256(bad_v, _mm256_andnot_si256(in_range, minus_one));
      const __m128i c = _mm_srli_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(choose + col)), 8);
      __m256i pick = _mm256_and_si256(in_range, _mm256_cvtepi32_epi64(_mm_cmplt_epi32(c, threshold_v)));
      if (kHasSpecialMask) {
        int32_t four;
        std::memcpy(&four, special + col, 4);
        const __m256i sm = _mm256_cvtepu8_epi64(_mm_cvtsi32_si128(four));
        pick = _mm256_andnot_si256(_mm256_cmpgt_epi64(sm, _mm256_setzero_si256()), pick);
      }
      if (kHasSpecialSet) {
        // One 32-bit word of the special-id bitset per column (a 4 KB table for a 30k vocabulary: L1-resident).
        const __m256i safe = _mm256_and_si256(id, in_range);
        const __m128i words = _mm256_i64gather_epi32(reinterpret_cast<const int*>(special_set),
                                                     _mm256_srli_epi64(safe, 5), 4);
        const __m256i bit = _mm256_and_si256(
            _mm256_srlv_epi64(_mm256_cvtepu32_epi64(words), _mm256_and_si256(safe, low5)), one);
        pick = _mm256_andnot_si256(_mm256_cmpeq_epi64(bit, one), pick);
      }
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + col), id);
      const __m256i label = _mm256_blendv_epi8(ignore_v, id, pick);
      if (stream_labels)
        _mm256_stream_si256(reinterpret_cast<__m256i*>(lab + col), label);
      else
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(lab + col), label);
      // Four flags from the four lane signs.
      word |= static_cast<uint64_t>(_mm256_movemask_pd(_mm256_castsi256_pd(pick))) << (col & 63);
      if ((col & 63) == 60) {
        chosen_bits[col >> 6] = word;
        word = 0;
      }
    }
    bad = !_mm256_testz_si256(bad_v, bad_v);
  }
#endif
  for (; col < L; ++col) {
    const int64_t id = ids[col];
    const bool in_range = id >= 0 && id < vocab;
    bad |= !in_range;
    bool pick = in_range && (choose[col] >> 8) < threshold;
    if (kHasSpecialMask) pick = pick && special[col] == 0;
    if (kHasSpecialSet) pick = pick && !id_in_special_set(special_set, in_range ? id : 0);
    word |= static_cast<uint64_t>(pick) << (col & 63);
    if ((col & 63) == 63) {
      chosen_bits[col >> 6] = word;
      word = 0;
    }
    out[col] = id;
    lab[col] = pick ? id : kIgnoreIndex;
  }
  if ((L & 63) != 0) chosen_bits[L >> 6] = word;
  if (bad)
    for (int64_t c = 0; c < L; ++c) v.checked_id(c);  // throws with the first bad position
}

// Bernoulli choice per whole word: a word's decision is the choose word at its first piece, carried over the
// word's other pieces by `word_chosen` (a sequential dependence, so this loop stays scalar).
void scan_row_words(const RowView& v) {
  const MaskTokensParams& p = v.p;
  const uint32_t threshold = mask_unit_threshold(p.mlm_probability);
  int64_t* out = v.out_row();
  int64_t* lab = v.labels_row();
  uint8_t* chosen = v.s.chosen.data();
  bool prev_eligible = false;
  bool word_chosen = false;
  for (int64_t col = 0; col < p.seq_len; ++col) {
    const int64_t id = v.checked_id(col);
    const bool eligible = v.is_eligible(col, id);
    if (eligible && (!prev_eligible || v.marks_word_start(col))) word_chosen = (v.choose_word(col) >> 8) < threshold;
    prev_eligible = eligible;
    const bool pick = eligible && word_chosen;
    chosen[col] = pick;
    out[col] = id;
    lab[col] = pick ? id : kIgnoreIndex;
  }
}

// Collects the chosen columns (and their ids, read back from labels) eight flags at a time: rows are mostly
// unchosen, so whole zero words are skipped.
void queue_chosen(const RowView& v) {
  RowScratch& s = v.s;
  const int64_t* lab = v.labels_row();
  s.chosen_cols.clear();
  s.chosen_ids.clear();
  const int64_t C = static_cast<int64_t>(s.chosen.size());
  for (int64_t base = 0; base < C; base += 8) {
    uint64_t flags;
    std::memcpy(&flags, s.chosen.data() + base, 8);
    while (flags != 0) {
      const int64_t col = base + (ctz64(flags) >> 3);
      flags &= flags - 1;  // flags are 0/1 bytes: clears exactly this column's bit
      s.chosen_cols.push_back(static_cast<uint32_t>(col));
      s.chosen_ids.push_back(lab[col]);
    }
  }
}

// The same from the per-piece mode's bitmap.
void queue_chosen_bits(const RowView& v) {
  RowScratch& s = v.s;
  const int64_t* staged = s.out_stage.data();  // still the original ids (labels were streamed: not cached)
  s.chosen_cols.clear();
  s.chosen_ids.clear();
  const int64_t words = (v.p.seq_len + 63) / 64;
  for (int64_t w = 0; w < words; ++w) {
    uint64_t bits = s.chosen_bits[w];
    while (bits != 0) {
      const int64_t col = (w << 6) + ctz64(bits);
      bits &= bits - 1;
      s.chosen_cols.push_back(static_cast<uint32_t>(col));
      s.chosen_ids.push_back(staged[col]);
    }
  }
}

// [MASK], a random non-special id, or the original, for every queued position (one batched Philox pass).
void apply_replacements(const RowView& v, int64_t* out) {
  const MaskTokensParams& p = v.p;
  RowScratch& s = v.s;
  const int64_t K = static_cast<int64_t>(s.chosen_cols.size());
  if (K == 0) return;
  s.replace.resize(4 * K);
  philox_blocks_soa(p.seed, static_cast<uint32_t>(v.row), kMaskStreamReplace, s.chosen_cols.data(), K,
                    s.replace.data());
  const uint32_t allowed = static_cast<uint32_t>(p.vocab_size - p.num_excluded_ids);
  const int64_t* excluded = p.excluded_ids;
  const int64_t num_excluded = p.num_excluded_ids;
  const int64_t mask_id = p.mask_token_id;
  const uint32_t mask_threshold = mask_unit_threshold(p.mask_replace_prob);
  const uint32_t mask_or_random_threshold = mask_unit_threshold(p.mask_or_random_prob);
  const uint32_t* u_words = s.replace.data();       // word 0: the 80/10/10 decision
  const uint32_t* id_words = s.replace.data() + K;  // word 1: the random id
  const uint32_t* cols = s.chosen_cols.data();
  const int64_t* originals = s.chosen_ids.data();
  int64_t k = 0;
#if defined(__AVX2__)
  {
    // Four positions per step, no branches: an 80/10/10 choice is the worst case for a branch predictor
    // (the scalar version below spent ~a third of the row's time in mispredictions). The k-th allowed id is
    // computed for every position and stepped over the few sorted excluded ids with compares.
    const __m256i allowed_v = _mm256_set1_epi64x(allowed);
    const __m256i mask_v = _mm256_set1_epi64x(mask_id);
    const __m256i mask_thr = _mm256_set1_epi64x(mask_threshold);
    const __m256i mor_thr = _mm256_set1_epi64x(mask_or_random_threshold);
    for (; k + 4 <= K; k += 4) {
      const __m256i u24 = _mm256_cvtepu32_epi64(
          _mm_srli_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(u_words + k)), 8));
      const __m256i r = _mm256_cvtepu32_epi64(_mm_loadu_si128(reinterpret_cast<const __m128i*>(id_words + k)));
      __m256i random_id = _mm256_srli_epi64(_mm256_mul_epu32(r, allowed_v), 32);  // uint_below(r, allowed)
      for (int64_t e = 0; e < num_excluded; ++e)  // += (random_id >= excluded[e]): the compare is -1 or 0
        random_id = _mm256_sub_epi64(random_id, _mm256_cmpgt_epi64(random_id, _mm256_set1_epi64x(excluded[e] - 1)));
      __m256i value = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(originals + k));
      value = _mm256_blendv_epi8(value, random_id, _mm256_cmpgt_epi64(mor_thr, u24));
      value = _mm256_blendv_epi8(value, mask_v, _mm256_cmpgt_epi64(mask_thr, u24));
      alignas(32) int64_t lanes[4];
      _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), value);
      out[cols[k]] = lanes[0];
      out[cols[k + 1]] = lanes[1];
      out[cols[k + 2]] = lanes[2];
      out[cols[k + 3]] = lanes[3];
    }
  }
#endif
  for (; k < K; ++k) {
    const uint32_t u24 = u_words[k] >> 8;
    int64_t random_id = uint_below(id_words[k], allowed);
    for (int64_t e = 0; e < num_excluded; ++e) random_id += random_id >= excluded[e] ? 1 : 0;
    int64_t value = originals[k];
    value = u24 < mask_or_random_threshold ? random_id : value;
    value = u24 < mask_threshold ? mask_id : value;
    out[cols[k]] = value;
  }
}

// Reads the row into scratch and splits its eligible positions into words. Returns the eligible piece count.
int64_t gather_words(const RowView& v) {
  RowScratch& s = v.s;
  const int64_t L = v.p.seq_len;
  s.ids.resize(L);
  std::fill(s.chosen.begin(), s.chosen.end(), 0);
  s.word_start.clear();
  s.word_len.clear();
  int64_t eligible_pieces = 0;
  bool prev_eligible = false;
  for (int64_t col = 0; col < L; ++col) {
    const int64_t id = v.checked_id(col);
    s.ids[col] = id;
    const bool eligible = v.is_eligible(col, id);
    if (eligible) {
      if (!prev_eligible || v.marks_word_start(col)) {
        s.word_start.push_back(static_cast<int32_t>(col));
        s.word_len.push_back(0);
      }
      ++s.word_len.back();
      ++eligible_pieces;
    }
    prev_eligible = eligible;
  }
  return eligible_pieces;
}

void choose_word_pieces(RowScratch& s, size_t word) {
  const int32_t start = s.word_start[word];
  for (int32_t k = 0; k < s.word_len[word]; ++k) s.chosen[start + k] = 1;
}

// Exact count: rank words by their key, take them in order while they fit in the row's budget n.
void choose_exact(const RowView& v, int64_t eligible_pieces) {
  RowScratch& s = v.s;
  if (eligible_pieces == 0) return;
  // n = min(max_predictions, max(1, floor(p * E + 0.5))), p widened from float32 to double.
  const int64_t rounded =
      static_cast<int64_t>(std::floor(static_cast<double>(v.p.mlm_probability) * eligible_pieces + 0.5));
  const int64_t n = std::min<int64_t>(v.p.max_predictions, std::max<int64_t>(1, rounded));
  if (n <= 0) return;
  const size_t W = s.word_start.size();
  s.keys.resize(W);
  // Key = (choose word << 32) | column of the word's start: unique, so the order is total and needs no
  // stable sort (the CUDA port can use any sort).
  for (size_t w = 0; w < W; ++w)
    s.keys[w] = (static_cast<uint64_t>(v.choose_word(s.word_start[w])) << 32) | static_cast<uint32_t>(s.word_start[w]);
  // Single pieces: the n smallest keys, found in O(W) by nth_element. Whole words need the full order.
  if (static_cast<int64_t>(W) == eligible_pieces) {
    if (static_cast<size_t>(n) < W) std::nth_element(s.keys.begin(), s.keys.begin() + n, s.keys.end());
    for (int64_t k = 0; k < n; ++k) s.chosen[static_cast<uint32_t>(s.keys[k])] = 1;
    return;
  }
  std::sort(s.keys.begin(), s.keys.end());
  int64_t taken = 0;
  for (size_t k = 0; k < W && taken < n; ++k) {
    const int32_t start = static_cast<int32_t>(static_cast<uint32_t>(s.keys[k]));
    // word_start is increasing: binary search maps the key's column back to its word.
    const size_t w = static_cast<size_t>(std::lower_bound(s.word_start.begin(), s.word_start.end(), start) -
                                         s.word_start.begin());
    if (taken + s.word_len[w] > n) continue;  // BERT: skip a word that would overflow the budget
    choose_word_pieces(s, w);
    taken += s.word_len[w];
  }
}

// SpanBERT-style spans: a renewal walk over words (see masking.h).
void choose_spans(const RowView& v) {
  const MaskTokensParams& p = v.p;
  RowScratch& s = v.s;
  const size_t W = s.word_start.size();
  size_t w = 0;
  while (w < W) {
    const int32_t start = s.word_start[w];
    if (!(uint_to_unit_float(v.choose_word(start)) < p.span_start_prob)) {
      ++w;
      continue;
    }
    const uint64_t index = (static_cast<uint64_t>(v.row) << 32) | static_cast<uint32_t>(start);
    const float u = uint_to_unit_float(philox_draw(p.seed, index, kMaskStreamSpanLength).v[0]);
    int32_t length = 1;
    for (int32_t k = 0; k + 1 < p.max_span_words; ++k) length += p.span_length_cdf[k] <= u ? 1 : 0;
    // Cover `length` words, but only while they are contiguous (no special or padding in between).
    int32_t covered = 0;
    do {
      choose_word_pieces(s, w);
      ++covered;
      ++w;
    } while (covered < length && w < W && s.word_start[w] == s.word_start[w - 1] + s.word_len[w - 1]);
  }
}

// Exact/span modes: write every position from the chosen flags.
void write_row_from_flags(const RowView& v) {
  const RowScratch& s = v.s;
  int64_t* out = v.out_row();
  int64_t* lab = v.labels_row();
  for (int64_t col = 0; col < v.p.seq_len; ++col) {
    const int64_t id = s.ids[col];
    out[col] = id;
    lab[col] = s.chosen[col] ? id : kIgnoreIndex;
  }
}

}  // namespace

void mask_tokens_cpu(const MaskTokensParams& p) {
  check_mask_tokens_params(p, kOp);
  for (int64_t e = 0; e < p.num_excluded_ids; ++e)
    PYFAST_CHECK_ARG(p.excluded_ids[e] >= 0 && p.excluded_ids[e] < p.vocab_size &&
                         (e == 0 || p.excluded_ids[e] > p.excluded_ids[e - 1]),
                     kOp, "excluded_ids must be strictly increasing ids in [0, vocab_size)");
  if (p.batch == 0 || p.seq_len == 0) return;

  const bool needs_scratch = p.max_predictions >= 0 || p.span != 0;
  // A chunk of rows should hold several thousand positions so claiming one stays negligible. Elastic: this is
  // called once per batch between idle gaps, where waiting for a sleeping worker cost more than the kernel.
  const int64_t grain = std::max<int64_t>(1, 4096 / p.seq_len);
  parallel_for_elastic(p.batch, grain, [&](int64_t begin, int64_t end, int) {
    RowScratch scratch(p.seq_len);
    for (int64_t row = begin; row < end; ++row) {
      const RowView v{p, row, scratch};
      v.draw_choose_words();
      if (needs_scratch) {
        const int64_t eligible_pieces = gather_words(v);
        if (p.max_predictions >= 0)
          choose_exact(v, eligible_pieces);
        else
          choose_spans(v);
        write_row_from_flags(v);
        queue_chosen(v);
        apply_replacements(v, v.out_row());
      } else if (p.word_starts != nullptr) {
        scan_row_words(v);
        queue_chosen(v);
        apply_replacements(v, v.out_row());
      } else {
        PYFAST_DISPATCH_BOOL(p.special_mask != nullptr, kHasSpecialMask, {
          PYFAST_DISPATCH_BOOL(p.special_id_bits != nullptr, kHasSpecialSet,
                               { scan_row_pieces<kHasSpecialMask, kHasSpecialSet>(v); });
        });
        queue_chosen_bits(v);
        apply_replacements(v, scratch.out_stage.data());
        store_row(v.out_row(), scratch.out_stage.data(), p.seq_len);
      }
    }
#if defined(__AVX2__)
    _mm_sfence();  // order this worker's streaming stores before the join publishes the outputs
#endif
  });
}

}  // namespace pyfast
