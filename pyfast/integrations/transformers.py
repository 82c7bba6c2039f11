"""pyfast as an HF transformers attention implementation: ``attn_implementation="pyfast"`` in ``from_config`` /
``from_pretrained`` of every model family that dispatches through ``AttentionInterface`` (BERT, GPT-2, Llama, ...).

Importing this module registers "pyfast" (``register()`` again is a no-op); ``import pyfast`` does not, because it
would have to import transformers, which takes seconds. Two paths:
- padded batches: HF builds the sdpa-style mask (bool, True = attend; None for a plain causal or unmasked pattern)
  and ``pyfast.scaled_dot_product_attention`` runs it, GQA without repeating k/v;
- padding-free (packed) batches, batch 1 of several sequences as ``DataCollatorWithFlattening`` makes them: the
  sequence bounds come from ``cu_seq_lens_q/k`` + ``max_length_q/k`` (``return_flash_attn_kwargs=True``) or, as for
  HF's flash attention, from ``position_ids`` that restart; then ``pyfast.attention_varlen`` attends within each
  sequence (causal for decoders, bidirectional for encoders), on the CPU as well as CUDA. Encoders (BERT) get no
  mask from HF there, so without this they would attend across sequences, as HF's "sdpa" does. Decoders in
  training get HF's (T, T) block-causal mask besides: when it says nothing beyond the bounds it is skipped (checked
  once per forward); a mask that says more (ModernBERT's local window) is kept, cut to each sequence, and runs in
  the masked kernel.
Limits: softcap and output_attentions (attention weights) are not supported; the packed-input checks read tensor
values (one host sync per forward, cached across layers), so they break torch.compile graphs as HF's flash path does.
"""
from __future__ import annotations

import warnings
import weakref
from typing import Optional

import torch
from torch import Tensor

from ..ops import attention_varlen, scaled_dot_product_attention

try:  # AttentionMaskInterface (masking_utils) appeared in transformers 4.53; tested with 5.24
    from transformers.masking_utils import AttentionMaskInterface as _AttentionMaskInterface  # noqa: F401
except ImportError as exc:  # say what is missing here, not deep inside register()
    raise ImportError("pyfast.integrations.transformers needs transformers >= 4.53 (AttentionInterface and "
                      "masking_utils.AttentionMaskInterface): pip install -U transformers") from exc

__all__ = ["NAME", "register", "is_registered", "attention_forward", "packed_sequences"]

NAME = "pyfast"


def register(name: str = NAME) -> None:
    """Register pyfast's attention (and its mask builder) under ``name`` in transformers' global
    ``AttentionInterface`` / ``AttentionMaskInterface``. Idempotent; importing this module calls it once."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    if not isinstance(name, str) or not name:
        raise ValueError(f"register: name must be a non-empty string, got {name!r}")
    # The masks pyfast consumes are exactly the sdpa ones: a (B, 1, L, S) bool mask, or None where is_causal (or no
    # mask) expresses the pattern, which lets the kernel skip the masked half of a causal square.
    AttentionInterface.register(name, attention_forward)
    AttentionMaskInterface.register(name, sdpa_mask)


def is_registered(name: str = NAME) -> bool:
    """Whether ``name`` resolves to pyfast's attention in transformers' global interfaces."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    return (AttentionInterface._global_mapping.get(name) is attention_forward
            and name in AttentionMaskInterface._global_mapping)


# ---- packed (padding-free) batches -----------------------------------------------------------------------------
class _Memo:
    """One cached result per source tensor: every layer of a forward gets the same position_ids / mask objects, so
    the host-side checks run once per forward, not once per layer. Keyed by identity and in-place version."""

    def __init__(self):
        self._key = None
        self._refs: tuple = ()
        self._value = None

    def get(self, *tensors: Tensor):
        if any(t.is_inference() for t in tensors):  # no version counter to tell an in-place change: never cached
            return False, None
        key = tuple((id(t), t._version) for t in tensors)
        if key == self._key and all(r() is t for r, t in zip(self._refs, tensors)):
            return True, self._value
        return False, None

    def put(self, value, *tensors: Tensor):
        if any(t.is_inference() for t in tensors):
            return value
        self._key = tuple((id(t), t._version) for t in tensors)
        self._refs = tuple(weakref.ref(t) for t in tensors)
        self._value = value
        return value


