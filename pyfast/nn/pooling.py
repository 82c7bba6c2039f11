"""Sentence embeddings from token embeddings: mean pooling with sentence-transformers semantics, and CLS pooling.

MeanPooling: sum(emb * mask) / clamp(sum(mask), min=1e-9) over the sequence, accumulated in float32 whatever the
input dtype (a bf16 sum over hundreds of tokens loses digits), then cast back. A row with no tokens gives zeros.
"""
from __future__ import annotations

import torch
from torch import nn


def _check(token_embeddings: torch.Tensor, attention_mask: torch.Tensor | None, who: str) -> None:
    if token_embeddings.dim() != 3:
        raise ValueError(f"{who}: token_embeddings must be (batch, length, hidden), got {tuple(token_embeddings.shape)}")
    if attention_mask is not None and tuple(attention_mask.shape) != tuple(token_embeddings.shape[:2]):
        raise ValueError(f"{who}: attention_mask shape {tuple(attention_mask.shape)} != (batch, length) "
                         f"{tuple(token_embeddings.shape[:2])}")


def mean_pooling(token_embeddings: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """token_embeddings (B, L, H), attention_mask (B, L) of 0/1 -> (B, H) in the embeddings' dtype."""
    _check(token_embeddings, attention_mask, "mean_pooling")
    emb = token_embeddings.float()
    if attention_mask is None:
        return emb.mean(dim=1).to(token_embeddings.dtype)
    mask = attention_mask.to(torch.float32).unsqueeze(-1)            # (B, L, 1)
    summed = (emb * mask).sum(dim=1)                                 # (B, H)
    counts = mask.sum(dim=1).clamp(min=1e-9)                         # (B, 1)
    return (summed / counts).to(token_embeddings.dtype)


def cls_pooling(token_embeddings: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The first token's embedding: (B, L, H) -> (B, H)."""
    _check(token_embeddings, attention_mask, "cls_pooling")
    return token_embeddings[:, 0]


class MeanPooling(nn.Module):
    """forward(token_embeddings (B, L, H), attention_mask (B, L)) -> (B, H); see mean_pooling."""

    def forward(self, token_embeddings, attention_mask=None):
        return mean_pooling(token_embeddings, attention_mask)


class CLSPooling(nn.Module):
    """forward(token_embeddings (B, L, H), attention_mask=None) -> (B, H): the [CLS] position."""

    def forward(self, token_embeddings, attention_mask=None):
        return cls_pooling(token_embeddings, attention_mask)
