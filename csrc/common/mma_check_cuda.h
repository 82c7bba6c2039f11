// Test hooks for csrc/common/mma.cuh and cp_async.cuh: runs one mma_m16n8k16 per warp on matrices given in plain
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

// One warp's ldmatrix.x4 (trans: .x4.trans): src (32, 8) uint16 rows copied to shared memory, rows (32,) int32 the
// shared row each lane names as its address, out (32, 4) uint32 every lane's four registers.
void ldmatrix_x4_check_cuda(std::uintptr_t src, std::uintptr_t rows, std::uintptr_t out, bool trans,
                            std::uintptr_t stream);

// cp.async of 256 16-byte chunks src -> shared -> out (4096 bytes each) by 128 threads in two commit groups; mode
// as cp_async_check_kernel in mma_check.cu (0 correct, 1 missing wait, 2 wait_group 1, 3 zero-filled odd chunks).
void cp_async_check_cuda(std::uintptr_t src, std::uintptr_t out, int mode, std::uintptr_t stream);

}  // namespace cuda
}  // namespace pyfast
