// CUDA masked-token sampling: the same modes and the SAME Philox keying as masking_cpu.cpp (see
// masking.h), so a seed gives bit-identical (out_ids, labels) on CPU and GPU. Every probability test is an integer
// compare against a threshold computed on the host (mask_unit_threshold), so no float rounding, fast-math or
// flush-to-zero difference between the two sides can change a decision.
// Two kernels: per-piece Bernoulli (the common case) is one thread per position, no communication. Whole-word,
// exact-count and span modes run one 256-thread block per row: block scans find words; exact-count sorts the
// row's word keys (bitonic, in global scratch) and span walks the words; those two greedy walks are sequential
// by definition (a word's fate depends on the ones before it) and run on thread 0, O(words) per row.
#include "masking/masking.h"

#include <algorithm>
#include <cmath>

#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "common/philox.h"
#include "masking/masking_checks.h"

namespace pyfast {
namespace {

constexpr const char* kOp = "mask_tokens";
constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
// Sentinel of the exact-count keys' padding: above every real key ((choose << 32) | w with w < 2^31).
constexpr uint64_t kKeyPad = ~uint64_t{0};

enum RowMode : int { kModeWords = 0, kModeExact = 1, kModeSpan = 2 };

// Launch parameters, passed by value (~0.6 KB, far below the 4 KB limit): the caller's params and scratch (device
// pointers; span_length_cdf, host memory, is cleared) plus host-computed integer thresholds, the span-length
// table among them.
struct DeviceParams : MaskTokensParams, MaskTokensCudaScratch {
  uint32_t choose_threshold;          // mask_unit_threshold(mlm_probability)
  uint32_t mask_threshold;            // mask_unit_threshold(mask_replace_prob)
  uint32_t mask_or_random_threshold;  // mask_unit_threshold(mask_or_random_prob)
  uint32_t span_start_threshold;      // mask_unit_threshold(span_start_prob)
  uint32_t allowed_random_ids;        // vocab_size - num_excluded_ids, as the CPU casts it
  // cdf[k] <= u  <=>  ceil(cdf[k] * 2^24) <= (s >> 8) for u = (s >> 8) / 2^24 (integer right side).
  uint32_t span_cdf_threshold[kMaxSpanWords];
};

// ---- keyed draws (masking.h's contract, spelled exactly like the CPU's philox_blocks_soa calls) ---------------
// c(row, col): block ((col >> 5) << 3) | (col & 7) of stream kMaskStreamChoose, word (col >> 3) & 3. The CPU
// passes the row as the 32-bit high word (static_cast<uint32_t>(row)); so does this.
__device__ __forceinline__ uint32_t choose_word(uint64_t seed, int64_t row, int64_t col) {
  const uint64_t c = static_cast<uint64_t>(col);
  const uint32_t block = static_cast<uint32_t>(((c >> 5) << 3) | (c & 7));
  const Philox4x32 r =
      philox_draw(seed, (static_cast<uint64_t>(static_cast<uint32_t>(row)) << 32) | block, kMaskStreamChoose);
  return cuda::philox_word(r.v, static_cast<int>((c >> 3) & 3));
}

// [MASK], a random allowed id, or the original: block (row, col) of kMaskStreamReplace, words 0 and 1.
__device__ __forceinline__ int64_t replacement_id(const DeviceParams& p, int64_t row, int64_t col, int64_t id) {
  const Philox4x32 r = philox_draw(
      p.seed, (static_cast<uint64_t>(static_cast<uint32_t>(row)) << 32) | static_cast<uint32_t>(col),
      kMaskStreamReplace);
  const uint32_t u24 = r.v[0] >> 8;
  if (u24 < p.mask_threshold) return p.mask_token_id;
  if (u24 < p.mask_or_random_threshold) {
    // The k-th allowed id: step over the few sorted excluded ids (same loop as the CPU).
    int64_t random_id = uint_below(r.v[1], p.allowed_random_ids);
    for (int64_t e = 0; e < p.num_excluded_ids; ++e) random_id += random_id >= p.excluded_ids[e] ? 1 : 0;
    return random_id;
  }
  return id;
}

// ---- positions ------------------------------------------------------------------------------------------------
// Eligible: id in range, not marked special, not a special id. An out-of-range id is never used as an index
// (the bitset lookup is skipped) and counts as not eligible; the caller reports it.
__device__ __forceinline__ bool eligible_at(const DeviceParams& p, int64_t row, int64_t col, int64_t& id,
                                            bool& in_range) {
  id = p.input_ids[row * p.ids_row_stride + col];
  in_range = id >= 0 && id < p.vocab_size;
  if (!in_range) return false;
  if (p.special_mask != nullptr && p.special_mask[row * p.special_row_stride + col] != 0) return false;
  if (p.special_id_bits != nullptr && ((p.special_id_bits[id >> 5] >> (id & 31)) & 1u)) return false;
  return true;
}

__device__ __forceinline__ bool eligible_at(const DeviceParams& p, int64_t row, int64_t col) {
  int64_t id;
  bool in_range;
  return eligible_at(p, row, col, id, in_range);
}

__device__ __forceinline__ bool marks_word_start(const DeviceParams& p, int64_t row, int64_t col) {
  return p.word_starts == nullptr || col == 0 || p.word_starts[row * p.word_starts_row_stride + col] != 0;
}

// An eligible column starts a word iff it is column 0, follows a non-eligible one, or word_starts marks it; it
// ends one iff it is the last column, or the next is not eligible or starts a word (masking.h's "Units").
// The neighbour's eligibility is recomputed (one more cached load) rather than exchanged between threads.
__device__ __forceinline__ bool starts_word(const DeviceParams& p, int64_t row, int64_t col) {
  return col == 0 || !eligible_at(p, row, col - 1) || marks_word_start(p, row, col);
}

__device__ __forceinline__ bool ends_word(const DeviceParams& p, int64_t row, int64_t col) {
  return col + 1 == p.seq_len || !eligible_at(p, row, col + 1) || marks_word_start(p, row, col + 1);
}

__device__ __forceinline__ void report_bad_id(const DeviceParams& p, int64_t flat) {
  atomicMin(reinterpret_cast<unsigned long long*>(p.error), static_cast<unsigned long long>(flat));
}

// The position of a row tile (columns base .. base + kThreads - 1) that this thread owns: its id, eligibility
// and whether it starts a word, with an out-of-range id reported; a column past the row's end (valid false) is
// neither read nor eligible.
struct TilePosition {
  int64_t col, id;
  bool valid, eligible, start;
};

__device__ __forceinline__ TilePosition load_tile_position(const DeviceParams& p, int64_t row, int64_t base) {
  TilePosition t;
  t.col = base + threadIdx.x;
  t.valid = t.col < p.seq_len;
  t.id = 0;
  t.eligible = false;
  if (t.valid) {
    bool in_range;
    t.eligible = eligible_at(p, row, t.col, t.id, in_range);
    if (!in_range) report_bad_id(p, row * p.seq_len + t.col);
  }
  t.start = t.eligible && starts_word(p, row, t.col);
  return t;
}

// ---- block scans over a row, one tile of kThreads columns at a time ---------------------------------------------
struct SumOp {
  __device__ __forceinline__ int32_t operator()(int32_t a, int32_t b) const { return a + b; }
};
struct MaxOp {
  __device__ __forceinline__ int32_t operator()(int32_t a, int32_t b) const { return a > b ? a : b; }
};

// Inclusive scan of x over the block's threads, continued from `carry` (the previous tiles' total, held in a
// register by every thread alike); carry then includes this tile. Every thread of the block must call it.
template <typename Op>
__device__ int32_t block_scan_inclusive(int32_t x, Op op, int32_t identity, int32_t* warp_totals, int32_t& carry) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int offset = 1; offset < 32; offset <<= 1) {
    const int32_t y = __shfl_up_sync(cuda::kFullWarp, x, offset);
    if (lane >= offset) x = op(y, x);
  }
  if (lane == 31) warp_totals[warp] = x;
  __syncthreads();
  if (warp == 0) {
    int32_t t = lane < kWarps ? warp_totals[lane] : identity;
#pragma unroll
    for (int offset = 1; offset < kWarps; offset <<= 1) {
      const int32_t y = __shfl_up_sync(cuda::kFullWarp, t, offset);
      if (lane >= offset) t = op(y, t);
    }
    if (lane < kWarps) warp_totals[lane] = t;
  }
  __syncthreads();
  if (warp > 0) x = op(warp_totals[warp - 1], x);
  const int32_t result = op(carry, x);
  carry = op(carry, warp_totals[kWarps - 1]);
  __syncthreads();  // warp_totals is rewritten by the next call
  return result;
}

