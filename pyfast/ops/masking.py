"""Masked-token sampling for BERT-style pretraining, and sparse prediction (run the LM head on chosen positions only).

`mask_tokens` chooses positions (per piece, per whole word, by SpanBERT spans, or an exact count per row) and
replaces 80% with [MASK], 10% with a random non-special id, keeps 10%; labels hold the original id where chosen and
-100 elsewhere. Draws are keyed by (seed, row, column) (see csrc/masking/masking.h), so the result does not depend
on the thread count or on how much padding a row carries. Routed by the tensor's device: CPU tensors run
csrc/masking/masking_cpu.cpp, CUDA tensors csrc/masking/masking_cuda.cu (pyfast/ops/masking_cuda.py; the same
Philox stream, so the same seed gives bit-identical outputs on both, as checked on an H200 on 2026-11-28; a build
without CUDA raises a RuntimeError that says how to rebuild), any other device is masked on the CPU and moved back.
"""
from __future__ import annotations

import functools
import math
from typing import Iterable

import numpy as np
import torch

from .. import _native
from ..rng import check_seed

IGNORE_INDEX = -100
MAX_SPAN_WORDS_LIMIT = 64  # kMaxSpanWords in masking.h

__all__ = ["mask_tokens", "gather_masked", "span_length_distribution", "IGNORE_INDEX"]

_OP = "mask_tokens"


def _check_probability(value, name: str, op: str = _OP) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{op}: {name} must be a float in [0, 1], got {type(value).__name__}")
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{op}: {name} must be in [0, 1], got {value}")
    return value


def check_replace_probabilities(mask_replace_prob, random_replace_prob, op: str = _OP) -> tuple[float, float]:
    mask_replace_prob = _check_probability(mask_replace_prob, "mask_replace_prob", op)
    random_replace_prob = _check_probability(random_replace_prob, "random_replace_prob", op)
    if mask_replace_prob + random_replace_prob > 1.0 + 1e-12:
        raise ValueError(
            f"{op}: mask_replace_prob + random_replace_prob must be <= 1, got {mask_replace_prob} + "
            f"{random_replace_prob} = {mask_replace_prob + random_replace_prob}"
        )
    return mask_replace_prob, random_replace_prob


def _check_int(value, name: str, low: int, high: int | None = None, op: str = _OP) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
            value = int(value)
        else:
            raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value >= high):
        bound = f"[{low}, {high})" if high is not None else f">= {low}"
        raise ValueError(f"{op}: {name} must be {'in ' if high is not None else ''}{bound}, got {value}")
    return int(value)


@functools.lru_cache(maxsize=32)
def _vocab_tables(vocab_size: int, special_ids: tuple[int, ...] | None, mask_token_id: int):
    """(special-id bitset int32 ((V + 31) // 32,) or None, excluded ids int64 sorted): built once per vocabulary.

    Random replacements are drawn from every id except the special ids and [MASK]: HF draws from the whole
    vocabulary and can put [CLS] or [PAD] in the middle of a sentence; BERT's and fairseq's code do not.
    """
    bits = None
    if special_ids is not None:
        words = [0] * ((vocab_size + 31) // 32)
        for i in special_ids:
            words[i >> 5] |= 1 << (i & 31)
        bits = torch.tensor([w - (1 << 32) if w >= 1 << 31 else w for w in words], dtype=torch.int32)
    excluded = torch.tensor(sorted(set(special_ids or ()) | {mask_token_id}), dtype=torch.int64)
    return bits, excluded


def _special_ids_tuple(special_token_ids, vocab_size: int) -> tuple[int, ...] | None:
    if special_token_ids is None:
        return None
    if isinstance(special_token_ids, torch.Tensor):
        if special_token_ids.is_floating_point() or special_token_ids.dtype == torch.bool:
            raise TypeError(f"{_OP}: special_token_ids must hold integers, got {special_token_ids.dtype}")
        key = tuple(special_token_ids.reshape(-1).tolist())
    else:
        key = tuple(special_token_ids)
    try:
        return _checked_special_ids(key, vocab_size)
    except TypeError as exc:
        if "unhashable" not in str(exc):
            raise
        raise TypeError(f"{_OP}: special_token_ids must hold ints") from None


@functools.lru_cache(maxsize=64)
def _checked_special_ids(ids: tuple, vocab_size: int) -> tuple[int, ...]:
    """Validated, sorted, de-duplicated special ids: cached, since a collator passes the same list every step."""
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, int):
            raise TypeError(f"{_OP}: special_token_ids must hold ints, got {type(i).__name__}")
        if not 0 <= i < vocab_size:
            raise ValueError(f"{_OP}: special token id {i} is outside the vocabulary [0, {vocab_size})")
    return tuple(sorted(set(int(i) for i in ids)))


