// How PatchMaskParams crosses from Python (pyfast/ops/patch_masking.py's _pack) to C++: one named attribute per
// field (common/pack.h). Included by bindings.cpp and bindings_cuda.cpp only.
#pragma once
#include <pybind11/pybind11.h>

#include "common/pack.h"
#include "masking/patch_masking.h"

namespace pyfast {

inline void bind_patch_mask_params(pybind11::module_& m) {
  namespace py = pybind11;
  using P = PatchMaskParams;
  py::class_<P> p(m, "PatchMaskParams", py::module_local());
  p.def(py::init<>())
      .def_readwrite("batch", &P::batch)
      .def_readwrite("n_patches", &P::n_patches)
      .def_readwrite("n_keep", &P::n_keep)
      .def_readwrite("image_ids_stride", &P::image_ids_stride)
      .def_readwrite("seed", &P::seed);
  def_ptr(p, "image_ids", &P::image_ids);
  def_ptr(p, "ids_keep", &P::ids_keep);
  def_ptr(p, "ids_restore", &P::ids_restore);
  def_ptr(p, "mask", &P::mask);
}

}  // namespace pyfast
