// The argument checks both attention backends run before touching memory (attention_cpu.cpp and the CUDA host
// code, attention_cuda.cu), and the params the dropout keep-mask entry points draw with. Each failure is a
// std::invalid_argument (ValueError in Python) naming the entry point `op`.
#pragma once
#include <cstdint>

#include "attention/attention.h"
#include "common/checks.h"

namespace pyfast {
namespace attention {

// Sizes, head dims, dtype, dropout_p and the varlen/mask combination: no memory is read (the CPU kernel also
// checks the cu_seqlens values, which live in host memory there).
inline void check_attention_params(const AttentionParams& p, const char* op) {
  PYFAST_CHECK_ARG(p.batch >= 0 && p.q_len >= 0 && p.kv_len >= 0, op, "negative size");
  PYFAST_CHECK_ARG(p.q_heads >= 1 && p.kv_heads >= 1 && p.q_heads % p.kv_heads == 0, op, "q heads (", p.q_heads,
                   ") must be a multiple of kv heads (", p.kv_heads, ")");
  PYFAST_CHECK_ARG(p.head_dim >= 1 && p.head_dim <= kMaxHeadDim && p.value_dim >= 1 && p.value_dim <= kMaxHeadDim,
                   op, "head dims must be in [1, ", kMaxHeadDim, "], got ", p.head_dim, " and ", p.value_dim);
  PYFAST_CHECK_ARG(p.dropout_p >= 0.0f && p.dropout_p < 1.0f, op, "dropout_p must be in [0, 1), got ", p.dropout_p);
  PYFAST_CHECK_ARG(p.dtype == DType::kFloat32 || p.dtype == DType::kBFloat16 || p.dtype == DType::kFloat16, op,
                   "dtype must be float32, bfloat16 or float16, got ", dtype_name(p.dtype));
  PYFAST_CHECK_ARG((p.cu_seqlens_q == nullptr) == (p.cu_seqlens_k == nullptr), op, "give both cu_seqlens or neither");
  PYFAST_CHECK_ARG(p.cu_seqlens_q == nullptr || p.mask.data == nullptr, op, "varlen takes no mask");
}

// The params the keep-mask entry points (CPU and CUDA) draw with: only the sizes, dropout_p and seed matter.
inline AttentionParams dropout_keep_mask_params(int64_t batch, int64_t heads, int64_t q_len, int64_t kv_len,
                                                float dropout_p, uint64_t seed, const char* op) {
  PYFAST_CHECK_ARG(batch >= 0 && heads >= 0 && q_len >= 0 && kv_len >= 0, op, "negative size");
  PYFAST_CHECK_ARG(dropout_p >= 0.0f && dropout_p < 1.0f, op, "dropout_p must be in [0, 1), got ", dropout_p);
  AttentionParams p;
  p.batch = batch;
  p.q_heads = heads;
  p.q_len = q_len;
  p.kv_len = kv_len;
  p.dropout_p = dropout_p;
  p.seed = seed;
  return p;
}

}  // namespace attention
}  // namespace pyfast
