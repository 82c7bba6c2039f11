// The CPU module's SIMD helpers, in one place: what the build targets (simd_level, for pyfast.info()) and the
// AVX2+FMA building blocks the word2vec / SGNS kernels share (horizontal sums, a float / double lane traits type
// so one template serves both widths). Host-native by default (see CMakeLists.txt); without AVX2+FMA
// PYFAST_SIMD_AVX2 is undefined and the kernels take their plain loops.
#pragma once

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define PYFAST_SIMD_AVX2 1
#endif

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

#if defined(PYFAST_SIMD_AVX2)
namespace simd {

// Sum of the 8 lanes, as ((v0 + v4) + (v1 + v5)) + ((v2 + v6) + (v3 + v7)).
inline float hsum256(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  const __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  __m128 shuf = _mm_movehdup_ps(lo);
  __m128 sums = _mm_add_ps(lo, shuf);
  shuf = _mm_movehl_ps(shuf, sums);
  sums = _mm_add_ss(sums, shuf);
  return _mm_cvtss_f32(sums);
}

// Sum of the 4 lanes, as (v0 + v2) + (v1 + v3).
inline double hsum256d(__m256d v) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
  return _mm_cvtsd_f64(s);
}

// One 256-bit register of T (float: 8 lanes, double: 4), so a kernel is written once for both widths.
template <typename T>
struct Avx2;

template <>
struct Avx2<float> {
  using Vec = __m256;
  static constexpr int kLanes = 8;
  static Vec zero() { return _mm256_setzero_ps(); }
  static Vec set1(float x) { return _mm256_set1_ps(x); }
  static Vec load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, Vec v) { _mm256_storeu_ps(p, v); }
  static Vec add(Vec a, Vec b) { return _mm256_add_ps(a, b); }
  static Vec fma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }  // a * b + c
  static float hsum(Vec v) { return hsum256(v); }
};

template <>
struct Avx2<double> {
  using Vec = __m256d;
  static constexpr int kLanes = 4;
  static Vec zero() { return _mm256_setzero_pd(); }
  static Vec set1(double x) { return _mm256_set1_pd(x); }
  static Vec load(const double* p) { return _mm256_loadu_pd(p); }
  static void store(double* p, Vec v) { _mm256_storeu_pd(p, v); }
  static Vec add(Vec a, Vec b) { return _mm256_add_pd(a, b); }
  static Vec fma(Vec a, Vec b, Vec c) { return _mm256_fmadd_pd(a, b, c); }
  static double hsum(Vec v) { return hsum256d(v); }
};

}  // namespace simd
#endif
}  // namespace pyfast
