"""Collators: drop-ins for transformers' DataCollatorForLanguageModeling (padded) and, for padding-free training,
an MLM version of DataCollatorWithFlattening; both built on pyfast.ops.mask_tokens.

Same constructor, call signature and output keys as HF's (input_ids, attention_mask, labels, token_type_ids when
given), PyTorch tensors (return_tensors="pt") or numpy arrays ("np"). Padding is one flat conversion plus a boolean
scatter (no per-row Python loop beyond reading the lists), specials come from the tokenizer's ids through the
kernel's bitset, random replacements never draw specials. Rows are right- or left-padded as the tokenizer's
padding_side says; the flattening collator packs the rows into one (1, total) row with the boundaries of
flash-attn's varlen layout.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np
import torch

from .. import _native, rng
from ..ops.masking import IGNORE_INDEX, check_probability, check_replace_probabilities, check_special_token_ids, \
    mask_tokens

__all__ = ["DataCollatorForLanguageModeling", "DataCollatorForMLMWithFlattening", "word_starts_from_continuation",
           "word_starts_from_offsets"]

_OP = "DataCollatorForLanguageModeling"
_FLAT_OP = "DataCollatorForMLMWithFlattening"
_COLLATE_STREAM = 0x434F4C4C  # "COLL": the Philox stream that derives per-call seeds
_RETURN_TENSORS = ("pt", "np")
# Feature keys the collator reads itself; every other key is stacked per example (next_sentence_label, ...).
_TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids", "special_tokens_mask", "word_ids", "word_starts",
               "offset_mapping", "labels")


def word_starts_from_continuation(input_ids: torch.Tensor, is_continuation: torch.Tensor) -> torch.Tensor:
    """(B, L) bool, True where a piece starts a word: not a WordPiece continuation ("##..."). is_continuation is a
    (V,) bool table over the vocabulary; one gather, O(B L)."""
    return ~is_continuation[input_ids]


def word_starts_from_offsets(offsets: torch.Tensor, special: torch.Tensor) -> torch.Tensor:
    """(B, L) bool word starts from a fast tokenizer's offset_mapping (B, L, 2), HF's whole-word rule: a piece
    starts a word when it begins where the previous piece did not end (a space between them), or follows a
    special token; specials count as starts (they are never chosen). "fox." is one word here, two by ``##``."""
    start, end = offsets[..., 0], offsets[..., 1]
    B = start.shape[0]
    prev_end = torch.cat([torch.full((B, 1), -1, dtype=end.dtype), end[:, :-1]], dim=1)
    prev_special = torch.cat([torch.ones((B, 1), dtype=torch.bool), special[:, :-1]], dim=1)
    return special | prev_special | (start != prev_end)


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


def _check_return_tensors(value, op: str) -> str:
    if value not in _RETURN_TENSORS:
        raise ValueError(f"{op}: return_tensors must be 'pt' or 'np', got {value!r}")
    return value


