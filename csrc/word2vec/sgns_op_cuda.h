// The CUDA launchers of the SGNS op (issue #8; kernels in sgns_op_cuda.cu): the same SgnsParams and buffers as
// sgns_forward_cpu / sgns_backward_cpu (sgns_op.h), all DEVICE pointers, plus a device error buffer and the
// stream as an integer. No CUDA headers here. Status: compiled for sm_80 / sm_90, unverified on a GPU.
#pragma once
#include <cstdint>

#include "word2vec/sgns_op.h"

namespace pyfast {

// Forward, same outputs as sgns_forward_cpu. error: (3,) int64 on the device, preset by the caller to a value
// larger than any position; the kernel atomicMins into error[0] / [1] / [2] the position of an out-of-range
// center / context / negative id (flat index into that array) and skips that pair without reading any row.
// The caller reads error after the launch and raises.
void sgns_forward_cuda(const SgnsParams& p, void* loss, void* coef, void* center_rows, void* in_grad_dir,
                       int64_t* error, std::uintptr_t stream);

// Backward, same meaning as sgns_backward_cpu, except that grad_in_rows / grad_out_rows must be ZEROED by the
// caller: duplicates accumulate with atomicAdd (one warp per pair adds its rows; the order of the additions is
// not fixed, so float results may differ in the last bits from run to run). error: (1,) int64 preset like the
// forward's; a slot outside [0, U) is skipped and its flat position atomicMin'ed into error[0].
void sgns_backward_cuda(int64_t num_pairs, int64_t num_negatives, int64_t dim, DType dtype, const void* coef,
                        const void* grad_loss, const void* center_rows, const void* in_grad_dir,
                        const int64_t* center_slot, int64_t num_unique_centers, const int64_t* target_slot,
                        int64_t num_unique_targets, void* grad_in_rows, void* grad_out_rows, int64_t* error,
                        std::uintptr_t stream);

}  // namespace pyfast
