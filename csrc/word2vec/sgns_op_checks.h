// The SGNS kernels' host-side argument checks that the CPU and CUDA entries share (sizes, strides, dtype). The
// ids are checked by each backend where they live: the CPU entries read them here, the CUDA kernel flags them.
#pragma once
#include "common/checks.h"
#include "word2vec/sgns_op.h"

namespace pyfast {

inline void check_sgns_sizes(const SgnsParams& p, const char* op) {
  PYFAST_CHECK_ARG(p.num_pairs >= 0 && p.num_negatives >= 0 && p.dim >= 1 && p.num_embeddings >= 1, op,
                   "bad sizes N=", p.num_pairs, " K=", p.num_negatives, " D=", p.dim, " V=", p.num_embeddings);
  PYFAST_CHECK_ARG(p.in_stride >= p.dim && p.out_stride >= p.dim, op, "row strides must be >= D");
  PYFAST_CHECK_ARG(p.dtype == DType::kFloat32 || p.dtype == DType::kFloat64, op,
                   "weights must be float32 or float64");
}

}  // namespace pyfast
