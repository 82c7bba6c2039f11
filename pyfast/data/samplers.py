"""The samplers that feed a word2vec loop in PyTorch (see examples/word2vec_torch.py): negatives from the noise
distribution count^exponent (``NoiseSampler``, ``sample_negatives``) and (center, context) pairs from a token stream
the way word2vec forms them (``skipgram_pairs``: subsampling, reduced windows, sentence boundaries). Every draw is
keyed by a seed through Philox, so the same seed gives the same batch whatever the thread count. CPU tensors only;
the loss they feed is pyfast.ops.sgns_loss.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .. import _native, rng

__all__ = ["NoiseSampler", "sample_negatives", "skipgram_pairs"]


class NoiseSampler:
    """Draws negatives from the word2vec noise distribution count^exponent with an alias table (O(V) to build,
    O(1) per draw) — the same table type as pyfast's word2vec trainer (csrc/common/alias_table.h,
    csrc/word2vec/noise_sampler.h).

    Row r of a sample is keyed by (seed, r) through Philox: the same seed gives the same negatives whatever the
    thread count. Build once and reuse; ``sample_negatives`` builds a fresh table per call.
    """

    def __init__(self, counts, exponent: float = 0.75):
        counts = torch.as_tensor(counts)
        if counts.dim() != 1 or counts.numel() == 0:
            raise ValueError(f"sample_negatives: counts must be a non-empty 1-D sequence, got shape "
                             f"{tuple(counts.shape)}")
        if counts.is_complex() or counts.dtype == torch.bool:
            raise TypeError(f"sample_negatives: counts must be real numbers, got {counts.dtype}")
        counts = counts.detach().to("cpu", torch.float64).contiguous()
        if not bool(torch.isfinite(counts).all()) or bool((counts < 0).any()):
            raise ValueError("sample_negatives: counts must be finite and >= 0")
        if not float(counts.sum()) > 0:
            raise ValueError("sample_negatives: counts must have a positive entry")
        exponent = float(exponent)
        if not (exponent == exponent and abs(exponent) != float("inf")):
            raise ValueError(f"sample_negatives: exponent must be finite, got {exponent}")
        self.num_embeddings = counts.numel()
        self.exponent = exponent
        self._table = _native.cpu().NoiseSampler(_native.ptr(counts), counts.numel(), exponent)

    def sample(self, num_rows: int, k: int, seed: int | None = None) -> torch.Tensor:
        """(num_rows, k) int64 ids, each drawn independently with probability proportional to count^exponent."""
        for name, val in (("num_rows", num_rows), ("k", k)):
            if isinstance(val, bool) or not isinstance(val, int):
                raise TypeError(f"sample_negatives: {name} must be an int, got {type(val).__name__}")
            if val < 0:
                raise ValueError(f"sample_negatives: {name} must be >= 0, got {val}")
        seed = rng.check_seed(seed, "sample_negatives")
        out = torch.empty(num_rows, k, dtype=torch.int64)
        self._table.sample(_native.ptr(out), num_rows, k, seed)
        return out


def sample_negatives(counts, num_rows: int, k: int, exponent: float = 0.75, seed: int | None = None) -> torch.Tensor:
    """(num_rows, k) int64 negatives drawn from counts^exponent (see NoiseSampler; O(V) table build per call)."""
    return NoiseSampler(counts, exponent).sample(num_rows, k, seed)


_KEEP_STREAM, _WINDOW_STREAM = 0x5B5A, 0x5B5B  # Philox streams of skipgram_pairs' two kinds of draws


def skipgram_pairs(tokens, window: int, counts=None, sample: float = 1e-3, seed: int | None = None,
                   shrink_window: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(centers, contexts) int64 pairs from a token stream, the way word2vec forms them.

    Args:
        tokens: a 1-D int tensor of ids, or a sequence of them (sentences; pairs never cross a boundary).
        window: the largest distance between a center and its context (>= 1).
        counts: (V,) id counts for subsampling; default: counted from ``tokens``.
        sample: subsampling threshold s (word2vec's -sample); 0 keeps every token. A token of count c out of a
            total T is kept with probability (sqrt(c / (s T)) + 1) s T / c, drawn per occurrence before windowing.
        seed: keys every draw (Philox): the same seed gives the same pairs.
        shrink_window: draw each center's window uniformly from [1, window] (word2vec's reduced window).

    Pairs come out ordered by center position, then by offset (-window .. -1, 1 .. window). Memory is about
    16 * 2 * min(window, len(tokens)) bytes per token (the candidate grid), so feed a large corpus in slices.
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"skipgram_pairs: window must be an int >= 1, got {window!r}")
    sample = float(sample)
    if not sample >= 0:
        raise ValueError(f"skipgram_pairs: sample must be >= 0, got {sample}")
    seed = rng.check_seed(seed, "skipgram_pairs")
    if isinstance(tokens, torch.Tensor) and tokens.dim() == 1:
        sentences: Sequence = [tokens]
    else:
        sentences = [torch.as_tensor(s) for s in tokens]
    for s in sentences:
        if s.dim() != 1 or (s.numel() and (s.is_floating_point() or s.is_complex() or s.dtype == torch.bool)):
            raise ValueError("skipgram_pairs: tokens must be a 1-D integer tensor or a sequence of them")
    lengths = torch.tensor([s.numel() for s in sentences], dtype=torch.int64)
    tok = (torch.cat([s.reshape(-1).to("cpu", torch.int64) for s in sentences]) if sentences
           else torch.empty(0, dtype=torch.int64))
    seg = torch.repeat_interleave(torch.arange(len(sentences)), lengths)
    if tok.numel() and int(tok.min()) < 0:
        raise ValueError(f"skipgram_pairs: token ids must be >= 0, got {int(tok.min())}")
    empty = torch.empty(0, dtype=torch.int64)
    if tok.numel() == 0:
        return empty, empty.clone()
    if sample > 0:
        if counts is None:
            counts = torch.bincount(tok).to(torch.float64)
        counts = torch.as_tensor(counts).to(torch.float64)
        if counts.dim() != 1 or counts.numel() <= int(tok.max()):
            raise ValueError(f"skipgram_pairs: counts must be 1-D with an entry for every token id (max id "
                             f"{int(tok.max())}), got shape {tuple(counts.shape)}")
        if not bool(torch.isfinite(counts).all()) or bool((counts < 0).any()):
            raise ValueError("skipgram_pairs: counts must be finite and >= 0")
        threshold = sample * float(counts.sum())
        c = counts[tok].clamp_min(1e-300)  # a token that occurs has count >= 1; guards a user's zero
        keep_prob = ((c / threshold).sqrt() + 1) * threshold / c
        keep = rng.uniform(tok.numel(), seed, stream=_KEEP_STREAM).to(torch.float64) < keep_prob
        tok, seg = tok[keep], seg[keep]
    n = tok.numel()
    if n == 0:
        return empty, empty.clone()
    if shrink_window:
        reach = 1 + (rng.uniform(n, seed, stream=_WINDOW_STREAM) * window).long().clamp_max(window - 1)
    else:
        reach = torch.full((n,), window, dtype=torch.int64)
    # No pair spans more than n - 1 positions: a window beyond that (window=10**9) would only size the grid.
    span = min(window, n - 1)
    offsets = torch.cat([torch.arange(-span, 0), torch.arange(1, span + 1)])            # (2W,), W = span
    pos = torch.arange(n).unsqueeze(1) + offsets                                          # (n, 2W)
    inside = (pos >= 0) & (pos < n) & (offsets.abs() <= reach.unsqueeze(1))
    pos = pos.clamp(0, n - 1)
    valid = inside & (seg[pos] == seg.unsqueeze(1))
    centers = tok.unsqueeze(1).expand(n, offsets.numel())[valid]
    contexts = tok[pos][valid]
    return centers.contiguous(), contexts.contiguous()