_positions_memo = _Memo()
_block_mask_memo = _Memo()


def packed_sequences(position_ids: Tensor) -> Optional[tuple[Tensor, int]]:
    """(cu_seqlens int32 (n + 1,), longest length) when ``position_ids`` (1, T) is two or more ramps
    ``first, first + 1, ...`` one after another (first = its minimum: 0, or padding_idx + 1 for RoBERTa-like models),
    as DataCollatorWithFlattening writes them; None for one ramp or anything else (e.g. left-padded generation)."""
    if position_ids.dim() != 2 or position_ids.shape[0] != 1 or position_ids.shape[1] < 2:
        return None
    hit, value = _positions_memo.get(position_ids)
    if hit:
        return value
    pos = position_ids.reshape(-1)
    is_start = pos == pos.min()
    result = None
    if bool(is_start[0]) and int(is_start.sum()) > 1:
        starts = torch.nonzero(is_start).reshape(-1)
        segment = torch.cumsum(is_start, 0) - 1
        ramp = torch.arange(pos.numel(), device=pos.device) - starts[segment] + pos[0]
        if torch.equal(ramp, pos):
            cu = torch.cat([starts, starts.new_tensor([pos.numel()])]).to(torch.int32)
            result = (cu, int((cu[1:] - cu[:-1]).max()))
    return _positions_memo.put(result, position_ids)


def _as_cu_seqlens(cu, device: torch.device) -> Tensor:
    """The collator's cu_seq_lens as the 1-D int32 tensor attention_varlen takes (the same object when it is one
    already, so the per-forward memo still recognises it in the next layer)."""
    cu = torch.as_tensor(cu, device=device)
    cu = cu if cu.dtype == torch.int32 else cu.to(torch.int32)
    return cu if cu.dim() == 1 else cu.reshape(-1)


def _sequence_bounds(query: Tensor, key: Tensor, kwargs: dict):
    """(cu_q, cu_k, max_q, max_k) of a packed batch, or None for an ordinary one."""
    cu_q, cu_k = kwargs.get("cu_seq_lens_q"), kwargs.get("cu_seq_lens_k")
    max_q, max_k = kwargs.get("max_length_q"), kwargs.get("max_length_k")
    if cu_q is not None or cu_k is not None:
        if cu_q is None or cu_k is None or max_q is None or max_k is None:
            raise ValueError("pyfast attention: packed inputs need all of cu_seq_lens_q, cu_seq_lens_k, max_length_q "
                             "and max_length_k (DataCollatorWithFlattening(return_flash_attn_kwargs=True) gives them)")
        return _as_cu_seqlens(cu_q, query.device), _as_cu_seqlens(cu_k, query.device), int(max_q), int(max_k)
    position_ids = kwargs.get("position_ids")
    # Only a self-attention over the whole input (no cache) can be packed: q and k cover the same T tokens.
    if position_ids is None or query.shape[0] != 1 or query.shape[2] != key.shape[2] or \
            position_ids.shape[-1] != query.shape[2]:
        return None
    found = packed_sequences(position_ids.reshape(1, -1))
    if found is None:
        return None
    cu, longest = found
    cu = cu.to(query.device)
    return cu, cu, longest, longest


def _within_sequences(cu_q: Tensor, cu_k: Tensor, q_len: int, kv_len: int, causal: bool) -> Tensor:
    """(L, S) bool: query i may see key j only in its own sequence (and j <= i within it when causal)."""
    seq_q = torch.bucketize(torch.arange(q_len, device=cu_q.device), cu_q[1:].to(torch.int64), right=True)
    seq_k = torch.bucketize(torch.arange(kv_len, device=cu_k.device), cu_k[1:].to(torch.int64), right=True)
    allowed = seq_q[:, None] == seq_k[None, :]
    if causal:
        allowed &= (torch.arange(q_len, device=cu_q.device) - cu_q[seq_q])[:, None] >= \
            (torch.arange(kv_len, device=cu_k.device) - cu_k[seq_k])[None, :]
    return allowed


