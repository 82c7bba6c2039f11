// The SGNS noise sampler (noise_sampler.h): count^exponent weights, an alias table, Philox-keyed rows.
#include "word2vec/noise_sampler.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/checks.h"
#include "common/parallel.h"
#include "common/philox.h"

namespace pyfast {

namespace {
std::vector<double> noise_weights(const double* counts, int64_t v, double exponent) {
  PYFAST_CHECK_ARG(v >= 1, "sample_negatives", "counts must not be empty");
  std::vector<double> w(static_cast<size_t>(v));
  for (int64_t i = 0; i < v; ++i) {
    PYFAST_CHECK_ARG(std::isfinite(counts[i]) && counts[i] >= 0, "sample_negatives",
                     "counts must be finite and >= 0, got ", counts[i], " at ", i);
    w[i] = counts[i] > 0 ? std::pow(counts[i], exponent) : 0.0;
  }
  return w;
}
}  // namespace

NoiseSampler::NoiseSampler(const double* counts, int64_t num_embeddings, double exponent) {
  const std::vector<double> w = noise_weights(counts, num_embeddings, exponent);
  PYFAST_CHECK_ARG(std::any_of(w.begin(), w.end(), [](double x) { return x > 0; }), "sample_negatives",
                   "counts must have a positive entry");
  table_.build(w);
}

void NoiseSampler::sample(int64_t* out, int64_t num_rows, int64_t k, uint64_t seed) const {
  PYFAST_CHECK_ARG(num_rows >= 0 && k >= 0, "sample_negatives", "num_rows and k must be >= 0");
  constexpr uint32_t kNegativeStream = 0x5A6E5u;  // "SGNS": separates these draws from other uses of the seed
  // One Philox block (128 bits) gives two 64-bit draws; row r owns blocks [r * ceil(k/2), (r+1) * ceil(k/2)).
  const int64_t blocks_per_row = (k + 1) / 2;
  parallel_for(num_rows, 1024, [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) {
      int64_t* row = out + r * k;
      for (int64_t b = 0; b < blocks_per_row; ++b) {
        const Philox4x32 x = philox_draw(seed, static_cast<uint64_t>(r * blocks_per_row + b), kNegativeStream);
        row[2 * b] = table_.sample((uint64_t(x.v[1]) << 32) | x.v[0]);
        if (2 * b + 1 < k) row[2 * b + 1] = table_.sample((uint64_t(x.v[3]) << 32) | x.v[2]);
      }
    }
  });
}

}  // namespace pyfast
