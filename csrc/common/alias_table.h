// Walker/Vose alias table: O(n) build, O(1) draw from a discrete distribution. Used for word2vec's noise
// distribution (count^0.75) by the trainer and the SGNS op, so both draw from exactly the same table.
// One 32-bit random word per draw: the top bits pick a column (multiply-shift), the rest decide between the
// column and its alias. Memory: n * (4 + 4) bytes, against word2vec.c's 1e8-entry (400 MB) table.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "common/philox.h"

namespace pyfast {

class AliasTable {
 public:
  AliasTable() = default;

  // weights: n non-negative values with a positive sum.
  explicit AliasTable(const std::vector<double>& weights) { build(weights); }

  void build(const std::vector<double>& weights) {
    const size_t n = weights.size();
    if (n == 0) throw std::invalid_argument("AliasTable: no weights");
    if (n > 0xFFFFFFFFull) throw std::invalid_argument("AliasTable: more than 2^32 - 1 outcomes");
    double total = 0.0;
    for (double w : weights) {
      if (!(w >= 0.0)) throw std::invalid_argument("AliasTable: weights must be finite and >= 0");
      total += w;
    }
    if (!(total > 0.0)) throw std::invalid_argument("AliasTable: weights sum to zero");
    threshold_.assign(n, 0);
    alias_.assign(n, 0);
    std::vector<double> scaled(n);
    std::vector<uint32_t> small, large;
    small.reserve(n);
    large.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      scaled[i] = weights[i] * static_cast<double>(n) / total;
      (scaled[i] < 1.0 ? small : large).push_back(static_cast<uint32_t>(i));
    }
    while (!small.empty() && !large.empty()) {
      const uint32_t s = small.back();
      small.pop_back();
      const uint32_t l = large.back();
      set_column(s, scaled[s], l);
      scaled[l] -= 1.0 - scaled[s];
      if (scaled[l] < 1.0) {
        large.pop_back();
        small.push_back(l);
      }
    }
    // Leftovers are 1 up to rounding: they always keep their own column.
    for (uint32_t i : large) set_column(i, 1.0, i);
    for (uint32_t i : small) set_column(i, 1.0, i);
  }

  size_t size() const { return threshold_.size(); }

  // Draw with a 64-bit random value: low 32 bits pick the column, high 32 bits accept or take the alias.
  inline uint32_t sample(uint64_t bits) const {
    const uint32_t col = uint_below(static_cast<uint32_t>(bits), static_cast<uint32_t>(threshold_.size()));
    return static_cast<uint32_t>(bits >> 32) < threshold_[col] ? col : alias_[col];
  }

  const std::vector<uint32_t>& thresholds() const { return threshold_; }
  const std::vector<uint32_t>& aliases() const { return alias_; }

 private:
  // Keep `col` with probability p (as a 32-bit threshold), otherwise draw `alias`.
  void set_column(uint32_t col, double p, uint32_t alias) {
    const double t = p * 4294967296.0;
    threshold_[col] = t >= 4294967295.0 ? 0xFFFFFFFFu : static_cast<uint32_t>(t);
    alias_[col] = (t >= 4294967295.0) ? col : alias;
  }

  std::vector<uint32_t> threshold_;  // P(keep column) * 2^32
  std::vector<uint32_t> alias_;
};

// A fast per-thread generator for hot loops that need many draws (negatives, subsampling, windows) where
// Philox per draw would cost too much: xoshiro256** (Blackman & Vigna), seeded from Philox so streams are
// reproducible from (seed, worker/row). Not for results that must be identical across thread counts.
struct Xoshiro256 {
  uint64_t s[4];

  static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

  explicit Xoshiro256(uint64_t seed = 0, uint64_t stream = 0) { reseed(seed, stream); }

  void reseed(uint64_t seed, uint64_t stream) {
    const Philox4x32 a = philox_draw(seed, stream * 2, 0x9E37u);
    const Philox4x32 b = philox_draw(seed, stream * 2 + 1, 0x9E37u);
    s[0] = (uint64_t(a.v[0]) << 32) | a.v[1];
    s[1] = (uint64_t(a.v[2]) << 32) | a.v[3];
    s[2] = (uint64_t(b.v[0]) << 32) | b.v[1];
    s[3] = (uint64_t(b.v[2]) << 32) | b.v[3];
    if ((s[0] | s[1] | s[2] | s[3]) == 0) s[0] = 1;  // the all-zero state is a fixed point
  }

  inline uint64_t next() {
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
  }

  // Uniform float in [0, 1).
  inline float uniform() { return static_cast<float>(next() >> 40) * (1.0f / 16777216.0f); }
};

}  // namespace pyfast
