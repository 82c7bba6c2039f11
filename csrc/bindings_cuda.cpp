// The PYBIND11_MODULE of the CUDA module `pyfast._C_cuda` (built only when nvcc is found). Same rules as
// bindings.cpp: each entry takes its op's params struct (bound by <op>_pack.h, filled by name in Python) and the
// current CUDA stream as an int, GIL released; kernels in csrc/<op>/*.cu. CUDA errors raise RuntimeError (the
// kernels check cudaGetLastError after every launch); bad sizes raise ValueError.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "attention/attention_cuda.h"
#include "attention/attention_pack.h"
#include "common/checks.h"
#include "common/mma_check_cuda.h"
#include "masking/masking.h"
#include "masking/masking_pack.h"
#include "masking/patch_masking.h"
#include "masking/patch_masking_pack.h"
#include "word2vec/sgns_op.h"
#include "word2vec/sgns_op_pack.h"
#include "word2vec/word2vec.h"
#include "word2vec/word2vec_pack.h"

namespace py = pybind11;

namespace pyfast {
bool cuda_device_name(std::string& name, std::string& error);
}

namespace {

template <typename T>
T* as_ptr(std::uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

// ================================================================================================
// attention (the params classes: csrc/attention/attention_pack.h, as in the CPU module)
// ================================================================================================
void bind_attention(py::module_& m) {
  pyfast::attention::bind_attention_params(m);
  m.def(
      "attention_fwd",
      [](const pyfast::attention::AttentionParams& p, std::uintptr_t stream) {
        pyfast::attention::attention_fwd_cuda(p, stream);
      },
      py::arg("params"), py::arg("stream"), py::call_guard<py::gil_scoped_release>(),
      "Fused attention forward on CUDA: fills out and lse (device pointers; see csrc/attention/attention_cuda.h).");
  m.def(
      "attention_bwd",
      [](const pyfast::attention::AttentionBackwardParams& p, std::uintptr_t delta, std::uintptr_t dq_acc,
         std::uintptr_t stream) {
        pyfast::attention::attention_bwd_cuda(p, as_ptr<float>(delta), as_ptr<float>(dq_acc), stream);
      },
      py::arg("params"), py::arg("delta"), py::arg("dq_acc"), py::arg("stream"),
      py::call_guard<py::gil_scoped_release>(),
      "Fused attention backward on CUDA: fills dq, dk, dv; delta is float32 scratch laid out like lse; dq_acc "
      "float32 scratch laid out like dq for the single-kernel (atomic, not bitwise repeatable) backward, or 0 for "
      "the deterministic one.");
  m.def(
      "attention_bwd_takes_dq_scratch",
      [](const pyfast::attention::AttentionBackwardParams& p) {
        return pyfast::attention::attention_bwd_cuda_takes_dq_scratch(p);
      },
      py::arg("params"),
      "Whether attention_bwd would run its single-kernel backward given a dq_acc buffer for these params.");
  m.def(
      "attention_dropout_mask",
      [](std::uintptr_t keep, int64_t batch, int64_t heads, int64_t q_len, int64_t kv_len, double dropout_p,
         uint64_t seed, std::uintptr_t stream) {
        pyfast::attention::attention_dropout_keep_mask_cuda(as_ptr<uint8_t>(keep), batch, heads, q_len, kv_len,
                                                            static_cast<float>(dropout_p), seed, stream);
      },
      py::arg("keep"), py::arg("batch"), py::arg("heads"), py::arg("q_len"), py::arg("kv_len"), py::arg("dropout_p"),
      py::arg("seed"), py::arg("stream"), py::call_guard<py::gil_scoped_release>(),
      "The uint8 (B, H, L, S) dropout keep mask drawn on the GPU (tests compare it with the CPU's).");
  m.def(
      "mma_m16n8k16_check",
      [](int dtype, std::uintptr_t a, std::uintptr_t b, std::uintptr_t c, std::uintptr_t d, int64_t n,
         std::uintptr_t stream) {
        py::gil_scoped_release nogil;
        pyfast::cuda::mma_m16n8k16_check_cuda(dtype, a, b, c, d, n, stream);
      },
      "Test hook for the tensor-core helper: d[i] = a[i] (16x16) @ b[i] (16x8) + c[i] (fp32), one warp each.");
  m.def(
      "ldmatrix_x4_check",
      [](std::uintptr_t src, std::uintptr_t rows, std::uintptr_t out, bool trans, std::uintptr_t stream) {
        py::gil_scoped_release nogil;
        pyfast::cuda::ldmatrix_x4_check_cuda(src, rows, out, trans, stream);
      },
      "Test hook for ldmatrix.x4 (.trans): src (32, 8) uint16, rows (32,) int32 lane addresses, out (32, 4) uint32.");
  m.def(
      "cp_async_check",
      [](std::uintptr_t src, std::uintptr_t out, int mode, std::uintptr_t stream) {
        py::gil_scoped_release nogil;
        pyfast::cuda::cp_async_check_cuda(src, out, mode, stream);
      },
      "Test hook for cp.async: 4096 bytes src -> shared -> out; mode 0 correct, 1 no wait, 2 wait_group 1, 3 zfill.");
}

// ================================================================================================
// masking
// ================================================================================================
void bind_masking(py::module_& m) {
  pyfast::bind_masking_params(m);
  m.def(
      "mask_tokens",
      [](const pyfast::MaskTokensParams& p, const pyfast::MaskTokensCudaScratch& scratch, std::uintptr_t stream) {
        pyfast::mask_tokens_cuda(p, scratch, stream);
      },
      py::call_guard<py::gil_scoped_release>(),
      "Masked-token sampling on CUDA: device pointers and scratch (see csrc/masking/masking.h).");
  pyfast::bind_patch_mask_params(m);
  m.def(
      "random_patch_mask",
      [](const pyfast::PatchMaskParams& p, std::uintptr_t keys, std::uintptr_t stream) {
        pyfast::patch_mask_cuda(p, reinterpret_cast<uint64_t*>(keys), stream);
      },
      py::call_guard<py::gil_scoped_release>(),
      "MAE's per-image patch choice on CUDA: device pointers, (B, n) uint64 key scratch (see patch_masking.h).");
}

// ================================================================================================
// sgns op
// ================================================================================================
// Params structs bound by word2vec/sgns_op_pack.h (shared with bindings.cpp); device pointers.
void bind_sgns(py::module_& m) {
  pyfast::bind_sgns_params(m);
  m.def(
      "sgns_forward",
      [](const pyfast::SgnsForwardParams& p, std::uintptr_t stream) { pyfast::sgns_forward_cuda(p, stream); },
      py::arg("params"), py::arg("stream"), py::call_guard<py::gil_scoped_release>(),
      "SGNS forward on CUDA (see csrc/word2vec/sgns_op.h).");
  m.def(
      "sgns_backward_rows",
      [](const pyfast::SgnsRowsParams& p, std::uintptr_t stream) { pyfast::sgns_backward_rows_cuda(p, stream); },
      py::arg("params"), py::arg("stream"), py::call_guard<py::gil_scoped_release>(),
      "SGNS backward on CUDA: one gradient row per occurrence of an id (see SgnsRowsParams).");
  m.def(
      "sgns_sgd_step",
      [](const pyfast::SgnsSgdStepParams& p, std::uintptr_t stream) { pyfast::sgns_sgd_step_cuda(p, stream); },
      py::arg("params"), py::arg("stream"), py::call_guard<py::gil_scoped_release>(),
      "SGNS forward + backward + SGD update on CUDA, weights updated in place (see SgnsSgdStepParams).");
}

// ================================================================================================
// word2vec trainer
// ================================================================================================
void bind_word2vec(py::module_& m) {
  namespace w2v = pyfast::w2v;
  pyfast::bind_word2vec_cuda_params(m);
  m.def(
      "w2v_train_epoch",
      [](const w2v::TrainCudaParams& p, std::uintptr_t stream) { w2v::train_epoch_cuda(p, stream); },
      py::arg("params"), py::arg("stream"), py::call_guard<py::gil_scoped_release>(),
      "One word2vec epoch on CUDA (see csrc/word2vec/word2vec.h, TrainCudaParams); asynchronous on the stream.");
  m.def("w2v_warp_bytes", &w2v::train_cuda_warp_bytes, py::arg("dim"), py::arg("window"), py::arg("negative"),
        py::arg("max_chunk_len"), "Shared memory one warp of the word2vec kernel needs (bytes).");
  m.def(
      "w2v_draws",
      [](const w2v::TrainCudaParams& p, std::uintptr_t keep, std::uintptr_t reduce, std::uintptr_t negatives,
         int pair, std::uintptr_t stream) {
        w2v::train_cuda_draws(p, as_ptr<uint8_t>(keep), as_ptr<int32_t>(reduce), as_ptr<int32_t>(negatives), pair,
                              stream);
      },
      py::arg("params"), py::arg("keep"), py::arg("reduce"), py::arg("negatives"), py::arg("pair"), py::arg("stream"),
      py::call_guard<py::gil_scoped_release>(), "Test hook: the keep / window / negative draws the kernel makes.");
}

}  // namespace

PYBIND11_MODULE(_C_cuda, m) {
  m.doc() = "pyfast CUDA kernels (raw-pointer interface; use the pyfast Python API)";
  m.def("device_name", []() -> py::tuple {
    std::string name, error;
    if (pyfast::cuda_device_name(name, error)) return py::make_tuple(name, py::none());
    return py::make_tuple(py::none(), error);
  });
  bind_attention(m);
  bind_masking(m);
  bind_sgns(m);
  bind_word2vec(m);
}
