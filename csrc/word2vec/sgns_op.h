// Skip-gram negative-sampling loss as a tensor op: the params structs and entry points behind pyfast.ops.sgns_loss
// (CPU: sgns_op_cpu.cpp, CUDA forward: sgns_op_cuda.cu). Plain structs and raw pointers only (no torch, no Python,
// no CUDA headers); the Python layer validates shapes / dtypes and passes contiguous tensors. Ids are
// bounds-checked by the kernels again, before any read.
// Limits: float32 and float64 weights; weight rows may have a row stride, everything else contiguous.
#pragma once
#include <cstdint>

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
  DType dtype = DType::kFloat32;       // of both weights and of every float buffer below
};

// Forward. loss: (N,) per-pair loss -[log s(u.v_ctx) + sum_k log s(-u.v_neg_k)];
// coef: (N, K+1) d loss_n / d score_nj = sigmoid(score_nj) - label_j (label 1 for the context, 0 for a negative).
// When center_rows and in_grad_dir are non-null (a backward will follow), the forward also writes, while the
// rows are still in L1: center_rows (N, D) = in[centers[n]] and in_grad_dir (N, D) = sum_j coef_nj out[target_nj]
// = d loss_n / d u. The backward then reads only these compact (N, D) buffers, never the (V, D) tables again:
// it costs 2 N D floats of memory and spares a second random gather of 7N rows (see sgns_op_cpu.cpp).
struct SgnsForwardParams {
  SgnsParams batch;
  void* loss = nullptr;         // (N,); CUDA: may be null (only loss_total wanted)
  void* coef = nullptr;         // (N, K+1)
  void* center_rows = nullptr;  // (N, D) or null
  void* in_grad_dir = nullptr;  // (N, D) or null
  // CUDA only (the ids live on the device, so the kernel checks them): (3,) int64, set by the CUDA entry to -1 (all
  // bits: the largest unsigned value); the kernel atomicMins into error[0] / [1] / [2] the position of an
  // out-of-range center / context / negative id (flat index into that array) and skips that pair without reading
  // any row. The caller reads it after the launch and raises where an entry is not -1. The CPU kernel throws.
  int64_t* error = nullptr;
  // CUDA only, may be null: (1,) double, set to 0 by the caller's entry, gets sum_n loss_n (one atomicAdd per
  // block; the order of the blocks' adds varies, so the last bits may differ from run to run).
  double* loss_total = nullptr;
};

// CUDA backward of the custom-op path, one gradient row per occurrence of an id, as nn.Embedding(sparse=True) gives
// them (duplicates summed by the gradient's reader): one kernel in place of the broadcast multiplies, the cat of the
// targets and the copy of the ids that plain torch ops would launch. Pair n's targets in the forward's order:
//   in_ids[n] = centers[n], in_rows[n] = g_n in_grad_dir[n]                      (N,), (N, D)
//   out_ids[n (K+1) + j] = target_nj, out_rows[n (K+1) + j] = (g_n coef_nj) center_rows[n]   (N (K+1),), (N (K+1), D)
// with g_n = grad_loss[n * grad_loss_stride] (stride 0: the broadcast upstream gradient of a mean / sum, read in
// place instead of materialised). Reads no weights and indexes nothing by an id (the forward checked them).
struct SgnsRowsParams {
  int64_t num_pairs = 0;      // N
  int64_t num_negatives = 0;  // K
  int64_t dim = 0;            // D
  DType dtype = DType::kFloat32;
  const void* coef = nullptr;         // (N, K+1)
  const void* grad_loss = nullptr;    // (N,) with stride grad_loss_stride (elements, >= 0)
  int64_t grad_loss_stride = 1;
  const void* center_rows = nullptr;  // (N, D)
  const void* in_grad_dir = nullptr;  // (N, D)
  const int64_t* centers = nullptr;    // (N,)
  const int64_t* contexts = nullptr;   // (N,)
  const int64_t* negatives = nullptr;  // (N, K)
  int64_t* in_ids = nullptr;   // (N,)
  void* in_rows = nullptr;     // (N, D)
  int64_t* out_ids = nullptr;  // (N (K+1),)
  void* out_rows = nullptr;    // (N (K+1), D)
};

// CUDA SGD step of the reduced loss (mean: scale = 1/N, sum: scale = 1), no autograd: the same result as
// loss = sgns_loss(...); loss.backward(); torch.optim.SGD(lr).step() with sparse gradients, in two kernels.
//   1. the forward kernel (bounds flags, K+1 dot products, coef, the center rows and d loss / d u into scratch,
//      the loss total), reading the weights only;
//   2. an apply kernel that, unless an id was flagged, adds -lr scale (g rows) into the weights by atomicAdd
//      (Hogwild-style scatter: duplicate ids sum, as in a sparse SGD step) from the scratch rows only.
// Why two and not one: every gradient must come from the weights before the step (that is what the autograd
// composition computes); in one kernel a pair would read rows another pair has already updated whenever a batch
// repeats an id, which every word2vec batch does. A grid-wide barrier would need a cooperative launch; the second
// launch costs a few microseconds. The weights are written in place through batch.in_weight / batch.out_weight
// (tied tables, in_weight == out_weight, are fine: all reads precede all writes).
struct SgnsSgdStepParams {
  SgnsParams batch;
  double lr = 0.0;
  double scale = 1.0;
  void* loss = nullptr;         // (1,) in the weights' dtype: scale * sum_n loss_n (NaN when an id was flagged)
  // scratch, uninitialised, on the device: coef (N, K+1), center_rows and in_grad_dir (N, D) in the weights' dtype;
  // loss_total (1,) double; error (3,) int64 as in SgnsForwardParams (the caller reads it and raises).
  void* coef = nullptr;
  void* center_rows = nullptr;
  void* in_grad_dir = nullptr;
  double* loss_total = nullptr;
  int64_t* error = nullptr;
};

