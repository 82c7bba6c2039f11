"""float64 numpy reference of the CUDA word2vec trainer (csrc/word2vec/train_cuda.cu): the same position-keyed
Philox draws (word2vec.h, TrainCudaParams), the same chunk-constant learning rate, an exact sigmoid with the (-6, 6)
no-update rule, sentences trained one kept centre after another. Slow and obviously right: for small corpora in the
tests (tests/test_word2vec_cuda.py), which compare it with the kernel run by one warp on chunks in order.
"""
from __future__ import annotations

import numpy as np

MAX_SENTENCE_LEN = 10000  # csrc/word2vec/word2vec.h kMaxSentenceLen
MAX_EXP = 6.0
DRAW_CENTRE = 1
DRAW_NEGATIVES = 0x100
DRAW_PAIR_NEGATIVES = 0x10000000
_MASK = np.uint64(0xFFFFFFFF)


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 on uint32 arrays (held in uint64 so products do not overflow); returns four uint64 arrays."""
    u = lambda x: np.asarray(x, dtype=np.uint64) & _MASK  # noqa: E731
    c0, c1, c2, c3, k0, k1 = (u(x) for x in (c0, c1, c2, c3, k0, k1))
    m0, m1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
    for r in range(10):
        if r:
            k0 = (k0 + np.uint64(0x9E3779B9)) & _MASK
            k1 = (k1 + np.uint64(0xBB67AE85)) & _MASK
        p0, p1 = m0 * c0, m1 * c2
        c0, c1, c2, c3 = (p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & _MASK, (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & _MASK
    return c0, c1, c2, c3


def draw(pos, kind: int, seed: int, epoch: int):
    """The four words of the block keyed by (position, epoch, kind) under seed."""
    pos = np.asarray(pos, dtype=np.uint64)
    return philox4x32_10(pos & _MASK, pos >> np.uint64(32), np.uint64(epoch & 0xFFFFFFFF), np.uint64(kind),
                         np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32))


def uint_below(x, n: int):
    return ((np.asarray(x, dtype=np.uint64) * np.uint64(n)) >> np.uint64(32)).astype(np.int64)


def alias_sample(lo, hi, thresholds, aliases):
    col = uint_below(lo, len(thresholds))
    return np.where(hi < thresholds[col].astype(np.uint64), col, aliases[col].astype(np.int64))


def draws(ids, keep_prob, thresholds, aliases, *, seed, epoch, window, negative, pair=-1):
    """(keep (n,) bool, reduce (n,) int64, negatives (n, negative) int64) for every position of ids."""
    pos = np.arange(len(ids), dtype=np.uint64)
    w0, w1, _, _ = draw(pos, DRAW_CENTRE, seed, epoch)
    u = (w0 >> np.uint64(8)).astype(np.float64) * (1.0 / 16777216.0)
    kp = keep_prob[ids].astype(np.float64)
    keep = (kp >= 1.0) | (u < kp)
    reduce = uint_below(w1, window)
    base = DRAW_NEGATIVES if pair < 0 else DRAW_PAIR_NEGATIVES + pair * 65536
    negs = np.zeros((len(ids), negative), dtype=np.int64)
    for k in range(negative):
        x = draw(pos, base + k // 2, seed, epoch)
        lo, hi = (x[0], x[1]) if k % 2 == 0 else (x[2], x[3])
        negs[:, k] = alias_sample(lo, hi, thresholds, aliases)
    return keep, reduce, negs


def _log_loss(f: float, positive: bool) -> float:
    z = f if positive else -f
    return float(np.log1p(np.exp(-z))) if z >= 0 else float(-z + np.log1p(np.exp(z)))


def _coefficients(F, targets, alpha, stats):
    """G = (label - sigmoid(F)) * alpha over the last axis (targets), the CUDA kernel's rule; adds the loss."""
    G = np.zeros_like(F)
    for idx in np.ndindex(F.shape):
        t = idx[-1]
        if t > 0 and targets[t] == targets[0]:
            continue
        f = float(F[idx])
        stats["loss"] += _log_loss(f, t == 0)
        if -MAX_EXP < f < MAX_EXP:
            G[idx] = ((1.0 if t == 0 else 0.0) - 1.0 / (1.0 + np.exp(-f))) * alpha
    return G


