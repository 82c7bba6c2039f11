// The small fp32 GEMM and the vectorised exp the attention tiles run on. A register-blocked micro-kernel
// computes a 6 x 16 tile of C: 12 AVX2 accumulators stay in registers for the whole K loop, so each step is
// 2 loads of B + 6 broadcasts of A for 12 FMAs (the shape BLAS uses on AVX2; 6 x 16 leaves 4 of 16 registers
// for B and A). A is read through two strides so the same kernel multiplies by P and by P^T without a
// transpose copy. Scalar fallback when the build has no AVX2/FMA.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define PYFAST_ATTN_AVX2 1
#endif

namespace pyfast {
namespace attention {

constexpr int64_t kPanel = 16;  // columns of B (and C) per micro-kernel call
constexpr int kTileRows = 6;    // rows of C per micro-kernel call

// C[r, 0:16] (+)= sum_k A[r * a_rs + k * a_ks] * B[k * ldb + 0:16] for r < MR.
template <int MR>
inline void micro_kernel(int64_t K, const float* A, int64_t a_rs, int64_t a_ks, const float* B, int64_t ldb,
                         float* C, int64_t ldc, bool accumulate) {
#if defined(PYFAST_ATTN_AVX2)
  // Named accumulators (not arrays): GCC otherwise keeps an array on the stack and stores it every k step.
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
#define PYFAST_MK_ROWS(X) X(0, c00, c01) X(1, c10, c11) X(2, c20, c21) X(3, c30, c31) X(4, c40, c41) X(5, c50, c51)
#define PYFAST_MK_LOAD(r, a0, a1)               \
  if constexpr (r < MR) {                       \
    a0 = _mm256_loadu_ps(C + (r) * ldc);        \
    a1 = _mm256_loadu_ps(C + (r) * ldc + 8);    \
  }
#define PYFAST_MK_FMA(r, a0, a1)                                 \
  if constexpr (r < MR) {                                        \
    const __m256 ar = _mm256_broadcast_ss(a + (r) * a_rs);       \
    a0 = _mm256_fmadd_ps(ar, b0, a0);                            \
    a1 = _mm256_fmadd_ps(ar, b1, a1);                            \
  }
#define PYFAST_MK_STORE(r, a0, a1)              \
  if constexpr (r < MR) {                       \
    _mm256_storeu_ps(C + (r) * ldc, a0);        \
    _mm256_storeu_ps(C + (r) * ldc + 8, a1);    \
  }
  if (accumulate) {
    PYFAST_MK_ROWS(PYFAST_MK_LOAD)
  }
  const float* a = A;
  const float* b = B;
  for (int64_t k = 0; k < K; ++k, a += a_ks, b += ldb) {
    const __m256 b0 = _mm256_loadu_ps(b);
    const __m256 b1 = _mm256_loadu_ps(b + 8);
    PYFAST_MK_ROWS(PYFAST_MK_FMA)
  }
  PYFAST_MK_ROWS(PYFAST_MK_STORE)
#undef PYFAST_MK_ROWS
#undef PYFAST_MK_LOAD
#undef PYFAST_MK_FMA
#undef PYFAST_MK_STORE
#else
  float acc[MR][kPanel];
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < kPanel; ++c) acc[r][c] = accumulate ? C[r * ldc + c] : 0.0f;
  for (int64_t k = 0; k < K; ++k)
    for (int r = 0; r < MR; ++r) {
      const float ar = A[r * a_rs + k * a_ks];
      for (int c = 0; c < kPanel; ++c) acc[r][c] += ar * B[k * ldb + c];
    }
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < kPanel; ++c) C[r * ldc + c] = acc[r][c];
#endif
}

