// Many Philox4x32-10 blocks at once, bit-identical to common/philox.h's philox_draw: 8 blocks per AVX2 step
// where the build has AVX2, scalar otherwise. Used by masking (one draw per four columns, then one per chosen
// column); generic enough to move to common/ when another kernel wants it.
#pragma once
#include <cstdint>

#include "common/philox.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace pyfast {

// Block i has counter (lo[i], hi, stream, 0) and key (seed): i.e. philox_draw(seed, (hi << 32) | lo[i], stream).
// Word w of block i goes to out[w * n + i] (structure of arrays: callers read one word per column).
inline void philox_blocks_soa(uint64_t seed, uint32_t hi, uint32_t stream, const uint32_t* lo, int64_t n,
                              uint32_t* out) {
  int64_t i = 0;
#if defined(__AVX2__)
  // Philox's two 32x32->64 multiplies per round map onto _mm256_mul_epu32, which multiplies the even 32-bit
  // lanes only: multiply even and odd lanes separately and blend. A scalar block is a ~40-cycle dependency
  // chain; eight interleaved in vector lanes cost about a scalar block's worth of instructions.
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(detail::kPhiloxM0));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(detail::kPhiloxM1));
  auto mulhilo = [](__m256i a, __m256i m, __m256i& hi_out, __m256i& lo_out) {
    const __m256i even = _mm256_mul_epu32(a, m);                          // lanes 0,2,4,6 as 64-bit products
    const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);    // lanes 1,3,5,7
    lo_out = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
    hi_out = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  };
  for (; i + 8 <= n; i += 8) {
    __m256i c0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lo + i));
    __m256i c1 = _mm256_set1_epi32(static_cast<int>(hi));
    __m256i c2 = _mm256_set1_epi32(static_cast<int>(stream));
    __m256i c3 = _mm256_setzero_si256();
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    for (int round = 0; round < 10; ++round) {
      if (round > 0) {
        k0 += detail::kPhiloxW0;
        k1 += detail::kPhiloxW1;
      }
      __m256i hi0, lo0, hi1, lo1;
      mulhilo(c0, m0, hi0, lo0);
      mulhilo(c2, m1, hi1, lo1);
      const __m256i n0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), _mm256_set1_epi32(static_cast<int>(k0)));
      const __m256i n2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), _mm256_set1_epi32(static_cast<int>(k1)));
      c0 = n0;
      c1 = lo1;
      c2 = n2;
      c3 = lo0;
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), c0);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + n + i), c1);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 2 * n + i), c2);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 3 * n + i), c3);
  }
#endif
  for (; i < n; ++i) {
    const Philox4x32 r = philox_draw(seed, (static_cast<uint64_t>(hi) << 32) | lo[i], stream);
    for (int w = 0; w < 4; ++w) out[w * n + i] = r.v[w];
  }
}

}  // namespace pyfast
