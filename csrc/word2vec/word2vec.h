// word2vec trainer (skip-gram and CBOW with negative sampling): the params struct and the native entry points.
// No Python or torch here: pointers and sizes only. Vocabulary building and the corpus reader live in vocab.cpp,
// the epoch driver (threads, subsampling, windows, learning-rate schedule) in train_cpu.cpp, and the per-window
// update kernels in skipgram_cpu.cpp / cbow_cpu.cpp. Semantics follow word2vec.c and gensim; where they differ
// the choice is written next to the code.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace pyfast::w2v {

// Longer sentences (lines) are trained as consecutive pieces of this many tokens, as gensim does; a window
// never crosses a piece boundary. Bounds the per-thread buffers, so a 300k-token line is just 30 pieces.
constexpr int64_t kMaxSentenceLen = 10000;

// ---- vocabulary and corpus reading (vocab.cpp) ----------------------------------------------------------------
// Tokens are maximal runs of bytes other than ASCII whitespace (space, \t, \n, \v, \f, \r); a newline ends a
// sentence. Bytes are opaque: invalid UTF-8 is just another token.
struct VocabCounts {
  std::vector<std::string> words;  // sorted by count descending, ties by byte order (deterministic)
  std::vector<int64_t> counts;
  int64_t total_words = 0;         // every token read (before any pruning)
  int64_t sentences = 0;           // non-empty lines
};

// Counts the tokens of a file, `workers` threads each on its own byte range. max_vocab_size > 0 prunes while
// counting like word2vec.c's ReduceVocab: when a thread's table passes the limit, words with count <= r are
// dropped and r grows by one (r starts at 1).
// [begin, end) restricts the count to the lines whose first byte lies in that byte range (end = -1: the file's
// end), the rule the threads already split by, so ranges that tile the file count every line exactly once: the
// distributed trainer gives each rank one (pyfast/word2vec_distributed.py). 0 <= begin <= end <= file size.
VocabCounts count_corpus_file(const std::string& path, int64_t max_vocab_size, int workers, int64_t begin = 0,
                              int64_t end = -1);

struct CorpusIds {
  std::vector<int32_t> ids;               // in-vocabulary token ids, sentences back to back
  std::vector<int64_t> sentence_offsets;  // (sentences + 1,): sentence s is ids[off[s], off[s+1])
  int64_t raw_words = 0;                  // every token read, in vocabulary or not
};

// Maps a file's tokens to ids of `vocab` (out-of-vocabulary tokens are dropped, as in word2vec.c and gensim),
// `workers` threads each on its own byte range; the pieces are joined in file order. [begin, end): as for
// count_corpus_file.
CorpusIds read_corpus_ids(const std::string& path, const std::vector<std::string>& vocab, int workers,
                          int64_t begin = 0, int64_t end = -1);