@functools.lru_cache(maxsize=16)
def span_length_distribution(span_p: float = 0.2, max_span_words: int = 10) -> tuple[tuple[float, ...], float]:
    """SpanBERT's span length in words: geometric(span_p) truncated to [1, max_span_words] and renormalised
    (mean 3.8 words for 0.2 and 10). Returns (cdf table as float32 values, P(len <= k+1) for k < max-1; mean)."""
    pmf = [span_p * (1.0 - span_p) ** (k - 1) for k in range(1, max_span_words + 1)]
    total = sum(pmf)
    pmf = [x / total for x in pmf]
    cdf, acc = [], 0.0
    for x in pmf[:-1]:
        acc += x
        cdf.append(float(torch.tensor(acc, dtype=torch.float32)))  # the kernel compares in float32
    mean = sum(k * x for k, x in zip(range(1, max_span_words + 1), pmf))
    return tuple(cdf), mean


def span_start_probability(mlm_probability: float, mean_span_words: float) -> float:
    """Probability of starting a span at an uncovered word so that a long row has mlm_probability of its words
    covered: a renewal process alternating 'skip one word' (1 - q) and 'cover a span' (q, mean m words) covers
    q m / (q m + 1 - q) of the words; solving for q gives the expression below."""
    m = mlm_probability
    return m / (mean_span_words * (1.0 - m) + m)