def _as_numpy(batch: dict) -> dict:
    """The batch with every tensor as a numpy array (sharing memory); Python ints stay ints."""
    return {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class DataCollatorForLanguageModeling:
    """Masked-LM (or causal-LM, ``mlm=False``) batches from tokenized examples, like HF's collator.

    ``return_tensors``: "pt" (torch tensors) or "np" (numpy arrays: the same values, the same dtypes), also per
    call as HF's ``collator(features, return_tensors=...)``.
    ``seed``: every call draws its masks from a per-call seed derived from (seed, epoch, DataLoader worker id,
    call counter) through Philox, so runs are reproducible, workers never share masks, and each call differs.
    HF seeds worker w with ``seed + w`` and, in non-persistent workers, repeats the same masks every epoch;
    here call ``set_epoch(epoch)`` before each epoch (as with DistributedSampler) when workers are not
    persistent; with persistent workers or ``num_workers=0`` the call counter already moves on. ``seed=None``
    draws each call's seed from the global RNG of the output's framework, as HF does: torch's for "pt" (so
    torch.manual_seed and DataLoader worker seeding apply), numpy's for "np".
    ``whole_word_mask``: a word's pieces are chosen together. Words come from ``word_ids`` or ``word_starts`` in
    the features, else from ``offset_mapping`` (HF's rule, see word_starts_from_offsets), else from WordPiece
    ``##`` continuations; unlike HF it keeps the 80/10/10 split. ``max_predictions`` and ``span_masking`` pass
    through to mask_tokens.
    """

    _op = _OP  # the name error messages start with

    def __init__(self, tokenizer, mlm: bool = True, mlm_probability: float = 0.15, mask_replace_prob: float = 0.8,
                 random_replace_prob: float = 0.1, pad_to_multiple_of: int | None = None, return_tensors: str = "pt",
                 seed: int | None = None, whole_word_mask: bool = False, max_predictions: int | None = None,
                 span_masking: bool = False):
        op = self._op
        self.return_tensors = _check_return_tensors(return_tensors, op)
        self.tokenizer = tokenizer
        self.mlm = bool(mlm)
        self.mlm_probability = check_probability(mlm_probability, "mlm_probability", op)
        self.mask_replace_prob, self.random_replace_prob = check_replace_probabilities(
            mask_replace_prob, random_replace_prob, op)
        if pad_to_multiple_of is not None and (not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1):
            raise ValueError(f"{op}: pad_to_multiple_of must be a positive int or None, got {pad_to_multiple_of!r}")
        self.pad_to_multiple_of = pad_to_multiple_of
        self.seed = None if seed is None else rng.check_seed(seed, op)
        self.whole_word_mask = bool(whole_word_mask)
        self.max_predictions = max_predictions
        self.span_masking = bool(span_masking)
        if self.mlm and getattr(tokenizer, "mask_token_id", None) is None:
            raise ValueError(f"{op}: the tokenizer has no mask token; pass mlm=False for causal language modeling")
        if not self.mlm and self.whole_word_mask:
            raise ValueError(f"{op}: whole_word_mask needs mlm=True")
        self.vocab_size = len(tokenizer)
        self.pad_token_id = tokenizer.pad_token_id
        self.mask_token_id = tokenizer.mask_token_id if self.mlm else None
        self.special_ids = check_special_token_ids(list(tokenizer.all_special_ids), self.vocab_size, op)
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

    def state_dict(self) -> dict:
        """Where this collator's mask stream stands (seed, epoch, calls so far): load_state_dict of it makes the
        next call draw what this one's next call would (for resumable training; ``seed=None`` draws from the
        global RNG, whose state the caller saves)."""
        return {"seed": self.seed, "epoch": self.epoch, "calls": self._calls}

    def load_state_dict(self, state: dict) -> None:
        self.seed = None if state["seed"] is None else rng.check_seed(state["seed"], self._op)
        self.epoch, self._calls = int(state["epoch"]), int(state["calls"])

    def _call_seed(self, return_tensors: str) -> int:
        """The kernel seed of this call: Philox of (call counter, worker id, epoch) under key `seed`."""
        self._calls += 1
        if self.seed is None:
            if return_tensors == "np":
                return int(np.random.randint(0, 2**62, dtype=np.int64))
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
        rt = self.return_tensors if return_tensors is None else _check_return_tensors(return_tensors, self._op)
        batch, _ = self._collate(features, self.left_pad, rt)
        return _as_numpy(batch) if rt == "np" else batch

    # HF's entry points by framework, for code that calls or overrides them.
    def torch_call(self, features) -> dict:
        return self(features, return_tensors="pt")

    def numpy_call(self, features) -> dict:
        return self(features, return_tensors="np")

    def torch_mask_tokens(self, inputs: torch.Tensor, special_tokens_mask=None, offset_mapping=None):
        """HF's masking step alone: (inputs, labels) for a padded (B, L) id tensor; like HF, ``inputs`` is
        overwritten with the masked ids and returned. special_tokens_mask / offset_mapping as in the features."""
        return self._mask_padded(inputs, special_tokens_mask, offset_mapping, "pt")

    def numpy_mask_tokens(self, inputs: np.ndarray, special_tokens_mask=None, offset_mapping=None):
        """torch_mask_tokens for a numpy (B, L) id array: (inputs, labels), inputs overwritten in place."""
        return self._mask_padded(inputs, special_tokens_mask, offset_mapping, "np")

    def _mask_padded(self, inputs, special_tokens_mask, offset_mapping, rt):
        if not self.mlm:
            raise ValueError(f"{self._op}: masking needs mlm=True")
        ids = torch.from_numpy(np.asarray(inputs)) if rt == "np" else inputs
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
            raise ValueError(f"{self._op}: inputs must be a (batch, length) {'array' if rt == 'np' else 'tensor'}")
        special = None if special_tokens_mask is None else torch.as_tensor(np.asarray(special_tokens_mask)).bool()
        offsets = None if offset_mapping is None else torch.as_tensor(np.asarray(offset_mapping))
        masked, labels = self._mask(ids, special, None, offsets, rt)
        ids.copy_(masked)  # HF's in-place contract; for numpy, ids shares the array's memory
        return inputs, labels.numpy() if rt == "np" else labels

    def _mask(self, input_ids, special_mask, word_starts, offsets, rt):
        """(masked ids, labels) for padded (B, L) ids; special_mask marks what must not be chosen besides the
        special ids (padding, given special_tokens_mask); word_starts or offsets give words (whole_word_mask)."""
        B, L = input_ids.shape
        if not (B and L):
            return input_ids.clone(), torch.full((B, L), IGNORE_INDEX, dtype=torch.int64)
        if self.whole_word_mask and word_starts is None:
            if offsets is not None:
                special = torch.isin(input_ids, torch.tensor(self.special_ids or (), dtype=input_ids.dtype))
                if special_mask is not None:
                    special |= special_mask
                word_starts = word_starts_from_offsets(offsets, special)
            else:
                word_starts = word_starts_from_continuation(input_ids, self._is_continuation)
        # The op writes pooled buffers (see pyfast._native.empty), so a step of the same shapes reuses warm memory.
        return mask_tokens(
            input_ids, mask_token_id=self.mask_token_id, vocab_size=self.vocab_size,
            special_tokens_mask=special_mask, special_token_ids=self.special_ids,
            mlm_probability=self.mlm_probability, mask_replace_prob=self.mask_replace_prob,
            random_replace_prob=self.random_replace_prob, seed=self._call_seed(rt), word_starts=word_starts,
            max_predictions=self.max_predictions, span_masking=self.span_masking,
        )

    def _collate(self, features, left: bool, rt: str, internal: bool = False) -> tuple[dict, torch.Tensor]:
        """The padded batch as torch tensors, and the rows' lengths. ``internal``: the padding never leaves the
        collator (flattening), so a tokenizer without a pad token is fine."""
        op = self._op
        if len(features) == 0:
            raise ValueError(f"{op}: cannot collate an empty list of features")
        if isinstance(features[0], Mapping):
            rows = [f["input_ids"] for f in features]
        else:
            features, rows = None, list(features)
        flat, lengths = _to_flat(rows)
        width = self._width(lengths)
        if self.pad_token_id is None and not internal and bool((lengths != width).any()):
            why = "rows differ in length" if bool((lengths != lengths[0]).any()) else \
                f"pad_to_multiple_of={self.pad_to_multiple_of} needs padding"
            raise ValueError(f"{op}: {why} and the tokenizer has no pad token")
        pad_id = self.pad_token_id if self.pad_token_id is not None else 0
        input_ids = _pad(flat, lengths, width, pad_id, left)
        batch = {"input_ids": input_ids}
        is_pad = _pad(torch.zeros_like(flat, dtype=torch.bool), lengths, width, True, left)
        special_mask = word_starts = offsets = None
        if features is not None:
            keys = features[0].keys()
            if "attention_mask" in keys:
                attn = _pad(_to_flat([f["attention_mask"] for f in features])[0], lengths, width, 0, left)
                is_pad |= attn == 0
            else:
                attn = (~is_pad).to(torch.int64)
            batch["attention_mask"] = attn
            if "token_type_ids" in keys:
                batch["token_type_ids"] = _pad(_to_flat([f["token_type_ids"] for f in features])[0], lengths,
                                               width, getattr(self.tokenizer, "pad_token_type_id", 0), left)
            if "special_tokens_mask" in keys:
                special_mask = _pad(_to_flat([f["special_tokens_mask"] for f in features])[0], lengths, width, 1,
                                    left).bool()
            if self.whole_word_mask:
                if "word_ids" in keys:  # HF BatchEncoding.word_ids(): None for specials
                    flat_w = _to_flat([[-1 if w is None else w for w in f["word_ids"]] for f in features])[0]
                    w = _pad(flat_w, lengths, width, -1, left)
                    prev = torch.cat([torch.full((w.shape[0], 1), -2, dtype=w.dtype), w[:, :-1]], dim=1)
                    word_starts = w != prev
                elif "word_starts" in keys:
                    word_starts = _pad(_to_flat([f["word_starts"] for f in features])[0], lengths, width, 1,
                                       left).bool()
                elif "offset_mapping" in keys:
                    pairs = torch.from_numpy(np.concatenate(
                        [np.asarray(f["offset_mapping"], dtype=np.int64).reshape(-1, 2) for f in features]))
                    if pairs.shape[0] != flat.shape[0]:
                        raise ValueError(f"{op}: offset_mapping must hold one (start, end) pair per input id")
                    offsets = torch.stack([_pad(pairs[:, j].contiguous(), lengths, width, 0, left)
                                           for j in range(2)], dim=-1)
            for key in keys:
                if key not in _TOKEN_KEYS:
                    batch[key] = torch.as_tensor(np.asarray([f[key] for f in features]))
        if not self.mlm:
            labels = input_ids.clone()
            labels[is_pad] = IGNORE_INDEX
            batch["labels"] = labels
            return batch, lengths
        # Padding is never chosen: its positions join the special mask (the pad id is also a special id).
        special_mask = is_pad if special_mask is None else (special_mask | is_pad)
        batch["input_ids"], batch["labels"] = self._mask(input_ids, special_mask, word_starts, offsets, rt)
        return batch, lengths


class DataCollatorForMLMWithFlattening(DataCollatorForLanguageModeling):
    """Padding-free masked-LM batches: HF's DataCollatorWithFlattening with the MLM collator's masking.

    The examples are concatenated into one row: ``input_ids``, ``labels`` (and ``token_type_ids`` when given)
    (1, total) int64, ``position_ids`` (1, total) int64 restarting at ``position_ids_start`` in every example, no
    attention_mask. With ``return_flash_attn_kwargs`` (the default here, unlike HF: pyfast's attention and
    the CPU need the boundaries, flash-attn alone can find them from position_ids) the boundaries come under HF's
    names, which HF models forward to their attention implementation: ``cu_seq_lens_q`` = ``cu_seq_lens_k``
    (B + 1,) int32 prefix sums of the lengths, ``max_length_q`` = ``max_length_k`` (int); and under pyfast's,
    ``cu_seqlens`` (the same tensor) and ``max_seqlen``, for pyfast.attention_varlen. ``return_seq_idx`` adds
    ``seq_idx`` (1, total) int32, the example each token belongs to. Empty examples are dropped, as in HF.

    Labels and masked ids are exactly those the padded collator would give the same examples, right-padded, on
    the same call (the kernel keys its draws by (seed, row, column)), so max_predictions, span_masking and
    whole_word_mask count per example, never across a boundary. With ``mlm=False`` labels are the ids with
    ``separator_id`` at each example's first token, as in HF's causal flattening. Other per-example keys
    (next_sentence_label, ...) are stacked to (B, ...). Examples must arrive unpadded.
    """

    _op = _FLAT_OP

    def __init__(self, tokenizer, mlm: bool = True, mlm_probability: float = 0.15, mask_replace_prob: float = 0.8,
                 random_replace_prob: float = 0.1, return_tensors: str = "pt", seed: int | None = None,
                 whole_word_mask: bool = False, max_predictions: int | None = None, span_masking: bool = False,
                 return_position_ids: bool = True, return_flash_attn_kwargs: bool = True,
                 return_seq_idx: bool = False, position_ids_start: int = 0, separator_id: int = IGNORE_INDEX,
                 pad_to_multiple_of: None = None):
        if pad_to_multiple_of is not None:
            raise ValueError(f"{_FLAT_OP}: pad_to_multiple_of has no meaning without padding; leave it None")
        super().__init__(tokenizer, mlm=mlm, mlm_probability=mlm_probability, mask_replace_prob=mask_replace_prob,
                         random_replace_prob=random_replace_prob, return_tensors=return_tensors, seed=seed,
                         whole_word_mask=whole_word_mask, max_predictions=max_predictions,
                         span_masking=span_masking)
        for name, value in (("position_ids_start", position_ids_start), ("separator_id", separator_id)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{_FLAT_OP}: {name} must be an int, got {type(value).__name__}")
        self.return_position_ids = bool(return_position_ids)
        self.return_flash_attn_kwargs = bool(return_flash_attn_kwargs)
        self.return_seq_idx = bool(return_seq_idx)
        self.position_ids_start = position_ids_start
        self.separator_id = separator_id

    def __call__(self, features, return_tensors: str | None = None) -> dict:
        rt = self.return_tensors if return_tensors is None else _check_return_tensors(return_tensors, _FLAT_OP)
        if len(features) == 0:
            raise ValueError(f"{_FLAT_OP}: cannot collate an empty list of features")
        mapping = isinstance(features[0], Mapping)
        features = [f for f in features if len(f["input_ids"] if mapping else f) > 0]
        if not features:
            raise ValueError(f"{_FLAT_OP}: every example in the batch is empty")
        if mapping and "attention_mask" in features[0]:
            for i, f in enumerate(features):
                if not np.asarray(f["attention_mask"]).all():
                    raise ValueError(f"{_FLAT_OP}: example {i} is padded (attention_mask has zeros); flattening "
                                     f"takes unpadded examples")
        padded, lengths = self._collate(features, False, rt, internal=True)
        B, L = padded["input_ids"].shape
        keep = torch.arange(L)[None, :] < lengths[:, None]
        cu = torch.zeros(B + 1, dtype=torch.int32)
        torch.cumsum(lengths, 0, out=cu[1:])
        total = int(cu[-1])
        batch = {"input_ids": padded["input_ids"][keep][None]}
        if self.mlm:
            batch["labels"] = padded["labels"][keep][None]
        else:
            labels = batch["input_ids"].clone()
            labels[0, cu[:-1].long()] = self.separator_id
            batch["labels"] = labels
        if "token_type_ids" in padded:
            batch["token_type_ids"] = padded["token_type_ids"][keep][None]
        starts = torch.repeat_interleave(cu[:-1].long(), lengths)  # each token's example start, (total,)
        if self.return_position_ids:
            batch["position_ids"] = (torch.arange(total) - starts + self.position_ids_start)[None]
        if self.return_seq_idx:
            batch["seq_idx"] = torch.repeat_interleave(torch.arange(B, dtype=torch.int32), lengths)[None]
        if self.return_flash_attn_kwargs:
            max_len = int(lengths.max())
            batch["cu_seq_lens_q"] = batch["cu_seq_lens_k"] = batch["cu_seqlens"] = cu
            batch["max_length_q"] = batch["max_length_k"] = batch["max_seqlen"] = max_len
        for key, value in padded.items():
            if key not in batch and key not in ("attention_mask", "input_ids", "labels"):
                batch[key] = value  # per-example keys, already (B, ...)
        return _as_numpy(batch) if rt == "np" else batch
