// How the SGNS op's params structs (sgns_op.h) cross from Python, for bindings.cpp and bindings_cuda.cpp (see
// common/pack.h): each struct a pybind11 class with one attribute per field, filled by name in
// pyfast/ops/sgns.py (_pack_sgns and the kernel bodies). Unpacking only: the kernels check their arguments.
#pragma once
#include <pybind11/pybind11.h>

#include "common/pack.h"
#include "word2vec/sgns_op.h"

namespace pyfast {

inline void bind_sgns_params(pybind11::module_& m) {
  namespace py = pybind11;
  py::class_<SgnsParams> batch(m, "SgnsParams", py::module_local());
  batch.def(py::init<>());
  def_ptr(batch, "in_weight", &SgnsParams::in_weight);
  def_ptr(batch, "out_weight", &SgnsParams::out_weight);
  batch.def_readwrite("in_stride", &SgnsParams::in_stride);
  batch.def_readwrite("out_stride", &SgnsParams::out_stride);
  def_ptr(batch, "centers", &SgnsParams::centers);
  def_ptr(batch, "contexts", &SgnsParams::contexts);
  def_ptr(batch, "negatives", &SgnsParams::negatives);
  batch.def_readwrite("num_embeddings", &SgnsParams::num_embeddings);
  batch.def_readwrite("dim", &SgnsParams::dim);
  batch.def_readwrite("num_pairs", &SgnsParams::num_pairs);
  batch.def_readwrite("num_negatives", &SgnsParams::num_negatives);
  def_enum(batch, "dtype", &SgnsParams::dtype);

  py::class_<SgnsForwardParams> fwd(m, "SgnsForwardParams", py::module_local());
  fwd.def(py::init<>());
  fwd.def_readwrite("batch", &SgnsForwardParams::batch);
  def_ptr(fwd, "loss", &SgnsForwardParams::loss);
  def_ptr(fwd, "coef", &SgnsForwardParams::coef);
  def_ptr(fwd, "center_rows", &SgnsForwardParams::center_rows);
  def_ptr(fwd, "in_grad_dir", &SgnsForwardParams::in_grad_dir);
  def_ptr(fwd, "error", &SgnsForwardParams::error);
  def_ptr(fwd, "loss_total", &SgnsForwardParams::loss_total);

  py::class_<SgnsRowsParams> rows(m, "SgnsRowsParams", py::module_local());
  rows.def(py::init<>());
  rows.def_readwrite("num_pairs", &SgnsRowsParams::num_pairs);
  rows.def_readwrite("num_negatives", &SgnsRowsParams::num_negatives);
  rows.def_readwrite("dim", &SgnsRowsParams::dim);
  def_enum(rows, "dtype", &SgnsRowsParams::dtype);
  def_ptr(rows, "coef", &SgnsRowsParams::coef);
  def_ptr(rows, "grad_loss", &SgnsRowsParams::grad_loss);
  rows.def_readwrite("grad_loss_stride", &SgnsRowsParams::grad_loss_stride);
  def_ptr(rows, "center_rows", &SgnsRowsParams::center_rows);
  def_ptr(rows, "in_grad_dir", &SgnsRowsParams::in_grad_dir);
  def_ptr(rows, "centers", &SgnsRowsParams::centers);
  def_ptr(rows, "contexts", &SgnsRowsParams::contexts);
  def_ptr(rows, "negatives", &SgnsRowsParams::negatives);
  def_ptr(rows, "in_ids", &SgnsRowsParams::in_ids);
  def_ptr(rows, "in_rows", &SgnsRowsParams::in_rows);
  def_ptr(rows, "out_ids", &SgnsRowsParams::out_ids);
  def_ptr(rows, "out_rows", &SgnsRowsParams::out_rows);

  py::class_<SgnsSgdStepParams> step(m, "SgnsSgdStepParams", py::module_local());
  step.def(py::init<>());
  step.def_readwrite("batch", &SgnsSgdStepParams::batch);
  step.def_readwrite("lr", &SgnsSgdStepParams::lr);
  step.def_readwrite("scale", &SgnsSgdStepParams::scale);
  def_ptr(step, "loss", &SgnsSgdStepParams::loss);
  def_ptr(step, "coef", &SgnsSgdStepParams::coef);
  def_ptr(step, "center_rows", &SgnsSgdStepParams::center_rows);
  def_ptr(step, "in_grad_dir", &SgnsSgdStepParams::in_grad_dir);
  def_ptr(step, "loss_total", &SgnsSgdStepParams::loss_total);
  def_ptr(step, "error", &SgnsSgdStepParams::error);

  py::class_<SgnsUniqueParams> uniq(m, "SgnsUniqueParams", py::module_local());
  uniq.def(py::init<>());
  def_ptr(uniq, "centers", &SgnsUniqueParams::centers);
  def_ptr(uniq, "contexts", &SgnsUniqueParams::contexts);
  def_ptr(uniq, "negatives", &SgnsUniqueParams::negatives);
  uniq.def_readwrite("num_embeddings", &SgnsUniqueParams::num_embeddings);
  uniq.def_readwrite("num_pairs", &SgnsUniqueParams::num_pairs);
  uniq.def_readwrite("num_negatives", &SgnsUniqueParams::num_negatives);
  def_ptr(uniq, "unique_centers", &SgnsUniqueParams::unique_centers);
  def_ptr(uniq, "center_slot", &SgnsUniqueParams::center_slot);
  def_ptr(uniq, "unique_targets", &SgnsUniqueParams::unique_targets);
  def_ptr(uniq, "target_slot", &SgnsUniqueParams::target_slot);
  def_ptr(uniq, "counts", &SgnsUniqueParams::counts);

  py::class_<SgnsFusedParams> fused(m, "SgnsFusedParams", py::module_local());
  fused.def(py::init<>());
  fused.def_readwrite("batch", &SgnsFusedParams::batch);
  fused.def_readwrite("scale", &SgnsFusedParams::scale);
  def_ptr(fused, "center_slot", &SgnsFusedParams::center_slot);
  fused.def_readwrite("num_unique_centers", &SgnsFusedParams::num_unique_centers);
  def_ptr(fused, "target_slot", &SgnsFusedParams::target_slot);
  fused.def_readwrite("num_unique_targets", &SgnsFusedParams::num_unique_targets);
  def_ptr(fused, "loss", &SgnsFusedParams::loss);
  def_ptr(fused, "grad_in_rows", &SgnsFusedParams::grad_in_rows);
  def_ptr(fused, "grad_out_rows", &SgnsFusedParams::grad_out_rows);

  py::class_<SgnsBackwardParams> bwd(m, "SgnsBackwardParams", py::module_local());
  bwd.def(py::init<>());
  bwd.def_readwrite("num_pairs", &SgnsBackwardParams::num_pairs);
  bwd.def_readwrite("num_negatives", &SgnsBackwardParams::num_negatives);
  bwd.def_readwrite("dim", &SgnsBackwardParams::dim);
  def_enum(bwd, "dtype", &SgnsBackwardParams::dtype);
  def_ptr(bwd, "coef", &SgnsBackwardParams::coef);
  def_ptr(bwd, "grad_loss", &SgnsBackwardParams::grad_loss);
  def_ptr(bwd, "center_rows", &SgnsBackwardParams::center_rows);
  def_ptr(bwd, "in_grad_dir", &SgnsBackwardParams::in_grad_dir);
  def_ptr(bwd, "center_slot", &SgnsBackwardParams::center_slot);
  bwd.def_readwrite("num_unique_centers", &SgnsBackwardParams::num_unique_centers);
  def_ptr(bwd, "target_slot", &SgnsBackwardParams::target_slot);
  bwd.def_readwrite("num_unique_targets", &SgnsBackwardParams::num_unique_targets);
  def_ptr(bwd, "grad_in_rows", &SgnsBackwardParams::grad_in_rows);
  def_ptr(bwd, "grad_out_rows", &SgnsBackwardParams::grad_out_rows);
}

}  // namespace pyfast