def _alpha(alpha0, min_alpha, done, total_words) -> float:
    a0, amin = float(np.float32(alpha0)), float(np.float32(min_alpha))
    a = a0 - (a0 - amin) * (done / total_words)
    return float(np.float32(max(a, amin)))


def train_epoch(syn0, syn1neg, ids, offsets, keep_prob, thresholds, aliases, *, sg, cbow_mean, negative, window,
                shrink_windows, shared_negatives, alpha0, min_alpha, total_words, progress_base, seed, epoch,
                chunk_len):
    """One epoch in float64, updating syn0 / syn1neg (float64 (V, d)) in place. Returns {loss, trained, pairs}."""
    ids = np.asarray(ids, dtype=np.int64)
    keep, reduce, shared = draws(ids, keep_prob, thresholds, aliases, seed=seed, epoch=epoch, window=window,
                                 negative=negative)
    pair_negs = {}
    stats = {"loss": 0.0, "trained": 0, "pairs": 0}
    for s in range(len(offsets) - 1):
        for p0 in range(int(offsets[s]), int(offsets[s + 1]), MAX_SENTENCE_LEN):
            p1 = min(p0 + MAX_SENTENCE_LEN, int(offsets[s + 1]))
            kept = [q for q in range(p0, p1) if keep[q]]
            stats["trained"] += len(kept)
            for i, pos in enumerate(kept):
                alpha = _alpha(alpha0, min_alpha, progress_base + p0 + (pos - p0) // chunk_len * chunk_len,
                               total_words)
                span = window - (int(reduce[pos]) if shrink_windows else 0)
                ctx = [ids[kept[j]] for j in range(max(0, i - span), min(len(kept), i + span + 1)) if j != i]
                if not ctx:
                    continue
                centre = ids[pos]
                if sg and not shared_negatives:
                    for b, c in enumerate(ctx):
                        if b not in pair_negs:
                            pair_negs[b] = draws(ids, keep_prob, thresholds, aliases, seed=seed, epoch=epoch,
                                                 window=window, negative=negative, pair=b)[2]
                        _sg_block(syn0, syn1neg, [c], [centre, *pair_negs[b][pos]], alpha, stats)
                    stats["pairs"] += len(ctx)
                elif sg:
                    _sg_block(syn0, syn1neg, ctx, [centre, *shared[pos]], alpha, stats)
                    stats["pairs"] += len(ctx)
                else:
                    _cbow_block(syn0, syn1neg, ctx, [centre, *shared[pos]], alpha, cbow_mean, stats)
                    stats["pairs"] += 1
    return stats


def _sg_block(syn0, syn1neg, ctx, targets, alpha, stats):
    X, Y = syn0[ctx].copy(), syn1neg[targets].copy()
    G = _coefficients(X @ Y.T, targets, alpha, stats)  # (B, T)
    np.add.at(syn1neg, targets, G.T @ X)
    np.add.at(syn0, ctx, G @ Y)


def _cbow_block(syn0, syn1neg, ctx, targets, alpha, cbow_mean, stats):
    X, Y = syn0[ctx].copy(), syn1neg[targets].copy()
    h = X.mean(axis=0) if cbow_mean else X.sum(axis=0)
    g = _coefficients(Y @ h, targets, alpha, stats)  # (T,)
    e = g @ Y
    np.add.at(syn1neg, targets, np.outer(g, h))
    np.add.at(syn0, ctx, np.broadcast_to(e if cbow_mean else e / len(ctx), (len(ctx), len(h))))
