"""Argument and corpus handling shared by the example scripts (kept next to them so each script stays short)."""
from __future__ import annotations

import argparse
import os
import sys


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


def add_resume_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The pretraining scripts' --dropout, --save-every, --resume and --stop-after."""
    parser.add_argument("--dropout", type=float, default=0.0, help="dropout probability (default 0: short runs)")
    parser.add_argument("--save-every", type=int, default=100,
                        help="resumable checkpoint every N steps under OUT/checkpoints (0: only on a stop)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest checkpoint under --out (same settings; a fresh start, said "
                             "so, when there is none)")
    parser.add_argument("--stop-after", type=int, default=None, metavar="N",
                        help="checkpoint and exit after N steps of this run (continue later with --resume)")
    return parser


def report_interruption(exc, dist=None) -> int:
    """Print a TrainingInterrupted on rank 0 -> the exit status (130 for SIGINT, 143 for SIGTERM, 0 for
    --stop-after)."""
    if dist is None or dist.is_main:
        print(f"{os.path.basename(sys.argv[0])}: {exc}", file=sys.stderr, flush=True)
    return exc.exit_code


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


def tokenizer_for(paragraphs, vocab_size, directory, dist=None, reuse=False):
    """Train a WordPiece vocabulary on rank 0 (or, with ``reuse``, load the one saved before when there is one:
    a resumed run keeps its vocabulary), save it to directory/tokenizer and send it to every rank, so all ranks
    hold the very same vocabulary without sharing a filesystem (multi-node)."""
    from pyfast.models import WordPieceTokenizer

    path = os.path.join(directory, "tokenizer")
    vocab = None
    if dist is None or dist.is_main:
        if reuse and os.path.exists(os.path.join(path, "vocab.txt")):
            vocab = WordPieceTokenizer.from_file(path).vocab
        else:
            vocab = WordPieceTokenizer.train(paragraphs, vocab_size=vocab_size).vocab
            WordPieceTokenizer(vocab).save(path)
    if dist is not None and dist.enabled:
        import torch.distributed

        box = [vocab]
        torch.distributed.broadcast_object_list(box, src=0)
        vocab = box[0]
    return WordPieceTokenizer(vocab)
