// The word2vec noise distribution count^exponent as an alias table (O(V) build, O(1) per draw), shared in form with
// the trainer (common/alias_table.h): what pyfast.data.NoiseSampler draws negatives with. Draws for row r are keyed
// by (seed, r) through Philox, so a sample never depends on the thread count.
#pragma once
#include <cstdint>

#include "common/alias_table.h"

namespace pyfast {

class NoiseSampler {
 public:
  // counts: (V,) finite, >= 0, at least one positive; exponent: usually 0.75. Bad counts: std::invalid_argument.
  NoiseSampler(const double* counts, int64_t num_embeddings, double exponent);
  int64_t size() const { return static_cast<int64_t>(table_.size()); }
  // out: (num_rows, k) int64.
  void sample(int64_t* out, int64_t num_rows, int64_t k, uint64_t seed) const;

 private:
  AliasTable table_;
};

}  // namespace pyfast
