// How MaskTokensParams and MaskTokensCudaScratch cross from Python (pyfast/ops/masking.py's _pack_mask_tokens)
// to C++: one named attribute per field (common/pack.h). Included by bindings.cpp and bindings_cuda.cpp only.
#pragma once
#include <pybind11/pybind11.h>

#include "common/pack.h"
#include "masking/masking.h"

namespace pyfast {

inline void bind_masking_params(pybind11::module_& m) {
  namespace py = pybind11;
  using P = MaskTokensParams;
  py::class_<P> p(m, "MaskTokensParams", py::module_local());
  p.def(py::init<>())
      .def_readwrite("batch", &P::batch)
      .def_readwrite("seq_len", &P::seq_len)
      .def_readwrite("ids_row_stride", &P::ids_row_stride)
      .def_readwrite("special_row_stride", &P::special_row_stride)
      .def_readwrite("word_starts_row_stride", &P::word_starts_row_stride)
      .def_readwrite("num_excluded_ids", &P::num_excluded_ids)
      .def_readwrite("vocab_size", &P::vocab_size)
      .def_readwrite("mask_token_id", &P::mask_token_id)
      .def_readwrite("mlm_probability", &P::mlm_probability)
      .def_readwrite("mask_replace_prob", &P::mask_replace_prob)
      .def_readwrite("mask_or_random_prob", &P::mask_or_random_prob)
      .def_readwrite("max_predictions", &P::max_predictions)
      .def_readwrite("span", &P::span)
      .def_readwrite("span_start_prob", &P::span_start_prob)
      .def_readwrite("max_span_words", &P::max_span_words)
      .def_readwrite("seed", &P::seed);
  def_ptr(p, "input_ids", &P::input_ids);
  def_ptr(p, "special_mask", &P::special_mask);
  def_ptr(p, "special_id_bits", &P::special_id_bits);
  def_ptr(p, "word_starts", &P::word_starts);
  def_ptr(p, "excluded_ids", &P::excluded_ids);
  def_ptr(p, "span_length_cdf", &P::span_length_cdf);
  def_ptr(p, "out_ids", &P::out_ids);
  def_ptr(p, "labels", &P::labels);

  using S = MaskTokensCudaScratch;
  py::class_<S> s(m, "MaskTokensCudaScratch", py::module_local());
  s.def(py::init<>()).def_readwrite("keys_row_stride", &S::keys_row_stride);
  def_ptr(s, "error", &S::error);
  def_ptr(s, "keys", &S::keys);
  def_ptr(s, "word_first", &S::word_first);
  def_ptr(s, "word_last", &S::word_last);
}

}  // namespace pyfast
