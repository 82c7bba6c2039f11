"""Plain PyTorch skip-gram negative-sampling loss: the reference the SGNS op is tested and benchmarked against.

Slow and obviously right: embedding lookups, a batched dot product, logsigmoid. Run it in float64 for tests.
``TorchSkipGramNS`` is the module a user would write by hand (nn.Embedding(sparse=True) + bmm), the peer in
``python -m pyfast bench sgns``.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def sgns_loss_reference(in_weight: torch.Tensor, out_weight: torch.Tensor, centers: torch.Tensor,
                        contexts: torch.Tensor, negatives: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """-[log s(u_c . v_ctx) + sum_k log s(-u_c . v_neg_k)] per pair, reduced like torch losses.

    in_weight, out_weight: (V, D); centers, contexts: (N,); negatives: (N, K).
    """
    u = in_weight[centers]                                    # (N, D)
    v_ctx = out_weight[contexts]                              # (N, D)
    v_neg = out_weight[negatives]                             # (N, K, D)
    pos = (u * v_ctx).sum(-1)                                 # (N,)
    neg = torch.bmm(v_neg, u.unsqueeze(-1)).squeeze(-1)       # (N, K)
    loss = -(F.logsigmoid(pos) + F.logsigmoid(-neg).sum(-1))  # (N,)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.sum() / max(loss.numel(), 1)  # an empty batch gives 0, not NaN
    raise ValueError(f"sgns_loss_reference: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


class TorchSkipGramNS(nn.Module):
    """Skip-gram with negative sampling in plain PyTorch: two nn.Embedding tables, bmm and logsigmoid."""

    def __init__(self, num_embeddings: int, embedding_dim: int, sparse: bool = True, dtype=None):
        super().__init__()
        self.in_embed = nn.Embedding(num_embeddings, embedding_dim, sparse=sparse, dtype=dtype)
        self.out_embed = nn.Embedding(num_embeddings, embedding_dim, sparse=sparse, dtype=dtype)

    def forward(self, centers: torch.Tensor, contexts: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        u = self.in_embed(centers)                                # (N, D)
        v_ctx = self.out_embed(contexts)                          # (N, D)
        v_neg = self.out_embed(negatives)                         # (N, K, D)
        pos = (u * v_ctx).sum(-1)
        neg = torch.bmm(v_neg, u.unsqueeze(-1)).squeeze(-1)
        return -(F.logsigmoid(pos) + F.logsigmoid(-neg).sum(-1)).mean()