// Ascending bitonic sort of keys[0, n), n a power of two, by the whole block. Each step pairs i with i ^ j and
// only the lower index of a pair touches it, so no two threads write one element; __syncthreads between steps
// also orders the global-memory accesses within the block. O(n log^2 n / threads); rows are short.
__device__ void block_bitonic_sort(uint64_t* keys, int64_t n) {
  for (int64_t k = 2; k <= n; k <<= 1) {
    for (int64_t j = k >> 1; j > 0; j >>= 1) {
      for (int64_t i = threadIdx.x; i < n; i += kThreads) {
        const int64_t partner = i ^ j;
        if (partner > i) {
          const uint64_t a = keys[i], b = keys[partner];
          const bool ascending = (i & k) == 0;
          if ((a > b) == ascending) {
            keys[i] = b;
            keys[partner] = a;
          }
        }
      }
      __syncthreads();
    }
  }
}

// ---- kernels ----------------------------------------------------------------------------------------------------
// Per-piece Bernoulli: one thread per position, grid-stride over B * L (out and labels are contiguous). Each
// thread draws the whole Philox block its column's word sits in, 4x the CPU's blocks: ~50 integer ops each, so
// ~30 M ops for 256 x 512 tokens, ~1 us of an H200's integer throughput (by count, not measured), below the
// launch cost; sharing blocks through shuffles would save nothing measurable.
__global__ void __launch_bounds__(kThreads) mask_pieces_kernel(const DeviceParams p) {
  const int64_t total = p.batch * p.seq_len;
  const int64_t step = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < total; i += step) {
    const int64_t row = i / p.seq_len, col = i - row * p.seq_len;
    int64_t id;
    bool in_range;
    const bool eligible = eligible_at(p, row, col, id, in_range);
    if (!in_range) report_bad_id(p, i);
    const bool chosen = eligible && (choose_word(p.seed, row, col) >> 8) < p.choose_threshold;
    p.out_ids[i] = chosen ? replacement_id(p, row, col, id) : id;
    p.labels[i] = chosen ? id : kIgnoreIndex;
  }
}

