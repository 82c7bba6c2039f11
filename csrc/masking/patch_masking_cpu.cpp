// CPU kernel for the per-image patch choice of MAE (see patch_masking.h for the keying). Images run in parallel;
// per image: n keys, one sort (n is a few hundred patches: a sort of 64-bit keys in L1 costs less than the Philox
// draws), then the three outputs from the sorted order. O(n) scratch per thread.
#include "masking/patch_masking.h"

#include <algorithm>
#include <vector>

#include "common/parallel.h"

namespace pyfast {
namespace {
constexpr const char* kOp = "random_patch_mask";
}  // namespace

void patch_mask_cpu(const PatchMaskParams& p) {
  check_patch_mask_params(p, kOp);
  const int64_t n = p.n_patches;
  // A chunk should hold a few thousand patches so claiming one stays negligible.
  const int64_t grain = std::max<int64_t>(1, 4096 / n);
  parallel_for_elastic(p.batch, grain, [&](int64_t begin, int64_t end, int) {
    std::vector<uint64_t> keys(static_cast<size_t>(n));
    for (int64_t b = begin; b < end; ++b) {
      const uint64_t image = static_cast<uint64_t>(p.image_ids[b * p.image_ids_stride]);
      for (int64_t j = 0; j < n; ++j) keys[j] = patch_key(p.seed, image, static_cast<uint32_t>(j));
      std::sort(keys.begin(), keys.end());  // keys are unique: any sort gives the one order the CUDA kernel ranks
      int64_t* keep = p.ids_keep + b * p.n_keep;
      int64_t* restore = p.ids_restore + b * n;
      float* mask = p.mask + b * n;
      for (int64_t r = 0; r < n; ++r) {
        const int64_t j = static_cast<int64_t>(static_cast<uint32_t>(keys[r]));
        if (r < p.n_keep) keep[r] = j;
        restore[j] = r;
        mask[j] = r >= p.n_keep ? 1.0f : 0.0f;
      }
    }
  });
}

}  // namespace pyfast
