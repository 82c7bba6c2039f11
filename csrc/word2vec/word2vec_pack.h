// How the word2vec trainer's params cross from Python (included by the bindings only, see common/pack.h): TrainParams
// as a pybind11 class with one attribute per field, filled by name in pyfast/word2vec.py, and the EpochResult it
// gets back, read-only.
#pragma once
#include <pybind11/pybind11.h>

#include "common/pack.h"
#include "word2vec/word2vec.h"

namespace pyfast {

inline void bind_word2vec_params(pybind11::module_& m) {
  namespace py = pybind11;
  using w2v::EpochResult;
  using w2v::TrainParams;
  py::class_<TrainParams> p(m, "TrainParams", py::module_local());
  p.def(py::init<>());
  def_ptr(p, "syn0", &TrainParams::syn0);
  def_ptr(p, "syn1neg", &TrainParams::syn1neg);
  p.def_readwrite("vocab_size", &TrainParams::vocab_size);
  p.def_readwrite("dim", &TrainParams::dim);
  def_ptr(p, "ids", &TrainParams::ids);
  p.def_readwrite("n_ids", &TrainParams::n_ids);
  def_ptr(p, "sentence_offsets", &TrainParams::sentence_offsets);
  p.def_readwrite("n_sentences", &TrainParams::n_sentences);
  def_ptr(p, "keep_prob", &TrainParams::keep_prob);
  def_ptr(p, "noise_weights", &TrainParams::noise_weights);
  p.def_readwrite("sg", &TrainParams::sg);
  p.def_readwrite("cbow_mean", &TrainParams::cbow_mean);
  p.def_readwrite("negative", &TrainParams::negative);
  p.def_readwrite("window", &TrainParams::window);
  p.def_readwrite("shrink_windows", &TrainParams::shrink_windows);
  p.def_readwrite("shared_negatives", &TrainParams::shared_negatives);
  p.def_readwrite("workers", &TrainParams::workers);
  p.def_readwrite("compute_loss", &TrainParams::compute_loss);
  p.def_readwrite("alpha0", &TrainParams::alpha0);
  p.def_readwrite("min_alpha", &TrainParams::min_alpha);
  p.def_readwrite("total_words", &TrainParams::total_words);
  p.def_readwrite("alpha_per_worker", &TrainParams::alpha_per_worker);
  def_ptr(p, "words_done", &TrainParams::words_done);
  p.def_readwrite("seed", &TrainParams::seed);
  p.def_readwrite("epoch", &TrainParams::epoch);
  def_ptr(p, "cancel", &TrainParams::cancel);

  py::class_<EpochResult>(m, "EpochResult", py::module_local())
      .def_readonly("loss", &EpochResult::loss)
      .def_readonly("trained_words", &EpochResult::trained_words)
      .def_readonly("pairs", &EpochResult::pairs)
      .def_readonly("end_alpha", &EpochResult::end_alpha)
      .def_readonly("cancelled", &EpochResult::cancelled);
}

// The CUDA trainer's params (bindings_cuda.cpp): device pointers, filled by name in pyfast/word2vec_cuda.py.
inline void bind_word2vec_cuda_params(pybind11::module_& m) {
  namespace py = pybind11;
  using w2v::TrainCudaParams;
  py::class_<TrainCudaParams> p(m, "TrainCudaParams", py::module_local());
  p.def(py::init<>());
  def_ptr(p, "syn0", &TrainCudaParams::syn0);
  def_ptr(p, "syn1neg", &TrainCudaParams::syn1neg);
  p.def_readwrite("vocab_size", &TrainCudaParams::vocab_size);
  p.def_readwrite("dim", &TrainCudaParams::dim);
  def_ptr(p, "ids", &TrainCudaParams::ids);
  p.def_readwrite("n_ids", &TrainCudaParams::n_ids);
  def_ptr(p, "chunks", &TrainCudaParams::chunks);
  p.def_readwrite("n_chunks", &TrainCudaParams::n_chunks);
  p.def_readwrite("max_chunk_len", &TrainCudaParams::max_chunk_len);
  def_ptr(p, "keep_prob", &TrainCudaParams::keep_prob);
  def_ptr(p, "noise_threshold", &TrainCudaParams::noise_threshold);
  def_ptr(p, "noise_alias", &TrainCudaParams::noise_alias);
  p.def_readwrite("sg", &TrainCudaParams::sg);
  p.def_readwrite("cbow_mean", &TrainCudaParams::cbow_mean);
  p.def_readwrite("negative", &TrainCudaParams::negative);
  p.def_readwrite("window", &TrainCudaParams::window);
  p.def_readwrite("shrink_windows", &TrainCudaParams::shrink_windows);
  p.def_readwrite("shared_negatives", &TrainCudaParams::shared_negatives);
  p.def_readwrite("compute_loss", &TrainCudaParams::compute_loss);
  p.def_readwrite("alpha0", &TrainCudaParams::alpha0);
  p.def_readwrite("min_alpha", &TrainCudaParams::min_alpha);
  p.def_readwrite("total_words", &TrainCudaParams::total_words);
  p.def_readwrite("progress_base", &TrainCudaParams::progress_base);
  p.def_readwrite("seed", &TrainCudaParams::seed);
  p.def_readwrite("epoch", &TrainCudaParams::epoch);
  p.def_readwrite("warps", &TrainCudaParams::warps);
  def_ptr(p, "chunk_loss", &TrainCudaParams::chunk_loss);
  def_ptr(p, "chunk_counts", &TrainCudaParams::chunk_counts);
  def_ptr(p, "error", &TrainCudaParams::error);
}

}  // namespace pyfast
