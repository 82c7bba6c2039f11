// Skip-gram negative-sampling update for one block of contexts against one set of targets (see word2vec.h).
// With shared negatives the block is a whole window (B up to 2 * window contexts, T = K + 1 targets): the B*T
// dot products and both updates become three small dense products (pWord2Vec), each target row is read once
// per window instead of once per pair, and K draws serve 2 * window pairs. B = 1 gives word2vec.c's per-pair
// update exactly (the context row is updated after all its targets, from the gradients summed over them).
#include <cstdint>

#include "word2vec/vector_math.h"
#include "word2vec/word2vec.h"

namespace pyfast::w2v {

double sg_block(float* syn0, float* syn1neg, int dim, const int32_t* contexts, int B, const int32_t* targets, int T,
                float alpha, bool compute_loss, WindowScratch& scratch) {
  const int64_t d = dim;
  scratch.gather_rows(syn0, syn1neg, dim, contexts, B, targets, T);
  const float** x_rows = scratch.x_rows.data();  // (B,) context rows by pointer
  const float** y_rows = scratch.y_rows.data();  // (T,) target rows

  // G (B, T): gradient coefficients; a negative equal to the center word gets 0 (skipped).
  float* G = scratch.coef.data();
  double loss = 0.0;
  for (int b = 0; b < B; ++b) {
    float* g = G + b * T;
    dot_rows(x_rows[b], y_rows, T, dim, g);
    for (int t = 0; t < T; ++t) g[t] = target_gradient(g[t], t, targets, alpha, compute_loss, &loss);
  }
  // Input-side gradients from the target rows as they were on entry: grad_in (B, d) = G Y.
  float* grad_in = scratch.grad_in.data();
  for (int b = 0; b < B; ++b) weighted_row_sum(grad_in + b * d, false, y_rows, G + b * T, T, dim);
  // Output side: y_t += sum_b G[b, t] x_b (G^T X), from the context rows as they were on entry.
  float* column = scratch.column.data();
  for (int t = 0; t < T; ++t) {
    bool any = false;
    for (int b = 0; b < B; ++b) {
      column[b] = G[b * T + t];
      any |= column[b] != 0.0f;
    }
    if (any) weighted_row_sum(syn1neg + targets[t] * d, true, x_rows, column, B, dim);
  }
  for (int b = 0; b < B; ++b) axpy(1.0f, grad_in + b * d, syn0 + contexts[b] * d, dim);
  return loss;
}

}  // namespace pyfast::w2v
