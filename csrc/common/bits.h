// Bit tricks on 64-bit words, portable: GCC/Clang builtins (one instruction with BMI/POPCNT), MSVC intrinsics,
// and a plain loop elsewhere. The masking and SGNS kernels use them on their bitmaps.
#pragma once
#include <cstdint>

#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#endif

namespace pyfast {

// Index of the lowest set bit of x; x must not be 0.
inline int ctz64(uint64_t x) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_ctzll(x);
#elif defined(_MSC_VER) && defined(_M_X64)
  unsigned long index;
  _BitScanForward64(&index, x);
  return static_cast<int>(index);
#else
  int n = 0;
  while ((x & 1u) == 0) {
    x >>= 1;
    ++n;
  }
  return n;
#endif
}

// Number of set bits of x.
inline int popcount64(uint64_t x) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_popcountll(x);
#elif defined(_MSC_VER) && defined(_M_X64)
  return static_cast<int>(__popcnt64(x));
#else
  int n = 0;
  for (; x != 0; x &= x - 1) ++n;
  return n;
#endif
}

}  // namespace pyfast
