// The CUDA launcher of the SGNS op's forward (issue #8; kernel in sgns_op_cuda.cu): the same SgnsParams and buffers
// as sgns_forward_cpu (sgns_op.h), all DEVICE pointers, plus a device error buffer and the stream as an integer.
// No CUDA headers here. The backward is plain torch ops (pyfast/ops/sgns_cuda.py).
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

}  // namespace pyfast