// ---- training (train_cpu.cpp) ---------------------------------------------------------------------------------
struct TrainParams {
  float* syn0 = nullptr;     // (vocab_size, dim) input vectors, updated in place (Hogwild across workers)
  float* syn1neg = nullptr;  // (vocab_size, dim) output vectors, updated in place
  int64_t vocab_size = 0;
  int dim = 0;
  const int32_t* ids = nullptr;               // (n_ids,) in [0, vocab_size)
  int64_t n_ids = 0;
  const int64_t* sentence_offsets = nullptr;  // (n_sentences + 1,), non-decreasing, from 0 to n_ids
  int64_t n_sentences = 0;
  const float* keep_prob = nullptr;           // (vocab_size,) subsampling: keep an occurrence with this probability
  const double* noise_weights = nullptr;      // (vocab_size,) count^ns_exponent: negatives are drawn from this
                                              // distribution (an alias table train_epoch builds, O(vocab_size))
  int sg = 1;                 // 1 skip-gram, 0 CBOW
  int cbow_mean = 1;          // CBOW hidden = mean (1) or sum (0) of the context vectors
  int negative = 5;           // K
  int window = 5;
  int shrink_windows = 1;     // reduced window uniform in [1, window]
  int shared_negatives = 1;   // skip-gram: one set of K negatives per window (pWord2Vec) vs K per pair
  int workers = 1;
  int compute_loss = 0;
  float alpha0 = 0.025f;      // learning rate decays linearly from alpha0 to min_alpha over total_words
  float min_alpha = 0.0001f;
  int64_t total_words = 0;    // ids to be processed over all epochs of this train() call (> 0)
  // Progress that drives the decay. 0 (default): global, every worker reads the shared counter, so the rate falls
  // linearly with all tokens trained by all workers (word2vec.c, gensim's documented schedule, gensim's iterable
  // mode). 1: per worker, gensim 4's corpus_file behaviour: each worker measures only its own tokens against the
  // whole epoch, so with W workers every epoch covers 1/W of its decay step and then jumps back (a sawtooth; with
  // W = 2 and 3 epochs the mean rate is ~17% higher and the last rate ~alpha0/6 instead of min_alpha). Offered so
  // results can be matched to gensim corpus_file runs; with one worker both are the same schedule.
  int alpha_per_worker = 0;
  int64_t* words_done = nullptr;  // shared progress counter (ids processed so far), atomically updated
  uint64_t seed = 0;
  uint64_t epoch = 0;         // global epoch index: with the worker index it keys the worker's RNG stream
  // Optional cancellation flag in Python-owned memory (nullptr: none). Once *cancel != 0 every worker stops before
  // its next sentence piece (<= kMaxSentenceLen tokens, ~10 ms), so Ctrl-C in Python ends an epoch promptly.
  const int32_t* cancel = nullptr;
};

struct EpochResult {
  double loss = 0.0;          // sum over all (context, target) pairs of -log sigmoid(+-f), float64, all workers
  int64_t trained_words = 0;  // occurrences kept by subsampling
  int64_t pairs = 0;          // positive examples trained (skip-gram: context-center pairs; CBOW: windows)
  double end_alpha = 0.0;     // lowest rate the schedule reached in any worker when it finished its slice
  int cancelled = 0;          // 1 when *cancel stopped the epoch early (the counts above cover the part trained)
};

// One epoch over the corpus with p.workers threads, each on its own contiguous slice of sentences.
EpochResult train_epoch(const TrainParams& p);

// ---- training on a CUDA device (train_cuda.cu) -----------------------------------------------------------------
// Same model and objective as train_epoch; what differs (pyfast/word2vec_cuda.py drives it):
// - every random draw is keyed by position, never by thread: Philox4x32-10 with counter (pos lo, pos hi, epoch,
//   kind) and key = seed, where pos is the token's index in `ids`. kind kCudaDrawCentre gives word 0 -> the keep
//   uniform (dropped when keep_prob < 1 and u >= keep_prob, as the CPU), word 1 -> the window reduction
//   uint_below(w1, window); kind kCudaDrawNegatives + k / 2 gives negative k of the centre (shared negatives, CBOW)
//   from words (2 (k % 2), 2 (k % 2) + 1) as (low, high) of AliasTable::sample's 64-bit value; the per-pair mode's
//   negatives of context slot b use kind kCudaDrawPairNegatives + b * 65536 + k / 2. So any chunking and any
//   number of warps see the same draws.
// - the corpus is cut into chunks of consecutive positions inside one sentence piece (pieces as kMaxSentenceLen);
//   a warp takes a chunk, subsamples it plus a halo of up to `window` kept words on each side inside the piece
//   (the halo's draws are the neighbour chunk's own), and trains the chunk's kept words as centres.
// - the learning rate is constant over a chunk: alpha at progress (progress_base + c0) / total_words.
// - sigmoid is computed exactly in float32 (1 / (1 + exp(-f))), with the CPU's rule that a logit outside
//   (-kMaxExp, kMaxExp) gives no update; the CPU's 2049-point table differs from it by < 0.0019.
// - writes to syn0 / syn1neg are atomicAdd of each block's deltas (Hogwild between warps, but no lost updates).
// - loss and counts are written per chunk (chunk_loss, chunk_counts) and summed by the caller in chunk order.
constexpr uint32_t kCudaDrawCentre = 1;
constexpr uint32_t kCudaDrawNegatives = 0x100;
constexpr uint32_t kCudaDrawPairNegatives = 0x10000000;
constexpr int kCudaMaxNegative = 4096;  // negative <= this (bounds the draw kinds and shared memory)

