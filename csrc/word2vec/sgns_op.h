// Skip-gram negative-sampling loss as a tensor op (issue #6): the kernels behind pyfast.ops.sgns_loss, its
// backward, and the noise sampler. Plain structs and raw pointers only (no torch, no Python); the Python layer
// validates shapes/dtypes and passes contiguous tensors. Ids are bounds-checked here again, before any read.
// Limits: CPU only; float32 and float64 weights; weight rows may have a row stride, everything else contiguous.
#pragma once
#include <cstdint>
#include <vector>

#include "common/alias_table.h"
#include "common/dispatch.h"

namespace pyfast {

// One batch of N (center, context) pairs, each with K negatives. Target j of pair n is the context for j = 0
// and negatives[n, j - 1] for j >= 1, so "targets" is an (N, K+1) view of the out-weight rows a pair touches.
struct SgnsParams {
  const void* in_weight = nullptr;   // (V, D) rows of the center ("input") embedding, row stride in_stride
  const void* out_weight = nullptr;  // (V, D) rows of the context ("output") embedding, row stride out_stride
  int64_t in_stride = 0;             // elements between rows
  int64_t out_stride = 0;
  const int64_t* centers = nullptr;    // (N,)
  const int64_t* contexts = nullptr;   // (N,)
  const int64_t* negatives = nullptr;  // (N, K)
  int64_t num_embeddings = 0;          // V: every id must lie in [0, V)
  int64_t dim = 0;                     // D
  int64_t num_pairs = 0;               // N
  int64_t num_negatives = 0;           // K (>= 0)
  DType dtype = DType::kFloat32;       // of both weights, the per-pair loss, coef and grad_loss
};

// The integers pyfast/ops/sgns.py passes first to the forward bindings (CPU and CUDA; pointers as ints), written
// once: a binding's lambda takes PYFAST_SGNS_PARAMS (then its own extras) and forwards PYFAST_SGNS_ARGS to
// make_sgns_params.
#define PYFAST_SGNS_PARAMS                                                                                          \
  std::uintptr_t in_weight, std::uintptr_t out_weight, int64_t in_stride, int64_t out_stride, std::uintptr_t centers,\
      std::uintptr_t contexts, std::uintptr_t negatives, int64_t num_embeddings, int64_t dim, int64_t num_pairs,    \
      int64_t num_negatives, int dtype
#define PYFAST_SGNS_ARGS                                                                                            \
  in_weight, out_weight, in_stride, out_stride, centers, contexts, negatives, num_embeddings, dim, num_pairs,       \
      num_negatives, dtype

// What the CPU and CUDA bindings build from those integers.
inline SgnsParams make_sgns_params(PYFAST_SGNS_PARAMS) {
  SgnsParams p;
  p.in_weight = reinterpret_cast<const void*>(in_weight);
  p.out_weight = reinterpret_cast<const void*>(out_weight);
  p.in_stride = in_stride;
  p.out_stride = out_stride;
  p.centers = reinterpret_cast<const int64_t*>(centers);
  p.contexts = reinterpret_cast<const int64_t*>(contexts);
  p.negatives = reinterpret_cast<const int64_t*>(negatives);
  p.num_embeddings = num_embeddings;
  p.dim = dim;
  p.num_pairs = num_pairs;
  p.num_negatives = num_negatives;
  p.dtype = static_cast<DType>(dtype);
  return p;
}

// Forward. loss: (N,) per-pair loss -[log s(u.v_ctx) + sum_k log s(-u.v_neg_k)];
// coef: (N, K+1) d loss_n / d score_nj = sigmoid(score_nj) - label_j (label 1 for the context, 0 for a negative).
// When center_rows and in_grad_dir are non-null (a backward will follow), the forward also writes, while the
// rows are still in L1: center_rows (N, D) = in[centers[n]] and in_grad_dir (N, D) = sum_j coef_nj out[target_nj]
// = d loss_n / d u. The backward then reads only these compact (N, D) buffers, never the (V, D) tables again:
// it costs 2 N D floats of memory and spares a second random gather of 7N rows (see sgns_op_cpu.cpp).
void sgns_forward_cpu(const SgnsParams& p, void* loss, void* coef, void* center_rows, void* in_grad_dir);

// The sorted unique values of ids (n,) in [0, V) and, for each element, the index of its value among them.
// unique: room for n values; inverse: (n,). Returns the number of unique ids U. Throws std::invalid_argument
// (before writing anything) for an id outside [0, V).
int64_t sgns_unique_cpu(const int64_t* ids, int64_t n, int64_t num_embeddings, int64_t* unique, int64_t* inverse,
                        const char* op);

// Backward into compact gradient rows, one per unique id (so duplicates accumulate, with no atomics and a fixed
// summation order: results do not depend on the thread count). Reads no weights, only the forward's buffers.
//   grad_loss: (N,) d(total loss)/d loss_n;  coef, center_rows, in_grad_dir: from the forward
//   center_slot: (N,) index of centers[n] among the U_in unique centers (sgns_unique_cpu's inverse)
//   target_slot: (N*(K+1),) index of target (n, j) among the U_out unique targets
//   grad_in_rows: (U_in, D) = sum over n with that center of grad_loss[n] * in_grad_dir[n]
//   grad_out_rows: (U_out, D) = sum over (n, j) with that target of grad_loss[n] * coef[n, j] * center_rows[n]
void sgns_backward_cpu(int64_t num_pairs, int64_t num_negatives, int64_t dim, DType dtype, const void* coef,
                       const void* grad_loss, const void* center_rows, const void* in_grad_dir,
                       const int64_t* center_slot, int64_t num_unique_centers, const int64_t* target_slot,
                       int64_t num_unique_targets, void* grad_in_rows, void* grad_out_rows);

// Training forward for a reduced loss (mean: scale = 1/N, sum: scale = 1), fused with the backward: while each
// pair's rows are in L1 it also accumulates the gradient rows of the reduced loss, as if d loss / d (reduced loss)
// were 1 (the autograd layer multiplies by the real upstream scalar when it is not 1). One row per unique id,
// grouped so that every row is summed by one thread in a fixed order (deterministic, no atomics).
// Step 1, sgns_fused_prepare_cpu: validates ids, then unique_centers (room for N) / center_slot (N) and
// unique_targets (room for N (K+1)) / target_slot (N (K+1), target j of pair n at n (K+1) + j), sorted unique ids
// like sgns_unique_cpu; counts[0] = U_in, counts[1] = U_out.
// Step 2, sgns_forward_fused_cpu: loss (1,) = scale * sum_n loss_n; grad_in_rows (U_in, D), grad_out_rows
// (U_out, D), either may be null (not wanted). Compared with sgns_forward_cpu + sgns_backward_cpu it writes no
// (N, D) buffers and reads none back: ~4 N D floats less memory traffic and one pass less.
void sgns_fused_prepare_cpu(const SgnsParams& p, int64_t* unique_centers, int64_t* center_slot,
                            int64_t* unique_targets, int64_t* target_slot, int64_t* counts);
void sgns_forward_fused_cpu(const SgnsParams& p, double scale, const int64_t* center_slot,
                            int64_t num_unique_centers, const int64_t* target_slot, int64_t num_unique_targets,
                            void* loss, void* grad_in_rows, void* grad_out_rows);

// Ask Linux to back the 2 MiB-aligned part of [data, data + bytes) with transparent huge pages (MADV_HUGEPAGE,
// then MADV_COLLAPSE to do it now rather than whenever khugepaged gets there). Random row gathers from a table
// larger than the TLB's reach otherwise pay a page walk on nearly every row, doubly so in a VM. Returns the
// number of bytes advised (0 where unsupported); never changes the data.
int64_t sgns_advise_hugepages(void* data, int64_t bytes);

// The word2vec noise distribution count^exponent as an alias table (O(V) build, O(1) per draw), shared in
// form with the trainer (common/alias_table.h). Draws for row r are keyed by (seed, r) through Philox, so a
// sample never depends on the thread count.
class SgnsNoiseSampler {
 public:
  // counts: (V,) non-negative; exponent: usually 0.75.
  SgnsNoiseSampler(const double* counts, int64_t num_embeddings, double exponent);
  int64_t size() const { return static_cast<int64_t>(table_.size()); }
  // out: (num_rows, k) int64.
  void sample(int64_t* out, int64_t num_rows, int64_t k, uint64_t seed) const;

 private:
  AliasTable table_;
};

}  // namespace pyfast
