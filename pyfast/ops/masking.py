"""Masked-token sampling for BERT-style pretraining, and sparse prediction (run the LM head on chosen positions only).

`mask_tokens` chooses positions (per piece, per whole word, by SpanBERT spans, or an exact count per row) and
replaces 80% with [MASK], 10% with a random non-special id, keeps 10%; labels hold the original id where chosen and
-100 elsewhere. Draws are keyed by (seed, row, column) (see csrc/masking/masking.h), so the result does not depend
on the thread count or on how much padding a row carries.

The kernel is the custom op ``pyfast::mask_tokens`` on (B, L) int64 ids, routed by the tensor's device: CPU tensors
run csrc/masking/masking_cpu.cpp, CUDA tensors csrc/masking/masking_cuda.cu. Both follow masking.h's keying, so the
same seed gives bit-identical ``(masked_input_ids, labels)`` on both, in every mode; a build without CUDA raises a
RuntimeError that says how to rebuild. On CUDA, ids are bounds-checked on the device (a bad id never indexes
anything) and the first bad position is read back: one device-to-host sync per call, the price of raising the CPU's
ValueError. ``mask_tokens`` masks tensors on any other device on the CPU and moves the result back. The outputs are
integers: there is no gradient to register.
"""
from __future__ import annotations

import functools
from typing import Iterable, NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor

from .. import _native
from ..rng import check_seed

IGNORE_INDEX = -100
MAX_SPAN_WORDS_LIMIT = 64  # kMaxSpanWords in masking.h

__all__ = ["mask_tokens", "gather_masked", "span_length_distribution", "IGNORE_INDEX"]

_OP = "mask_tokens"
_NO_ERROR = torch.iinfo(torch.int64).max  # the CUDA error flag's "nothing wrong"; any flat index is smaller


# ---- validation and packing ----------------------------------------------------------------------------------------

