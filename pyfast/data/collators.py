"""Collators: a drop-in for transformers' DataCollatorForLanguageModeling built on pyfast.ops.mask_tokens.

Same constructor and output keys as HF's (input_ids, attention_mask, labels, token_type_ids when given). Padding
is one flat conversion plus a boolean scatter (no per-row Python loop beyond reading the lists), specials come
from the tokenizer's ids through the kernel's bitset, random replacements never draw specials. Limits: PyTorch
tensors only (return_tensors="pt"); rows are right- or left-padded as the tokenizer's padding_side says.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np
import torch

from .. import _native, rng
from ..ops.masking import IGNORE_INDEX, check_probability, check_replace_probabilities, check_special_token_ids, \
    mask_tokens

__all__ = ["DataCollatorForLanguageModeling", "word_starts_from_continuation"]

_OP = "DataCollatorForLanguageModeling"
_COLLATE_STREAM = 0x434F4C4C  # "COLL": the Philox stream that derives per-call seeds


def word_starts_from_continuation(input_ids: torch.Tensor, is_continuation: torch.Tensor) -> torch.Tensor:
    """(B, L) bool, True where a piece starts a word: not a WordPiece continuation ("##..."). is_continuation is a
    (V,) bool table over the vocabulary; one gather, O(B L)."""
    return ~is_continuation[input_ids]


def _to_flat(rows) -> tuple[torch.Tensor, torch.Tensor]:
    """A list of 1-D sequences (lists, tuples, numpy arrays or tensors) -> (flat int64 values, lengths)."""
    if isinstance(rows[0], torch.Tensor):
        lengths = torch.tensor([r.shape[0] for r in rows], dtype=torch.int64)
        return torch.cat([r.reshape(-1).to(torch.int64) for r in rows]), lengths
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    if isinstance(rows[0], np.ndarray):
        flat = np.concatenate(rows).astype(np.int64, copy=False)
    else:
        # One C-level pass over all values: np.fromiter over a chained iterator, no per-row tensor.
        flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
    return torch.from_numpy(flat), torch.from_numpy(lengths)


def _pad(flat: torch.Tensor, lengths: torch.Tensor, width: int, value: int, left: bool) -> torch.Tensor:
    """Scatter flat row-major values into a (B, width) tensor filled with `value`, vectorised (a boolean mask)."""
    B = lengths.shape[0]
    if bool((lengths == width).all()):
        return flat.reshape(B, width)
    out = _native.empty((B, width), flat.dtype).fill_(value)  # pooled (see pyfast._native.empty)
    cols = torch.arange(width)
    keep = cols[None, :] >= (width - lengths)[:, None] if left else cols[None, :] < lengths[:, None]
    out[keep] = flat
    return out


class DataCollatorForLanguageModeling:
    """Masked-LM (or causal-LM, ``mlm=False``) batches from tokenized examples, like HF's collator.

    ``seed``: every call draws its masks from a per-call seed derived from (seed, epoch, DataLoader worker id,
    call counter) through Philox, so runs are reproducible, workers never share masks, and each call differs.
    HF seeds worker w with ``seed + w`` and, in non-persistent workers, repeats the same masks every epoch;
    here call ``set_epoch(epoch)`` before each epoch (as with DistributedSampler) when workers are not
    persistent; with persistent workers or ``num_workers=0`` the call counter already moves on. ``seed=None``
    draws each call's seed from torch's global RNG (so torch.manual_seed and DataLoader worker seeding apply).
    ``whole_word_mask``: words from WordPiece ``##`` continuations (or ``word_starts`` / ``word_ids`` in the
    features); unlike HF it keeps the 80/10/10 split. ``max_predictions`` and ``span_masking`` pass through to
    mask_tokens.
    """

    def __init__(self, tokenizer, mlm: bool = True, mlm_probability: float = 0.15, mask_replace_prob: float = 0.8,
                 random_replace_prob: float = 0.1, pad_to_multiple_of: int | None = None, return_tensors: str = "pt",
                 seed: int | None = None, whole_word_mask: bool = False, max_predictions: int | None = None,
                 span_masking: bool = False):
        if return_tensors != "pt":
            raise ValueError(f"{_OP}: only return_tensors='pt' is supported, got {return_tensors!r}")
        self.tokenizer = tokenizer
        self.mlm = bool(mlm)
        self.mlm_probability = check_probability(mlm_probability, "mlm_probability", _OP)
        self.mask_replace_prob, self.random_replace_prob = check_replace_probabilities(
            mask_replace_prob, random_replace_prob, _OP)
        if pad_to_multiple_of is not None and (not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1):
            raise ValueError(f"{_OP}: pad_to_multiple_of must be a positive int or None, got {pad_to_multiple_of!r}")
        self.pad_to_multiple_of = pad_to_multiple_of
        self.return_tensors = return_tensors
        self.seed = None if seed is None else rng.check_seed(seed, _OP)
        self.whole_word_mask = bool(whole_word_mask)
        self.max_predictions = max_predictions
        self.span_masking = bool(span_masking)
        if self.mlm and getattr(tokenizer, "mask_token_id", None) is None:
            raise ValueError(f"{_OP}: the tokenizer has no mask token; pass mlm=False for causal language modeling")
        if not self.mlm and self.whole_word_mask:
            raise ValueError(f"{_OP}: whole_word_mask needs mlm=True")
        self.vocab_size = len(tokenizer)
        self.pad_token_id = tokenizer.pad_token_id
        self.mask_token_id = tokenizer.mask_token_id if self.mlm else None
        self.special_ids = check_special_token_ids(list(tokenizer.all_special_ids), self.vocab_size, _OP)
        self.left_pad = getattr(tokenizer, "padding_side", "right") == "left"
        self._is_continuation = None
        if self.whole_word_mask:
            table = torch.zeros(self.vocab_size, dtype=torch.bool)
            for token, i in tokenizer.get_vocab().items():
                if token.startswith("##") and i < self.vocab_size:
                    table[i] = True
            self._is_continuation = table
        self.epoch = 0
        self._calls = 0

    def set_epoch(self, epoch: int) -> None:
        """Mix the epoch into every following call's seed (needed for non-persistent DataLoader workers)."""
        self.epoch = int(epoch)

    def _call_seed(self) -> int:
        """The kernel seed of this call: Philox of (call counter, worker id, epoch) under key `seed`."""
        self._calls += 1
        if self.seed is None:
            return int(torch.randint(0, 2**62, (1,)).item())
        info = torch.utils.data.get_worker_info()
        worker = 0 if info is None else info.id + 1
        words = rng.philox4x32_10(
            [self._calls & 0xFFFFFFFF, self.epoch & 0xFFFFFFFF, worker & 0xFFFFFFFF, _COLLATE_STREAM],
            [self.seed & 0xFFFFFFFF, self.seed >> 32])
        return words[0] | (words[1] << 32)

    def _width(self, lengths: torch.Tensor) -> int:
        width = int(lengths.max()) if lengths.numel() else 0
        m = self.pad_to_multiple_of
        if m is not None and width % m:
            width += m - width % m
        return width

    def __call__(self, features, return_tensors: str | None = None) -> dict:
        if return_tensors not in (None, "pt"):
            raise ValueError(f"{_OP}: only return_tensors='pt' is supported, got {return_tensors!r}")
        if len(features) == 0:
            raise ValueError(f"{_OP}: cannot collate an empty list of features")
        if isinstance(features[0], Mapping):
            rows = [f["input_ids"] for f in features]
        else:
            features, rows = None, list(features)
        flat, lengths = _to_flat(rows)
        if self.pad_token_id is None and bool((lengths != lengths[0]).any()):
            raise ValueError(f"{_OP}: rows differ in length and the tokenizer has no pad token")
        width = self._width(lengths)
        pad_id = self.pad_token_id if self.pad_token_id is not None else 0
        input_ids = _pad(flat, lengths, width, pad_id, self.left_pad)
        batch = {"input_ids": input_ids}
        is_pad = _pad(torch.zeros_like(flat, dtype=torch.bool), lengths, width, True, self.left_pad)
        special_mask = None
        word_starts = None
        if features is not None:
            keys = features[0].keys()
            if "attention_mask" in keys:
                attn = _pad(_to_flat([f["attention_mask"] for f in features])[0], lengths, width, 0, self.left_pad)
                is_pad |= attn == 0
            else:
                attn = (~is_pad).to(torch.int64)
            batch["attention_mask"] = attn
            if "token_type_ids" in keys:
                batch["token_type_ids"] = _pad(_to_flat([f["token_type_ids"] for f in features])[0], lengths,
                                               width, getattr(self.tokenizer, "pad_token_type_id", 0), self.left_pad)
            if "special_tokens_mask" in keys:
                special_mask = _pad(_to_flat([f["special_tokens_mask"] for f in features])[0], lengths, width, 1,
                                    self.left_pad).bool()
            if "word_ids" in keys:  # HF BatchEncoding.word_ids(): None for specials
                flat_w = _to_flat([[-1 if w is None else w for w in f["word_ids"]] for f in features])[0]
                w = _pad(flat_w, lengths, width, -1, self.left_pad)
                prev = torch.cat([torch.full((w.shape[0], 1), -2, dtype=w.dtype), w[:, :-1]], dim=1)
                word_starts = w != prev
            elif "word_starts" in keys:
                word_starts = _pad(_to_flat([f["word_starts"] for f in features])[0], lengths, width, 1,
                                   self.left_pad).bool()
            for key in keys:
                if key in ("input_ids", "attention_mask", "token_type_ids", "special_tokens_mask", "word_ids",
                           "word_starts", "offset_mapping", "labels"):
                    continue
                batch[key] = torch.as_tensor(np.asarray([f[key] for f in features]))
        if not self.mlm:
            labels = input_ids.clone()
            labels[is_pad] = IGNORE_INDEX
            batch["labels"] = labels
            return batch
        if self.whole_word_mask and word_starts is None:
            word_starts = word_starts_from_continuation(input_ids, self._is_continuation)
        # Padding is never chosen: its positions join the special mask (the pad id is also a special id).
        special_mask = is_pad if special_mask is None else (special_mask | is_pad)
        B, L = input_ids.shape
        if B and L:
            # The op writes pooled buffers (see pyfast._native.empty), so a step of the same shapes reuses warm memory.
            batch["input_ids"], labels = mask_tokens(
                input_ids, mask_token_id=self.mask_token_id, vocab_size=self.vocab_size,
                special_tokens_mask=special_mask, special_token_ids=self.special_ids,
                mlm_probability=self.mlm_probability, mask_replace_prob=self.mask_replace_prob,
                random_replace_prob=self.random_replace_prob, seed=self._call_seed(), word_starts=word_starts,
                max_predictions=self.max_predictions, span_masking=self.span_masking,
            )
        else:
            labels = torch.full((B, L), IGNORE_INDEX, dtype=torch.int64)
        batch["labels"] = labels
        return batch