def _mask_is_only_the_sequences(mask: Tensor, cu: Tensor, causal: bool) -> bool:
    """Whether HF's mask of a packed batch says nothing beyond the sequence bounds (it builds the block-causal mask
    from restarting position_ids for decoders): then varlen alone is the same attention, without the (T, T) mask."""
    if mask.dtype != torch.bool or mask.dim() != 4 or mask.shape[0] != 1:
        return False
    hit, value = _block_mask_memo.get(mask, cu)
    if hit:
        return value
    t = mask.shape[-1]
    expected = _within_sequences(cu, cu, mask.shape[-2], t, causal)
    same = all(torch.equal(mask[0, h], expected) for h in range(mask.shape[1]))
    return _block_mask_memo.put(same, mask, cu)


# ---- the attention function ----------------------------------------------------------------------------------
def attention_forward(
    module: torch.nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Optional[Tensor],
    dropout: float = 0.0, scaling: Optional[float] = None, is_causal: Optional[bool] = None,
    position_bias: Optional[Tensor] = None, **kwargs,
) -> tuple[Tensor, None]:
    """transformers' attention-function contract: query (B, Hq, L, E), key (B, Hkv, S, E), value (B, Hkv, S, Ev),
    attention_mask from the "pyfast" mask interface (bool (B, 1, L, S), a custom float mask, or None) -> attention
    output (B, L, Hq, Ev) and no weights."""
    if kwargs.get("softcap") is not None:
        raise ValueError("pyfast attention does not support softcap; use attn_implementation='eager' for this model")
    if kwargs.get("output_attentions", False):
        warnings.warn("pyfast attention does not return attention weights (output_attentions=True gives None); "
                      "use attn_implementation='eager' to get them", stacklevel=2)
    dropout_p = float(dropout) if getattr(module, "training", True) else 0.0
    causal = bool(is_causal if is_causal is not None else getattr(module, "is_causal", True))
    batch, q_heads, q_len, _ = query.shape
    kv_len = key.shape[2]

    bounds = _sequence_bounds(query, key, kwargs) if position_bias is None else None
    if bounds is not None:
        cu_q, cu_k, max_q, max_k = bounds
        same_bounds = cu_q is cu_k or torch.equal(cu_q, cu_k)
        if attention_mask is None or (batch == 1 and same_bounds and _mask_is_only_the_sequences(
                attention_mask, cu_q, causal)):
            # (B, H, L, E) -> (B*L, H, E): the varlen layout, whose output (B*L, H, Ev) is already HF's (B, L, H, Ev).
            q, k, v = (t.transpose(1, 2).reshape(-1, t.shape[1], t.shape[3]) for t in (query, key, value))
            out = attention_varlen(q, k, v, cu_q, cu_k, max_q, max_k, is_causal=causal and q_len > 1,
                                   scale=scaling, dropout_p=dropout_p)
            return out.reshape(batch, q_len, q_heads, value.shape[3]), None
        if batch != 1:
            raise ValueError(f"pyfast attention: a packed batch (cu_seq_lens_q given) must be flattened to batch 1 "
                             f"when it also has an attention mask; got batch {batch}")
        # A mask beyond the sequence bounds (e.g. ModernBERT's local window): keep it, within each sequence only.
        within = _within_sequences(cu_q, cu_k, q_len, kv_len, False)
        if attention_mask.dtype == torch.bool:
            attention_mask = attention_mask & within
        else:
            attention_mask = attention_mask.masked_fill(~within, float("-inf"))

    # The kernel skips the masked half of a causal square only through is_causal, so a plain causal pattern comes
    # without a mask (the sdpa mask interface returns None then); a single query row (decoding) sees every key.
    use_causal = causal and q_len > 1 and attention_mask is None
    if position_bias is not None:  # T5-style additive bias, per head: folded into one float mask with the padding
        if attention_mask is None:
            attention_mask = position_bias
        elif attention_mask.dtype == torch.bool:
            attention_mask = position_bias.masked_fill(~attention_mask, float("-inf"))
        else:
            attention_mask = position_bias + attention_mask
    out = scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=dropout_p,
                                       is_causal=use_causal, scale=scaling, enable_gqa=key.shape[1] != q_heads)
    return out.transpose(1, 2).contiguous(), None


register()  # the import-time hook: importing this module is how users switch "pyfast" on
