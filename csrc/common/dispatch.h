// Small dispatch macros shared by CPU and CUDA kernels: turn a runtime value into a compile-time constant
// inside a lambda-like block. Usage:
//   PYFAST_DISPATCH_BOOL(is_causal, kCausal, { run<kCausal>(params); });
#pragma once
#include "common/checks.h"

#define PYFAST_DISPATCH_BOOL(value, NAME, ...) \
  do {                                         \
    if (value) {                               \
      constexpr bool NAME = true;              \
      __VA_ARGS__                              \
    } else {                                   \
      constexpr bool NAME = false;             \
      __VA_ARGS__                              \
    }                                          \
  } while (0)

// dtype codes passed from Python (pyfast/_native.py keeps the same table).
namespace pyfast {
enum class DType : int { kFloat32 = 0, kFloat64 = 1, kBFloat16 = 2, kFloat16 = 3, kInt32 = 4, kInt64 = 5 };
}
