// What SIMD the CPU module was compiled for (host-native by default, see CMakeLists.txt).
#pragma once

namespace pyfast {
inline const char* simd_level() {
#if defined(__AVX512F__) && defined(__AVX512BF16__)
  return "avx512_bf16";
#elif defined(__AVX512F__)
  return "avx512";
#elif defined(__AVX2__) && defined(__FMA__)
  return "avx2_fma";
#elif defined(__AVX2__)
  return "avx2";
#elif defined(__AVX__)
  return "avx";
#elif defined(__ARM_NEON)
  return "neon";
#elif defined(__SSE2__)
  return "sse2";
#else
  return "scalar";
#endif
}
}  // namespace pyfast
