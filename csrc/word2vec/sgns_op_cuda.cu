// CUDA kernels of the SGNS op, same semantics as sgns_op_cpu.cpp (see sgns_op.h): the forward (one warp per pair;
// lanes stride over D, so any D works: lane l handles d = l, l + 32, ...; a row of 128 fp32 is one 512 B coalesced
// load per pass), the custom-op backward's per-occurrence gradient rows, and the SGD step (forward + apply).
// At N = 4096 a step moves ~24-77 MB, ~5-16 us of an H200's HBM: the time is launches and syncs, so each entry is
// as few launches as its contract allows (benchmarks/RESULTS.md, SGNS op -> GPU). Limits: float32 / float64.
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
constexpr int64_t kNoError = -1;              // error[] preset: all bits set, above any position for atomicMin

template <typename T>
__device__ __forceinline__ T warp_sum_t(T x) {
  // xor butterfly: every lane ends with the same sum (each step adds the same two values on both partners).
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(cuda::kFullWarp, x, offset);
  return x;
}

// Target j's loss term softplus(y) and d term / d score from one exp and one log1p, in T's precision (the CPU's
// target_term): y = -score for the context (label 1), y = score for a negative (label 0); the gradient is
// -sigmoid(y) for the context and sigmoid(y) for a negative. float math for float32 weights: double exp / log1p run
// at 1/2 (H100/H200) to 1/64 (consumer parts) of the float rate and are all the op's transcendental work.
__device__ __forceinline__ float target_term(float score, bool positive, float* grad) {
  const float y = positive ? -score : score;
  const float e = expf(-fabsf(y));  // in (0, 1]: no overflow either way
  const float sig = y >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
  *grad = positive ? -sig : sig;
  return fmaxf(y, 0.0f) + log1pf(e);
}
__device__ __forceinline__ double target_term(double score, bool positive, double* grad) {
  const double y = positive ? -score : score;
  const double e = exp(-fabs(y));
  const double sig = y >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
  *grad = positive ? -sig : sig;
  return fmax(y, 0.0) + log1p(e);
}

__device__ __forceinline__ bool id_ok(int64_t id, int64_t v) { return id >= 0 && id < v; }

__device__ __forceinline__ void report(int64_t* error, int64_t position) {
  atomicMin(reinterpret_cast<unsigned long long*>(error), static_cast<unsigned long long>(position));
}

__device__ __forceinline__ int64_t target_id(const SgnsParams& p, int64_t n, int64_t j) {
  return j == 0 ? p.contexts[n] : p.negatives[n * p.num_negatives + (j - 1)];
}

// loss (N,) or null, coef (N, K+1); center_rows, in_grad_dir (N, D) or null; loss_total (1,) or null. Grid-stride
// over pairs, one warp each; the pair index is the same for all 32 lanes, so every branch in the loop is
// warp-uniform and full-mask shuffles are safe. Reads the weights only.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    sgns_forward_kernel(const SgnsParams p, T* loss, T* coef, T* center_rows, T* in_grad_dir, int64_t* error,
                        double* loss_total) {
  const int lane = threadIdx.x & 31;
  const int64_t warps_total = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  const T* in_w = static_cast<const T*>(p.in_weight);
  const T* out_w = static_cast<const T*>(p.out_weight);
  const int64_t d = p.dim, k = p.num_negatives, kp1 = k + 1, v = p.num_embeddings;
  const bool for_backward = center_rows != nullptr && in_grad_dir != nullptr;
  double warp_loss = 0.0;  // this warp's pairs, for loss_total
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
      if (lane == 0 && loss != nullptr) loss[n] = static_cast<T>(NAN);  // never returned: the caller raises
      continue;
    }
    const T* u = in_w + center * p.in_stride;
    double pair_loss = 0.0;  // K+1 terms summed in double, in the CPU's order (a few adds; the exp/log1p stay in T)
    for (int64_t j = 0; j < kp1; ++j) {
      const T* row = out_w + target_id(p, n, j) * p.out_stride;
      T partial = 0;
      for (int64_t i = lane; i < d; i += 32) partial += u[i] * row[i];
      T c;
      pair_loss += static_cast<double>(target_term(warp_sum_t(partial), j == 0, &c));
      if (lane == 0) coef[n * kp1 + j] = c;
    }
    if (lane == 0 && loss != nullptr) loss[n] = static_cast<T>(pair_loss);
    warp_loss += pair_loss;
    if (for_backward) {
      __syncwarp();  // lane 0's coef stores are visible to the warp after this (memory ordering of __syncwarp)
      const T* c_row = coef + n * kp1;
      for (int64_t i = lane; i < d; i += 32) {
        T acc = 0;
        for (int64_t j = 0; j < kp1; ++j) acc += c_row[j] * out_w[target_id(p, n, j) * p.out_stride + i];
        center_rows[n * d + i] = u[i];
        in_grad_dir[n * d + i] = acc;
      }
    }
  }
  if (loss_total != nullptr) {  // the same for the whole grid: every thread reaches the barrier
    __shared__ double block_loss[kWarpsPerBlock];
    if (lane == 0) block_loss[threadIdx.x / 32] = warp_loss;
    __syncthreads();
    if (threadIdx.x == 0) {
      double s = 0.0;
      for (int w = 0; w < kWarpsPerBlock; ++w) s += block_loss[w];
      atomicAdd(loss_total, s);  // one per block
    }
  }
}

