// The only PYBIND11_MODULE of the CPU module `pyfast._C`. Bindings only translate: tensors arrive as
// (data_ptr, sizes...) integers from pyfast/ops/*, already validated there; kernels take plain structs.
// Every kernel call releases the GIL. C++ std::invalid_argument -> ValueError, std::runtime_error ->
// RuntimeError (pybind11's translation), so messages keep the op name the kernel put in front.
//
// One section per kernel, each a static function called from the module body.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "attention/attention.h"
#include "common/checks.h"
#include "common/parallel.h"
#include "common/philox.h"
#include "common/simd.h"

namespace py = pybind11;

namespace {

template <typename T>
T* as_ptr(std::uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

// ================================================================================================
// common: threads, RNG, build info, error-path self-tests
// ================================================================================================
void bind_common(py::module_& m) {
  m.def("get_num_threads", &pyfast::get_num_threads);
  m.def("set_num_threads", &pyfast::set_num_threads, py::arg("n"));
  m.def("default_num_threads", &pyfast::default_num_threads);

  m.def(
      "build_info",
      [] {
        py::dict d;
        d["version"] = PYFAST_VERSION;
        d["compiler"] = PYFAST_COMPILER;
        d["simd"] = pyfast::simd_level();
        d["openmp"] = pyfast::have_openmp();
        return d;
      },
      "Facts fixed when the CPU module was compiled.");

  m.def(
      "philox4x32_10",
      [](std::vector<uint32_t> ctr, std::vector<uint32_t> key) {
        PYFAST_CHECK_ARG(ctr.size() == 4 && key.size() == 2, "philox4x32_10",
                         "expected 4 counter words and 2 key words, got ", ctr.size(), " and ", key.size());
        const auto r = pyfast::philox4x32_10(ctr[0], ctr[1], ctr[2], ctr[3], key[0], key[1]);
        return std::vector<uint32_t>{r.v[0], r.v[1], r.v[2], r.v[3]};
      },
      py::arg("counter"), py::arg("key"));

  // out: float32 (n,) filled with uniform [0, 1) draws keyed by (seed, offset + i, stream).
  m.def(
      "philox_uniform_",
      [](std::uintptr_t out, int64_t n, uint64_t seed, uint64_t offset, uint32_t stream) {
        PYFAST_CHECK_ARG(n >= 0, "philox_uniform_", "n must be >= 0, got ", n);
        float* o = as_ptr<float>(out);
        py::gil_scoped_release nogil;
        pyfast::parallel_for(n, 1 << 14, [&](int64_t b, int64_t e, int) {
          for (int64_t i = b; i < e; ++i)
            o[i] = pyfast::uint_to_unit_float(pyfast::philox_draw(seed, offset + i, stream).v[0]);
        });
      },
      py::arg("out"), py::arg("n"), py::arg("seed"), py::arg("offset"), py::arg("stream"));

  // Error path and thread self-tests: `kind` selects what a worker thread throws.
  m.def(
      "_selftest_parallel",
      [](int64_t n, std::string kind) {
        std::vector<int64_t> owner(static_cast<size_t>(std::max<int64_t>(n, 0)), -1);
        int max_worker = -1;
        {
          py::gil_scoped_release nogil;
          std::vector<int> seen(pyfast::get_num_threads() + 1, 0);
          pyfast::parallel_for(n, 1, [&](int64_t b, int64_t e, int w) {
            if (kind == "value" && b > 0) throw std::invalid_argument("selftest: bad value from a worker");
            if (kind == "runtime" && b > 0) throw std::runtime_error("selftest: failure in a worker");
            for (int64_t i = b; i < e; ++i) owner[i] = w;
            seen[w] = 1;
          });
          for (size_t w = 0; w < seen.size(); ++w)
            if (seen[w]) max_worker = static_cast<int>(w);
        }
        return py::make_tuple(owner, max_worker + 1);
      },
      py::arg("n"), py::arg("kind") = "none");
}

// ================================================================================================
// word2vec (issue #3)
// ================================================================================================
void bind_word2vec(py::module_& m) { (void)m; }

// ================================================================================================
// attention (issue #4)
// ================================================================================================
// A strided tensor arrives as (data_ptr, batch_stride, head_stride, row_stride); data_ptr 0 = absent.
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
         std::vector<int64_t> lse, std::vector<int64_t> cu, double dropout_p, uint64_t seed) {
        const auto p = attention_params(dtype, sizes, scale, is_causal, q, k, v, out, mask, lse, cu, dropout_p, seed);
        py::gil_scoped_release nogil;
        pyfast::attention::attention_fwd_cpu(p);
      },
      "Fused attention forward: fills out and lse (see csrc/attention/attention.h).");
  m.def(
      "attention_bwd",
      [](int dtype, std::vector<int64_t> sizes, double scale, bool is_causal, std::vector<int64_t> q,
         std::vector<int64_t> k, std::vector<int64_t> v, std::vector<int64_t> out, std::vector<int64_t> mask,
         std::vector<int64_t> lse, std::vector<int64_t> cu, double dropout_p, uint64_t seed,
         std::vector<int64_t> dout, std::vector<int64_t> dq, std::vector<int64_t> dk, std::vector<int64_t> dv) {
        pyfast::attention::AttentionBackwardParams bp;
        bp.fwd = attention_params(dtype, sizes, scale, is_causal, q, k, v, out, mask, lse, cu, dropout_p, seed);
        bp.dout = attention_strided(dout);
        bp.dq = attention_strided(dq);
        bp.dk = attention_strided(dk);
        bp.dv = attention_strided(dv);
        py::gil_scoped_release nogil;
        pyfast::attention::attention_bwd_cpu(bp);
      },
      "Fused attention backward: fills dq, dk, dv (scores recomputed from lse).");
  m.def(
      "attention_dropout_mask",
      [](std::uintptr_t keep, int64_t batch, int64_t heads, int64_t q_len, int64_t kv_len, double dropout_p,
         uint64_t seed) {
        py::gil_scoped_release nogil;
        pyfast::attention::attention_dropout_keep_mask(as_ptr<uint8_t>(keep), batch, heads, q_len, kv_len,
                                                       static_cast<float>(dropout_p), seed);
      },
      "The uint8 (B, H, L, S) keep mask the attention kernels draw for (dropout_p, seed): tests only.");
}

// ================================================================================================
// masking (issue #5)
// ================================================================================================
void bind_masking(py::module_& m) { (void)m; }

// ================================================================================================
// sgns op (issue #6)
// ================================================================================================
void bind_sgns(py::module_& m) { (void)m; }

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "pyfast CPU kernels (raw-pointer interface; use the pyfast Python API)";
  bind_common(m);
  bind_word2vec(m);
  bind_attention(m);
  bind_masking(m);
  bind_sgns(m);
}
