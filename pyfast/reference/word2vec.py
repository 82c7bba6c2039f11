"""Plain numpy float64 reference for the word2vec block updates in csrc/word2vec (slow, obviously right).

Each function updates ``syn0`` / ``syn1neg`` (float64 arrays, in place) for one block exactly as word2vec.h
documents it, and returns the block's loss. The sigmoid is exact inside (-6, 6),
and an example whose logit is outside (-6, 6) gets no update (gensim's rule), as in the native kernels (which use
a 2048-point table inside, so they agree to about 2e-3 relative on the gradient coefficients).
"""
from __future__ import annotations

import numpy as np

MAX_EXP = 6.0


def gradient_coefficients(f: np.ndarray, labels: np.ndarray, alpha: float) -> np.ndarray:
    """(label - sigmoid(f)) * alpha, and 0 where |f| >= MAX_EXP (the example is skipped)."""
    g = (labels - 1.0 / (1.0 + np.exp(-f))) * alpha
    return np.where(np.abs(f) < MAX_EXP, g, 0.0)


def log_loss(f: np.ndarray, positive: np.ndarray) -> np.ndarray:
    z = np.where(positive, f, -f)
    return np.logaddexp(0.0, -z)  # -log sigmoid(z)


def _target_labels(targets):
    targets = np.asarray(targets)
    labels = np.zeros(len(targets))
    labels[0] = 1.0
    active = np.ones(len(targets), dtype=bool)
    active[1:] = targets[1:] != targets[0]  # a negative equal to the center word is skipped
    return targets, labels, active


def sg_block(syn0, syn1neg, contexts, targets, alpha):
    """Skip-gram block: contexts (B,) rows of syn0 against targets (T,) rows of syn1neg (targets[0] positive)."""
    contexts = np.asarray(contexts)
    targets, labels, active = _target_labels(targets)
    X = syn0[contexts].copy()            # (B, d) as on entry
    Y = syn1neg[targets].copy()          # (T, d)
    logits = X @ Y.T                     # (B, T)
    G = gradient_coefficients(logits, labels[None, :], alpha) * active[None, :]
    loss = float((log_loss(logits, np.broadcast_to(labels > 0, logits.shape)) * active[None, :]).sum())
    for t, row in enumerate(targets):    # sequential adds: repeated targets accumulate
        syn1neg[row] += G[:, t] @ X
    grad_in = G @ Y                      # (B, d)
    for b, row in enumerate(contexts):
        syn0[row] += grad_in[b]
    return loss


def cbow_block(syn0, syn1neg, contexts, targets, alpha, cbow_mean=True):
    """CBOW window: hidden = mean (or sum) of the context rows; every context row receives the error e (e / B
    with the sum, as gensim does)."""
    contexts = np.asarray(contexts)
    targets, labels, active = _target_labels(targets)
    h = syn0[contexts].sum(axis=0)
    if cbow_mean:
        h = h / len(contexts)
    Y = syn1neg[targets].copy()
    f = Y @ h                            # (T,)
    g = gradient_coefficients(f, labels, alpha) * active
    loss = float((log_loss(f, labels > 0) * active).sum())
    e = g @ Y
    for t, row in enumerate(targets):
        syn1neg[row] += g[t] * h
    if not cbow_mean:
        e = e / len(contexts)
    for row in contexts:
        syn0[row] += e
    return loss
