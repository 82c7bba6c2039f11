// A test hook for csrc/common/mma.cuh: runs one mma_m16n8k16 per warp on matrices given in plain
// row-major memory, so tests can check the fragment layouts against a matrix product (on the host emulator, and
// on a GPU when one is present). No CUDA includes: bindings_cuda.cpp calls it.
#pragma once
#include <cstdint>

namespace pyfast {
namespace cuda {

// d[i] = a[i] b[i] + c[i] for i < n: a (n, 16, 16) and b (n, 16, 8) of `dtype` (2 = bfloat16, 3 = float16, the
// attention DType codes), c and d (n, 16, 8) float32; all contiguous device memory.
void mma_m16n8k16_check_cuda(int dtype, std::uintptr_t a, std::uintptr_t b, std::uintptr_t c, std::uintptr_t d,
                             int64_t n, std::uintptr_t stream);

}  // namespace cuda
}  // namespace pyfast
