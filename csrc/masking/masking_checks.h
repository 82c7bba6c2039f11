// What both masking backends (masking_cpu.cpp, masking_cuda.cu) derive from a MaskTokensParams before touching
// memory: the argument checks and the integer thresholds of the probability compares.
#pragma once
#include <cmath>
#include <cstdint>

#include "common/checks.h"
#include "masking/masking.h"

namespace pyfast {

// u < prob for u = uint_to_unit_float(c) = (c >> 8) / 2^24 is exactly (c >> 8) < ceil(prob * 2^24), since
// prob * 2^24 is exact in double: integer compares that vectorise on the CPU and need no float (nor fast-math,
// nor flush-to-zero) on the GPU, with the same answers as the float rule. prob in [0, 1].
inline uint32_t mask_unit_threshold(float prob) {
  return static_cast<uint32_t>(std::ceil(static_cast<double>(prob) * 16777216.0));
}

// Sizes, ids and probabilities that need no memory read (excluded_ids may be device memory: the CPU kernel checks
// it itself; the Python layer builds it sorted and in range). std::invalid_argument (ValueError) on failure.
inline void check_mask_tokens_params(const MaskTokensParams& p, const char* op) {
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
  PYFAST_CHECK_ARG(p.batch * p.seq_len == 0 || (p.input_ids != nullptr && p.out_ids != nullptr && p.labels != nullptr),
                   op, "input_ids, out_ids and labels must be set");
}

}  // namespace pyfast