// C (M x 16*n_panels, row stride ldc) (+)= A (M x K, strides a_rs, a_ks) * B, where column panel p of B is
// the K x 16 block at B + p * b_panel_stride with row stride ldb (row-major B: panel stride 16; packed
// panels: panel stride K * 16, ldb 16). Panel-outer order keeps one B panel (<= 16 KiB) in L1 while the
// row tiles stream A.
inline void gemm_panels(int64_t M, int64_t n_panels, int64_t K, const float* A, int64_t a_rs, int64_t a_ks,
                        const float* B, int64_t b_panel_stride, int64_t ldb, float* C, int64_t ldc,
                        bool accumulate) {
  for (int64_t p = 0; p < n_panels; ++p) {
    const float* Bp = B + p * b_panel_stride;
    float* Cp = C + p * kPanel;
    int64_t r0 = 0;
    for (; r0 + kTileRows <= M; r0 += kTileRows)
      micro_kernel<kTileRows>(K, A + r0 * a_rs, a_rs, a_ks, Bp, ldb, Cp + r0 * ldc, ldc, accumulate);
    const float* Ar = A + r0 * a_rs;
    float* Cr = Cp + r0 * ldc;
    switch (M - r0) {
      case 5: micro_kernel<5>(K, Ar, a_rs, a_ks, Bp, ldb, Cr, ldc, accumulate); break;
      case 4: micro_kernel<4>(K, Ar, a_rs, a_ks, Bp, ldb, Cr, ldc, accumulate); break;
      case 3: micro_kernel<3>(K, Ar, a_rs, a_ks, Bp, ldb, Cr, ldc, accumulate); break;
      case 2: micro_kernel<2>(K, Ar, a_rs, a_ks, Bp, ldb, Cr, ldc, accumulate); break;
      case 1: micro_kernel<1>(K, Ar, a_rs, a_ks, Bp, ldb, Cr, ldc, accumulate); break;
      default: break;
    }
  }
}

#if defined(PYFAST_ATTN_AVX2)
// exp on 8 floats: Cephes' degree-6 polynomial on x - n ln2, then 2^n through the exponent bits; about 1 ulp.
// Inputs below -87.33 (where 2^n would leave the normal range) return exactly 0, so masked scores (-inf) give
// probability 0. Operand order in min/max makes NaN inputs come out NaN (MINPS returns its 2nd operand on NaN).
inline __m256 exp256(__m256 x) {
  const __m256 hi = _mm256_set1_ps(88.3762626647949f);
  const __m256 lo = _mm256_set1_ps(-87.3365447504f);
  __m256 xc = _mm256_min_ps(hi, x);
  xc = _mm256_max_ps(lo, xc);
  const __m256 fx = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), xc);
  r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
  const __m256 underflow = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);  // false for NaN: NaN stays NaN
  return _mm256_andnot_ps(underflow, y);
}
#endif

// Max of in[0:n] (n a multiple of 8 on the AVX2 path), NaN if any element is NaN (so a NaN score makes
// its whole output row NaN, as the unfused formula does, instead of being skipped by the max).
inline float row_max_nan(const float* in, int64_t n) {
  float best = -INFINITY;
  bool nan = false;
  int64_t c = 0;
#if defined(PYFAST_ATTN_AVX2)
  __m256 vmax = _mm256_set1_ps(-INFINITY);
  __m256 vnan = _mm256_setzero_ps();
  for (; c + 8 <= n; c += 8) {
    const __m256 x = _mm256_loadu_ps(in + c);
    vmax = _mm256_max_ps(vmax, x);
    vnan = _mm256_or_ps(vnan, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, vmax);
  for (float v : lanes) best = v > best ? v : best;
  nan = _mm256_movemask_ps(vnan) != 0;
#endif
  for (; c < n; ++c) {
    if (std::isnan(in[c])) nan = true;
    best = in[c] > best ? in[c] : best;
  }
  return nan ? NAN : best;
}

// out[c] = exp(in[c] - shift) for c < n (n a multiple of 8 on the AVX2 path); returns the sum.
inline float exp_shifted_sum(const float* in, float shift, float* out, int64_t n) {
  float total = 0.0f;
  int64_t c = 0;
#if defined(PYFAST_ATTN_AVX2)
  const __m256 s = _mm256_set1_ps(shift);
  __m256 acc = _mm256_setzero_ps();
  for (; c + 8 <= n; c += 8) {
    const __m256 p = exp256(_mm256_sub_ps(_mm256_loadu_ps(in + c), s));
    _mm256_storeu_ps(out + c, p);
    acc = _mm256_add_ps(acc, p);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  for (float v : lanes) total += v;
#endif
  for (; c < n; ++c) {
    out[c] = std::exp(in[c] - shift);
    total += out[c];
  }
  return total;
}

}  // namespace attention
}  // namespace pyfast
