"""SkipGramNS: word2vec's skip-gram with negative sampling as an nn.Module over the fused pyfast op.

The two tables are ordinary nn.Embedding modules (``in_embed``, ``out_embed``), so code that reads or saves them
keeps working; the loss and its gradients come from pyfast.ops.sgns (sgns_loss_per_table: each table follows its own
sparse flag). CPU or CUDA tensors, float32/float64.
"""
from __future__ import annotations

import torch
from torch import nn

from ..ops.sgns import advise_hugepages, sgns_loss_per_table
from ..ops.sgns_step import sgns_sgd_step


class SkipGramNS(nn.Module):
    """forward(centers (N,), contexts (N,), negatives (N, K)) -> loss (reduced like torch losses).

    Args:
        num_embeddings: vocabulary size V.  embedding_dim: D.
        sparse: gradients as sparse COO tensors (use SGD or SparseAdam), as with nn.Embedding(sparse=True).
            Each table follows its own ``nn.Embedding.sparse`` flag.
        reduction: ``"mean"`` (over pairs), ``"sum"`` or ``"none"``.
        hugepages: back the tables with transparent huge pages where Linux allows (pyfast.ops.sgns.advise_hugepages).
    Initialisation follows word2vec: in_embed uniform in [-0.5/D, 0.5/D), out_embed zeros.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, sparse: bool = True, reduction: str = "mean",
                 hugepages: bool = True, device=None, dtype=None):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"SkipGramNS: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.in_embed = nn.Embedding(num_embeddings, embedding_dim, sparse=sparse, device=device, dtype=dtype)
        self.out_embed = nn.Embedding(num_embeddings, embedding_dim, sparse=sparse, device=device, dtype=dtype)
        self.reduction = reduction
        self.reset_parameters()
        if hugepages:  # random row gathers: see pyfast.ops.sgns.advise_hugepages
            advise_hugepages(self.in_embed.weight)
            advise_hugepages(self.out_embed.weight)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        dim = self.in_embed.embedding_dim
        self.in_embed.weight.uniform_(-0.5 / dim, 0.5 / dim)
        self.out_embed.weight.zero_()

    def forward(self, centers: torch.Tensor, contexts: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        return sgns_loss_per_table(self.in_embed.weight, self.out_embed.weight, centers, contexts, negatives,
                                   self.reduction, self.in_embed.sparse, self.out_embed.sparse)

    def sgd_step(self, centers: torch.Tensor, contexts: torch.Tensor, negatives: torch.Tensor,
                 lr: float) -> torch.Tensor:
        """One fused SGD step on this batch (pyfast.ops.sgns_sgd_step): the tables are updated in place, the loss
        (before the update, reduced like forward's) is returned. The same as ``opt = torch.optim.SGD(
        self.parameters(), lr); opt.zero_grad(); self(...).backward(); opt.step()`` without autograd or ``.grad``.
        reduction="none" has no step (raises ValueError)."""
        return sgns_sgd_step(self.in_embed.weight, self.out_embed.weight, centers, contexts, negatives, lr,
                             self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"