// Per-occurrence gradient rows (SgnsRowsParams), one warp per pair. The products are formed as the torch ops they
// replace formed them (in_grad_dir * g; (coef * g) * center_rows), so the rows are bit-identical to those.
template <typename T>
__global__ void __launch_bounds__(kThreads) sgns_backward_rows_kernel(const SgnsRowsParams p) {
  const int lane = threadIdx.x & 31;
  const int64_t warps_total = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  const int64_t d = p.dim, k = p.num_negatives, kp1 = k + 1;
  const T* coef = static_cast<const T*>(p.coef);
  const T* grad_loss = static_cast<const T*>(p.grad_loss);
  const T* center_rows = static_cast<const T*>(p.center_rows);
  const T* in_grad_dir = static_cast<const T*>(p.in_grad_dir);
  T* in_rows = static_cast<T*>(p.in_rows);
  T* out_rows = static_cast<T*>(p.out_rows);
  for (int64_t n = (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x) / 32; n < p.num_pairs;
       n += warps_total) {
    const T g = grad_loss[n * p.grad_loss_stride];
    if (lane == 0) {
      p.in_ids[n] = p.centers[n];
      p.out_ids[n * kp1] = p.contexts[n];
    }
    for (int64_t j = lane; j < k; j += 32) p.out_ids[n * kp1 + 1 + j] = p.negatives[n * k + j];
    const T* u = center_rows + n * d;
    for (int64_t i = lane; i < d; i += 32) in_rows[n * d + i] = in_grad_dir[n * d + i] * g;
    for (int64_t j = 0; j < kp1; ++j) {
      const T c = coef[n * kp1 + j] * g;
      T* row = out_rows + (n * kp1 + j) * d;
      for (int64_t i = lane; i < d; i += 32) row[i] = c * u[i];
    }
  }
}

// The SGD step's second kernel: w -= lr * scale * (gradient rows), scattered by atomicAdd into the weights from the
// forward's scratch rows (never from the weights: see SgnsSgdStepParams). Nothing is written when the forward
// flagged an id anywhere in the batch: the step then raises with the weights untouched, as the CPU's does. Block 0
// also writes the reduced loss (the forward's blocks have all added to loss_total: stream order).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    sgns_sgd_apply_kernel(const SgnsParams p, const T* coef, const T* center_rows, const T* in_grad_dir, T step,
                          const int64_t* error, const double* loss_total, double scale, T* loss) {
  const bool flagged = error[0] != kNoError || error[1] != kNoError || error[2] != kNoError;
  if (blockIdx.x == 0 && threadIdx.x == 0)
    loss[0] = flagged ? static_cast<T>(NAN) : static_cast<T>(*loss_total * scale);
  if (flagged) return;
  const int lane = threadIdx.x & 31;
  const int64_t warps_total = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  // The step owns these rows for the duration of the launch (the public API takes the weights as mutated).
  T* in_w = const_cast<T*>(static_cast<const T*>(p.in_weight));
  T* out_w = const_cast<T*>(static_cast<const T*>(p.out_weight));
  const int64_t d = p.dim, kp1 = p.num_negatives + 1;
  for (int64_t n = (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x) / 32; n < p.num_pairs;
       n += warps_total) {
    // atomicAdd with the result unused compiles to a fire-and-forget RED in L2; duplicates within and across
    // warps sum (Hogwild-style scatter: the order of the adds, and so the last bits, may vary between runs).
    T* u = in_w + p.centers[n] * p.in_stride;
    const T* dir = in_grad_dir + n * d;
    for (int64_t i = lane; i < d; i += 32) atomicAdd(u + i, step * dir[i]);
    const T* centre = center_rows + n * d;
    for (int64_t j = 0; j < kp1; ++j) {
      const T c = step * coef[n * kp1 + j];
      T* row = out_w + target_id(p, n, j) * p.out_stride;
      for (int64_t i = lane; i < d; i += 32) atomicAdd(row + i, c * centre[i]);
    }
  }
}

