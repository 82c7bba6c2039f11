// Counter-based RNG: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11).
// Stateless: the same (key, counter) gives the same four 32-bit words on every thread, CPU or GPU, so kernels
// key draws by (seed, position) and results never depend on the thread count. Header-only; compiles with
// a C++ compiler or nvcc. Checked against the Random123 known-answer vectors in tests/test_rng.py.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define PYFAST_HD __host__ __device__ __forceinline__
#else
#define PYFAST_HD inline
#endif

namespace pyfast {

struct Philox4x32 {
  uint32_t v[4];
};

namespace detail {
constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;  // golden ratio
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;  // sqrt(3) - 1

PYFAST_HD void mulhilo32(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}
}  // namespace detail

// Ten rounds of Philox4x32 on counter (c0..c3) under key (k0, k1).
PYFAST_HD Philox4x32 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                                   uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += detail::kPhiloxW0;
      k1 += detail::kPhiloxW1;
    }
    uint32_t hi0, lo0, hi1, lo1;
    detail::mulhilo32(detail::kPhiloxM0, c0, hi0, lo0);
    detail::mulhilo32(detail::kPhiloxM1, c2, hi1, lo1);
    const uint32_t n0 = hi1 ^ c1 ^ k0;
    const uint32_t n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
  }
  return Philox4x32{{c0, c1, c2, c3}};
}

// The pyfast convention for keyed streams: key = 64-bit seed, counter = (64-bit index, 32-bit stream, 0).
// `stream` separates independent uses of the same seed inside one op (e.g. "choose" vs "replace").
PYFAST_HD Philox4x32 philox_draw(uint64_t seed, uint64_t index, uint32_t stream) {
  return philox4x32_10(static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32), stream, 0u,
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// Uniform float in [0, 1) from the top 24 bits: every value is exactly representable, 1.0 is never returned.
PYFAST_HD float uint_to_unit_float(uint32_t x) { return static_cast<float>(x >> 8) * (1.0f / 16777216.0f); }

// Uniform double in [0, 1) from two words (53 bits).
PYFAST_HD double uint2_to_unit_double(uint32_t hi, uint32_t lo) {
  const uint64_t bits = (static_cast<uint64_t>(hi) << 21) ^ static_cast<uint64_t>(lo >> 11);
  return static_cast<double>(bits & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
}

// Unbiased-enough integer in [0, n) by multiply-shift (Lemire); bias <= n / 2^32, negligible for vocabularies.
PYFAST_HD uint32_t uint_below(uint32_t x, uint32_t n) {
  return static_cast<uint32_t>((static_cast<uint64_t>(x) * static_cast<uint64_t>(n)) >> 32);
}

}  // namespace pyfast