// Marks every piece of word w chosen: its label becomes its id (labels double as the chosen flags; pass 3
// reads them back). Thread 0 only.
__device__ __forceinline__ void choose_word_pieces(const DeviceParams& p, int64_t row, int32_t w) {
  const int64_t L = p.seq_len;
  const int32_t first = p.word_first[row * L + w], last = p.word_last[row * L + w];
  for (int32_t c = first; c <= last; ++c) p.labels[row * L + c] = p.input_ids[row * p.ids_row_stride + c];
}

// Whole-word Bernoulli, exact count and spans: one block per row (grid-stride over rows). Control flow is
// uniform across the block (mode, row, tile loop, and the scan carries every thread holds alike).
__global__ void __launch_bounds__(kThreads) mask_rows_kernel(const DeviceParams p, int mode) {
  __shared__ int32_t warp_totals[kWarps];
  const int64_t L = p.seq_len;
  for (int64_t row = blockIdx.x; row < p.batch; row += gridDim.x) {
    int64_t* out = p.out_ids + row * L;
    int64_t* lab = p.labels + row * L;

    if (mode == kModeWords) {
      // A word's decision is the choose word of its first piece; that column is the running max of the
      // start columns (words never cross a non-eligible position, so the latest start <= col is col's).
      int32_t start_carry = -1;
      for (int64_t base = 0; base < L; base += kThreads) {
        const TilePosition t = load_tile_position(p, row, base);
        const int64_t col = t.col, id = t.id;
        const bool eligible = t.eligible, start = t.start;
        const int32_t word_start =
            block_scan_inclusive(start ? static_cast<int32_t>(col) : -1, MaxOp{}, -1, warp_totals, start_carry);
        if (t.valid) {
          const bool chosen = eligible && (choose_word(p.seed, row, word_start) >> 8) < p.choose_threshold;
          out[col] = chosen ? replacement_id(p, row, col, id) : id;
          lab[col] = chosen ? id : kIgnoreIndex;
        }
      }
      continue;
    }

    // Pass 1: list the words (first and last column; exact mode also its key), count the eligible pieces, and
    // write every position as unchosen.
    int32_t* word_first = p.word_first + row * L;
    int32_t* word_last = p.word_last + row * L;
    uint64_t* keys = mode == kModeExact ? p.keys + row * p.keys_row_stride : nullptr;
    int32_t num_words = 0, num_lasts = 0, num_eligible = 0;
    for (int64_t base = 0; base < L; base += kThreads) {
      const TilePosition t = load_tile_position(p, row, base);
      const int64_t col = t.col, id = t.id;
      const bool eligible = t.eligible, start = t.start;
      const bool last = eligible && ends_word(p, row, col);
      const int32_t w = block_scan_inclusive(start ? 1 : 0, SumOp{}, 0, warp_totals, num_words) - 1;
      const int32_t wl = block_scan_inclusive(last ? 1 : 0, SumOp{}, 0, warp_totals, num_lasts) - 1;
      block_scan_inclusive(eligible ? 1 : 0, SumOp{}, 0, warp_totals, num_eligible);
      if (t.valid) {
        if (start) {
          word_first[w] = static_cast<int32_t>(col);
          // The CPU ranks by (c << 32) | start column; w increases with the start column within a row, so
          // (c << 32) | w orders the words identically and hands the word index straight back after the sort.
          if (keys != nullptr) keys[w] = (static_cast<uint64_t>(choose_word(p.seed, row, col)) << 32) |
                                         static_cast<uint32_t>(w);
        }
        if (last) word_last[wl] = static_cast<int32_t>(col);
        out[col] = id;
        lab[col] = kIgnoreIndex;
      }
    }
    __syncthreads();  // pass 1's global writes are visible to the whole block from here on

    if (mode == kModeExact) {
      // n = E ? min(max_predictions, max(1, floor(p * E + 0.5))) : 0. p * E is exact in double for E < 2^29
      // (24 + 29 bits); __dmul_rn/__dadd_rn keep nvcc from contracting to an fma anyway.
      int64_t n = 0;
      if (num_eligible > 0) {
        const double prob = static_cast<double>(p.mlm_probability);  // the float32 value widened, as the CPU does
        const double rounded = floor(__dadd_rn(__dmul_rn(prob, static_cast<double>(num_eligible)), 0.5));
        const int64_t at_least_one = rounded >= 1.0 ? static_cast<int64_t>(rounded) : int64_t{1};
        n = p.max_predictions < at_least_one ? p.max_predictions : at_least_one;
      }
      if (n > 0) {
        int64_t padded = 1;
        while (padded < num_words) padded <<= 1;
        for (int64_t i = num_words + threadIdx.x; i < padded; i += kThreads) keys[i] = kKeyPad;
        __syncthreads();
        block_bitonic_sort(keys, padded);
        if (threadIdx.x == 0) {
          // BERT's rule: words in key order, skipping one whose pieces would overflow the budget.
          int64_t taken = 0;
          for (int32_t k = 0; k < num_words && taken < n; ++k) {
            const int32_t w = static_cast<int32_t>(static_cast<uint32_t>(keys[k]));
            const int64_t len = word_last[w] - word_first[w] + 1;
            if (taken + len > n) continue;
            choose_word_pieces(p, row, w);
            taken += len;
          }
        }
      }
    } else if (threadIdx.x == 0) {  // kModeSpan: the renewal walk of masking.h, word by word
      int32_t w = 0;
      while (w < num_words) {
        const int32_t start = word_first[w];
        if (!((choose_word(p.seed, row, start) >> 8) < p.span_start_threshold)) {
          ++w;
          continue;
        }
        // The CPU keys this draw with (uint64_t(row) << 32) | start (row not truncated to 32 bits).
        const uint64_t index = (static_cast<uint64_t>(row) << 32) | static_cast<uint32_t>(start);
        const uint32_t s24 = philox_draw(p.seed, index, kMaskStreamSpanLength).v[0] >> 8;
        int32_t length = 1;
        for (int32_t k = 0; k + 1 < p.max_span_words; ++k) length += p.span_cdf_threshold[k] <= s24 ? 1 : 0;
        int32_t covered = 0;
        do {  // cover `length` words while they are contiguous (no special or padding in between)
          choose_word_pieces(p, row, w);
          ++covered;
          ++w;
        } while (covered < length && w < num_words && word_first[w] == word_last[w - 1] + 1);
      }
    }
    __syncthreads();

    // Pass 3: replacements at the chosen positions (label != -100; a chosen label is an in-range id).
    for (int64_t col = threadIdx.x; col < L; col += kThreads) {
      const int64_t label = lab[col];
      if (label != kIgnoreIndex) out[col] = replacement_id(p, row, col, label);
    }
    __syncthreads();  // the next row of this block starts only when this one is done with the scratch
  }
}

