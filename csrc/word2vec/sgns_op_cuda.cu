// CUDA kernel of the SGNS op's forward, same semantics as sgns_op_cpu.cpp (see sgns_op.h): one warp per pair
// (lanes stride over D, so any D works: lane l handles d = l, l + 32, ...; a row of 128 fp32 is one 512 B coalesced
// load per pass), K+1 warp-reduced dot products, the loss and sigmoid coefficients in double like the CPU, and, for
// training, the gathered center row and d loss / d u while the rows are hot in L1/L2. The backward needs no kernel
// of its own: pyfast/ops/sgns.py forms the per-occurrence gradient rows with two broadcast multiplies, as
// nn.Embedding(sparse=True) does.
#include "word2vec/sgns_op.h"

#include <algorithm>
#include <cmath>

#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "common/dispatch.h"
#include "word2vec/sgns_op_checks.h"

namespace pyfast {
namespace {

constexpr int kThreads = 256;                 // 8 warps, one pair each at a time
constexpr int kWarpsPerBlock = kThreads / 32;

template <typename T>
__device__ __forceinline__ T warp_sum_t(T x) {
  // xor butterfly: every lane ends with the same sum (each step adds the same two values on both partners).
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(cuda::kFullWarp, x, offset);
  return x;
}

// softplus(x) = log(1 + e^x) and sigmoid(x) in double, written like the CPU's (sgns_op_cpu.cpp).
__device__ __forceinline__ double softplus_d(double x) { return fmax(x, 0.0) + log1p(exp(-fabs(x))); }
__device__ __forceinline__ double sigmoid_d(double x) {
  if (x >= 0) return 1.0 / (1.0 + exp(-x));
  const double e = exp(x);
  return e / (1.0 + e);
}

__device__ __forceinline__ bool id_ok(int64_t id, int64_t v) { return id >= 0 && id < v; }

__device__ __forceinline__ void report(int64_t* error, int64_t position) {
  atomicMin(reinterpret_cast<unsigned long long*>(error), static_cast<unsigned long long>(position));
}

// loss (N,), coef (N, K+1); center_rows, in_grad_dir (N, D) or null. Grid-stride over pairs, one warp each; the
// pair index is the same for all 32 lanes, so every branch below is warp-uniform and full-mask shuffles are safe.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    sgns_forward_kernel(const SgnsParams p, T* loss, T* coef, T* center_rows, T* in_grad_dir, int64_t* error) {
  const int lane = threadIdx.x & 31;
  const int64_t warps_total = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  const T* in_w = static_cast<const T*>(p.in_weight);
  const T* out_w = static_cast<const T*>(p.out_weight);
  const int64_t d = p.dim, k = p.num_negatives, kp1 = k + 1, v = p.num_embeddings;
  const bool for_backward = center_rows != nullptr && in_grad_dir != nullptr;
  for (int64_t n = (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x) / 32; n < p.num_pairs;
       n += warps_total) {
    // Bounds first: no row of a pair with a bad id is ever read.
    const int64_t center = p.centers[n], context = p.contexts[n];
    bool bad_negative = false;
    for (int64_t j = lane; j < k; j += 32) {
      if (!id_ok(p.negatives[n * k + j], v)) {
        report(error + 2, n * k + j);
        bad_negative = true;
      }
    }
    const bool bad_center = !id_ok(center, v), bad_context = !id_ok(context, v);
    if (lane == 0 && bad_center) report(error + 0, n);
    if (lane == 0 && bad_context) report(error + 1, n);
    if (__any_sync(cuda::kFullWarp, bad_negative) || bad_center || bad_context) {
      if (lane == 0) loss[n] = static_cast<T>(NAN);  // never returned: the caller raises
      continue;
    }
    const T* u = in_w + center * p.in_stride;
    double pair_loss = 0.0;
    for (int64_t j = 0; j < kp1; ++j) {
      const int64_t target = j == 0 ? context : p.negatives[n * k + (j - 1)];
      const T* row = out_w + target * p.out_stride;
      T partial = 0;
      for (int64_t i = lane; i < d; i += 32) partial += u[i] * row[i];
      const double score = static_cast<double>(warp_sum_t(partial));
      double c;
      if (j == 0) {  // label 1: -log s(x), gradient s(x) - 1 = -s(-x)
        pair_loss += softplus_d(-score);
        c = -sigmoid_d(-score);
      } else {       // label 0: -log s(-x), gradient s(x)
        pair_loss += softplus_d(score);
        c = sigmoid_d(score);
      }
      if (lane == 0) coef[n * kp1 + j] = static_cast<T>(c);
    }
    if (lane == 0) loss[n] = static_cast<T>(pair_loss);
    if (for_backward) {
      __syncwarp();  // lane 0's coef stores are visible to the warp after this (memory ordering of __syncwarp)
      const T* c_row = coef + n * kp1;
      for (int64_t i = lane; i < d; i += 32) {
        T acc = 0;
        for (int64_t j = 0; j < kp1; ++j) {
          const int64_t target = j == 0 ? context : p.negatives[n * k + (j - 1)];
          acc += c_row[j] * out_w[target * p.out_stride + i];
        }
        center_rows[n * d + i] = u[i];
        in_grad_dir[n * d + i] = acc;
      }
    }
  }
}

// Enough warps to fill the GPU several times over; the grid-stride loops take the rest.
unsigned blocks_for(int64_t pairs) {
  const int64_t blocks = (pairs + kWarpsPerBlock - 1) / kWarpsPerBlock;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(blocks, int64_t{1} << 16)));
}

}  // namespace

void sgns_forward_cuda(const SgnsForwardParams& f, std::uintptr_t stream) {
  const SgnsParams& p = f.batch;
  const char* op = "sgns_loss";
  check_sgns_sizes(p, op);  // the ids live on the device: the kernel checks them (f.error)
  PYFAST_CHECK_ARG(f.error != nullptr, op, "the CUDA kernel needs the error buffer");
  if (p.num_pairs == 0) return;
  const cudaStream_t st = cuda::as_stream(stream);
  PYFAST_DISPATCH_FLOAT(p.dtype, op, T, {
    sgns_forward_kernel<T><<<blocks_for(p.num_pairs), kThreads, 0, st>>>(
        p, static_cast<T*>(f.loss), static_cast<T*>(f.coef), static_cast<T*>(f.center_rows),
        static_cast<T*>(f.in_grad_dir), f.error);
  });
  cuda::check_launch(op);
}

}  // namespace pyfast
