"""BERT's masked-LM head with sparse prediction: the (H, V) decoder runs only on the chosen positions
(gather_masked), as BERT's own pretraining code and NVIDIA's do, instead of on all B x L positions."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..ops.masking import IGNORE_INDEX, gather_masked

__all__ = ["MLMHead", "MLMOutput"]


@dataclass
class MLMOutput:
    loss: torch.Tensor | None   # mean cross-entropy over chosen positions (None without labels)
    logits: torch.Tensor        # (M, V) at chosen positions with labels; (..., V) everywhere without
    labels: torch.Tensor | None  # (M,) the targets matching logits' rows


class MLMHead(nn.Module):
    """dense (H, H) -> GELU -> LayerNorm -> decoder (H, V) + bias, BERT's transform. ``decoder_weight``: pass the
    word-embedding weight (V, H) to tie it, as BERT does. forward(hidden (..., H), labels (...) or None)."""

    def __init__(self, hidden_size: int, vocab_size: int, layer_norm_eps: float = 1e-12,
                 decoder_weight: nn.Parameter | None = None):
        super().__init__()
        if hidden_size < 1 or vocab_size < 1:
            raise ValueError(f"MLMHead: hidden_size and vocab_size must be >= 1, got {hidden_size}, {vocab_size}")
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        if decoder_weight is not None:
            if tuple(decoder_weight.shape) != (vocab_size, hidden_size):
                raise ValueError(f"MLMHead: decoder_weight must be ({vocab_size}, {hidden_size}), "
                                 f"got {tuple(decoder_weight.shape)}")
            self.decoder_weight = decoder_weight
        else:
            self.decoder_weight = nn.Parameter(torch.empty(vocab_size, hidden_size).normal_(std=0.02))
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(self.norm(self.act(self.dense(hidden))), self.decoder_weight, self.bias)

    def forward(self, hidden: torch.Tensor, labels: torch.Tensor | None = None) -> MLMOutput:
        if labels is None:
            return MLMOutput(loss=None, logits=self.logits(hidden), labels=None)
        h, y = gather_masked(hidden, labels, IGNORE_INDEX)
        logits = self.logits(h)
        # An empty selection gives a zero loss that still depends on the parameters (no NaN from a 0/0 mean).
        loss = nn.functional.cross_entropy(logits, y) if y.numel() else logits.sum() * 0.0
        return MLMOutput(loss=loss, logits=logits, labels=y)
