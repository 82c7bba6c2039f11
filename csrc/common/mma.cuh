// Warp-level tensor-core multiply-accumulate for the CUDA kernels: mma.sync m16n8k16 with bf16 or fp16 inputs and
// fp32 accumulators (sm_80+), ldmatrix.x4 (.trans) loads of fragments from shared memory, the fragment layouts
// every caller must follow, and the host emulator's C++ stand-ins (tests/cuda_emu runs those, not the PTX).
// Included only by CUDA sources.
#pragma once
#include <cstdint>
#include <type_traits>
#if defined(PYFAST_CUDA_EMU)
#include <cstdio>
#include <cstdlib>
#endif

#include "common/cuda_utils.cuh"

namespace pyfast {
namespace cuda {

// ---- fragment layouts ---------------------------------------------------------------------------------------
// PTX ISA, chapter "Warp Level Matrix Multiply-Accumulate Instructions", section "Matrix Fragments for
// mma.m16n8k16 with floating point type" (.f16 / .bf16 inputs). With g = lane >> 2 (groupID) and
// t = lane % 4 (threadID_in_group):
//   A (16 x 16, .row): 4 x .b32 registers; register r holds A[row][col] in its low 16 bits and A[row][col + 1]
//                      in its high 16 bits, row = g + 8 * (r & 1), col = 2t + 8 * (r >> 1)
//                      (the ISA's a0..a7: a0,a1 row g; a2,a3 row g+8; a4,a5 row g col+8; a6,a7 row g+8 col+8).
//   B (16 x 8, .col):  2 x .b32; register r holds B[k][n] (low) and B[k + 1][n] (high), k = 2t + 8r, n = g.
//   C, D (16 x 8 f32): 4 floats; c[r] is C[row][col], row = g + 8 * (r >> 1), col = 2t + (r & 1).
// Every index below goes through these six functions, so the kernels, the emulation and the unit test read one
// statement of the layout.
__host__ __device__ __forceinline__ int mma_a_row(int lane, int r) { return (lane >> 2) + 8 * (r & 1); }
__host__ __device__ __forceinline__ int mma_a_col(int lane, int r) { return 2 * (lane & 3) + 8 * (r >> 1); }
__host__ __device__ __forceinline__ int mma_b_k(int lane, int r) { return 2 * (lane & 3) + 8 * r; }
__host__ __device__ __forceinline__ int mma_b_n(int lane) { return lane >> 2; }
__host__ __device__ __forceinline__ int mma_c_row(int lane, int r) { return (lane >> 2) + 8 * (r >> 1); }
__host__ __device__ __forceinline__ int mma_c_col(int lane, int r) { return 2 * (lane & 3) + (r & 1); }

// ---- packing two 16-bit values into one register ------------------------------------------------------------
__device__ __forceinline__ uint32_t bits16(__nv_bfloat16 x) { return __bfloat16_as_ushort(x); }
__device__ __forceinline__ uint32_t bits16(__half x) { return __half_as_ushort(x); }

// (lo, hi) -> one .b32 register, lo in the low half (the element with the smaller column / k index).
template <typename T>
__device__ __forceinline__ uint32_t pack2(T lo, T hi) {
  return bits16(lo) | (bits16(hi) << 16);
}
// Two fp32 values rounded to nearest into one bf16x2 / f16x2 register (P of attention becomes an A operand).
template <typename T>
__device__ __forceinline__ uint32_t pack2_float(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t pack2_float<__nv_bfloat16>(float lo, float hi) {
  return pack2(__float2bfloat16_rn(lo), __float2bfloat16_rn(hi));
}
template <>
__device__ __forceinline__ uint32_t pack2_float<__half>(float lo, float hi) {
  return pack2(__float2half_rn(lo), __float2half_rn(hi));
}
// Loads (p[0], p[1]) as one register. p must be 4-byte aligned (even element offset in an aligned buffer):
// every caller reads shared memory whose row strides are even.
template <typename T>
__device__ __forceinline__ uint32_t load_pair(const T* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

// (p[0], p[ld]) as one register: a fragment pair that runs down a column of a row-major tile (B = K or Q or dO
// with k along rows). Two 16-bit loads: the alternative, a transposed copy in shared memory, costs more space.
__device__ __forceinline__ uint32_t load_pair_strided(const uint16_t* p, int ld) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[ld]) << 16);
}

// ---- ldmatrix: four 8 x 8 16-bit matrices from shared memory into fragments ----------------------------------
// PTX ISA, "Warp-level matrix load instruction: ldmatrix" (.m8n8.x4.b16). Lanes 8m .. 8m + 7 give the shared
// addresses of rows 0 .. 7 of matrix m (each row 8 contiguous 16-bit elements, 16-byte aligned). Register m of lane
// l receives, with g = l >> 2 and t = l % 4: M_m[g][2t] (low half) and M_m[g][2t + 1] (high half); with .trans
// the matrix is transposed on the way: M_m[2t][g] (low) and M_m[2t + 1][g] (high). So a non-transposed matrix of
// row-major rows lands in the A / B fragment layouts above (a row of A, a column of B = a row of the stored B^T),
// and .trans serves B stored row-major along k (V in P V). Warp-collective, as mma.sync.
__host__ __device__ __forceinline__ int ldmatrix_row(int lane) { return lane & 7; }     // row of its matrix
__host__ __device__ __forceinline__ int ldmatrix_matrix(int lane) { return lane >> 3; }  // which of the four

#if defined(PYFAST_CUDA_EMU)
// Every lane deposits its row address; after the warp rendezvous each lane reads its elements from the rows the
// other lanes named, through the layout above.
template <bool kTrans>
inline void ldmatrix_x4_emu(uint32_t (&r)[4], const void* row_addr) {
  if (reinterpret_cast<uintptr_t>(row_addr) % 16 != 0) {  // the hardware faults: so does the emulation
    std::fprintf(stderr, "ldmatrix: row address %p is not 16-byte aligned\n", row_addr);
    std::abort();
  }
  uint32_t mine[2];
  const uintptr_t a = reinterpret_cast<uintptr_t>(row_addr);
  mine[0] = static_cast<uint32_t>(a);
  mine[1] = static_cast<uint32_t>(static_cast<uint64_t>(a) >> 32);
  const uint32_t* warp = ::emu::warp_scratch_deposit(mine, 2);
  const int lane = static_cast<int>(::emu::linear_tid() & 31), g = lane >> 2, t = lane & 3;
  auto row_of = [&](int m, int row) {
    const uint32_t* regs = warp + (8 * m + row) * ::emu::kScratchWords;
    return reinterpret_cast<const uint16_t*>(static_cast<uintptr_t>(regs[0] | (static_cast<uint64_t>(regs[1]) << 32)));
  };
  for (int m = 0; m < 4; ++m) {
    uint32_t lo, hi;
    if (kTrans) {
      lo = row_of(m, 2 * t)[g];
      hi = row_of(m, 2 * t + 1)[g];
    } else {
      lo = row_of(m, g)[2 * t];
      hi = row_of(m, g)[2 * t + 1];
    }
    r[m] = lo | (hi << 16);
  }
  ::emu::warp_scratch_release();
}
inline void ldmatrix_x4(uint32_t (&r)[4], const void* row_addr) { ldmatrix_x4_emu<false>(r, row_addr); }
inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row_addr) { ldmatrix_x4_emu<true>(r, row_addr); }
#else
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* row_addr) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(static_cast<uint32_t>(__cvta_generic_to_shared(row_addr))));
#elif defined(__CUDA_ARCH__)
  __trap();
