"""Transfer from word2vec: one call builds an nn.Embedding for a model's vocabulary from trained word vectors.

Each vocabulary token takes its word vector (exact match first, then its lower-cased form); tokens with no vector
(special tokens, WordPiece '##' pieces, rare words) are drawn from N(0, std of the known vectors) so they sit at the
same scale, and are counted and listed. The padding row, when given, is zero.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn


@dataclass
class TransferReport:
    found: int                     # vocabulary tokens initialised from a word vector
    unknown: int                   # tokens initialised randomly (padding_idx excluded)
    unknown_tokens: list = field(default_factory=list)

    @property
    def coverage(self) -> float:
        total = self.found + self.unknown
        return self.found / total if total else 0.0


def _as_key_to_vector(vectors):
    """Word2Vec model / KeyedVectors (.key_to_index + .vectors) / dict word -> vector -> (lookup fn, matrix)."""
    wv = getattr(vectors, "wv", vectors)
    if hasattr(wv, "key_to_index") and hasattr(wv, "vectors"):
        matrix = np.asarray(wv.vectors, dtype=np.float32)
        index = wv.key_to_index
        return (lambda w: matrix[index[w]] if w in index else None), matrix
    if isinstance(wv, dict):
        if not wv:
            raise ValueError("embedding_from_word2vec: the vector dict is empty")
        keys = list(wv)
        matrix = np.stack([np.asarray(wv[k], dtype=np.float32) for k in keys])
        index = {k: i for i, k in enumerate(keys)}
        return (lambda w: matrix[index[w]] if w in index else None), matrix
    raise TypeError("embedding_from_word2vec: vectors must be a Word2Vec model, KeyedVectors (key_to_index + "
                    f"vectors) or a dict word -> vector, got {type(vectors).__name__}")


def embedding_from_word2vec(vectors, vocab, freeze: bool = True, padding_idx: int | None = None,
                            seed: int | None = 0) -> tuple[nn.Embedding, TransferReport]:
    """vocab: list of tokens (id = position) or dict token -> id. Returns (nn.Embedding(len(vocab), dim), report)."""
    if isinstance(vocab, dict):
        ids = sorted(vocab.values())
        if ids != list(range(len(ids))):
            raise ValueError("embedding_from_word2vec: vocab ids must be exactly 0 .. len(vocab) - 1")
        tokens = [None] * len(vocab)
        for token, i in vocab.items():
            tokens[i] = token
    else:
        tokens = list(vocab)
    if not tokens:
        raise ValueError("embedding_from_word2vec: vocab is empty")
    if padding_idx is not None and not 0 <= padding_idx < len(tokens):
        raise ValueError(f"embedding_from_word2vec: padding_idx {padding_idx} outside [0, {len(tokens)})")
    lookup, matrix = _as_key_to_vector(vectors)
    dim = matrix.shape[1]
    std = float(matrix.std()) if matrix.size else 1.0
    gen = torch.Generator().manual_seed(0 if seed is None else seed)
    weight = torch.randn(len(tokens), dim, generator=gen) * std
    found, unknown = 0, []
    for i, token in enumerate(tokens):
        if i == padding_idx:
            weight[i].zero_()
            continue
        vec = lookup(token)
        if vec is None and isinstance(token, str) and token.lower() != token:
            vec = lookup(token.lower())
        if vec is None:
            unknown.append(token)
        else:
            weight[i] = torch.from_numpy(np.array(vec, dtype=np.float32))
            found += 1
    embedding = nn.Embedding.from_pretrained(weight, freeze=freeze, padding_idx=padding_idx)
    return embedding, TransferReport(found=found, unknown=len(unknown), unknown_tokens=unknown)
