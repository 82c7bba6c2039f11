// Error handling shared by every kernel. Kernels throw; the bindings turn std::invalid_argument into
// ValueError and std::runtime_error into RuntimeError (pybind11's standard translation), so a message
// always reaches Python with the op's name in front. Python validates first; these are the last line
// (bounds on ids, sizes) so bad input can never write out of bounds.
#pragma once
#include <cstdio>
#include <string>
#include <stdexcept>
#include <type_traits>

namespace pyfast {

// Appends one piece of an error message. No iostreams: a std::ostringstream instantiated in nvcc-compiled host
// code has crashed formatting an integer (inside basic_ostream::_M_insert<long>, GCC 13 host compiler), so the
// message is assembled from std::to_string / snprintf pieces instead.
// Numbers print as an ostream would by default: integers in decimal, bools as 1 / 0, floats as "%g".
template <typename T>
void append_message_piece(std::string& out, const T& v) {
  using U = std::decay_t<T>;
  if constexpr (std::is_same_v<U, bool>) {
    out += v ? '1' : '0';
  } else if constexpr (std::is_same_v<U, char>) {
    out += v;
  } else if constexpr (std::is_integral_v<U>) {
    out += std::to_string(v);
  } else if constexpr (std::is_enum_v<U>) {
    out += std::to_string(static_cast<long long>(v));
  } else if constexpr (std::is_floating_point_v<U>) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", static_cast<double>(v));
    out += buf;
  } else {
    out += v;  // std::string, const char*, string literals
  }
}

template <typename... Args>
std::string concat_message(const Args&... args) {
  std::string out;
  (append_message_piece(out, args), ...);
  return out;
}

}  // namespace pyfast

// PYFAST_CHECK_ARG(cond, "op_name", "message", ...): ValueError in Python.
#define PYFAST_CHECK_ARG(cond, op, ...)                                                   \
  do {                                                                                    \
    if (!(cond)) throw std::invalid_argument(::pyfast::concat_message(op, ": ", __VA_ARGS__)); \
  } while (0)

// PYFAST_CHECK_STATE(cond, "op_name", "message", ...): RuntimeError in Python.
#define PYFAST_CHECK_STATE(cond, op, ...)                                                 \
  do {                                                                                    \
    if (!(cond)) throw std::runtime_error(::pyfast::concat_message(op, ": ", __VA_ARGS__)); \
  } while (0)
