// Masked-token sampling for BERT-style pretraining (80% [MASK] / 10% random / 10% kept), on a (B, L) batch of
// int64 token ids: Bernoulli or exact-count choice, per piece, per whole word, or by SpanBERT spans. The params
// structs and the two entry points only (no torch, no CUDA headers): kernels in masking_cpu.cpp and
// masking_cuda.cu, which match bit for bit; the checks both run are in masking_checks.h.
//
// ---- The random keying scheme (the contract both kernels follow bit for bit) ---------------------------------
// All draws come from philox_draw(seed, index, stream) (common/philox.h) with index = (row << 32) | something,
// so a draw depends only on (seed, row, column): never on thread count, chunking or the padded length L.
//   choose word  c(row, col) = philox_draw(seed, (row << 32) | (((col >> 5) << 3) | (col & 7)), kStreamChoose)
//                                .v[(col >> 3) & 3]
//                (one Philox block serves four columns, 8 apart: blocks 8q..8q+7 cover columns 32q..32q+31, so
//                eight blocks drawn in SIMD lanes store their words straight into column order; 4x fewer blocks).
//                Bernoulli mode: a unit (piece, or word keyed by its FIRST piece's column) is chosen iff
//                uint_to_unit_float(c) < mlm_probability (float32 compare: exact on CPU and GPU).
//                Exact-count mode: units are ranked by the 64-bit key (uint64(c) << 32) | col, ascending.
//   replacement  r = philox_draw(seed, (row << 32) | col, kStreamReplace), only for chosen positions:
//                u = uint_to_unit_float(r.v[0]); u < mask_replace_prob -> mask_token_id;
//                else u < mask_or_random_prob (= float32(mask_replace_prob + random_replace_prob), summed on the
//                host in float32) -> the k-th id (0-based, ascending) of [0, vocab_size) not in excluded_ids,
//                k = uint_below(r.v[1], vocab_size - num_excluded_ids); else the id is kept.
//   span length  s = philox_draw(seed, (row << 32) | col, kStreamSpanLength).v[0] at the span's first word:
//                u = uint_to_unit_float(s); length = 1 + #{k < max_span_words - 1 : span_length_cdf[k] <= u}
//                (a table lookup, not log(): libm differs between CPU and GPU, a float compare does not).
//
// ---- Units ---------------------------------------------------------------------------------------------------
// A position is eligible unless special_mask[row, col] != 0 or its id is in the special_id_bits set. Without
// word_starts every eligible position is its own word. With word_starts, an eligible position starts a word if
// word_starts[row, col] is non-zero, or it is column 0, or the previous position is not eligible; a word is its
// start plus the following eligible non-start positions, so words never cross specials or padding.
//
// ---- Modes ---------------------------------------------------------------------------------------------------
// Bernoulli (max_predictions < 0, span == 0): every word is chosen independently; all its pieces go with it.
// (The float compares above are done as (c >> 8) < ceil(prob * 2^24) in integers: the same answers.)
// Exact count (max_predictions >= 0): per row, E = eligible pieces, n = E ? min(max_predictions,
//   max(1, floor(mlm_probability * E + 0.5))) : 0 (BERT's create_pretraining_data rule, with round-half-up).
//   Words are taken in key order; a word whose pieces would overflow n is skipped (BERT's rule), so without
//   word_starts exactly n pieces are chosen, with whole words at most n.
// Span (span != 0, max_predictions < 0): left to right over words; at an uncovered word a span starts iff
//   uint_to_unit_float(c) < span_start_prob, then covers `length` consecutive words, stopping early at a
//   non-eligible position or the row's end; the walk resumes after the span. span_start_prob is chosen on the
//   host so the covered fraction of words is mlm_probability (a renewal process; see pyfast/ops/masking.py).
#pragma once
#include <cstdint>

