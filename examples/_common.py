"""Argument and corpus handling shared by the example scripts (kept next to them so each script stays short)."""
from __future__ import annotations

import argparse
import os


def base_parser(description: str, steps: int, out: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--steps", type=int, default=steps, help=f"optimizer steps (default {steps})")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=64, help="tokens per row")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--vocab-size", type=int, default=4000, help="WordPiece vocabulary size when training one")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", nargs="*", default=None,
                        help="text files (one paragraph a line); default: the Austen novels shipped with pyfast")
    parser.add_argument("--out", default=out, help=f"checkpoint, loss.csv and loss.png go here (default {out})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def load_paragraphs(files):
    """-> (train, test) paragraph lists: the shipped corpus split by book, or the given files' lines (last 10%
    held out)."""
    if not files:
        from pyfast.demo.corpus import load_books, split_paragraphs

        train, test = split_paragraphs(load_books())
        return [p for p, _ in train], [p for p, _ in test]
    lines = []
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines += [line.strip() for line in fh if line.strip()]
    cut = int(len(lines) * 0.9)
    return lines[:cut], lines[cut:]


def tokenizer_for(paragraphs, vocab_size, directory, dist=None):
    """Train a WordPiece vocabulary on rank 0, save it to directory/tokenizer, and load it on every rank (so all
    ranks hold the very same vocabulary)."""
    from pyfast.models import WordPieceTokenizer

    path = os.path.join(directory, "tokenizer")
    if dist is None or dist.is_main:
        WordPieceTokenizer.train(paragraphs, vocab_size=vocab_size).save(path)
    if dist is not None and dist.enabled:
        import torch.distributed

        torch.distributed.barrier()
    return WordPieceTokenizer.from_file(path)