def _as_row_mask(mask, like: torch.Tensor, name: str, device="cpu") -> torch.Tensor:
    """A (B, L) bool/int tensor -> uint8 on `device` with unit column stride, ready for the kernel."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{_OP}: {name} must be a torch.Tensor, got {type(mask).__name__}")
    if mask.is_floating_point() or mask.is_complex():
        raise TypeError(f"{_OP}: {name} must be a bool or integer tensor, got {mask.dtype}")
    if tuple(mask.shape) != tuple(like.shape):
        raise ValueError(f"{_OP}: {name} must have the shape of input_ids {tuple(like.shape)}, got {tuple(mask.shape)}")
    mask = mask.to(device)
    if mask.dtype == torch.bool:
        mask = mask.view(torch.uint8) if mask.is_contiguous() else mask.contiguous().view(torch.uint8)
    elif mask.dtype != torch.uint8:
        mask = mask != 0
        mask = mask.view(torch.uint8)
    if mask.dim() == 2 and mask.shape[1] > 1 and mask.stride(1) != 1:
        mask = mask.contiguous()
    return mask


def mask_tokens(
    input_ids: torch.Tensor,
    *,
    mask_token_id: int,
    vocab_size: int,
    special_tokens_mask: torch.Tensor | None = None,
    special_token_ids: Iterable[int] | torch.Tensor | None = None,
    mlm_probability: float = 0.15,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    seed: int | None = None,
    word_starts: torch.Tensor | None = None,
    max_predictions: int | None = None,
    span_masking: bool = False,
    span_p: float = 0.2,
    max_span_words: int = 10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose positions to predict and corrupt them, BERT-style. Returns ``(masked_input_ids, labels)``.

    input_ids: (B, L) or (L,) integer ids in [0, vocab_size). A position is never chosen where
    ``special_tokens_mask`` is non-zero or its id is in ``special_token_ids`` (pass the pad id there, or mark
    padding in the mask). Each chosen position becomes ``mask_token_id`` with ``mask_replace_prob``, a random id
    (uniform over the ids that are neither special nor [MASK]) with ``random_replace_prob``, and stays otherwise.
    labels: int64, the original id where chosen and -100 elsewhere. masked_input_ids keeps input_ids' dtype.

    word_starts: (B, L) bool, True at the first piece of each word: whole words are chosen together (a word's
    pieces share its first piece's draw; O(L), no (L, L) tensor). ``max_predictions``: choose exactly
    min(max_predictions, max(1, round(mlm_probability * eligible))) pieces per row (BERT's rule; with words, a
    word that would overflow is skipped, so a row may end slightly under). ``span_masking``: SpanBERT spans of
    geometric(span_p) words truncated to max_span_words, started so that about mlm_probability of the words are
    covered. Same ``seed``, same output; ``seed=None`` draws a fresh one.
    """
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"{_OP}: input_ids must be a torch.Tensor, got {type(input_ids).__name__}")
    if input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
        raise TypeError(f"{_OP}: input_ids must be an integer tensor, got {input_ids.dtype}")
    if input_ids.dim() not in (1, 2):
        raise ValueError(f"{_OP}: input_ids must be (B, L) or (L,), got shape {tuple(input_ids.shape)}")
    vocab_size = _check_int(vocab_size, "vocab_size", 1, 2**32)
    mask_token_id = _check_int(mask_token_id, "mask_token_id", 0, vocab_size)
    mlm_probability = _check_probability(mlm_probability, "mlm_probability")
    mask_replace_prob, random_replace_prob = check_replace_probabilities(mask_replace_prob, random_replace_prob)
    if max_predictions is not None:
        max_predictions = _check_int(max_predictions, "max_predictions", 0)
    if not isinstance(span_masking, bool):
        raise TypeError(f"{_OP}: span_masking must be a bool, got {type(span_masking).__name__}")
    if span_masking:
        if max_predictions is not None:
            raise ValueError(f"{_OP}: span_masking with max_predictions is not supported; use one or the other")
        span_p = _check_probability(span_p, "span_p")
        if span_p == 0.0:
            raise ValueError(f"{_OP}: span_p must be in (0, 1], got 0.0")
        max_span_words = _check_int(max_span_words, "max_span_words", 1, MAX_SPAN_WORDS_LIMIT + 1)
    seed = check_seed(seed, _OP)
    special_ids = _special_ids_tuple(special_token_ids, vocab_size)

    device, dtype, shape = input_ids.device, input_ids.dtype, input_ids.shape
    if device.type == "cuda":
        from .masking_cuda import mask_tokens_cuda  # late: masking_cuda imports this module

        return mask_tokens_cuda(
            input_ids, special_tokens_mask=special_tokens_mask, word_starts=word_starts, vocab_size=vocab_size,
            mask_token_id=mask_token_id, special_ids=special_ids, mlm_probability=mlm_probability,
            mask_replace_prob=mask_replace_prob, random_replace_prob=random_replace_prob,
            max_predictions=max_predictions, span_masking=span_masking, span_p=span_p, max_span_words=max_span_words,
            seed=seed)
    ids = input_ids.to("cpu") if device.type != "cpu" else input_ids
    ids2 = ids.reshape(1, -1) if ids.dim() == 1 else ids
    if ids2.dtype != torch.int64:
        ids2 = ids2.to(torch.int64)
    if ids2.shape[1] > 1 and ids2.stride(1) != 1:
        ids2 = ids2.contiguous()
    special = _as_row_mask(special_tokens_mask, input_ids, "special_tokens_mask") if special_tokens_mask is not None else None
    starts = _as_row_mask(word_starts, input_ids, "word_starts") if word_starts is not None else None
    if special is not None:
        special = special.reshape(ids2.shape)
    if starts is not None:
        starts = starts.reshape(ids2.shape)

    # Pooled outputs: a step that masks the same shapes every call reuses warm buffers instead of
    # page-faulting two fresh mmaps (see pyfast._native.empty): most of the step's time before this.
    out = _native.empty(tuple(ids2.shape), torch.int64)
    labels = _native.empty(tuple(ids2.shape), torch.int64)
    _mask_tokens_into(
        ids2, out, labels, special=special, word_starts=starts, vocab_size=vocab_size, mask_token_id=mask_token_id,
        special_ids=special_ids, mlm_probability=mlm_probability, mask_replace_prob=mask_replace_prob,
        random_replace_prob=random_replace_prob, max_predictions=max_predictions, span_masking=span_masking,
        span_p=span_p, max_span_words=max_span_words, seed=seed,
    )
    if out.dim() != len(shape):
        out = out.reshape(shape)
        labels = labels.reshape(shape)
    if out.dtype != dtype:
        out = out.to(dtype)
    if device.type != "cpu":
        out, labels = out.to(device), labels.to(device)
    return out, labels


