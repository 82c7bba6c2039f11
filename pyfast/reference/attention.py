"""Float64 reference attention: the textbook softmax(q k^T * scale + mask) v on full score matrices. Slow and
O(L * S) memory by design -- it is what the fused kernels are checked against, not something to train with.

Conventions match pyfast.ops.attention: bool mask True = attend, float mask added, causal top-left aligned,
GQA by repeat_interleave of kv heads, a row whose mask allows nothing outputs 0, dropout by an explicit keep mask.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor


def scaled_dot_product_attention(
    query: Tensor, key: Tensor, value: Tensor, attn_mask: Optional[Tensor] = None, is_causal: bool = False,
    scale: Optional[float] = None, enable_gqa: bool = False, dropout_keep: Optional[Tensor] = None,
    dropout_p: float = 0.0,
) -> Tensor:
    """query (..., Hq, L, E), key (..., Hkv, S, E), value (..., Hkv, S, Ev) -> float64 (..., Hq, L, Ev).

    dropout_keep: bool, broadcastable to (..., Hq, L, S); kept probabilities are scaled by 1 / (1 - dropout_p).
    Differentiable (autograd in float64) for gradient references.
    """
    q, k, v = query.double(), key.double(), value.double()
    if enable_gqa and q.dim() >= 3 and k.shape[-3] != q.shape[-3]:
        group = q.shape[-3] // k.shape[-3]
        k = k.repeat_interleave(group, dim=-3)
        v = v.repeat_interleave(group, dim=-3)
    e = q.shape[-1]
    scale = 1.0 / math.sqrt(e) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale
    l, s = scores.shape[-2:]
    if s == 0:  # no keys: every row is empty and outputs 0
        return scores.new_zeros((*scores.shape[:-1], v.shape[-1]))
    allowed = torch.ones(l, s, dtype=torch.bool)
    if is_causal:
        allowed = torch.ones(l, s, dtype=torch.bool).tril()
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            allowed = allowed & attn_mask
        else:
            scores = scores + attn_mask.double()
    scores = scores.masked_fill(~allowed, float("-inf"))
    row_max = scores.amax(dim=-1, keepdim=True)
    empty_row = torch.isneginf(row_max)
    row_max = torch.where(empty_row, torch.zeros_like(row_max), row_max)
    weights = torch.exp(scores - row_max)
    weights = weights / weights.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    weights = torch.where(empty_row, torch.zeros_like(weights), weights)
    if dropout_keep is not None:
        weights = weights * dropout_keep.double() / (1.0 - dropout_p)
    return weights @ v


def attention_varlen(
    q: Tensor, k: Tensor, v: Tensor, cu_seqlens_q: Tensor, cu_seqlens_k: Tensor, is_causal: bool = False,
    scale: Optional[float] = None,
) -> Tensor:
    """Packed (total, H, D) sequences, each attended separately with the reference above; float64 output."""
    outs = []
    for b in range(cu_seqlens_q.numel() - 1):
        q0, q1 = int(cu_seqlens_q[b]), int(cu_seqlens_q[b + 1])
        k0, k1 = int(cu_seqlens_k[b]), int(cu_seqlens_k[b + 1])
        qb = q[q0:q1].transpose(0, 1)  # (H, Lb, E)
        kb = k[k0:k1].transpose(0, 1)
        vb = v[k0:k1].transpose(0, 1)
        ob = scaled_dot_product_attention(qb, kb, vb, is_causal=is_causal, scale=scale, enable_gqa=True)
        outs.append(ob.transpose(0, 1))
    if not outs:
        return q.new_zeros((0, q.shape[1], v.shape[2]), dtype=torch.float64)
    return torch.cat(outs, dim=0)
