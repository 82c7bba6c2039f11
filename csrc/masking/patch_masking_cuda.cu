// CUDA kernel for the per-image patch choice of MAE, bit-identical to patch_masking_cpu.cpp (same keys, see
// patch_masking.h). One 256-thread block per image (grid-stride over images): pass 1 writes the image's n keys to
// global scratch; pass 2 gives each patch its rank by counting the smaller keys (O(n^2) compares per image, but
// n is a few hundred and the row stays in L1: ~200 x 200 compares per block is below the launch cost, and unlike
// a sort it needs no shared-memory sizing or power-of-two padding). Keys are unique, so ranks are a permutation
// and equal the CPU's sorted positions exactly.
#include "masking/patch_masking.h"

#include <algorithm>

#include "common/checks.h"
#include "common/cuda_utils.cuh"

namespace pyfast {

namespace {

constexpr const char* kOp = "random_patch_mask";
constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads) patch_mask_kernel(const PatchMaskParams p, uint64_t* keys_all) {
  const int64_t n = p.n_patches;
  for (int64_t b = blockIdx.x; b < p.batch; b += gridDim.x) {
    uint64_t* keys = keys_all + b * n;
    const uint64_t image = static_cast<uint64_t>(p.image_ids[b * p.image_ids_stride]);
    for (int64_t j = threadIdx.x; j < n; j += kThreads) keys[j] = patch_key(p.seed, image, static_cast<uint32_t>(j));
    __syncthreads();  // the row's keys are visible to the whole block from here on
    for (int64_t j = threadIdx.x; j < n; j += kThreads) {
      const uint64_t mine = keys[j];
      int64_t rank = 0;
      for (int64_t i = 0; i < n; ++i) rank += keys[i] < mine ? 1 : 0;
      if (rank < p.n_keep) p.ids_keep[b * p.n_keep + rank] = j;
      p.ids_restore[b * n + j] = rank;
      p.mask[b * n + j] = rank >= p.n_keep ? 1.0f : 0.0f;
    }
    __syncthreads();  // the next image of this block starts only when this one is done with keys
  }
}

}  // namespace

void patch_mask_cuda(const PatchMaskParams& p, uint64_t* keys, std::uintptr_t stream) {
  check_patch_mask_params(p, kOp);
  PYFAST_CHECK_ARG(p.batch == 0 || keys != nullptr, kOp, "the CUDA kernel needs the (B, n) key scratch");
  if (p.batch == 0) return;
  const int64_t blocks = std::min<int64_t>(p.batch, int64_t{1} << 20);
  patch_mask_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, cuda::as_stream(stream)>>>(p, keys);
  cuda::check_launch(kOp);
}

}  // namespace pyfast
