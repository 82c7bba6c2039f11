// How the attention params cross from Python to C++ (included by bindings.cpp and bindings_cuda.cpp only): each
// struct of attention.h as a pybind11 class with one attribute per field, which pyfast/ops/attention.py's
// _pack_attention fills by name. Strided also takes (data, batch_stride, head_stride, row_stride) positionally.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>

#include "attention/attention.h"
#include "common/pack.h"

namespace pyfast {
namespace attention {

inline void bind_attention_params(pybind11::module_& m) {
  namespace py = pybind11;
  py::class_<Strided> strided(m, "Strided", py::module_local());
  strided.def(py::init<>())
      .def(py::init([](std::uintptr_t data, int64_t batch_stride, int64_t head_stride, int64_t row_stride) {
             return Strided{reinterpret_cast<void*>(data), batch_stride, head_stride, row_stride};
           }),
           py::arg("data"), py::arg("batch_stride"), py::arg("head_stride"), py::arg("row_stride"))
      .def_readwrite("batch_stride", &Strided::batch_stride)
      .def_readwrite("head_stride", &Strided::head_stride)
      .def_readwrite("row_stride", &Strided::row_stride);
  def_ptr(strided, "data", &Strided::data);

  py::class_<AttentionParams> params(m, "AttentionParams", py::module_local());
  params.def(py::init<>())
      .def_readwrite("batch", &AttentionParams::batch)
      .def_readwrite("q_heads", &AttentionParams::q_heads)
      .def_readwrite("kv_heads", &AttentionParams::kv_heads)
      .def_readwrite("q_len", &AttentionParams::q_len)
      .def_readwrite("kv_len", &AttentionParams::kv_len)
      .def_readwrite("head_dim", &AttentionParams::head_dim)
      .def_readwrite("value_dim", &AttentionParams::value_dim)
      .def_readwrite("scale", &AttentionParams::scale)
      .def_readwrite("is_causal", &AttentionParams::is_causal)
      .def_readwrite("q", &AttentionParams::q)
      .def_readwrite("k", &AttentionParams::k)
      .def_readwrite("v", &AttentionParams::v)
      .def_readwrite("out", &AttentionParams::out)
      .def_readwrite("mask", &AttentionParams::mask)
      .def_readwrite("lse_batch_stride", &AttentionParams::lse_batch_stride)
      .def_readwrite("lse_head_stride", &AttentionParams::lse_head_stride)
      .def_readwrite("dropout_p", &AttentionParams::dropout_p)
      .def_readwrite("seed", &AttentionParams::seed);
  def_enum(params, "dtype", &AttentionParams::dtype);
  def_ptr(params, "lse", &AttentionParams::lse);
  def_ptr(params, "cu_seqlens_q", &AttentionParams::cu_seqlens_q);
  def_ptr(params, "cu_seqlens_k", &AttentionParams::cu_seqlens_k);

  py::class_<AttentionBackwardParams>(m, "AttentionBackwardParams", py::module_local())
      .def(py::init<>())
      .def_readwrite("fwd", &AttentionBackwardParams::fwd)
      .def_readwrite("dout", &AttentionBackwardParams::dout)
      .def_readwrite("dq", &AttentionBackwardParams::dq)
      .def_readwrite("dk", &AttentionBackwardParams::dk)
      .def_readwrite("dv", &AttentionBackwardParams::dv);
}

}  // namespace attention
}  // namespace pyfast
