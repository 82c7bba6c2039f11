// The PYBIND11_MODULE of the CUDA module `pyfast._C_cuda` (built only when nvcc is found). Same rules as
// bindings.cpp: integers in (data_ptr, sizes, stream), GIL released, kernels in csrc/<op>/*.cu.
#include <pybind11/pybind11.h>

#include <string>

namespace py = pybind11;

namespace pyfast {
bool cuda_device_name(std::string& name, std::string& error);
}

PYBIND11_MODULE(_C_cuda, m) {
  m.doc() = "pyfast CUDA kernels (raw-pointer interface; use the pyfast Python API)";
  m.def("device_name", []() -> py::tuple {
    std::string name, error;
    if (pyfast::cuda_device_name(name, error)) return py::make_tuple(name, py::none());
    return py::make_tuple(py::none(), error);
  });
}
