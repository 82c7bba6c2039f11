// The one dtype enum of the native code and the switch macros that turn runtime values (dtype, head dim, a flag)
// into compile-time constants, the same for CPU and CUDA kernels (flash-attention's static_switch.h). Every
// kernel entry dispatches through these; no hand-written dtype switches elsewhere. Usage:
//   PYFAST_DISPATCH_FLOAT(p.dtype, "sgns_forward", scalar_t, { run<scalar_t>(p); });
//   PYFAST_DISPATCH_DTYPE(p.dtype, "attention_fwd", kDType, { run<ElemOf<kDType>>(p); });  // f32 / bf16 / f16
//   PYFAST_DISPATCH_HEADDIM(p.head_dim, kHeadDim, { run<kHeadDim>(p); });  // 64, 128, or 0 (any other)
//   PYFAST_DISPATCH_BOOL(p.is_causal, kCausal, { run<kCausal>(p); });
#pragma once
#include <cstdint>

#include "common/checks.h"

namespace pyfast {

// Element types, with the codes pyfast/_native.py passes (its DTYPES table is this one, in Python). Float32 /
// float64 are IEEE; the 16-bit floats travel as raw bits and each backend names its own storage type for them
// (CPU: uint16_t bf16 and a Half struct; CUDA: __nv_bfloat16 / __half).
enum class DType : int {
  kFloat32 = 0, kFloat64 = 1, kBFloat16 = 2, kFloat16 = 3, kInt32 = 4, kInt64 = 5,
  kInt16 = 6, kInt8 = 7, kUInt8 = 8, kBool = 9,
};

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
    case DType::kBFloat16: return "bfloat16";
    case DType::kFloat16: return "float16";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
    case DType::kInt16: return "int16";
    case DType::kInt8: return "int8";
    case DType::kUInt8: return "uint8";
    case DType::kBool: return "bool";
  }
  return "unknown";
}

inline int64_t dtype_size(DType d) {
  switch (d) {
    case DType::kFloat64: case DType::kInt64: return 8;
    case DType::kFloat32: case DType::kInt32: return 4;
    case DType::kBFloat16: case DType::kFloat16: case DType::kInt16: return 2;
    case DType::kInt8: case DType::kUInt8: case DType::kBool: return 1;
  }
  return 0;
}

}  // namespace pyfast

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

// float32 -> float, float64 -> double; any other dtype is a ValueError naming `op`.
#define PYFAST_DISPATCH_FLOAT(dtype, op, T, ...)                                                    \
  do {                                                                                               \
    switch (dtype) {                                                                                 \
      case ::pyfast::DType::kFloat32: {                                                              \
        using T = float;                                                                             \
        __VA_ARGS__                                                                                  \
      } break;                                                                                       \
      case ::pyfast::DType::kFloat64: {                                                              \
        using T = double;                                                                            \
        __VA_ARGS__                                                                                  \
      } break;                                                                                       \
      default:                                                                                       \
        PYFAST_CHECK_ARG(false, op, "expected float32 or float64, got ", ::pyfast::dtype_name(dtype)); \
    }                                                                                                \
  } while (0)

// float32 / bfloat16 / float16 as a constexpr DType NAME (the kernel maps it to its backend's storage type);
// any other dtype is a ValueError naming `op`.
#define PYFAST_DISPATCH_DTYPE(dtype, op, NAME, ...)                                                  \
  do {                                                                                                \
    switch (dtype) {                                                                                  \
      case ::pyfast::DType::kFloat32: {                                                               \
        constexpr ::pyfast::DType NAME = ::pyfast::DType::kFloat32;                                   \
        __VA_ARGS__                                                                                   \
      } break;                                                                                        \
      case ::pyfast::DType::kBFloat16: {                                                              \
        constexpr ::pyfast::DType NAME = ::pyfast::DType::kBFloat16;                                  \
        __VA_ARGS__                                                                                   \
      } break;                                                                                        \
      case ::pyfast::DType::kFloat16: {                                                               \
        constexpr ::pyfast::DType NAME = ::pyfast::DType::kFloat16;                                   \
        __VA_ARGS__                                                                                   \
      } break;                                                                                        \
      default:                                                                                        \
        PYFAST_CHECK_ARG(false, op, "expected float32, bfloat16 or float16, got ",                    \
                         ::pyfast::dtype_name(dtype));                                                \
    }                                                                                                 \
  } while (0)

// The head dims with specialised (tensor-core) kernels, 64 and 128, as constexpr int NAME; any other head dim
// runs the generic kernel with NAME = 0 (its loops take the runtime size).
#define PYFAST_DISPATCH_HEADDIM(head_dim, NAME, ...) \
  do {                                               \
    if ((head_dim) == 64) {                          \
      constexpr int NAME = 64;                       \
      __VA_ARGS__                                    \
    } else if ((head_dim) == 128) {                  \
      constexpr int NAME = 128;                      \
      __VA_ARGS__                                    \
    } else {                                         \
      constexpr int NAME = 0;                        \
      __VA_ARGS__                                    \
    }                                                \
  } while (0)