namespace pyfast {

constexpr uint32_t kMaskStreamChoose = 0x4D430001u;      // "MC" 1
constexpr uint32_t kMaskStreamReplace = 0x4D430002u;     // "MC" 2
constexpr uint32_t kMaskStreamSpanLength = 0x4D430003u;  // "MC" 3
constexpr int64_t kIgnoreIndex = -100;                   // labels at unchosen positions (PyTorch losses skip it)
constexpr int kMaxSpanWords = 64;                        // bound on max_span_words (size of the cdf table)

struct MaskTokensParams {
  int64_t batch = 0;                      // B
  int64_t seq_len = 0;                    // L
  const int64_t* input_ids = nullptr;     // (B, L), row stride ids_row_stride, unit column stride
  int64_t ids_row_stride = 0;
  const uint8_t* special_mask = nullptr;  // optional (B, L), row stride special_row_stride; != 0: never chosen
  int64_t special_row_stride = 0;
  const uint32_t* special_id_bits = nullptr;  // optional ((vocab_size + 31) / 32,) bitset: bit (id & 31) of word
                                              // id >> 5 set for ids never chosen (specials, pad)
  const uint8_t* word_starts = nullptr;   // optional (B, L), row stride word_starts_row_stride
  int64_t word_starts_row_stride = 0;
  const int64_t* excluded_ids = nullptr;  // (num_excluded_ids,) strictly increasing: never drawn as random tokens
  int64_t num_excluded_ids = 0;           // == vocab_size only when no random replacement can happen
  int64_t vocab_size = 0;
  int64_t mask_token_id = 0;
  float mlm_probability = 0.15f;
  float mask_replace_prob = 0.8f;
  float mask_or_random_prob = 0.9f;       // float32(mask_replace_prob + random_replace_prob)
  int64_t max_predictions = -1;           // >= 0: exact-count mode
  int32_t span = 0;                       // != 0: SpanBERT span mode
  float span_start_prob = 0.0f;
  int32_t max_span_words = 1;             // in [1, kMaxSpanWords]
  const float* span_length_cdf = nullptr;  // (max_span_words - 1,): P(length <= k + 1), non-decreasing
  uint64_t seed = 0;
  int64_t* out_ids = nullptr;             // (B, L) contiguous; may alias input_ids when that is contiguous too
  int64_t* labels = nullptr;              // (B, L) contiguous: original id where chosen, kIgnoreIndex elsewhere
};

// Device scratch the CUDA kernel needs beside MaskTokensParams (whose arrays are then DEVICE pointers, except
// span_length_cdf: host memory, folded into the launch parameters). The caller allocates it.
struct MaskTokensCudaScratch {
  // (1,) int64, preset by the caller to a value >= B * L: the kernels atomicMin into it the flat index
  // row * L + col of every id outside [0, vocab_size). The caller reads it after the launch and raises.
  int64_t* error = nullptr;
  // Exact-count mode only: (B, keys_row_stride) uint64, keys_row_stride >= the next power of two >= L
  // (a per-row bitonic sort of the word keys runs in place here).
  uint64_t* keys = nullptr;
  int64_t keys_row_stride = 0;
  // Exact-count and span modes: (B, L) int32 each, the first and last column of word w of the row.
  int32_t* word_first = nullptr;
  int32_t* word_last = nullptr;
};

// Fills out_ids and labels. Throws std::invalid_argument (ValueError) for an id outside [0, vocab_size) or bad
// sizes, before any out-of-bounds read or write can happen.
void mask_tokens_cpu(const MaskTokensParams& p);

// The same on `stream` (a cudaStream_t as an integer), bit-identical to mask_tokens_cpu for the same params;
// out_ids and labels must NOT alias input_ids. Throws std::invalid_argument (ValueError) for bad sizes before
// launching; out-of-vocabulary ids never index anything and are reported through scratch.error.
void mask_tokens_cuda(const MaskTokensParams& p, const MaskTokensCudaScratch& scratch, std::uintptr_t stream);

}  // namespace pyfast
