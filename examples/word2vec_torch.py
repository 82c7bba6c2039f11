"""word2vec (skip-gram, negative sampling) as an ordinary PyTorch training loop on pyfast's fused SGNS op.

Corpus: gensim's Lee background corpus (gensim/test/test_data/lee_background.cor, ~60k words), or --corpus PATH
(one document per line). Prints the loss as it trains and nearest neighbours at the end.

    python examples/word2vec_torch.py                 # 5 epochs
    python examples/word2vec_torch.py --steps 50      # a quick run
"""
from __future__ import annotations

import argparse
import os
import re
import time
from collections import Counter

import torch

import pyfast
from pyfast.data import NoiseSampler, skipgram_pairs
from pyfast.nn import SkipGramNS


def default_corpus() -> str:
    try:
        import gensim
    except ImportError:
        raise SystemExit("gensim is not installed: pass --corpus PATH (a text file, one document per line)")
    return os.path.join(os.path.dirname(gensim.__file__), "test", "test_data", "lee_background.cor")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=None)
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--window", type=int, default=5)
    ap.add_argument("--negatives", type=int, default=5)
    ap.add_argument("--min-count", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=1024, help="pairs per step")
    ap.add_argument("--lr", type=float, default=0.01, help="SparseAdam learning rate")
    ap.add_argument("--steps", type=int, default=None, help="stop after this many steps")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    # 1. Vocabulary and ids, one tensor per document (pairs never cross documents).
    with open(args.corpus or default_corpus(), encoding="utf8") as fh:
        docs = [re.findall(r"[a-z]+", line.lower()) for line in fh]
    counts = Counter(w for d in docs for w in d)
    vocab = [w for w, c in counts.most_common() if c >= args.min_count]
    index = {w: i for i, w in enumerate(vocab)}
    sentences = [torch.tensor([index[w] for w in d if w in index], dtype=torch.int64) for d in docs]
    freq = torch.tensor([counts[w] for w in vocab], dtype=torch.float64)
    print(f"{len(docs)} documents, {int(freq.sum())} words, vocabulary {len(vocab)}")

    # 2. Model, optimiser (sparse gradients), noise distribution count^0.75.
    torch.manual_seed(args.seed)
    model = SkipGramNS(len(vocab), args.dim, sparse=True)
    opt = torch.optim.SparseAdam(list(model.parameters()), lr=args.lr)
    noise = NoiseSampler(freq, exponent=0.75)

    # 3. Train: fresh subsampling and windows each epoch, shuffled pairs, K negatives per pair.
    step, t0, seen = 0, time.perf_counter(), 0
    for epoch in range(args.epochs):
        centers, contexts = skipgram_pairs(sentences, args.window, counts=freq, sample=1e-3,
                                           seed=args.seed * 1000 + epoch)
        order = torch.randperm(centers.numel())
        running = 0.0
        for b, start in enumerate(range(0, order.numel(), args.batch)):
            idx = order[start:start + args.batch]
            negs = noise.sample(idx.numel(), args.negatives, seed=args.seed * 10**6 + step)
            loss = model(centers[idx], contexts[idx], negs)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += loss.item()
            seen += idx.numel()
            step += 1
            if step % 100 == 0:
                print(f"epoch {epoch} step {step}: loss {running / (b + 1):.4f}, "
                      f"{seen / (time.perf_counter() - t0) / 1e3:.0f}k pairs/s")
            if args.steps is not None and step >= args.steps:
                break
        print(f"epoch {epoch}: {centers.numel()} pairs, mean loss {running / max(b + 1, 1):.4f}")
        if args.steps is not None and step >= args.steps:
            break

    # 4. Nearest neighbours by cosine similarity of the input vectors.
    emb = torch.nn.functional.normalize(model.in_embed.weight.detach(), dim=1)
    for word in ("government", "police", "australia", "fire", "president", "minister"):
        if word not in index:
            continue
        sims = emb @ emb[index[word]]
        best = sims.topk(6).indices.tolist()[1:]
        print(f"{word:>12}: " + ", ".join(f"{vocab[i]} ({sims[i]:.2f})" for i in best))
    print(f"pyfast {pyfast.__version__}, {pyfast.get_num_threads()} threads")


if __name__ == "__main__":
    main()