def check_probability(value, name: str, op: str = _OP) -> float:
    """value as a float in [0, 1]; a TypeError / ValueError naming `op` and `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{op}: {name} must be a float in [0, 1], got {type(value).__name__}")
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{op}: {name} must be in [0, 1], got {value}")
    return value


def check_replace_probabilities(mask_replace_prob, random_replace_prob, op: str = _OP) -> tuple[float, float]:
    """Both probabilities checked, and their sum <= 1."""
    mask_replace_prob = check_probability(mask_replace_prob, "mask_replace_prob", op)
    random_replace_prob = check_probability(random_replace_prob, "random_replace_prob", op)
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


def check_special_token_ids(special_token_ids, vocab_size: int, op: str = _OP) -> tuple[int, ...] | None:
    """special_token_ids (ints or an integer tensor, or None) as a sorted, de-duplicated tuple of ids in
    [0, vocab_size), or None; cached, since a collator passes the same list every step."""
    if special_token_ids is None:
        return None
    if isinstance(special_token_ids, torch.Tensor):
        if special_token_ids.is_floating_point() or special_token_ids.dtype == torch.bool:
            raise TypeError(f"{op}: special_token_ids must hold integers, got {special_token_ids.dtype}")
        key = tuple(special_token_ids.reshape(-1).tolist())
    else:
        key = tuple(special_token_ids)
    try:
        return _checked_special_ids(key, vocab_size, op)
    except TypeError as exc:
        if "unhashable" not in str(exc):
            raise
        raise TypeError(f"{op}: special_token_ids must hold ints") from None


@functools.lru_cache(maxsize=64)
def _checked_special_ids(ids: tuple, vocab_size: int, op: str) -> tuple[int, ...]:
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, int):
            raise TypeError(f"{op}: special_token_ids must hold ints, got {type(i).__name__}")
        if not 0 <= i < vocab_size:
            raise ValueError(f"{op}: special token id {i} is outside the vocabulary [0, {vocab_size})")
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


def _as_row_mask(mask, like: torch.Tensor, name: str, device) -> torch.Tensor:
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


class _Tables(NamedTuple):
    """What the kernels read besides the batch, built once per configuration and device."""
    special_id_bits: Optional[Tensor]  # ((V + 31) // 32,) int32 bitset of the special ids, or None
    excluded_ids: Tensor               # int64, sorted: the special ids and [MASK], never drawn as random tokens
    span_length_cdf: Optional[Tensor]  # (max_span_words - 1,) float32 on the host (CUDA folds it into its launch)
    mean_span_words: float


@functools.lru_cache(maxsize=32)
def _vocab_tables(vocab_size: int, special_ids: tuple[int, ...] | None, mask_token_id: int, device: torch.device):
    """(special-id bitset or None, excluded ids) on `device`: a few KB, built and copied once per vocabulary.

    Random replacements are drawn from every id except the special ids and [MASK]: HF draws from the whole
    vocabulary and can put [CLS] or [PAD] in the middle of a sentence; BERT's and fairseq's code do not.
    """
    bits = None
    if special_ids is not None:
        words = [0] * ((vocab_size + 31) // 32)
        for i in special_ids:
            words[i >> 5] |= 1 << (i & 31)
        bits = torch.tensor([w - (1 << 32) if w >= 1 << 31 else w for w in words], dtype=torch.int32).to(device)
    excluded = torch.tensor(sorted(set(special_ids or ()) | {mask_token_id}), dtype=torch.int64).to(device)
    return bits, excluded


@functools.lru_cache(maxsize=16)
def _span_table(span_p: float, max_span_words: int) -> tuple[Tensor, float]:
    cdf, mean = span_length_distribution(span_p, max_span_words)
    return torch.tensor(cdf, dtype=torch.float32), mean


def _tables(device: torch.device, special_token_ids: list[int], vocab_size: int, mask_token_id: int,
            span_masking: bool, span_p: float, max_span_words: int) -> _Tables:
    special_ids = tuple(special_token_ids) if special_token_ids else None
    bits, excluded = _vocab_tables(vocab_size, special_ids, mask_token_id, device)
    cdf, mean = _span_table(span_p, max_span_words) if span_masking else (None, 0.0)
    return _Tables(bits, excluded, cdf, mean)


def _pack_mask_tokens(native, input_ids: Tensor, special_mask: Optional[Tensor], word_starts: Optional[Tensor],
                      tables: _Tables, out: Tensor, labels: Tensor, vocab_size: int, mask_token_id: int,
                      mlm_probability: float, mask_replace_prob: float, random_replace_prob: float,
                      max_predictions: int, span_masking: bool, max_span_words: int, seed: int):
    """native.MaskTokensParams for validated tensors: input_ids (B, L) int64 with unit column stride; special_mask,
    word_starts (B, L) uint8 likewise, or None; out, labels (B, L) int64 contiguous. The caller keeps `tables`
    (and the tensors) alive until the kernel returns: the params hold raw pointers."""
    p = native.MaskTokensParams()
    p.batch, p.seq_len = input_ids.shape
    p.input_ids, p.ids_row_stride = _native.ptr(input_ids), input_ids.stride(0)
    if special_mask is not None:
        p.special_mask, p.special_row_stride = _native.ptr(special_mask), special_mask.stride(0)
    if word_starts is not None:
        p.word_starts, p.word_starts_row_stride = _native.ptr(word_starts), word_starts.stride(0)
    if tables.special_id_bits is not None:
        p.special_id_bits = _native.ptr(tables.special_id_bits)
    p.excluded_ids, p.num_excluded_ids = _native.ptr(tables.excluded_ids), tables.excluded_ids.numel()
    p.vocab_size, p.mask_token_id = vocab_size, mask_token_id
    p.mlm_probability, p.mask_replace_prob = mlm_probability, mask_replace_prob
    p.mask_or_random_prob = float(np.float32(mask_replace_prob) + np.float32(random_replace_prob))  # float32 sum
    p.max_predictions = max_predictions
    if span_masking:
        p.span = 1
        p.span_start_prob = span_start_probability(mlm_probability, tables.mean_span_words)
        p.max_span_words = max_span_words
        p.span_length_cdf = _native.ptr(tables.span_length_cdf)
    p.seed = seed & 0xFFFF_FFFF_FFFF_FFFF  # the op's int64 back to the kernel's uint64
    p.out_ids, p.labels = _native.ptr(out), _native.ptr(labels)
    return p


# ---- the custom op ---------------------------------------------------------------------------------------------------

@torch.library.custom_op("pyfast::mask_tokens", mutates_args=())
def mask_tokens_op(
    input_ids: Tensor, special_mask: Optional[Tensor], word_starts: Optional[Tensor], special_token_ids: list[int],
    vocab_size: int, mask_token_id: int, mlm_probability: float, mask_replace_prob: float,
    random_replace_prob: float, max_predictions: int, span_masking: bool, span_p: float, max_span_words: int,
    seed: int,
) -> tuple[Tensor, Tensor]:
    """(masked ids, labels), both (B, L) int64, for validated arguments: input_ids (B, L) int64 with unit column
    stride, special_mask / word_starts (B, L) uint8 on its device or None, special_token_ids sorted and unique
    ([] for none), max_predictions -1 for Bernoulli choice, seed a uint64 reinterpreted as int64 (custom-op ints
    are int64). mask_tokens validates and normalises; call that."""
    raise NotImplementedError(f"pyfast::mask_tokens: no kernel for device {input_ids.device.type}")


@mask_tokens_op.register_fake
def _(input_ids, special_mask, word_starts, special_token_ids, vocab_size, mask_token_id, mlm_probability,
      mask_replace_prob, random_replace_prob, max_predictions, span_masking, span_p, max_span_words, seed):
    shape = tuple(input_ids.shape)
    return input_ids.new_empty(shape, dtype=torch.int64), input_ids.new_empty(shape, dtype=torch.int64)


@mask_tokens_op.register_kernel("cpu")
def _mask_tokens_cpu(input_ids, special_mask, word_starts, special_token_ids, vocab_size, mask_token_id,
                     mlm_probability, mask_replace_prob, random_replace_prob, max_predictions, span_masking, span_p,
                     max_span_words, seed):
    native = _native.cpu()
    tables = _tables(input_ids.device, special_token_ids, vocab_size, mask_token_id, span_masking, span_p,
                     max_span_words)
    # Pooled outputs: a step that masks the same shapes every call reuses warm buffers instead of
    # page-faulting two fresh mmaps (see pyfast._native.empty): most of the step's time before this.
    out = _native.empty(tuple(input_ids.shape), torch.int64)
    labels = _native.empty(tuple(input_ids.shape), torch.int64)
    native.mask_tokens(_pack_mask_tokens(
        native, input_ids, special_mask, word_starts, tables, out, labels, vocab_size, mask_token_id,
        mlm_probability, mask_replace_prob, random_replace_prob, max_predictions, span_masking, max_span_words, seed))
    return out, labels


@mask_tokens_op.register_kernel("cuda")
def _mask_tokens_cuda(input_ids, special_mask, word_starts, special_token_ids, vocab_size, mask_token_id,
                      mlm_probability, mask_replace_prob, random_replace_prob, max_predictions, span_masking, span_p,
                      max_span_words, seed):
    native = _native.cuda()  # first: a build without CUDA raises its "rebuild with PYFAST_CUDA=ON" here
    device = input_ids.device
    batch, seq_len = input_ids.shape
    tables = _tables(device, special_token_ids, vocab_size, mask_token_id, span_masking, span_p, max_span_words)
    out = torch.empty((batch, seq_len), dtype=torch.int64, device=device)
    labels = torch.empty((batch, seq_len), dtype=torch.int64, device=device)
    p = _pack_mask_tokens(native, input_ids, special_mask, word_starts, tables, out, labels, vocab_size,
                          mask_token_id, mlm_probability, mask_replace_prob, random_replace_prob, max_predictions,
                          span_masking, max_span_words, seed)
    # Scratch: the error flag, the per-row word lists (exact count, spans) and the exact-count sort keys.
    error = torch.full((1,), _NO_ERROR, dtype=torch.int64, device=device)
    scratch = native.MaskTokensCudaScratch()
    scratch.error = _native.ptr(error)
    if max_predictions >= 0 or span_masking:
        first = torch.empty((batch, seq_len), dtype=torch.int32, device=device)
        last = torch.empty((batch, seq_len), dtype=torch.int32, device=device)
        scratch.word_first, scratch.word_last = _native.ptr(first), _native.ptr(last)
    if max_predictions >= 0:
        keys_stride = 1 << max(seq_len - 1, 0).bit_length()  # next power of two >= L (the bitonic sort's length)
        keys = torch.empty((batch, keys_stride), dtype=torch.int64, device=device)
        scratch.keys, scratch.keys_row_stride = _native.ptr(keys), keys_stride
    if batch and seq_len:
        with torch.cuda.device(device):
            native.mask_tokens(p, scratch, _native.stream(input_ids))
        bad = int(error.item())  # syncs the stream
        if bad != _NO_ERROR:
            row, col = divmod(bad, seq_len)
            raise ValueError(f"{_OP}: input_ids[{row}, {col}] = {int(input_ids[row, col])} is outside the vocabulary "
                             f"[0, {vocab_size})")
    return out, labels


KERNELS = ((mask_tokens_op, _mask_tokens_cpu, _mask_tokens_cuda),)


# ---- public functions ------------------------------------------------------------------------------------------------

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
    mlm_probability = check_probability(mlm_probability, "mlm_probability")
    mask_replace_prob, random_replace_prob = check_replace_probabilities(mask_replace_prob, random_replace_prob)
    if max_predictions is not None:
        max_predictions = _check_int(max_predictions, "max_predictions", 0)
    if not isinstance(span_masking, bool):
        raise TypeError(f"{_OP}: span_masking must be a bool, got {type(span_masking).__name__}")
    if span_masking:
        if max_predictions is not None:
            raise ValueError(f"{_OP}: span_masking with max_predictions is not supported; use one or the other")
        span_p = check_probability(span_p, "span_p")
        if span_p == 0.0:
            raise ValueError(f"{_OP}: span_p must be in (0, 1], got 0.0")
        max_span_words = _check_int(max_span_words, "max_span_words", 1, MAX_SPAN_WORDS_LIMIT + 1)
    else:
        span_p, max_span_words = 0.2, 10  # unused without spans
    seed = check_seed(seed, _OP)
    special_ids = check_special_token_ids(special_token_ids, vocab_size)

    device, dtype, shape = input_ids.device, input_ids.dtype, input_ids.shape
    run_on = device if device.type in ("cpu", "cuda") else torch.device("cpu")
    ids = input_ids.to(run_on) if run_on != device else input_ids
    ids = ids.reshape(1, -1) if ids.dim() == 1 else ids
    if ids.dtype != torch.int64:
        ids = ids.to(torch.int64)
    if ids.shape[1] > 1 and ids.stride(1) != 1:
        ids = ids.contiguous()
    special = starts = None
    if special_tokens_mask is not None:
        special = _as_row_mask(special_tokens_mask, input_ids, "special_tokens_mask", run_on).reshape(ids.shape)
    if word_starts is not None:
        starts = _as_row_mask(word_starts, input_ids, "word_starts", run_on).reshape(ids.shape)
    if random_replace_prob > 0 and len(set(special_ids or ()) | {mask_token_id}) >= vocab_size:
        raise ValueError(f"{_OP}: random_replace_prob > 0 but every id in the vocabulary is special or [MASK]")

    out, labels = mask_tokens_op(
        ids, special, starts, list(special_ids or ()), vocab_size, mask_token_id, mlm_probability,
        mask_replace_prob, random_replace_prob, -1 if max_predictions is None else max_predictions, span_masking,
        span_p, max_span_words, seed - 2**64 if seed >= 2**63 else seed)
    if out.dim() != len(shape):
        out = out.reshape(shape)
        labels = labels.reshape(shape)
    if out.dtype != dtype:
        out = out.to(dtype)
    if run_on != device:
        out, labels = out.to(device), labels.to(device)
    return out, labels


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
    rows = hidden.reshape(flat_labels.numel(), hidden.shape[-1])  # not -1: ambiguous when H = 0
    return rows.index_select(0, index), flat_labels.index_select(0, index)
