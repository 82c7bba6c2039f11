// How the attention bindings (CPU bindings.cpp and CUDA bindings_cuda.cpp) unpack the integer lists that
// pyfast/ops/attention.py passes into an AttentionParams: one definition, so both backends read the same packing.
// A strided tensor arrives as (data_ptr, batch_stride, head_stride, row_stride); data_ptr 0 = absent.
#pragma once
#include <cstdint>
#include <vector>

#include "attention/attention.h"
#include "common/checks.h"

namespace pyfast {
namespace attention {

inline Strided attention_strided(const std::vector<int64_t>& t) {
  PYFAST_CHECK_ARG(t.size() == 4, "attention", "a strided tensor is (ptr, batch, head, row strides)");
  Strided s;
  s.data = reinterpret_cast<void*>(static_cast<std::uintptr_t>(t[0]));
  s.batch_stride = t[1];
  s.head_stride = t[2];
  s.row_stride = t[3];
  return s;
}

// The arguments pyfast/ops/attention.py passes first to every attention binding (CPU and CUDA), written once: a
// forward binding's lambda takes PYFAST_ATTENTION_PARAMS (then its own extras) and forwards PYFAST_ATTENTION_ARGS
// to attention_params; a backward's takes PYFAST_ATTENTION_BWD_PARAMS and calls attention_backward_params.
#define PYFAST_ATTENTION_PARAMS                                                                                     \
  int dtype, const std::vector<int64_t>& sizes, double scale, bool is_causal, const std::vector<int64_t>& q,        \
      const std::vector<int64_t>& k, const std::vector<int64_t>& v, const std::vector<int64_t>& out,                \
      const std::vector<int64_t>& mask, const std::vector<int64_t>& lse, const std::vector<int64_t>& cu,            \
      double dropout_p, uint64_t seed
#define PYFAST_ATTENTION_ARGS dtype, sizes, scale, is_causal, q, k, v, out, mask, lse, cu, dropout_p, seed
// The backward's: the forward's, then dout, dq, dk, dv (strided like q, k, v).
#define PYFAST_ATTENTION_BWD_PARAMS                                                                                 \
  PYFAST_ATTENTION_PARAMS, const std::vector<int64_t>& dout, const std::vector<int64_t>& dq,                       \
      const std::vector<int64_t>& dk, const std::vector<int64_t>& dv
#define PYFAST_ATTENTION_BWD_ARGS PYFAST_ATTENTION_ARGS, dout, dq, dk, dv

// sizes = (B, Hq, Hkv, L, S, E, Ev); lse = (ptr, batch_stride, head_stride); cu = (cu_q ptr, cu_k ptr).
inline AttentionParams attention_params(PYFAST_ATTENTION_PARAMS) {
  PYFAST_CHECK_ARG(sizes.size() == 7 && lse.size() == 3 && cu.size() == 2, "attention", "bad argument packing");
  AttentionParams p;
  p.dtype = static_cast<DType>(dtype);
  p.batch = sizes[0];
  p.q_heads = sizes[1];
  p.kv_heads = sizes[2];
  p.q_len = sizes[3];
  p.kv_len = sizes[4];
  p.head_dim = sizes[5];
  p.value_dim = sizes[6];
  p.scale = static_cast<float>(scale);
  p.is_causal = is_causal;
  p.q = attention_strided(q);
  p.k = attention_strided(k);
  p.v = attention_strided(v);
  p.out = attention_strided(out);
  p.mask = attention_strided(mask);
  p.lse = reinterpret_cast<float*>(static_cast<std::uintptr_t>(lse[0]));
  p.lse_batch_stride = lse[1];
  p.lse_head_stride = lse[2];
  p.cu_seqlens_q = reinterpret_cast<const int32_t*>(static_cast<std::uintptr_t>(cu[0]));
  p.cu_seqlens_k = reinterpret_cast<const int32_t*>(static_cast<std::uintptr_t>(cu[1]));
  p.dropout_p = static_cast<float>(dropout_p);
  p.seed = seed;
  return p;
}

inline AttentionBackwardParams attention_backward_params(PYFAST_ATTENTION_BWD_PARAMS) {
  AttentionBackwardParams bp;
  bp.fwd = attention_params(PYFAST_ATTENTION_ARGS);
  bp.dout = attention_strided(dout);
  bp.dq = attention_strided(dq);
  bp.dk = attention_strided(dk);
  bp.dv = attention_strided(dv);
  return bp;
}

}  // namespace attention
}  // namespace pyfast
