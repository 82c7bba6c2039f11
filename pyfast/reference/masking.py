"""Plain reference for pyfast.ops.mask_tokens: the keying scheme of csrc/masking/masking.h written out in numpy and
Python loops (slow, obviously right). Tests require the native kernel to match it exactly, mode by mode."""
from __future__ import annotations

import math

import numpy as np

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
STREAM_CHOOSE, STREAM_REPLACE, STREAM_SPAN = 0x4D430001, 0x4D430002, 0x4D430003
MASK32 = 0xFFFFFFFF


def philox4x32_10(c0, c1, c2, c3, k0: int, k1: int):
    """Vectorised Philox4x32-10 on uint64 arrays holding 32-bit values."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) & MASK32 for c in (c0, c1, c2, c3))
    c0, c1, c2, c3 = np.broadcast_arrays(c0, c1, c2, c3)
    for r in range(10):
        if r:
            k0 = (k0 + W0) & MASK32
            k1 = (k1 + W1) & MASK32
        p0 = c0 * np.uint64(M0)
        p1 = c2 * np.uint64(M1)
        hi0, lo0 = p0 >> np.uint64(32), p0 & np.uint64(MASK32)
        hi1, lo1 = p1 >> np.uint64(32), p1 & np.uint64(MASK32)
        c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint64(k0), lo1, hi0 ^ c3 ^ np.uint64(k1), lo0
    return c0, c1, c2, c3


def draw(seed: int, index, stream: int):
    index = np.asarray(index, dtype=np.uint64)
    return philox4x32_10(index & np.uint64(MASK32), index >> np.uint64(32), stream, 0, seed & MASK32, seed >> 32)


def unit(x) -> np.ndarray:
    return (np.asarray(x, dtype=np.uint64) >> np.uint64(8)).astype(np.float64) / 16777216.0


def choose_words(seed: int, row: int, L: int) -> np.ndarray:
    col = np.arange(L, dtype=np.uint64)
    block = ((col >> np.uint64(5)) << np.uint64(3)) | (col & np.uint64(7))
    words = draw(seed, (np.uint64(row) << np.uint64(32)) | block, STREAM_CHOOSE)
    which = ((col >> np.uint64(3)) & np.uint64(3)).astype(np.int64)
    return np.choose(which, words)


def f32(x: float) -> float:
    return float(np.float32(x))


def mask_tokens_reference(ids, *, mask_token_id, vocab_size, special_mask=None, special_ids=(), p=0.15, mask_p=0.8,
                          random_p=0.1, seed=0, word_starts=None, max_predictions=None, span=False,
                          span_cdf=(), span_start_prob=0.0):
    """ids: (B, L) int array. Returns (out, labels) as int64 numpy arrays."""
    ids = np.asarray(ids, dtype=np.int64)
    B, L = ids.shape
    out, labels = ids.copy(), np.full((B, L), -100, dtype=np.int64)
    special_ids = set(int(i) for i in special_ids)
    excluded = sorted(special_ids | {mask_token_id})
    allowed = [i for i in range(vocab_size) if i not in set(excluded)]
    p, mask_p = f32(p), f32(mask_p)
    mask_or_random = f32(np.float32(mask_p) + np.float32(random_p))
    for b in range(B):
        c = choose_words(seed, b, L)
        elig = [not (special_mask is not None and special_mask[b, j]) and int(ids[b, j]) not in special_ids
                for j in range(L)]
        words = []  # [start, length]
        for j in range(L):
            if not elig[j]:
                continue
            if word_starts is None or j == 0 or not elig[j - 1] or word_starts[b, j]:
                words.append([j, 0])
            words[-1][1] += 1
        chosen = np.zeros(L, dtype=bool)
        if max_predictions is not None:
            E = sum(w[1] for w in words)
            if E:
                n = min(max_predictions, max(1, math.floor(p * E + 0.5)))
                taken = 0
                for key, start in sorted((int(c[w[0]]), w[0]) for w in words):
                    length = next(w[1] for w in words if w[0] == start)
                    if taken >= n:
                        break
                    if taken + length > n:
                        continue
                    chosen[start:start + length] = True
                    taken += length
        elif span:
            w = 0
            while w < len(words):
                start = words[w][0]
                if not unit(c[start]) < f32(span_start_prob):
                    w += 1
                    continue
                u = unit(draw(seed, (b << 32) | start, STREAM_SPAN)[0])
                length = 1 + sum(1 for t in span_cdf if f32(t) <= u)
                covered = 0
                while True:
                    chosen[words[w][0]:words[w][0] + words[w][1]] = True
                    covered += 1
                    w += 1
                    if not (covered < length and w < len(words) and words[w][0] == words[w - 1][0] + words[w - 1][1]):
                        break
        else:
            for start, length in words:
                if unit(c[start]) < p:
                    chosen[start:start + length] = True
        for j in np.nonzero(chosen)[0]:
            r = draw(seed, (b << 32) | int(j), STREAM_REPLACE)
            u = unit(r[0])
            labels[b, j] = ids[b, j]
            if u < mask_p:
                out[b, j] = mask_token_id
            elif u < mask_or_random:
                out[b, j] = allowed[(int(r[1]) * len(allowed)) >> 32]
    return out, labels