struct TrainCudaParams {
  float* syn0 = nullptr;     // device (vocab_size, dim)
  float* syn1neg = nullptr;  // device (vocab_size, dim)
  int64_t vocab_size = 0;
  int dim = 0;
  const int32_t* ids = nullptr;      // device (n_ids,): checked in the kernel too (error[0])
  int64_t n_ids = 0;
  const int64_t* chunks = nullptr;   // device (n_chunks, 4): centres [c0, c1) inside piece [p0, p1); p0 <= c0 <=
  int64_t n_chunks = 0;              // c1 <= p1 <= n_ids and c1 - c0 <= max_chunk_len (else error[1])
  int max_chunk_len = 256;
  const float* keep_prob = nullptr;         // device (vocab_size,)
  const uint32_t* noise_threshold = nullptr;  // device (vocab_size,) AliasTable::thresholds()
  const uint32_t* noise_alias = nullptr;      // device (vocab_size,) AliasTable::aliases()
  int sg = 1;
  int cbow_mean = 1;
  int negative = 5;
  int window = 5;
  int shrink_windows = 1;
  int shared_negatives = 1;
  int compute_loss = 0;
  float alpha0 = 0.025f;
  float min_alpha = 0.0001f;
  int64_t total_words = 0;    // positions over all epochs of this train() call (> 0)
  int64_t progress_base = 0;  // positions of the earlier epochs of this call
  uint64_t seed = 0;
  uint64_t epoch = 0;         // global epoch index (low 32 bits key the draws)
  int warps = 1;              // warps of the persistent grid; 1: one warp takes the chunks in order (tests)
  double* chunk_loss = nullptr;     // device (n_chunks,) loss of each chunk (0 unless compute_loss)
  int64_t* chunk_counts = nullptr;  // device (n_chunks, 2): kept words, positive examples
  int64_t* error = nullptr;         // device (2,), INT64_MAX on entry: lowest bad-id position, lowest bad chunk
};

// Shared memory one warp needs (bytes): the kernel refuses settings whose warp does not fit in one block.
int64_t train_cuda_warp_bytes(int dim, int window, int negative, int max_chunk_len);
void train_epoch_cuda(const TrainCudaParams& p, std::uintptr_t stream);
// The draws the kernel makes, for tests: keep (n_ids,) uint8, reduce (n_ids,) int32 window reduction, negatives
// (n_ids, negative) int32 for the shared set (pair < 0) or for context slot `pair`.
void train_cuda_draws(const TrainCudaParams& p, uint8_t* keep, int32_t* reduce, int32_t* negatives, int pair,
                      std::uintptr_t stream);

// ---- per-window kernels (skipgram_cpu.cpp, cbow_cpu.cpp) ------------------------------------------------------
// Sigmoid by a table over (-kMaxExp, kMaxExp). A logit outside that range contributes no update at all (gensim's
// rule: the example is skipped; word2vec.c instead saturates the gradient to (label - 0 or 1) * alpha). Measured
// on the benchmark corpus (benchmarks/RESULTS.md), saturating cost CBOW about 0.02 WordSim353 Spearman vs gensim.
// Not copied on purpose: word2vec.c and gensim both index their 1000-entry table with (int)((f + 6) * (1000 / 6 / 2))
// where 1000 / 6 / 2 is integer division (83, not 83.33) and the cast truncates, so they evaluate sigmoid at about
// 0.996 f - 0.03: positive gradients ~2-3% larger and negative ones ~2% smaller than the true sigmoid gives. That is
// far below seed-to-seed noise in quality; this table rounds to the nearest of 2049 exact points instead.
constexpr float kMaxExp = 6.0f;
constexpr int kSigmoidTableSize = 2048;
extern const float* const kSigmoidTable;  // (kSigmoidTableSize + 1,) sigmoid at evenly spaced points of [-6, 6]

