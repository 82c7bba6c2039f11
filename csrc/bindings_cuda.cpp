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
// attention (issue #8; argument packing identical to bindings.cpp's attention section)
// ================================================================================================
pyfast::attention::Strided attention_strided(const std::vector<int64_t>& t) {
  PYFAST_CHECK_ARG(t.size() == 4, "attention", "a strided tensor is (ptr, batch, head, row strides)");
  pyfast::attention::Strided s;
  s.data = reinterpret_cast<void*>(static_cast<std::uintptr_t>(t[0]));
  s.batch_stride = t[1];
  s.head_stride = t[2];
  s.row_stride = t[3];
  return s;
}

// sizes = (B, Hq, Hkv, L, S, E, Ev); lse = (ptr, batch_stride, head_stride); cu = (cu_q ptr, cu_k ptr).
pyfast::attention::AttentionParams attention_params(int dtype, const std::vector<int64_t>& sizes, double scale,
                                                    bool is_causal, const std::vector<int64_t>& q,
                                                    const std::vector<int64_t>& k, const std::vector<int64_t>& v,
                                                    const std::vector<int64_t>& out, const std::vector<int64_t>& mask,
                                                    const std::vector<int64_t>& lse, const std::vector<int64_t>& cu,
                                                    double dropout_p, uint64_t seed) {
  PYFAST_CHECK_ARG(sizes.size() == 7 && lse.size() == 3 && cu.size() == 2, "attention", "bad argument packing");
  pyfast::attention::AttentionParams p;
  p.dtype = static_cast<pyfast::attention::ElemType>(dtype);
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
  p.lse = as_ptr<float>(static_cast<std::uintptr_t>(lse[0]));
  p.lse_batch_stride = lse[1];
  p.lse_head_stride = lse[2];
  p.cu_seqlens_q = as_ptr<const int32_t>(static_cast<std::uintptr_t>(cu[0]));
  p.cu_seqlens_k = as_ptr<const int32_t>(static_cast<std::uintptr_t>(cu[1]));
  p.dropout_p = static_cast<float>(dropout_p);
  p.seed = seed;
  return p;
}

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