// Enough warps to fill the GPU several times over; the grid-stride loops take the rest.
unsigned blocks_for(int64_t pairs) {
  const int64_t blocks = (pairs + kWarpsPerBlock - 1) / kWarpsPerBlock;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(blocks, int64_t{1} << 16)));
}

// error[0..2] = -1 (all bits set), on the stream, before the kernel that atomicMins into it: a memset instead of a
// fill kernel or a host-to-device copy launched from Python.
void preset_error(int64_t* error, cudaStream_t st, const char* op) {
  cuda::check_call(cudaMemsetAsync(error, 0xFF, 3 * sizeof(int64_t), st), op, "cudaMemsetAsync");
}

}  // namespace

void sgns_forward_cuda(const SgnsForwardParams& f, std::uintptr_t stream) {
  const SgnsParams& p = f.batch;
  const char* op = "sgns_loss";
  check_sgns_sizes(p, op);  // the ids live on the device: the kernel checks them (f.error)
  PYFAST_CHECK_ARG(f.error != nullptr, op, "the CUDA kernel needs the error buffer");
  PYFAST_CHECK_ARG(f.coef != nullptr, op, "the CUDA kernel needs the coef buffer");
  const cudaStream_t st = cuda::as_stream(stream);
  preset_error(f.error, st, op);
  if (f.loss_total != nullptr)
    cuda::check_call(cudaMemsetAsync(f.loss_total, 0, sizeof(double), st), op, "cudaMemsetAsync");
  if (p.num_pairs == 0) return;
  PYFAST_DISPATCH_FLOAT(p.dtype, op, T, {
    sgns_forward_kernel<T><<<blocks_for(p.num_pairs), kThreads, 0, st>>>(
        p, static_cast<T*>(f.loss), static_cast<T*>(f.coef), static_cast<T*>(f.center_rows),
        static_cast<T*>(f.in_grad_dir), f.error, f.loss_total);
  });
  cuda::check_launch(op);
}

void sgns_backward_rows_cuda(const SgnsRowsParams& r, std::uintptr_t stream) {
  const char* op = "sgns_loss_backward";
  PYFAST_CHECK_ARG(r.num_pairs >= 0 && r.num_negatives >= 0 && r.dim >= 1 && r.grad_loss_stride >= 0, op,
                   "bad sizes N=", r.num_pairs, " K=", r.num_negatives, " D=", r.dim, " stride=", r.grad_loss_stride);
  PYFAST_CHECK_ARG(r.dtype == DType::kFloat32 || r.dtype == DType::kFloat64, op, "rows must be float32 or float64");
  if (r.num_pairs == 0) return;
  PYFAST_DISPATCH_FLOAT(r.dtype, op, T, {
    sgns_backward_rows_kernel<T><<<blocks_for(r.num_pairs), kThreads, 0, cuda::as_stream(stream)>>>(r);
  });
  cuda::check_launch(op);
}

void sgns_sgd_step_cuda(const SgnsSgdStepParams& s, std::uintptr_t stream) {
  const SgnsParams& p = s.batch;
  const char* op = "sgns_sgd_step";
  check_sgns_sizes(p, op);
  PYFAST_CHECK_ARG(s.loss != nullptr && s.error != nullptr && s.loss_total != nullptr && s.coef != nullptr &&
                       s.center_rows != nullptr && s.in_grad_dir != nullptr,
                   op, "the CUDA step needs its loss and scratch buffers");
  PYFAST_CHECK_ARG(std::isfinite(s.lr) && std::isfinite(s.scale), op, "lr and scale must be finite");
  PYFAST_CHECK_ARG(p.num_pairs >= 1, op, "an empty batch has no step (the Python layer returns before this)");
  const cudaStream_t st = cuda::as_stream(stream);
  preset_error(s.error, st, op);
  cuda::check_call(cudaMemsetAsync(s.loss_total, 0, sizeof(double), st), op, "cudaMemsetAsync");
  const unsigned blocks = blocks_for(p.num_pairs);
  PYFAST_DISPATCH_FLOAT(p.dtype, op, T, {
    T* coef = static_cast<T*>(s.coef);
    T* center_rows = static_cast<T*>(s.center_rows);
    T* in_grad_dir = static_cast<T*>(s.in_grad_dir);
    sgns_forward_kernel<T><<<blocks, kThreads, 0, st>>>(p, nullptr, coef, center_rows, in_grad_dir, s.error,
                                                        s.loss_total);
    cuda::check_launch(op);
    sgns_sgd_apply_kernel<T><<<blocks, kThreads, 0, st>>>(p, coef, center_rows, in_grad_dir,
                                                          static_cast<T>(-s.lr * s.scale), s.error, s.loss_total,
                                                          s.scale, static_cast<T*>(s.loss));
  });
  cuda::check_launch(op);
}

}  // namespace pyfast
