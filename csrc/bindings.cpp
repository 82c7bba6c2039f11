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
// The include sits inside this section (closing and reopening the anonymous namespace) so that the sections,
// edited in parallel, never touch the same lines.
}  // namespace
#include "word2vec/sgns_op.h"
namespace {

pyfast::SgnsParams sgns_params(std::uintptr_t in_weight, std::uintptr_t out_weight, int64_t in_stride,
                               int64_t out_stride, std::uintptr_t centers, std::uintptr_t contexts,
                               std::uintptr_t negatives, int64_t num_embeddings, int64_t dim, int64_t num_pairs,
                               int64_t num_negatives, int dtype) {
  pyfast::SgnsParams p;
  p.in_weight = as_ptr<const void>(in_weight);
  p.out_weight = as_ptr<const void>(out_weight);
  p.in_stride = in_stride;
  p.out_stride = out_stride;
  p.centers = as_ptr<const int64_t>(centers);
  p.contexts = as_ptr<const int64_t>(contexts);
  p.negatives = as_ptr<const int64_t>(negatives);
  p.num_embeddings = num_embeddings;
  p.dim = dim;
  p.num_pairs = num_pairs;
  p.num_negatives = num_negatives;
  p.dtype = static_cast<pyfast::DType>(dtype);
  return p;
}

void bind_sgns(py::module_& m) {
  // loss: (N,), coef: (N, K+1); center_rows, in_grad_dir: (N, D) or 0 (no backward to follow). Weights' dtype.
  m.def(
      "sgns_forward",
      [](std::uintptr_t in_weight, std::uintptr_t out_weight, int64_t in_stride, int64_t out_stride,
         std::uintptr_t centers, std::uintptr_t contexts, std::uintptr_t negatives, int64_t num_embeddings,
         int64_t dim, int64_t num_pairs, int64_t num_negatives, int dtype, std::uintptr_t loss, std::uintptr_t coef,
         std::uintptr_t center_rows, std::uintptr_t in_grad_dir) {
        const auto p = sgns_params(in_weight, out_weight, in_stride, out_stride, centers, contexts, negatives,
                                   num_embeddings, dim, num_pairs, num_negatives, dtype);
        py::gil_scoped_release nogil;
        pyfast::sgns_forward_cpu(p, as_ptr<void>(loss), as_ptr<void>(coef), as_ptr<void>(center_rows),
                                 as_ptr<void>(in_grad_dir));
      },
      py::arg("in_weight"), py::arg("out_weight"), py::arg("in_stride"), py::arg("out_stride"), py::arg("centers"),
      py::arg("contexts"), py::arg("negatives"), py::arg("num_embeddings"), py::arg("dim"), py::arg("num_pairs"),
      py::arg("num_negatives"), py::arg("dtype"), py::arg("loss"), py::arg("coef"), py::arg("center_rows"),
      py::arg("in_grad_dir"));

  // unique: room for n int64, inverse: (n,) int64; returns the number of unique ids.
  m.def(
      "sgns_unique",
      [](std::uintptr_t ids, int64_t n, int64_t num_embeddings, std::uintptr_t unique, std::uintptr_t inverse) {
        py::gil_scoped_release nogil;
        return pyfast::sgns_unique_cpu(as_ptr<const int64_t>(ids), n, num_embeddings, as_ptr<int64_t>(unique),
                                       as_ptr<int64_t>(inverse), "sgns_unique");
      },
      py::arg("ids"), py::arg("n"), py::arg("num_embeddings"), py::arg("unique"), py::arg("inverse"));

  // Gradient rows per unique id from the forward's buffers (see sgns_op.h); all of one dtype.
  m.def(
      "sgns_backward",
      [](int64_t num_pairs, int64_t num_negatives, int64_t dim, int dtype, std::uintptr_t coef,
         std::uintptr_t grad_loss, std::uintptr_t center_rows, std::uintptr_t in_grad_dir, std::uintptr_t center_slot,
         int64_t num_unique_centers, std::uintptr_t target_slot, int64_t num_unique_targets,
         std::uintptr_t grad_in_rows, std::uintptr_t grad_out_rows) {
        py::gil_scoped_release nogil;
        pyfast::sgns_backward_cpu(num_pairs, num_negatives, dim, static_cast<pyfast::DType>(dtype),
                                  as_ptr<const void>(coef), as_ptr<const void>(grad_loss),
                                  as_ptr<const void>(center_rows), as_ptr<const void>(in_grad_dir),
                                  as_ptr<const int64_t>(center_slot), num_unique_centers,
                                  as_ptr<const int64_t>(target_slot), num_unique_targets, as_ptr<void>(grad_in_rows),
                                  as_ptr<void>(grad_out_rows));
      },
      py::arg("num_pairs"), py::arg("num_negatives"), py::arg("dim"), py::arg("dtype"), py::arg("coef"),
      py::arg("grad_loss"), py::arg("center_rows"), py::arg("in_grad_dir"), py::arg("center_slot"),
      py::arg("num_unique_centers"), py::arg("target_slot"), py::arg("num_unique_targets"), py::arg("grad_in_rows"),
      py::arg("grad_out_rows"));

  m.def(
      "sgns_advise_hugepages",
      [](std::uintptr_t data, int64_t bytes) {
        py::gil_scoped_release nogil;
        return pyfast::sgns_advise_hugepages(as_ptr<void>(data), bytes);
      },
      py::arg("data"), py::arg("bytes"));

  // counts: float64 (V,); sample(out int64 (num_rows, k), num_rows, k, seed).
  py::class_<pyfast::SgnsNoiseSampler>(m, "SgnsNoiseSampler")
      .def(py::init([](std::uintptr_t counts, int64_t num_embeddings, double exponent) {
             py::gil_scoped_release nogil;
             return new pyfast::SgnsNoiseSampler(as_ptr<const double>(counts), num_embeddings, exponent);
           }),
           py::arg("counts"), py::arg("num_embeddings"), py::arg("exponent"))
      .def("size", &pyfast::SgnsNoiseSampler::size)
      .def(
          "sample",
          [](const pyfast::SgnsNoiseSampler& self, std::uintptr_t out, int64_t num_rows, int64_t k, uint64_t seed) {
            py::gil_scoped_release nogil;
            self.sample(as_ptr<int64_t>(out), num_rows, k, seed);
          },
          py::arg("out"), py::arg("num_rows"), py::arg("k"), py::arg("seed"));
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "pyfast CPU kernels (raw-pointer interface; use the pyfast Python API)";
  bind_common(m);
  bind_word2vec(m);
  bind_attention(m);
  bind_masking(m);
  bind_sgns(m);
}
