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
void bind_attention(py::module_& m) { (void)m; }

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