// The smallest power of two >= max(n, 1): the keys row length exact-count mode needs.
int64_t next_power_of_two(int64_t n) {
  int64_t s = 1;
  while (s < n) s <<= 1;
  return s;
}

// ceil(x * 2^24) as the integer threshold of "x <= u": 0 when x <= 0 (always true), 2^25 when x > 1 or NaN
// (never true: s >> 8 < 2^24), exactly like the CPU's float compare otherwise.
uint32_t cdf_threshold(float x) {
  if (!(x <= 1.0f)) return 1u << 25;
  if (x <= 0.0f) return 0;
  return static_cast<uint32_t>(std::ceil(static_cast<double>(x) * 16777216.0));
}

}  // namespace

void mask_tokens_cuda(const MaskTokensParams& p, const MaskTokensCudaScratch& s, std::uintptr_t stream) {
  // The CPU kernel's argument checks; its checks of excluded_ids would read device memory: the Python layer
  // builds that list sorted and in range.
  check_mask_tokens_params(p, kOp);
  PYFAST_CHECK_ARG(s.error != nullptr, kOp, "the CUDA kernel needs the error flag buffer");
  const bool exact = p.max_predictions >= 0;
  const bool rows = exact || p.span != 0 || p.word_starts != nullptr;
  if (exact || p.span != 0)
    PYFAST_CHECK_ARG(s.word_first != nullptr && s.word_last != nullptr, kOp, "the word scratch buffers are missing");
  if (exact)
    PYFAST_CHECK_ARG(s.keys != nullptr && s.keys_row_stride >= next_power_of_two(p.seq_len), kOp,
                     "the key scratch rows must hold the next power of two >= L");
  if (p.batch == 0 || p.seq_len == 0) return;

  DeviceParams d{};
  static_cast<MaskTokensParams&>(d) = p;
  static_cast<MaskTokensCudaScratch&>(d) = s;
  d.span_length_cdf = nullptr;  // host memory: read below into span_cdf_threshold
  d.max_span_words = p.span ? p.max_span_words : 1;
  d.choose_threshold = mask_unit_threshold(p.mlm_probability);
  d.mask_threshold = mask_unit_threshold(p.mask_replace_prob);
  d.mask_or_random_threshold = mask_unit_threshold(p.mask_or_random_prob);
  d.span_start_threshold = mask_unit_threshold(p.span_start_prob);
  d.allowed_random_ids = static_cast<uint32_t>(p.vocab_size - p.num_excluded_ids);
  for (int k = 0; k < kMaxSpanWords; ++k)
    d.span_cdf_threshold[k] = (p.span && k + 1 < p.max_span_words) ? cdf_threshold(p.span_length_cdf[k]) : 0u;

  const cudaStream_t st = cuda::as_stream(stream);
  if (!rows) {
    const int64_t total = p.batch * p.seq_len;
    const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, int64_t{1} << 20);
    mask_pieces_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, st>>>(d);
  } else {
    const int mode = exact ? kModeExact : (p.span ? kModeSpan : kModeWords);
    const int64_t blocks = std::min<int64_t>(p.batch, int64_t{1} << 20);
    mask_rows_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, st>>>(d, mode);
  }
  cuda::check_launch(kOp);
}

}  // namespace pyfast
