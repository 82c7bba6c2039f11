// The PYBIND11_MODULE of the CUDA module `pyfast._C_cuda` (built only when nvcc is found). Same rules as
// bindings.cpp: integers in (data_ptr, sizes, strides, and the current CUDA stream as an int), GIL released,
// kernels in csrc/<op>/*.cu. CUDA errors raise RuntimeError (the kernels check cudaGetLastError after every
// launch); bad sizes raise ValueError. Status of the kernels: compiled for sm_80/sm_90, run on an H200 on
// 2026-11-28 (README, GPU section).
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
#include "word2vec/sgns_op_cuda.h"

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
// attention (issue #8; argument packing shared with bindings.cpp via attention/attention_pack.h)
// ================================================================================================
using pyfast::attention::attention_backward_params;
using pyfast::attention::attention_params;

void bind_attention(py::module_& m) {
  m.def(
      "attention_fwd",
      [](PYFAST_ATTENTION_PARAMS, std::uintptr_t stream) {
        const auto p = attention_params(PYFAST_ATTENTION_ARGS);
        py::gil_scoped_release nogil;
        pyfast::attention::attention_fwd_cuda(p, stream);
      },
      "Fused attention forward on CUDA: fills out and lse (device pointers; see csrc/attention/attention_cuda.h).");
  m.def(
      "attention_bwd",
      [](PYFAST_ATTENTION_BWD_PARAMS, std::uintptr_t delta, std::uintptr_t stream) {
        const auto bp = attention_backward_params(PYFAST_ATTENTION_BWD_ARGS);
        py::gil_scoped_release nogil;
        pyfast::attention::attention_bwd_cuda(bp, as_ptr<float>(delta), stream);
      },
      "Fused attention backward on CUDA: fills dq, dk, dv; delta is float32 scratch laid out like lse.");
  m.def(
      "attention_dropout_mask",
      [](std::uintptr_t keep, int64_t batch, int64_t heads, int64_t q_len, int64_t kv_len, double dropout_p,
         uint64_t seed, std::uintptr_t stream) {
        py::gil_scoped_release nogil;
        pyfast::attention::attention_dropout_keep_mask_cuda(as_ptr<uint8_t>(keep), batch, heads, q_len, kv_len,
                                                            static_cast<float>(dropout_p), seed, stream);
      },
      "The uint8 (B, H, L, S) dropout keep mask drawn on the GPU (tests compare it with the CPU's).");
  m.def(
      "mma_m16n8k16_check",
      [](int dtype, std::uintptr_t a, std::uintptr_t b, std::uintptr_t c, std::uintptr_t d, int64_t n,
         std::uintptr_t stream) {
        py::gil_scoped_release nogil;
        pyfast::cuda::mma_m16n8k16_check_cuda(dtype, a, b, c, d, n, stream);
      },
      "Test hook for the tensor-core helper: d[i] = a[i] (16x16) @ b[i] (16x8) + c[i] (fp32), one warp each.");
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
}

// ================================================================================================
// sgns op (issue #8)
// ================================================================================================
void bind_sgns(py::module_& m) {
  m.def(
      "sgns_forward",
      [](PYFAST_SGNS_PARAMS, std::uintptr_t loss, std::uintptr_t coef, std::uintptr_t center_rows,
         std::uintptr_t in_grad_dir, std::uintptr_t error, std::uintptr_t stream) {
        const pyfast::SgnsParams p = pyfast::make_sgns_params(PYFAST_SGNS_ARGS);
        py::gil_scoped_release nogil;
        pyfast::sgns_forward_cuda(p, as_ptr<void>(loss), as_ptr<void>(coef), as_ptr<void>(center_rows),
                                  as_ptr<void>(in_grad_dir), as_ptr<int64_t>(error), stream);
      },
      "SGNS forward on CUDA (device pointers; see csrc/word2vec/sgns_op_cuda.h).");
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
}
