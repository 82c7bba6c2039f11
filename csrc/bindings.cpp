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
#include "masking/masking.h"

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
void bind_masking(py::module_& m) {
  // Pointers arrive as ints (0 = absent); pyfast/ops/masking.py validated dtypes, shapes and probabilities.
  m.def(
      "mask_tokens_",
      [](int64_t batch, int64_t seq_len, std::uintptr_t input_ids, int64_t ids_row_stride, std::uintptr_t special_mask,
         int64_t special_row_stride, std::uintptr_t special_id_bits, std::uintptr_t word_starts,
         int64_t word_starts_row_stride, std::uintptr_t excluded_ids, int64_t num_excluded_ids, int64_t vocab_size,
         int64_t mask_token_id, float mlm_probability, float mask_replace_prob, float mask_or_random_prob,
         int64_t max_predictions, bool span, float span_start_prob, std::vector<float> span_length_cdf,
         uint64_t seed, std::uintptr_t out_ids, std::uintptr_t labels) {
        pyfast::MaskTokensParams p;
        p.batch = batch;
        p.seq_len = seq_len;
        p.input_ids = as_ptr<const int64_t>(input_ids);
        p.ids_row_stride = ids_row_stride;
        p.special_mask = as_ptr<const uint8_t>(special_mask);
        p.special_row_stride = special_row_stride;
        p.special_id_bits = as_ptr<const uint32_t>(special_id_bits);
        p.word_starts = as_ptr<const uint8_t>(word_starts);
        p.word_starts_row_stride = word_starts_row_stride;
        p.excluded_ids = as_ptr<const int64_t>(excluded_ids);
        p.num_excluded_ids = num_excluded_ids;
        p.vocab_size = vocab_size;
        p.mask_token_id = mask_token_id;
        p.mlm_probability = mlm_probability;
        p.mask_replace_prob = mask_replace_prob;
        p.mask_or_random_prob = mask_or_random_prob;
        p.max_predictions = max_predictions;
        p.span = span ? 1 : 0;
        p.span_start_prob = span_start_prob;
        p.max_span_words = static_cast<int32_t>(span_length_cdf.size() + 1);
        p.span_length_cdf = span_length_cdf.empty() ? nullptr : span_length_cdf.data();
        p.seed = seed;
        p.out_ids = as_ptr<int64_t>(out_ids);
        p.labels = as_ptr<int64_t>(labels);
        py::gil_scoped_release nogil;
        pyfast::mask_tokens_cpu(p);
      },
      py::arg("batch"), py::arg("seq_len"), py::arg("input_ids"), py::arg("ids_row_stride"), py::arg("special_mask"),
      py::arg("special_row_stride"), py::arg("special_id_bits"), py::arg("word_starts"),
      py::arg("word_starts_row_stride"), py::arg("excluded_ids"), py::arg("num_excluded_ids"), py::arg("vocab_size"),
      py::arg("mask_token_id"), py::arg("mlm_probability"), py::arg("mask_replace_prob"),
      py::arg("mask_or_random_prob"), py::arg("max_predictions"), py::arg("span"), py::arg("span_start_prob"),
      py::arg("span_length_cdf"), py::arg("seed"), py::arg("out_ids"), py::arg("labels"));
}

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