#endif
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row_addr) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(static_cast<uint32_t>(__cvta_generic_to_shared(row_addr))));
#elif defined(__CUDA_ARCH__)
  __trap();
#endif
}
#endif

// ---- D += A B -----------------------------------------------------------------------------------------------
// acc (C in, D out) += A (16 x 16) B (16 x 8); a, b, acc in the layouts above. Warp-collective: all 32 lanes
// must call it together (no lane may have exited or be masked off by divergence).
#if defined(PYFAST_CUDA_EMU)
// Host emulator: every lane deposits its 6 registers into warp scratch; after a warp rendezvous each lane
// rebuilds the full A and B from all 32 lanes' registers (through the layout functions above) and computes its
// own 4 accumulator entries. Products of two 16-bit floats are exact in fp32; the sum here is in double and
// rounded once, while the hardware's internal accumulation order and rounding are unspecified, so results can
// differ from a GPU's in the last bits of fp32 (far below the bf16/fp16 rounding of the inputs).
template <typename T>
inline float emu_half_to_float(uint32_t bits);
template <>
inline float emu_half_to_float<__nv_bfloat16>(uint32_t bits) {
  return __bfloat162float(__ushort_as_bfloat16(static_cast<unsigned short>(bits)));
}
template <>
inline float emu_half_to_float<__half>(uint32_t bits) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits)));
}

template <typename T>
inline void mma_m16n8k16(float (&acc)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  const uint32_t mine[6] = {a[0], a[1], a[2], a[3], b[0], b[1]};
  const uint32_t* warp = ::emu::warp_scratch_deposit(mine, 6);
  float A[16][16], B[16][8];
  for (int l = 0; l < 32; ++l) {
    const uint32_t* regs = warp + l * ::emu::kScratchWords;
    for (int r = 0; r < 4; ++r) {
      A[mma_a_row(l, r)][mma_a_col(l, r)] = emu_half_to_float<T>(regs[r] & 0xffffu);
      A[mma_a_row(l, r)][mma_a_col(l, r) + 1] = emu_half_to_float<T>(regs[r] >> 16);
    }
    for (int r = 0; r < 2; ++r) {
      B[mma_b_k(l, r)][mma_b_n(l)] = emu_half_to_float<T>(regs[4 + r] & 0xffffu);
      B[mma_b_k(l, r) + 1][mma_b_n(l)] = emu_half_to_float<T>(regs[4 + r] >> 16);
    }
  }
  ::emu::warp_scratch_release();
  const int lane = static_cast<int>(::emu::linear_tid() & 31);
  for (int r = 0; r < 4; ++r) {
    double sum = acc[r];
    for (int k = 0; k < 16; ++k) sum += static_cast<double>(A[mma_c_row(lane, r)][k]) * B[k][mma_c_col(lane, r)];
    acc[r] = static_cast<float>(sum);
  }
}
#else
// The PTX of one mma.sync with 16-bit inputs of type `ty` ("bf16" or "f16"); the two types differ only there.
#define PYFAST_MMA_M16N8K16_ASM(ty)                                                                   \
  asm("mma.sync.aligned.m16n8k16.row.col.f32." ty "." ty ".f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, " \
      "{%8, %9}, {%0, %1, %2, %3};\n"                                                                 \
      : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])                                        \
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]))

template <typename T>
__device__ __forceinline__ void mma_m16n8k16(float (&acc)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  static_assert(std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>, "mma.sync takes bf16 or fp16");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    PYFAST_MMA_M16N8K16_ASM("bf16");
  else
    PYFAST_MMA_M16N8K16_ASM("f16");
#elif defined(__CUDA_ARCH__)
  __trap();  // mma.sync with 16-bit inputs needs sm_80; the build targets sm_80 and sm_90 only
#endif
}
#undef PYFAST_MMA_M16N8K16_ASM
#endif

}  // namespace cuda
}  // namespace pyfast
