// Error handling shared by every kernel. Kernels throw; the bindings turn std::invalid_argument into
// ValueError and std::runtime_error into RuntimeError (pybind11's standard translation), so a message
// always reaches Python with the op's name in front. Python validates first; these are the last line
// (bounds on ids, sizes) so bad input can never write out of bounds.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace pyfast {

template <typename... Args>
std::string concat_message(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
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