def _scalar_args(vocab_size: int, excluded: torch.Tensor, mask_replace_prob: float, random_replace_prob: float,
                 span_masking: bool, span_p: float, max_span_words: int, mlm_probability: float):
    """(mask_or_random_prob summed in float32, span cdf table, span start probability): the same for CPU and GPU."""
    mask_or_random = float(np.float32(mask_replace_prob) + np.float32(random_replace_prob))  # summed in float32
    if excluded.numel() >= vocab_size and random_replace_prob > 0:
        raise ValueError(f"{_OP}: random_replace_prob > 0 but every id in the vocabulary is special or [MASK]")
    cdf: tuple[float, ...] = ()
    start_prob = 0.0
    if span_masking:
        cdf, mean = span_length_distribution(span_p, max_span_words)
        start_prob = span_start_probability(mlm_probability, mean)
    return mask_or_random, cdf, start_prob


def _mask_tokens_into(
    ids: torch.Tensor, out: torch.Tensor, labels: torch.Tensor, *, special, word_starts, vocab_size: int,
    mask_token_id: int, special_ids, mlm_probability: float, mask_replace_prob: float, random_replace_prob: float,
    max_predictions, span_masking: bool, span_p: float, max_span_words: int, seed: int,
) -> None:
    """The native call on validated tensors. ids: (B, L) int64 CPU with unit column stride; out, labels: (B, L)
    int64 contiguous (out may be ids itself); special, word_starts: (B, L) uint8 or None."""
    special_bits, excluded = _vocab_tables(vocab_size, special_ids, mask_token_id)
    batch, seq_len = ids.shape
    mask_or_random, cdf, start_prob = _scalar_args(vocab_size, excluded, mask_replace_prob, random_replace_prob,
                                                   span_masking, span_p, max_span_words, mlm_probability)
    _native.cpu().mask_tokens_(
        batch, seq_len, _native.ptr(ids), ids.stride(0),
        _native.ptr(special) if special is not None else 0, special.stride(0) if special is not None else 0,
        _native.ptr(special_bits) if special_bits is not None else 0,
        _native.ptr(word_starts) if word_starts is not None else 0,
        word_starts.stride(0) if word_starts is not None else 0,
        _native.ptr(excluded), excluded.numel(), vocab_size, mask_token_id,
        mlm_probability, mask_replace_prob, mask_or_random,
        -1 if max_predictions is None else max_predictions, span_masking, start_prob, list(cdf), seed,
        _native.ptr(out), _native.ptr(labels),
    )


def gather_masked(hidden: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX):
    """Sparse prediction: the hidden states and labels at the chosen positions only.

    hidden: (..., H) whose leading shape equals labels' shape (e.g. (B, L, H) and (B, L)). Returns
    ``(hidden_at_masked (M, H), labels_at_masked (M,))`` in row-major order, M = number of labels != ignore_index.
    Differentiable in hidden (an index_select), so the LM head's (M, H) x (H, V) GEMM replaces a (B L, H) x (H, V)
    one: about 1 / mlm_probability less work in the largest matmul of BERT pretraining.
    """
    if not isinstance(hidden, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise TypeError("gather_masked: hidden and labels must be torch.Tensors")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"gather_masked: labels must be an integer tensor, got {labels.dtype}")
    if hidden.dim() != labels.dim() + 1 or tuple(hidden.shape[:-1]) != tuple(labels.shape):
        raise ValueError(
            f"gather_masked: hidden must be labels' shape plus a feature dimension, got hidden {tuple(hidden.shape)} "
            f"and labels {tuple(labels.shape)}"
        )
    if hidden.device != labels.device:
        raise ValueError(f"gather_masked: hidden is on {hidden.device} but labels are on {labels.device}")
    flat_labels = labels.reshape(-1)
    index = torch.nonzero(flat_labels != ignore_index).reshape(-1)
    return hidden.reshape(-1, hidden.shape[-1]).index_select(0, index), flat_labels.index_select(0, index)
