// How a params struct crosses from Python to C++ (included by the bindings only): each op's <op>_pack.h binds its
// params structs as pybind11 classes with one named attribute per field, and pyfast/ops/<op>.py fills them by name
// in its _pack_<op>. A misspelt field is an AttributeError, never a silently shifted positional argument.
// Classes are module_local: the CPU module (_C) and the CUDA module (_C_cuda) each bind their own copy.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>

namespace pyfast {

// A pointer field, seen from Python as the integer tensor.data_ptr() gives (0 = absent).
template <typename Class, typename Struct, typename T>
void def_ptr(Class& cls, const char* name, T* Struct::*field) {
  cls.def_property(
      name, [field](const Struct& s) { return reinterpret_cast<std::uintptr_t>(s.*field); },
      [field](Struct& s, std::uintptr_t value) { s.*field = reinterpret_cast<T*>(value); });
}

// A DType field, seen from Python as its integer code (pyfast/_native.py DTYPES).
template <typename Class, typename Struct, typename E>
void def_enum(Class& cls, const char* name, E Struct::*field) {
  cls.def_property(
      name, [field](const Struct& s) { return static_cast<int>(s.*field); },
      [field](Struct& s, int value) { s.*field = static_cast<E>(value); });
}

}  // namespace pyfast
