"""The CUDA path of ``pyfast.mask_tokens`` (issue #8): validated arguments in, device tensors out.

``mask_tokens`` routes CUDA tensors here after validating its arguments; the kernel is csrc/masking/masking_cuda.cu
and follows masking.h's keying, so the same seed gives bit-identical ``(masked_input_ids, labels)`` to the CPU
kernel in every mode (per piece, whole words, exact count, spans). Ids are bounds-checked on the device: a bad id
never indexes anything; the kernel records the first bad position in an error flag, read back here (one
device-to-host sync per call, the price of raising the CPU's ValueError) before the outputs are returned.
Status: compiled for sm_80 / sm_90; tests/test_cuda.py passed on an H200 (2026-11-28), outputs bit-identical to the CPU.
"""
from __future__ import annotations

import functools

import torch

from .. import _native
from .masking import _OP, _as_row_mask, _scalar_args, _vocab_tables

__all__ = ["mask_tokens_cuda"]

_NO_ERROR = torch.iinfo(torch.int64).max  # the error flag's "nothing wrong"; any flat index is smaller


@functools.lru_cache(maxsize=32)
def _device_tables(vocab_size: int, special_ids, mask_token_id: int, device: torch.device):
    """_vocab_tables copied to the device once per (vocabulary, device): a few KB, not re-sent every batch."""
    bits, excluded = _vocab_tables(vocab_size, special_ids, mask_token_id)
    return (bits.to(device) if bits is not None else None), excluded.to(device)


def mask_tokens_cuda(input_ids: torch.Tensor, *, special_tokens_mask, word_starts, vocab_size: int, mask_token_id: int,
                     special_ids, mlm_probability: float, mask_replace_prob: float, random_replace_prob: float,
                     max_predictions, span_masking: bool, span_p: float, max_span_words: int, seed: int):
    """mask_tokens for a CUDA input_ids whose scalar arguments mask_tokens has already validated."""
    native = _native.cuda()  # first: a build without CUDA raises its "rebuild with PYFAST_CUDA=ON" here
    device, dtype, shape = input_ids.device, input_ids.dtype, input_ids.shape
    ids = input_ids.reshape(1, -1) if input_ids.dim() == 1 else input_ids
    if ids.dtype != torch.int64:
        ids = ids.to(torch.int64)
    if ids.shape[1] > 1 and ids.stride(1) != 1:
        ids = ids.contiguous()
    special = word = None
    if special_tokens_mask is not None:
        special = _as_row_mask(special_tokens_mask, input_ids, "special_tokens_mask", device).reshape(ids.shape)
    if word_starts is not None:
        word = _as_row_mask(word_starts, input_ids, "word_starts", device).reshape(ids.shape)
    batch, seq_len = ids.shape
    bits, excluded = _device_tables(vocab_size, special_ids, mask_token_id, device)
    mask_or_random, cdf, start_prob = _scalar_args(vocab_size, excluded, mask_replace_prob, random_replace_prob,
                                                   span_masking, span_p, max_span_words, mlm_probability)
    out = torch.empty((batch, seq_len), dtype=torch.int64, device=device)
    labels = torch.empty((batch, seq_len), dtype=torch.int64, device=device)
    error = torch.full((1,), _NO_ERROR, dtype=torch.int64, device=device)
    # Scratch for the per-row word lists (exact count, spans) and the exact-count sort keys.
    keys = first = last = None
    keys_stride = 0
    if max_predictions is not None or span_masking:
        first = torch.empty((batch, seq_len), dtype=torch.int32, device=device)
        last = torch.empty((batch, seq_len), dtype=torch.int32, device=device)
    if max_predictions is not None:
        keys_stride = 1 << max(seq_len - 1, 0).bit_length()  # next power of two >= L (the bitonic sort's length)
        keys = torch.empty((batch, keys_stride), dtype=torch.int64, device=device)
    if batch and seq_len:
        with torch.cuda.device(device):
            native.mask_tokens(
                batch, seq_len, _native.ptr(ids), ids.stride(0),
                _native.ptr(special) if special is not None else 0, special.stride(0) if special is not None else 0,
                _native.ptr(bits) if bits is not None else 0,
                _native.ptr(word) if word is not None else 0, word.stride(0) if word is not None else 0,
                _native.ptr(excluded), excluded.numel(), vocab_size, mask_token_id,
                mlm_probability, mask_replace_prob, mask_or_random,
                -1 if max_predictions is None else max_predictions, span_masking, start_prob, list(cdf), seed,
                _native.ptr(out), _native.ptr(labels), _native.ptr(error),
                _native.ptr(keys) if keys is not None else 0, keys_stride,
                _native.ptr(first) if first is not None else 0, _native.ptr(last) if last is not None else 0,
                int(torch.cuda.current_stream(device).cuda_stream),
            )
        bad = int(error.item())  # syncs the stream
        if bad != _NO_ERROR:
            row, col = divmod(bad, seq_len)
            raise ValueError(f"{_OP}: input_ids[{row}, {col}] = {int(ids[row, col])} is outside the vocabulary "
                             f"[0, {vocab_size})")
    out = out.reshape(shape)
    labels = labels.reshape(shape)
    if out.dtype != dtype:
        out = out.to(dtype)
    return out, labels
