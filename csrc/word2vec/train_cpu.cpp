// The word2vec epoch driver: Hogwild workers, each on its own contiguous slice of the corpus (split by token
// count), doing word2vec.c's per-sentence loop: subsample each occurrence, draw a reduced window, gather the
// window's contexts, draw negatives, call the block kernel. The learning rate decays linearly with global
// progress (a shared atomic counter of tokens processed, read every kAlphaUpdateEvery tokens per worker), or,
// on request, with each worker's own progress (gensim corpus_file's schedule, see TrainParams); with one worker
// and a fixed seed the run is bitwise reproducible.
#include <algorithm>
#include <cmath>
#include <vector>

#include "common/alias_table.h"
#include "common/checks.h"
#include "common/parallel.h"
#include "common/philox.h"
#include "word2vec/word2vec.h"

namespace pyfast::w2v {

namespace {
// Table of sigmoid at kSigmoidTableSize + 1 evenly spaced points of [-kMaxExp, kMaxExp]; sigmoid_lookup rounds to
// the nearest point (error < 0.0019 on the sigmoid, below float32 SGD noise at these learning rates).
struct SigmoidTableHolder {
  float v[kSigmoidTableSize + 1];
  SigmoidTableHolder() {
    for (int i = 0; i <= kSigmoidTableSize; ++i) {
      const double x = (2.0 * i / kSigmoidTableSize - 1.0) * kMaxExp;
      v[i] = static_cast<float>(1.0 / (1.0 + std::exp(-x)));
    }
  }
};
const SigmoidTableHolder g_sigmoid_table;

constexpr int64_t kAlphaUpdateEvery = 10000;  // tokens between learning-rate updates (word2vec.c's period)

inline float alpha_at(const TrainParams& p, int64_t done) {
  const double progress = static_cast<double>(done) / static_cast<double>(p.total_words);
  const double a = p.alpha0 - (static_cast<double>(p.alpha0) - p.min_alpha) * progress;
  return static_cast<float>(std::max(a, static_cast<double>(p.min_alpha)));
}
}  // namespace

const float* const kSigmoidTable = g_sigmoid_table.v;

double log_loss(float f, bool positive) {
  // -log sigmoid(z) = log1p(exp(-z)) for z >= 0, -z + log1p(exp(z)) otherwise (no overflow either way).
  const double z = positive ? f : -static_cast<double>(f);
  return z >= 0 ? std::log1p(std::exp(-z)) : -z + std::log1p(std::exp(z));
}

void WindowScratch::resize(int window, int negative, int dim) {
  const size_t B = static_cast<size_t>(2 * window), T = static_cast<size_t>(negative + 1);
  grad_in.assign(B * dim + dim, 0.0f);
  coef.assign(B * T + T, 0.0f);
  column.assign(B + 1, 0.0f);
  hidden.assign(dim, 0.0f);
  x_rows.assign(B, nullptr);
  y_rows.assign(T, nullptr);
}

namespace {
EpochResult run_epoch(const TrainParams& p, const AliasTable& noise) {
  const char* op = "word2vec.train_epoch";
  PYFAST_CHECK_ARG(p.syn0 && p.syn1neg && p.vocab_size > 0 && p.dim > 0, op, "empty model");
  PYFAST_CHECK_ARG(p.window >= 1 && p.negative >= 0 && p.workers >= 1, op, "window >= 1, negative >= 0, workers >= 1");
  PYFAST_CHECK_ARG(p.total_words > 0 && p.words_done != nullptr, op, "total_words must be > 0");
  PYFAST_CHECK_ARG(static_cast<int64_t>(noise.size()) == p.vocab_size, op,
                   "noise table size != vocab_size");
  PYFAST_CHECK_ARG(p.n_sentences >= 0 && p.sentence_offsets[0] == 0 && p.sentence_offsets[p.n_sentences] == p.n_ids,
                   op, "sentence offsets must run from 0 to n_ids");
  for (int64_t s = 0; s < p.n_sentences; ++s)
    PYFAST_CHECK_ARG(p.sentence_offsets[s] <= p.sentence_offsets[s + 1], op, "sentence offsets must not decrease");
  // Bounds-check every id once per epoch (a bad id must never write out of bounds): ~1 ms per million ids.
  for (int64_t i = 0; i < p.n_ids; ++i)
    PYFAST_CHECK_ARG(p.ids[i] >= 0 && p.ids[i] < p.vocab_size, op, "token id ", p.ids[i], " at position ", i,
                     " is outside [0, ", p.vocab_size, ")");

  const int W = p.workers;
  // Worker w trains sentences [first[w], first[w + 1]): the first sentence starting at or after token w*n/W.
  std::vector<int64_t> first(W + 1, p.n_sentences);
  for (int w = 0; w < W; ++w) {
    const int64_t target = p.n_ids * w / W;
    first[w] = std::lower_bound(p.sentence_offsets, p.sentence_offsets + p.n_sentences, target) - p.sentence_offsets;
  }
  first[W] = p.n_sentences;
  std::vector<EpochResult> partial(W);
  // Tokens of earlier epochs of this train() call (every worker has reported them): the per-worker schedule's base.
  const int64_t epoch_base = __atomic_load_n(p.words_done, __ATOMIC_RELAXED);

  parallel_workers(W, [&](int w) {
    Xoshiro256 rng(p.seed, p.epoch * 65536u + static_cast<uint64_t>(w));
    WindowScratch scratch;
    scratch.resize(p.window, p.negative, p.dim);
    std::vector<int32_t> kept(static_cast<size_t>(kMaxSentenceLen));
    std::vector<int32_t> contexts(2 * static_cast<size_t>(p.window));
    std::vector<int32_t> targets(static_cast<size_t>(p.negative) + 1);
    const int T = p.negative + 1;
    // The counter lives in Python-owned memory (Python polls it for progress): GCC/Clang atomic builtins on it.
    int64_t* words_done = p.words_done;
    float alpha = alpha_at(p, p.alpha_per_worker ? epoch_base : __atomic_load_n(words_done, __ATOMIC_RELAXED));
    int64_t unreported = 0;
    int64_t local_done = 0;  // this worker's tokens this epoch (the per-worker schedule's progress)
    EpochResult mine;

    auto draw_negatives = [&](int32_t center, int32_t* out) {
      out[0] = center;
      for (int k = 1; k < T; ++k) out[k] = static_cast<int32_t>(noise.sample(rng.next()));
    };
    // Windows with one set of targets (CBOW, shared-negative skip-gram) draw the next window's targets one step
    // ahead and prefetch their syn1neg rows, so those random rows arrive while this window computes.
    const bool lookahead = !p.sg || p.shared_negatives;
    std::vector<int32_t> next_targets(static_cast<size_t>(T));
    const int64_t row_bytes = static_cast<int64_t>(p.dim) * 4;
    auto prefetch_row = [&](const float* row) {
      for (int64_t off = 0; off < row_bytes; off += 64)
        __builtin_prefetch(reinterpret_cast<const char*>(row) + off, 1, 3);
    };
    auto prepare_next = [&](int32_t center) {
      draw_negatives(center, next_targets.data());
      for (int t = 0; t < T; ++t) prefetch_row(p.syn1neg + static_cast<int64_t>(next_targets[t]) * p.dim);
    };

    bool cancelled = false;
    for (int64_t s = first[w]; s < first[w + 1] && !cancelled; ++s) {
      for (int64_t piece = p.sentence_offsets[s]; piece < p.sentence_offsets[s + 1]; piece += kMaxSentenceLen) {
        if (p.cancel && __atomic_load_n(p.cancel, __ATOMIC_RELAXED)) {
          cancelled = true;
          break;
        }
        const int64_t n = std::min(kMaxSentenceLen, p.sentence_offsets[s + 1] - piece);
        // Subsampling, per occurrence, before windowing (word2vec.c): dropped words do not take window slots.
        int m = 0;
        for (int64_t i = 0; i < n; ++i) {
          const int32_t id = p.ids[piece + i];
          const float keep = p.keep_prob[id];
          if (keep < 1.0f && rng.uniform() >= keep) continue;
          kept[m++] = id;
        }
        mine.trained_words += m;
        if (lookahead && m > 0) prepare_next(kept[0]);
        for (int i = 0; i < m; ++i) {
          const int32_t center = kept[i];
          if (lookahead) {
            std::swap(targets, next_targets);
            if (i + 1 < m) prepare_next(kept[i + 1]);
            if (i + 1 + p.window < m) prefetch_row(p.syn0 + static_cast<int64_t>(kept[i + 1 + p.window]) * p.dim);
          }
          const int reduce = p.shrink_windows ? static_cast<int>(uint_below(static_cast<uint32_t>(rng.next() >> 32),
                                                                            static_cast<uint32_t>(p.window)))
                                              : 0;
          const int span = p.window - reduce;  // uniform in [1, window]
          int B = 0;
          for (int j = std::max(0, i - span); j <= std::min(m - 1, i + span); ++j)
            if (j != i) contexts[B++] = kept[j];
          if (B == 0) continue;
          if (p.sg) {
            if (p.shared_negatives) {
              mine.loss += sg_block(p.syn0, p.syn1neg, p.dim, contexts.data(), B, targets.data(), T, alpha,
                                    p.compute_loss, scratch);
            } else {
              for (int b = 0; b < B; ++b) {
                draw_negatives(center, targets.data());
                mine.loss += sg_block(p.syn0, p.syn1neg, p.dim, contexts.data() + b, 1, targets.data(), T, alpha,
                                      p.compute_loss, scratch);
              }
            }
            mine.pairs += B;
          } else {
            mine.loss += cbow_block(p.syn0, p.syn1neg, p.dim, contexts.data(), B, targets.data(), T, p.cbow_mean,
                                    alpha, p.compute_loss, scratch);
            mine.pairs += 1;
          }
        }
        unreported += n;
        if (unreported >= kAlphaUpdateEvery) {
          const int64_t done = __atomic_add_fetch(words_done, unreported, __ATOMIC_RELAXED);
          local_done += unreported;
          unreported = 0;
          alpha = alpha_at(p, p.alpha_per_worker ? epoch_base + local_done : done);
        }
      }
    }
    const int64_t done = __atomic_add_fetch(words_done, unreported, __ATOMIC_RELAXED);
    local_done += unreported;
    mine.end_alpha = alpha_at(p, p.alpha_per_worker ? epoch_base + local_done : done);
    mine.cancelled = cancelled ? 1 : 0;
    partial[w] = mine;
  });

  // Summed in worker order: the total does not depend on which thread finished first.
  EpochResult total;
  total.end_alpha = p.alpha0;
  for (const EpochResult& r : partial) {
    total.end_alpha = std::min(total.end_alpha, r.end_alpha);
    total.loss += r.loss;
    total.trained_words += r.trained_words;
    total.pairs += r.pairs;
    total.cancelled |= r.cancelled;
  }
  return total;
}

}  // namespace

EpochResult train_epoch(const TrainParams& p) {
  PYFAST_CHECK_ARG(p.vocab_size > 0 && p.noise_weights != nullptr, "word2vec", "vocab_size must be > 0");
  // The noise table is built per epoch call from count^ns_exponent: O(vocab_size), negligible against an epoch.
  const AliasTable noise(std::vector<double>(p.noise_weights, p.noise_weights + p.vocab_size));
  return run_epoch(p, noise);
}

}  // namespace pyfast::w2v