inline bool logit_in_range(float f) { return f > -kMaxExp && f < kMaxExp; }

inline float sigmoid_lookup(float f) {  // f in (-kMaxExp, kMaxExp)
  const int i = static_cast<int>((f + kMaxExp) * (kSigmoidTableSize / (2.0f * kMaxExp)) + 0.5f);
  return kSigmoidTable[i];
}

// -log sigmoid(label ? f : -f) in float64, exact (only computed when the loss is asked for).
double log_loss(float f, bool positive);

// Target t's gradient coefficient (label_t - sigmoid(f)) * alpha for logit f, the same rule for skip-gram and CBOW:
// target 0 is the positive (label 1); a negative equal to it is skipped (0, as in word2vec.c), and so is a logit
// outside (-kMaxExp, kMaxExp) (gensim's rule). Adds the example's log loss to *loss when compute_loss.
inline float target_gradient(float f, int t, const int32_t* targets, float alpha, bool compute_loss, double* loss) {
  if (t > 0 && targets[t] == targets[0]) return 0.0f;
  if (compute_loss) *loss += log_loss(f, t == 0);
  return logit_in_range(f) ? ((t == 0 ? 1.0f : 0.0f) - sigmoid_lookup(f)) * alpha : 0.0f;
}

// Scratch for one worker, sized for 2 * window contexts and negative + 1 targets.
struct WindowScratch {
  std::vector<float> grad_in;   // (2 * window, dim)
  std::vector<float> coef;      // (2 * window, negative + 1) gradients, then a column copy
  std::vector<float> column;    // (2 * window,)
  std::vector<float> hidden;    // (dim,) CBOW hidden vector
  std::vector<const float*> x_rows;  // (2 * window,)
  std::vector<const float*> y_rows;  // (negative + 1,)
  void resize(int window, int negative, int dim);
  // x_rows[b] = syn0 row of contexts[b] (b < B), y_rows[t] = syn1neg row of targets[t] (t < T).
  void gather_rows(const float* syn0, const float* syn1neg, int dim, const int32_t* contexts, int B,
                   const int32_t* targets, int T) {
    for (int b = 0; b < B; ++b) x_rows[b] = syn0 + static_cast<int64_t>(contexts[b]) * dim;
    for (int t = 0; t < T; ++t) y_rows[t] = syn1neg + static_cast<int64_t>(targets[t]) * dim;
  }
};

// Skip-gram block: B context rows of syn0 against T target rows of syn1neg; targets[0] is the center word (label
// 1), targets[1..T) are negatives (label 0; a negative equal to targets[0] is skipped, as in word2vec.c). All
// logits and gradients are computed from the vectors as they were on entry, then both sides are updated:
//   logits (B, T) = X (B, d) . Y^T;  G = (label - sigmoid(logits)) * alpha
//   syn1neg[targets] += G^T X;  syn0[contexts] += G Y
// B = 2 * window with shared negatives (pWord2Vec), B = 1 for the classic per-pair scheme.
// Returns the loss of the block when compute_loss, else 0.
double sg_block(float* syn0, float* syn1neg, int dim, const int32_t* contexts, int B, const int32_t* targets, int T,
                float alpha, bool compute_loss, WindowScratch& scratch);

// CBOW window: hidden h = sum (or mean) of the B context rows; T targets as above;
//   g_t = (label_t - sigmoid(h . y_t)) * alpha;  e = sum_t g_t y_t;  y_t += g_t h;  each context row += e
// (with cbow_mean = 0, e / B: gensim's rule; word2vec.c adds the full e).
double cbow_block(float* syn0, float* syn1neg, int dim, const int32_t* contexts, int B, const int32_t* targets,
                  int T, bool cbow_mean, float alpha, bool compute_loss, WindowScratch& scratch);

}  // namespace pyfast::w2v