// The sorted unique ids of a batch's centers and of its targets, and each occurrence's index among them (its
// slot): the first step of the fused forward and of the backward. Throws std::invalid_argument (before writing
// anything) for an id outside [0, V).
struct SgnsUniqueParams {
  const int64_t* centers = nullptr;    // (N,)
  const int64_t* contexts = nullptr;   // (N,)
  const int64_t* negatives = nullptr;  // (N, K)
  int64_t num_embeddings = 0;          // V
  int64_t num_pairs = 0;               // N
  int64_t num_negatives = 0;           // K
  int64_t* unique_centers = nullptr;   // room for N
  int64_t* center_slot = nullptr;      // (N,)
  int64_t* unique_targets = nullptr;   // room for N (K+1)
  int64_t* target_slot = nullptr;      // (N (K+1),), target j of pair n at n (K+1) + j
  int64_t* counts = nullptr;           // (2,): written U_in (unique centers), U_out (unique targets)
};

// Training forward of a reduced loss (mean: scale = 1/N, sum: scale = 1), fused with the backward: while each
// pair's rows are in L1 it also accumulates the gradient rows of the reduced loss, as if d loss / d (reduced loss)
// were 1 (the autograd layer multiplies by the real upstream scalar when it is not 1). One row per unique id
// (slots from sgns_unique_cpu), grouped so that every row is summed by one thread in a fixed order (deterministic,
// no atomics). Compared with the forward + backward it writes no (N, D) buffers and reads none back: ~4 N D floats
// less memory traffic and one pass less.
struct SgnsFusedParams {
  SgnsParams batch;
  double scale = 1.0;
  const int64_t* center_slot = nullptr;  // (N,)
  int64_t num_unique_centers = 0;        // U_in
  const int64_t* target_slot = nullptr;  // (N (K+1),)
  int64_t num_unique_targets = 0;        // U_out
  void* loss = nullptr;                  // (1,) scale * sum_n loss_n
  void* grad_in_rows = nullptr;          // (U_in, D), or null: not wanted
  void* grad_out_rows = nullptr;         // (U_out, D), or null
};

// Backward into compact gradient rows, one per unique id (so duplicates accumulate, with no atomics and a fixed
// summation order: results do not depend on the thread count). Reads no weights, only the forward's buffers.
//   grad_in_rows[c] = sum over n with center slot c of grad_loss[n] * in_grad_dir[n]
//   grad_out_rows[t] = sum over (n, j) with target slot t of grad_loss[n] * coef[n, j] * center_rows[n]
struct SgnsBackwardParams {
  int64_t num_pairs = 0;      // N
  int64_t num_negatives = 0;  // K
  int64_t dim = 0;            // D
  DType dtype = DType::kFloat32;
  const void* coef = nullptr;         // (N, K+1), from the forward
  const void* grad_loss = nullptr;    // (N,) d(total loss) / d loss_n
  const void* center_rows = nullptr;  // (N, D), from the forward
  const void* in_grad_dir = nullptr;  // (N, D), from the forward
  const int64_t* center_slot = nullptr;  // (N,) (sgns_unique_cpu)
  int64_t num_unique_centers = 0;
  const int64_t* target_slot = nullptr;  // (N (K+1),)
  int64_t num_unique_targets = 0;
  void* grad_in_rows = nullptr;   // (U_in, D)
  void* grad_out_rows = nullptr;  // (U_out, D)
};

void sgns_forward_cpu(const SgnsForwardParams& p);
void sgns_forward_cuda(const SgnsForwardParams& p, std::uintptr_t stream);  // device pointers; p.error required
void sgns_backward_rows_cuda(const SgnsRowsParams& p, std::uintptr_t stream);
void sgns_sgd_step_cuda(const SgnsSgdStepParams& p, std::uintptr_t stream);
void sgns_unique_cpu(const SgnsUniqueParams& p);
void sgns_forward_fused_cpu(const SgnsFusedParams& p);
void sgns_backward_cpu(const SgnsBackwardParams& p);

// Ask Linux to back the 2 MiB-aligned part of [data, data + bytes) with transparent huge pages (MADV_HUGEPAGE,
// then MADV_COLLAPSE to do it now rather than whenever khugepaged gets there). Random row gathers from a table
// larger than the TLB's reach otherwise pay a page walk on nearly every row, doubly so in a VM. Returns the
// number of bytes advised (0 where unsupported); never changes the data.
int64_t sgns_advise_hugepages(void* data, int64_t bytes);

}  // namespace pyfast
