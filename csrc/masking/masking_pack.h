// Host-side glue shared by both masking backends: how the bindings (CPU bindings.cpp, CUDA bindings_cuda.cpp) turn
// the arguments pyfast/ops/masking.py passes (pointers as ints, 0 = absent) into a MaskTokensParams, and the
// scalar checks both kernels run before touching memory.
#pragma once
#include <cstdint>
#include <vector>

#include "common/checks.h"
#include "masking/masking.h"

namespace pyfast {

// The arguments pyfast/ops/masking.py passes to both backends' binding (CPU mask_tokens_, CUDA mask_tokens, which
// appends its scratch buffers and stream), in that order: written once here, so the two bindings' lambdas and
// pack_mask_tokens_params cannot drift apart. A lambda takes PYFAST_MASK_TOKENS_PARAMS and forwards
// PYFAST_MASK_TOKENS_ARGS; the Python-visible names are the parameter names (bindings.cpp's py::arg list).
#define PYFAST_MASK_TOKENS_PARAMS                                                                                   \
  int64_t batch, int64_t seq_len, std::uintptr_t input_ids, int64_t ids_row_stride, std::uintptr_t special_mask,    \
      int64_t special_row_stride, std::uintptr_t special_id_bits, std::uintptr_t word_starts,                       \
      int64_t word_starts_row_stride, std::uintptr_t excluded_ids, int64_t num_excluded_ids, int64_t vocab_size,    \
      int64_t mask_token_id, float mlm_probability, float mask_replace_prob, float mask_or_random_prob,             \
      int64_t max_predictions, bool span, float span_start_prob, const std::vector<float>& span_length_cdf,         \
      uint64_t seed, std::uintptr_t out_ids, std::uintptr_t labels
#define PYFAST_MASK_TOKENS_ARGS                                                                                     \
  batch, seq_len, input_ids, ids_row_stride, special_mask, special_row_stride, special_id_bits, word_starts,        \
      word_starts_row_stride, excluded_ids, num_excluded_ids, vocab_size, mask_token_id, mlm_probability,           \
      mask_replace_prob, mask_or_random_prob, max_predictions, span, span_start_prob, span_length_cdf, seed,        \
      out_ids, labels

// span_length_cdf is borrowed (it must outlive the kernel call): the cdf table stays in host memory.
inline MaskTokensParams pack_mask_tokens_params(PYFAST_MASK_TOKENS_PARAMS) {
  MaskTokensParams p;
  p.batch = batch;
  p.seq_len = seq_len;
  p.input_ids = reinterpret_cast<const int64_t*>(input_ids);
  p.ids_row_stride = ids_row_stride;
  p.special_mask = reinterpret_cast<const uint8_t*>(special_mask);
  p.special_row_stride = special_row_stride;
  p.special_id_bits = reinterpret_cast<const uint32_t*>(special_id_bits);
  p.word_starts = reinterpret_cast<const uint8_t*>(word_starts);
  p.word_starts_row_stride = word_starts_row_stride;
  p.excluded_ids = reinterpret_cast<const int64_t*>(excluded_ids);
  p.num_excluded_ids = num_excluded_ids;
  p.vocab_size = vocab_size;
  p.mask_token_id = mask_token_id;
  p.mlm_probability = mlm_probability;
  p.mask_replace_prob = mask_replace_prob;
  p.mask_or_random_prob = mask_or_random_prob;
  p.max_predictions = max_predictions;
  p.span = span ? 1 : 0;
  p.span_start_prob = span_start_prob;
  p.max_span_words = static_cast<int32_t>(span_length_cdf.size() + 1);
  p.span_length_cdf = span_length_cdf.empty() ? nullptr : span_length_cdf.data();
  p.seed = seed;
  p.out_ids = reinterpret_cast<int64_t*>(out_ids);
  p.labels = reinterpret_cast<int64_t*>(labels);
  return p;
}

// Sizes, ids and probabilities that need no memory read (excluded_ids may be device memory: the CPU kernel checks
// it itself; the Python layer builds it sorted and in range). std::invalid_argument (ValueError) on failure.
inline void check_mask_tokens_scalars(const MaskTokensParams& p, const char* op) {
  PYFAST_CHECK_ARG(p.batch >= 0 && p.seq_len >= 0, op, "batch and seq_len must be >= 0, got ", p.batch, " and ",
                   p.seq_len);
  PYFAST_CHECK_ARG(p.seq_len < (int64_t{1} << 31), op, "seq_len must be below 2**31, got ", p.seq_len);
  PYFAST_CHECK_ARG(p.vocab_size > 0 && p.vocab_size < (int64_t{1} << 32), op,
                   "vocab_size must be in [1, 2**32), got ", p.vocab_size);
  PYFAST_CHECK_ARG(p.mask_token_id >= 0 && p.mask_token_id < p.vocab_size, op, "mask_token_id ", p.mask_token_id,
                   " is outside the vocabulary [0, ", p.vocab_size, ")");
  PYFAST_CHECK_ARG(p.num_excluded_ids >= 0 && p.num_excluded_ids <= p.vocab_size, op,
                   "num_excluded_ids must be in [0, vocab_size], got ", p.num_excluded_ids);
  PYFAST_CHECK_ARG(p.num_excluded_ids < p.vocab_size || !(p.mask_or_random_prob > p.mask_replace_prob), op,
                   "random replacement needs at least one non-special id in the vocabulary");
  PYFAST_CHECK_ARG(p.max_span_words >= 1 && p.max_span_words <= kMaxSpanWords, op,
                   "max_span_words must be in [1, ", kMaxSpanWords, "], got ", p.max_span_words);
  PYFAST_CHECK_ARG(!p.span || p.max_span_words == 1 || p.span_length_cdf != nullptr, op,
                   "span mode needs the span length table");
}

}  // namespace pyfast
