"""A key/value cache for incremental decoding: per-layer K/V buffers preallocated to a maximum length, filled in place.

Shaped like HF's Cache objects where that fits (`update(key, value, layer_idx) -> (keys, values)`,
`get_seq_length()`), but static: each layer's buffers are (B, Hkv, max_length, D), allocated on the layer's first
update, so appending a token writes one slot instead of concatenating (torch.cat per step would copy the whole prefix
every token: O(n^2) bytes over a generation). The keys/values handed back are views of the first `length` slots;
pyfast attention reads their strides, so nothing is copied. Every row of the batch has the same length (no ragged
left-padding); reorder for beam search is not supported. Meant for inference (torch.no_grad / inference_mode): a
backward through two forwards that wrote into the same buffers fails with autograd's in-place error.
"""
from __future__ import annotations

from torch import Tensor


class KVCache:
    """Keys and values of the tokens seen so far, for every layer of one model, for at most `max_length` tokens."""

    def __init__(self, max_length: int):
        if not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"KVCache: max_length must be an int >= 1, got {max_length!r}")
        self.max_length = max_length
        self._keys: list[Tensor | None] = []    # per layer: (B, Hkv, max_length, D)
        self._values: list[Tensor | None] = []  # per layer: (B, Hkv, max_length, Dv)
        self._lengths: list[int] = []           # per layer: filled slots

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Tokens cached so far (0 before the first forward)."""
        return self._lengths[layer_idx] if layer_idx < len(self._lengths) else 0

    def __len__(self) -> int:  # layers holding buffers, as len() of HF's caches
        return len(self._keys)

    def reset(self) -> None:
        """Forget the cached tokens; keep the buffers for the next sequence of the same shape."""
        self._lengths = [0] * len(self._lengths)

    def update(self, key: Tensor, value: Tensor, layer_idx: int) -> tuple[Tensor, Tensor]:
        """Append key (B, Hkv, l, D) and value (B, Hkv, l, Dv) of `l` new tokens to layer `layer_idx`.
        -> (keys, values) of all cached tokens: views (B, Hkv, past + l, D) / (..., Dv) of the buffers."""
        if key.dim() != 4 or value.dim() != 4 or key.shape[:3] != value.shape[:3]:
            raise ValueError(f"KVCache.update: key and value must be (batch, heads, length, dim) with the same first "
                             f"three dims, got {tuple(key.shape)} and {tuple(value.shape)}")
        while len(self._keys) <= layer_idx:
            self._keys.append(None)
            self._values.append(None)
            self._lengths.append(0)
        b, h, new, _ = key.shape
        past = self._lengths[layer_idx]
        if past + new > self.max_length:
            raise ValueError(f"KVCache.update: layer {layer_idx} holds {past} tokens and cannot take {new} more: the "
                             f"cache was built for max_length={self.max_length}")
        buf_k, buf_v = self._keys[layer_idx], self._values[layer_idx]
        if buf_k is None:
            buf_k = key.new_empty(b, h, self.max_length, key.shape[-1])
            buf_v = value.new_empty(b, h, self.max_length, value.shape[-1])
            self._keys[layer_idx], self._values[layer_idx] = buf_k, buf_v
        elif (buf_k.shape[:2] != key.shape[:2] or buf_k.shape[-1] != key.shape[-1] or buf_v.shape[-1] != value.shape[-1]
              or buf_k.dtype != key.dtype or buf_k.device != key.device):
            raise ValueError(f"KVCache.update: layer {layer_idx} caches (batch, heads, dim) = "
                             f"{(buf_k.shape[0], buf_k.shape[1], buf_k.shape[3])} {buf_k.dtype} on {buf_k.device}, got "
                             f"{(b, h, key.shape[-1])} {key.dtype} on {key.device}")
        buf_k[:, :, past:past + new] = key
        buf_v[:, :, past:past + new] = value
        self._lengths[layer_idx] = past + new
        return buf_k[:, :, :past + new], buf_v[:, :, :past + new]

    def __repr__(self) -> str:
        return f"KVCache(max_length={self.max_length}, layers={len(self)}, seq_length={self.get_seq_length()})"
