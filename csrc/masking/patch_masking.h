// Per-image random patch choice for masked-image pretraining (MAE, He et al. 2021): for each of B images with n
// patches, exactly n - n_keep patches are masked, uniformly at random, independently per image. The params struct
// and the two entry points only (no torch, no CUDA headers): kernels in patch_masking_cpu.cpp and
// patch_masking_cuda.cu, which match bit for bit.
//
// ---- The random keying scheme (the contract both kernels follow bit for bit) ---------------------------------
// Patch j of the image with id g = image_ids[b] (a dataset index, so a mask depends on (seed, image), not on the
// batch it sits in or the thread that draws it) gets the 64-bit key
//   key(g, j) = (uint64(word) << 32) | j,  word = philox4x32_10(counter = (j >> 2, kPatchStream, lo32(g), hi32(g)),
//                                                              key = (lo32(seed), hi32(seed))).v[j & 3]
// (one Philox block serves four consecutive patches). Keys are unique (j in the low half), so "ascending key" is a
// total order: ids_shuffle = the patches in ascending key order (MAE's argsort of uniform noise, with no ties), and
//   ids_keep[b, r]    = ids_shuffle[r] for r < n_keep     (MAE's ids_keep: kept patches, in shuffle order)
//   ids_restore[b, j] = rank of patch j in that order      (MAE's argsort(ids_shuffle))
//   mask[b, j]        = 1.0f if ids_restore[b, j] >= n_keep else 0.0f   (1 = masked, MAE's convention)
// The 32-bit word is uniform, so every n_keep-subset is equally likely up to the 2^-32 chance of equal words
// (broken by j, a bias far below anything a test or a training run can see).
#pragma once
#include <cstdint>

#include "common/checks.h"
#include "common/philox.h"

namespace pyfast {

constexpr uint32_t kPatchStream = 0x50410001u;  // "PA" 1

struct PatchMaskParams {
  int64_t batch = 0;                    // B
  int64_t n_patches = 0;                // n, in [1, 2**31)
  int64_t n_keep = 0;                   // in [0, n]
  const int64_t* image_ids = nullptr;   // (B,) with stride image_ids_stride: the key of each image (any int64)
  int64_t image_ids_stride = 1;
  uint64_t seed = 0;
  int64_t* ids_keep = nullptr;          // (B, n_keep) contiguous
  int64_t* ids_restore = nullptr;       // (B, n) contiguous
  float* mask = nullptr;                // (B, n) contiguous
};

// key(g, j) of the scheme above (header-only, so nvcc compiles the same code for the device).
PYFAST_HD uint64_t patch_key(uint64_t seed, uint64_t image_id, uint32_t j) {
  const Philox4x32 r = philox4x32_10(j >> 2, kPatchStream, static_cast<uint32_t>(image_id),
                                     static_cast<uint32_t>(image_id >> 32), static_cast<uint32_t>(seed),
                                     static_cast<uint32_t>(seed >> 32));
  const uint32_t w = j & 3;
  // A select chain, not r.v[w]: a runtime index into a register array would spill it to local memory on the GPU.
  const uint32_t word = w == 0 ? r.v[0] : w == 1 ? r.v[1] : w == 2 ? r.v[2] : r.v[3];
  return (static_cast<uint64_t>(word) << 32) | j;
}

// Sizes and pointers, checked by both backends before touching memory. std::invalid_argument (ValueError).
inline void check_patch_mask_params(const PatchMaskParams& p, const char* op) {
  PYFAST_CHECK_ARG(p.batch >= 0, op, "batch must be >= 0, got ", p.batch);
  PYFAST_CHECK_ARG(p.n_patches >= 1 && p.n_patches < (int64_t{1} << 31), op, "n_patches must be in [1, 2**31), got ",
                   p.n_patches);
  PYFAST_CHECK_ARG(p.n_keep >= 0 && p.n_keep <= p.n_patches, op, "n_keep must be in [0, n_patches], got ", p.n_keep);
  PYFAST_CHECK_ARG(p.batch == 0 || (p.image_ids != nullptr && p.ids_restore != nullptr && p.mask != nullptr &&
                                    (p.n_keep == 0 || p.ids_keep != nullptr)),
                   op, "image_ids, ids_keep, ids_restore and mask must be set");
}

// Fills ids_keep, ids_restore and mask. Throws std::invalid_argument (ValueError) for bad sizes.
void patch_mask_cpu(const PatchMaskParams& p);

// The same on `stream` (a cudaStream_t as an integer) with device pointers, bit-identical to patch_mask_cpu;
// `keys` is (B, n) uint64 device scratch the caller allocates.
void patch_mask_cuda(const PatchMaskParams& p, uint64_t* keys, std::uintptr_t stream);

}  // namespace pyfast
