// Fused scaled-dot-product attention, forward and backward: the params structs pyfast/ops/attention.py fills
// (raw pointers, sizes, strides in elements, scalars) and the CPU entry points. No torch or CUDA includes; the CUDA
// entry points (attention_cuda.h) take the same structs. Limits: head dims up to 256 (kMaxHeadDim), the last
// dimension of every tensor contiguous (stride 1); Python makes that so.
#pragma once
#include <cstdint>

#include "common/dispatch.h"

namespace pyfast {
namespace attention {

constexpr int64_t kMaxHeadDim = 256;
// The Philox stream of the dropout keep mask (see AttentionParams::dropout_p): the same in every kernel.
constexpr uint32_t kDropoutStream = 0x41D0;

// q, k, v, out and the gradients are float32, bfloat16 or float16 (pyfast::DType; 16-bit types are widened to
// fp32 on load); the mask and the lse are always float32.

// A (batch, head, row, col) tensor whose last dimension is contiguous. In varlen mode (cu_seqlens given) the
// batch stride is unused: sequence b starts at row cu_seqlens[b] and `row` strides over tokens.
struct Strided {
  void* data = nullptr;
  int64_t batch_stride = 0;
  int64_t head_stride = 0;
  int64_t row_stride = 0;
};

struct AttentionParams {
  DType dtype = DType::kFloat32;
  int64_t batch = 0;      // B (or the number of sequences in varlen mode)
  int64_t q_heads = 0;    // Hq
  int64_t kv_heads = 0;   // Hkv; Hq % Hkv == 0, q head h reads kv head h / (Hq / Hkv)
  int64_t q_len = 0;      // L (max_seqlen_q in varlen mode)
  int64_t kv_len = 0;     // S (max_seqlen_k in varlen mode)
  int64_t head_dim = 0;   // E: q and k
  int64_t value_dim = 0;  // Ev: v and out
  float scale = 1.0f;     // scores = scale * q k^T
  bool is_causal = false;  // query i sees key j iff j <= i (top-left aligned, as torch SDPA)

  Strided q, k, v, out;   // q (B, Hq, L, E); k (B, Hkv, S, E); v (B, Hkv, S, Ev); out (B, Hq, L, Ev)
  // Additive float32 mask broadcast to (B, Hq, L, S) with strides (zero where broadcast), last dim stride 1;
  // nullptr for none. -inf disables a (query, key) pair.
  Strided mask;
  // Log-sum-exp of each score row, float32 (B, Hq, L) (varlen: (Hq, total_q), batch_stride unused).
  // -inf for a row whose mask allows no key; such a row's output is 0 and its gradients are 0.
  float* lse = nullptr;
  int64_t lse_batch_stride = 0;
  int64_t lse_head_stride = 0;

  // varlen: int32 prefix sums of the sequence lengths, (batch + 1) each; nullptr for the padded layout.
  const int32_t* cu_seqlens_q = nullptr;
  const int32_t* cu_seqlens_k = nullptr;

  // Dropout on the attention probabilities: pair (b, h, i, j) is kept iff its Philox uniform keyed by
  // (seed, counter of (b, h, i, j / 4), stream kDropoutStream) >= dropout_p; kept values are scaled by
  // 1 / (1 - dropout_p). Regenerated in the backward, never stored.
  float dropout_p = 0.0f;
  uint64_t seed = 0;
};

struct AttentionBackwardParams {
  AttentionParams fwd;        // the forward's inputs, its out and its lse
  Strided dout;               // (B, Hq, L, Ev)
  Strided dq, dk, dv;         // written (not accumulated): same layouts as q, k, v
};

// Forward: fills params.out and params.lse.
void attention_fwd_cpu(const AttentionParams& params);
// Backward: fills dq, dk, dv from the forward's inputs, out, lse and dout (scores recomputed).
void attention_bwd_cpu(const AttentionBackwardParams& params);
// The dropout keep mask the kernels use, as uint8 (B, Hq, L, S) contiguous: for tests and references only.
void attention_dropout_keep_mask(uint8_t* keep, int64_t batch, int64_t heads, int64_t q_len, int64_t kv_len,
                                 float dropout_p, uint64_t seed);

}  // namespace attention
}  // namespace pyfast
