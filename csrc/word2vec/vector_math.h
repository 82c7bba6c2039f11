// The small dense products the word2vec kernels are made of, on rows of length `d` (100-300 typically):
// a row against up to T rows (dot products), and a weighted sum of up to n rows into one. AVX2+FMA when the
// build targets it (host-native by default), a plain loop otherwise; any d works (scalar tail past the last
// multiple of 8). Rows are gathered by pointer: they are random rows of the embedding tables. SIMD helpers:
// common/simd.h.
#pragma once
#include <cstdint>

#include "common/simd.h"

namespace pyfast::w2v {

#if defined(PYFAST_SIMD_AVX2)
using simd::hsum256;
#endif

// out[t] = x . rows[t] for t < T. Four rows at a time so each chunk of x is loaded once per four products and
// four independent FMA chains hide the FMA latency; a last partial group repeats its final row (the duplicate
// results are discarded) rather than falling back to a one-chain loop, which is latency-bound.
inline void dot_rows(const float* x, const float* const* rows, int T, int d, float* out) {
#if defined(PYFAST_SIMD_AVX2)
  for (int t = 0; t < T; t += 4) {
    const float* r0 = rows[t];
    const float* r1 = rows[t + 1 < T ? t + 1 : T - 1];
    const float* r2 = rows[t + 2 < T ? t + 2 : T - 1];
    const float* r3 = rows[t + 3 < T ? t + 3 : T - 1];
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= d; j += 8) {
      const __m256 xv = _mm256_loadu_ps(x + j);
      a0 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(r0 + j), a0);
      a1 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(r1 + j), a1);
      a2 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(r2 + j), a2);
      a3 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(r3 + j), a3);
    }
    float s[4] = {hsum256(a0), hsum256(a1), hsum256(a2), hsum256(a3)};
    for (; j < d; ++j) {
      s[0] += x[j] * r0[j];
      s[1] += x[j] * r1[j];
      s[2] += x[j] * r2[j];
      s[3] += x[j] * r3[j];
    }
    for (int k = 0; k < 4 && t + k < T; ++k) out[t + k] = s[k];
  }
#else
  for (int t = 0; t < T; ++t) {
    const float* r = rows[t];
    float s = 0.0f;
    for (int j = 0; j < d; ++j) s += x[j] * r[j];
    out[t] = s;
  }
#endif
}

// y = (accumulate ? y : 0) + sum_i coef[i] * rows[i]. One pass over y with all n rows per chunk, so y is
// read and written once however many rows are summed (this is the GEMM side of the window update).
inline void weighted_row_sum(float* y, bool accumulate, const float* const* rows, const float* coef, int n, int d) {
  int j = 0;
#if defined(PYFAST_SIMD_AVX2)
  // Two chunks per step: two independent FMA chains (each chain is n FMAs long).
  for (; j + 16 <= d; j += 16) {
    __m256 acc0 = accumulate ? _mm256_loadu_ps(y + j) : _mm256_setzero_ps();
    __m256 acc1 = accumulate ? _mm256_loadu_ps(y + j + 8) : _mm256_setzero_ps();
    for (int i = 0; i < n; ++i) {
      const __m256 c = _mm256_set1_ps(coef[i]);
      acc0 = _mm256_fmadd_ps(c, _mm256_loadu_ps(rows[i] + j), acc0);
      acc1 = _mm256_fmadd_ps(c, _mm256_loadu_ps(rows[i] + j + 8), acc1);
    }
    _mm256_storeu_ps(y + j, acc0);
    _mm256_storeu_ps(y + j + 8, acc1);
  }
  for (; j + 8 <= d; j += 8) {
    __m256 acc = accumulate ? _mm256_loadu_ps(y + j) : _mm256_setzero_ps();
    for (int i = 0; i < n; ++i) acc = _mm256_fmadd_ps(_mm256_set1_ps(coef[i]), _mm256_loadu_ps(rows[i] + j), acc);
    _mm256_storeu_ps(y + j, acc);
  }
#endif
  for (; j < d; ++j) {
    float acc = accumulate ? y[j] : 0.0f;
    for (int i = 0; i < n; ++i) acc += coef[i] * rows[i][j];
    y[j] = acc;
  }
}

// y += a * x
inline void axpy(float a, const float* x, float* y, int d) {
  int j = 0;
#if defined(PYFAST_SIMD_AVX2)
  const __m256 av = _mm256_set1_ps(a);
  for (; j + 8 <= d; j += 8)
    _mm256_storeu_ps(y + j, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + j), _mm256_loadu_ps(y + j)));
#endif
  for (; j < d; ++j) y[j] += a * x[j];
}

}  // namespace pyfast::w2v
