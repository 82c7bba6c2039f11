// The PYBIND11_MODULE of the CUDA module `pyfast._C_cuda` (built only when nvcc is found). Same rules as
// bindings.cpp: integers in (data_ptr, sizes, strides, and the current CUDA stream as an int), GIL released,
// kernels in csrc/<op>/*.cu. CUDA errors raise RuntimeError (the kernels check cudaGetLastError after every
// launch); bad sizes raise ValueError. Status of the kernels: compiled for sm_80/sm_90, unverified on a GPU.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "attention/attention_cuda.h"
#include "attention/attention_pack.h"
#include "common/checks.h"

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
using pyfast::attention::attention_params;
using pyfast::attention::attention_strided;

void bind_attention(py::module_& m) {
  m.def(
      "attention_fwd",
      [](int dtype, std::vector<int64_t> sizes, double scale, bool is_causal, std::vector<int64_t> q,
         std::vector<int64_t> k, std::vector<int64_t> v, std::vector<int64_t> out, std::vector<int64_t> mask,
         std::vector<int64_t> lse, std::vector<int64_t> cu, double dropout_p, uint64_t seed, std::uintptr_t stream) {
        const auto p = attention_params(dtype, sizes, scale, is_causal, q, k, v, out, mask, lse, cu, dropout_p, seed);
        py::gil_scoped_release nogil;
        pyfast::attention::attention_fwd_cuda(p, stream);
      },
      "Fused attention forward on CUDA: fills out and lse (device pointers; see csrc/attention/attention_cuda.h).");
  m.def(
      "attention_bwd",
      [](int dtype, std::vector<int64_t> sizes, double scale, bool is_causal, std::vector<int64_t> q,
         std::vector<int64_t> k, std::vector<int64_t> v, std::vector<int64_t> out, std::vector<int64_t> mask,
         std::vector<int64_t> lse, std::vector<int64_t> cu, double dropout_p, uint64_t seed,
         std::vector<int64_t> dout, std::vector<int64_t> dq, std::vector<int64_t> dk, std::vector<int64_t> dv,
         std::uintptr_t delta, std::uintptr_t stream) {
        pyfast::attention::AttentionBackwardParams bp;
        bp.fwd = attention_params(dtype, sizes, scale, is_causal, q, k, v, out, mask, lse, cu, dropout_p, seed);
        bp.dout = attention_strided(dout);
        bp.dq = attention_strided(dq);
        bp.dk = attention_strided(dk);
        bp.dv = attention_strided(dv);
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
}

// ================================================================================================
// masking (issue #8)
// ================================================================================================
void bind_masking(py::module_& m) { (void)m; }

// ================================================================================================
// sgns op (issue #8)
// ================================================================================================
void bind_sgns(py::module_& m) { (void)m; }

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
