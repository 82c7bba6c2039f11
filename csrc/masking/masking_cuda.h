// The CUDA launcher of masked-token sampling (issue #8; kernels in masking_cuda.cu). Same MaskTokensParams as the
// CPU kernel, with every array a DEVICE pointer except span_length_cdf (host memory: it is folded into the launch
// parameters), plus device scratch the caller allocates. No CUDA headers here: the stream is an integer.
// Status: compiled for sm_80 / sm_90; ran on an H200 (2026-11-28).
#pragma once
#include <cstdint>

#include "masking/masking.h"

namespace pyfast {

struct MaskTokensCudaScratch {
  // (1,) int64 on the device, preset by the caller to a value >= B * L: the kernels atomicMin into it the flat
  // index row * L + col of every id outside [0, vocab_size). The caller reads it after the launch and raises.
  int64_t* error = nullptr;
  // Exact-count mode only: (B, keys_row_stride) uint64, keys_row_stride >= the next power of two >= L
  // (a per-row bitonic sort of the word keys runs in place here).
  uint64_t* keys = nullptr;
  int64_t keys_row_stride = 0;
  // Exact-count and span modes: (B, L) int32 each, the first and last column of word w of the row.
  int32_t* word_first = nullptr;
  int32_t* word_last = nullptr;
};

// Fills out_ids and labels (both (B, L) contiguous, NOT aliasing input_ids) on `stream`, bit-identical to
// mask_tokens_cpu for the same params. Throws std::invalid_argument (ValueError) for bad sizes before launching;
// out-of-vocabulary ids never index anything and are reported through scratch.error.
void mask_tokens_cuda(const MaskTokensParams& p, const MaskTokensCudaScratch& scratch, std::uintptr_t stream);

// The smallest power of two >= n (n >= 1): the keys row length exact-count mode needs.
inline int64_t mask_keys_row_stride(int64_t n) {
  int64_t s = 1;
  while (s < n) s <<= 1;
  return s;
}

}  // namespace pyfast
