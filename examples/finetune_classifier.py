#!/usr/bin/env python
"""Fine-tune a BERT classification head on real labelled data and report held-out accuracy.

    python examples/finetune_classifier.py --steps 150                                  # random init
    python examples/finetune_classifier.py --from-checkpoint runs/pretrain_bert/checkpoint
    python examples/finetune_classifier.py --from-word2vec                              # word2vec embeddings

Datasets: `polarity` (Pang & Lee sentence polarity, the 200-sentence copy in gensim's test data; needs gensim) or
`austen` (which of three Austen novels a held-out paragraph comes from; ships with pyfast). Default: polarity when
gensim is installed, else austen.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import base_parser  # noqa: E402

from pyfast.demo import tasks  # noqa: E402
from pyfast.demo.corpus import load_books, polarity_dataset, split_paragraphs, word_sentences  # noqa: E402
from pyfast.models import WordPieceTokenizer  # noqa: E402


def main() -> int:
    parser = base_parser(__doc__.split("\n\n")[0], steps=150, out="runs/finetune_classifier")
    parser.set_defaults(lr=2e-3)
    parser.add_argument("--dataset", choices=["polarity", "austen"], default=None)
    init = parser.add_mutually_exclusive_group()
    init.add_argument("--from-checkpoint", metavar="DIR", help="a pretrain_bert.py checkpoint (encoder + vocab)")
    init.add_argument("--from-word2vec", action="store_true",
                      help="initialise word embeddings from word2vec trained on the Austen corpus + training text")
    parser.add_argument("--freeze-embeddings", action="store_true", help="with --from-word2vec: keep them fixed")
    parser.add_argument("--pooling", choices=["mean", "cls"], default="mean")
    args = parser.parse_args()

    polarity = polarity_dataset(seed=args.seed) if args.dataset in (None, "polarity") else None
    if args.dataset == "polarity" and polarity is None:
        print("the polarity dataset needs gensim (its test data ships it): pip install gensim", file=sys.stderr)
        return 2
    books = load_books()
    if polarity is not None:
        (train, test), num_labels, name = polarity, 2, "polarity (Pang & Lee, gensim test data)"
    else:
        (train, test), num_labels, name = split_paragraphs(books), len(books), "austen (which novel?)"
    unlabelled = [p for p, _ in split_paragraphs(books)[0]] + [t for t, _ in train]  # never the test rows
    if args.from_checkpoint:
        tokenizer = WordPieceTokenizer.from_file(args.from_checkpoint)
    else:
        tokenizer = WordPieceTokenizer.train(unlabelled, vocab_size=args.vocab_size)
    word_vectors = None
    if args.from_word2vec:
        w2v = tasks.train_word2vec(word_sentences(unlabelled), vector_size=args.hidden, epochs=5, seed=args.seed + 1)
        word_vectors = w2v["model"]
        print(f"word2vec: {w2v['words_per_s']:.0f} words/s; e.g. {list(w2v['probes'].items())[:1]}")
    print(f"dataset {name}: {len(train)} train / {len(test)} held-out examples, {num_labels} labels", flush=True)
    result = tasks.finetune_classifier(
        tokenizer, train, test, num_labels=num_labels, init=args.from_checkpoint, word_vectors=word_vectors,
        steps=args.steps, batch_size=args.batch_size, max_len=args.seq_len, hidden=args.hidden, layers=args.layers,
        heads=args.heads, lr=args.lr, seed=args.seed, quiet=args.quiet, freeze_embeddings=args.freeze_embeddings,
        out_dir=args.out, pooling=args.pooling)
    if result["transfer"] is not None:
        t = result["transfer"]
        print(f"embeddings: {t.found} of {len(tokenizer)} tokens from word2vec, {t.unknown} random "
              f"(e.g. {t.unknown_tokens[:5]})")
    print(f"loss {result['first_loss']:.3f} -> {result['last_loss']:.3f}; held-out accuracy {result['accuracy']:.1%} "
          f"(majority class {result['majority']:.1%}, {len(test)} examples)")
    print(f"checkpoint {os.path.join(args.out, 'checkpoint')}; curve {os.path.join(args.out, 'loss.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
