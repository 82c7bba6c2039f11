"""Multi-head self-attention on pyfast's fused kernel, batch first, for the GPT/BERT models built on it.

Projections are plain nn.Linear (one fused qkv projection); the attention itself is
pyfast.ops.scaled_dot_product_attention, so training never holds an L x L matrix. GQA when num_kv_heads <
num_heads. key_padding_mask follows nn.MultiheadAttention: True marks padding (a key nobody attends to).
With a KVCache (incremental decoding) the new tokens' keys/values are appended to it and the queries attend to all
cached keys, causal masking aligned bottom-right (new token i sits at position past + i).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ..ops.attention import scaled_dot_product_attention
from .kv_cache import KVCache


class MultiheadSelfAttention(nn.Module):
    """x (B, L, embed_dim) -> (B, L, embed_dim).

    num_kv_heads: heads of k and v (default num_heads); num_heads must be a multiple of it (grouped-query
    attention). dropout: attention-probability dropout, applied only in training mode. causal: each position
    attends to itself and earlier positions only.
    """

    def __init__(self, embed_dim: int, num_heads: int, num_kv_heads: Optional[int] = None, bias: bool = True,
                 dropout: float = 0.0, causal: bool = False):
        super().__init__()
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if embed_dim < 1 or num_heads < 1 or num_kv_heads < 1:
            raise ValueError(f"MultiheadSelfAttention: embed_dim, num_heads and num_kv_heads must be >= 1, got "
                             f"{embed_dim}, {num_heads}, {num_kv_heads}")
        if embed_dim % num_heads != 0:
            raise ValueError(f"MultiheadSelfAttention: embed_dim ({embed_dim}) must be divisible by num_heads "
                             f"({num_heads})")
        if num_heads % num_kv_heads != 0:
            raise ValueError(f"MultiheadSelfAttention: num_heads ({num_heads}) must be a multiple of num_kv_heads "
                             f"({num_kv_heads})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MultiheadSelfAttention: dropout must be in [0, 1), got {dropout}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.causal = causal
        kv_dim = num_kv_heads * self.head_dim
        self.qkv_proj = nn.Linear(embed_dim, embed_dim + 2 * kv_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def forward(self, x: Tensor, key_padding_mask: Optional[Tensor] = None, kv_cache: Optional[KVCache] = None,
                layer_idx: int = 0) -> Tensor:
        """key_padding_mask: (B, S) with S = L, or S = cached + L tokens when kv_cache is given (HF's convention:
        the mask covers the past too). kv_cache: this layer's keys/values go in at `layer_idx`."""
        if x.dim() != 3 or x.shape[-1] != self.embed_dim:
            raise ValueError(f"MultiheadSelfAttention: x must be (batch, length, {self.embed_dim}), got "
                             f"{tuple(x.shape)}")
        b, l, _ = x.shape
        kv_dim = self.num_kv_heads * self.head_dim
        q, k, v = self.qkv_proj(x).split([self.embed_dim, kv_dim, kv_dim], dim=-1)
        # (B, L, H*D) -> (B, H, L, D) views: the kernel reads the strided layout, no copies.
        q = q.view(b, l, self.num_heads, self.head_dim).transpose(1, 2)
        k = k.view(b, l, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(b, l, self.num_kv_heads, self.head_dim).transpose(1, 2)
        past = 0
        if kv_cache is not None:
            past = kv_cache.get_seq_length(layer_idx)
            k, v = kv_cache.update(k, v, layer_idx)  # (B, Hkv, past + L, D) views of the cache's buffers
        s = past + l
        mask = None
        if key_padding_mask is not None:
            if key_padding_mask.shape != (b, s):
                raise ValueError(f"MultiheadSelfAttention: key_padding_mask must be (batch, length) = {(b, s)}"
                                 f"{' (cached + new tokens)' if past else ''}, got {tuple(key_padding_mask.shape)}")
            if key_padding_mask.dtype != torch.bool:
                raise TypeError(f"MultiheadSelfAttention: key_padding_mask must be bool (True = padding), got "
                                f"{key_padding_mask.dtype}")
            mask = (~key_padding_mask)[:, None, None, :]  # True = attend, broadcast over heads and queries
        is_causal = self.causal
        if self.causal and past > 0:
            # The kernel's is_causal is top-left aligned (query i sees keys j <= i), right only when L == S. One new
            # query sees every cached key: no mask at all (the common decode step). Several new queries (a chunk
            # appended to a cache): query i sees keys j <= past + i, as an explicit bottom-right mask.
            is_causal = False
            if l > 1:
                i = torch.arange(l, device=x.device)[:, None]
                causal = torch.arange(s, device=x.device)[None, :] <= past + i  # (L, S)
                mask = causal if mask is None else mask & causal
        out = scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=is_causal, enable_gqa=self.num_kv_heads != self.num_heads)
        return self.out_proj(out.transpose(1, 2).reshape(b, l, self.embed_dim))

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, num_kv_heads={self.num_kv_heads}, "
                f"dropout={self.dropout}, causal={self.causal}")
