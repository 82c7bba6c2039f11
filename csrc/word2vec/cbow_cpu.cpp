// CBOW negative-sampling update for one window (see word2vec.h): one hidden vector per window, so the window
// is already a batch; the T = K + 1 dot products share one pass over h, and e = sum_t g_t y_t is one weighted
// row sum. As in gensim's fast_sentence_cbow_neg, every context row receives the full e with the mean, and
// e / B with the sum.
#include <cstdint>

#include "word2vec/vector_math.h"
#include "word2vec/word2vec.h"

namespace pyfast::w2v {

double cbow_block(float* syn0, float* syn1neg, int dim, const int32_t* contexts, int B, const int32_t* targets,
                  int T, bool cbow_mean, float alpha, bool compute_loss, WindowScratch& scratch) {
  const int64_t d = dim;
  scratch.gather_rows(syn0, syn1neg, dim, contexts, B, targets, T);
  const float** x_rows = scratch.x_rows.data();  // (B,) context rows by pointer
  const float** y_rows = scratch.y_rows.data();  // (T,) target rows

  // h (d,) = sum or mean of the context rows.
  float* h = scratch.hidden.data();
  float* ones = scratch.column.data();
  const float scale = cbow_mean ? 1.0f / static_cast<float>(B) : 1.0f;
  for (int b = 0; b < B; ++b) ones[b] = scale;
  weighted_row_sum(h, false, x_rows, ones, B, dim);

  float* g = scratch.coef.data();
  dot_rows(h, y_rows, T, dim, g);
  double loss = 0.0;
  for (int t = 0; t < T; ++t) g[t] = target_gradient(g[t], t, targets, alpha, compute_loss, &loss);
  // e (d,) = sum_t g_t y_t from the target rows as they were on entry.
  float* e = scratch.grad_in.data();
  weighted_row_sum(e, false, y_rows, g, T, dim);
  for (int t = 0; t < T; ++t)
    if (g[t] != 0.0f) axpy(g[t], h, syn1neg + targets[t] * d, dim);
  // gensim divides e by the number of contexts when the hidden vector is their sum (word2vec.c does not).
  const float e_scale = cbow_mean ? 1.0f : 1.0f / static_cast<float>(B);
  for (int b = 0; b < B; ++b) axpy(e_scale, e, syn0 + contexts[b] * d, dim);
  return loss;
}

}  // namespace pyfast::w2v
