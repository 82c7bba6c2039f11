// CUDA entry points of fused attention: the same params structs as the CPU kernel (attention.h), pointers to
// device memory, plus the stream as an integer. No CUDA includes, so bindings_cuda.cpp (a plain C++ file) can call
// them. The host code checks its params with attention_checks.h, as the CPU kernel does.
#pragma once
#include <cstdint>

#include "attention/attention.h"

namespace pyfast {
namespace attention {

// Fills params.out and params.lse on `stream`. Throws std::invalid_argument on bad sizes, std::runtime_error
// on a CUDA error.
void attention_fwd_cuda(const AttentionParams& params, std::uintptr_t stream);
// Fills dq, dk, dv. `delta` is float32 scratch laid out like lse (same strides): rowsum(dout * out). `dq_acc`:
// float32 scratch laid out like dq (same strides), or nullptr. Given, and the problem eligible
// (attention_bwd_cuda_takes_dq_scratch), the backward runs as one kernel that sums dQ there by atomics (fast, not
// bitwise repeatable); nullptr selects the atomic-free, bitwise repeatable path (deterministic mode).
void attention_bwd_cuda(const AttentionBackwardParams& params, float* delta, float* dq_acc, std::uintptr_t stream);
// Whether attention_bwd_cuda would use a dq_acc buffer for these params (bf16 / fp16, head_dim == value_dim in
// {64, 128}, 16-byte aligned q / k / v / dout rows): the caller allocates one only then.
bool attention_bwd_cuda_takes_dq_scratch(const AttentionBackwardParams& params);
// The dropout keep mask as uint8 (B, H, L, S) contiguous, drawn on the GPU: tests compare it to the CPU's.
void attention_dropout_keep_mask_cuda(uint8_t* keep, int64_t batch, int64_t heads, int64_t q_len, int64_t kv_len,
                                      float dropout_p, uint64_t seed, std::uintptr_t stream);

}  // namespace attention
}  // namespace pyfast
