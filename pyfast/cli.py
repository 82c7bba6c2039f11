"""Command line: python -m pyfast {info,bench,...}. Each subcommand is registered in COMMANDS."""
from __future__ import annotations

import argparse
import sys


def _cmd_info(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyfast info", description="Show how pyfast was built.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    from ._info import info

    data = info()
    if args.json:
        import json

        print(json.dumps(data, indent=2))
        return 0
    width = max(len(k) for k in data)
    for key, value in data.items():
        print(f"{key:<{width}}  {value}")
    try:
        import torch

        print(f"{'torch':<{width}}  {torch.__version__}")
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return 0


def _cmd_bench(argv: list[str]) -> int:
    from .bench.cli import main as bench_main

    return bench_main(argv)


def _cmd_demo(argv: list[str]) -> int:
    from .demo import main as demo_main

    return demo_main(argv)


def _cmd_word2vec(argv: list[str]) -> int:
    """word2vec.c's command line: same flags, same defaults (alpha 0.05 for CBOW, 0.025 for skip-gram)."""
    parser = argparse.ArgumentParser(
        prog="python -m pyfast word2vec",
        description="Train word vectors like word2vec.c: python -m pyfast word2vec -train corpus.txt -output vec.bin "
                    "-size 100 -window 5 -sample 1e-3 -negative 5 -cbow 1 -binary 1")
    parser.add_argument("-train", required=True, help="training text, one sentence per line, tokens split on whitespace")
    parser.add_argument("-output", help="word vectors file (word2vec format)")
    parser.add_argument("-size", type=int, default=100, help="vector size (default 100)")
    parser.add_argument("-window", type=int, default=5, help="max skip length between words (default 5)")
    parser.add_argument("-sample", type=float, default=1e-3, help="downsampling threshold (default 1e-3; 0 = off)")
    parser.add_argument("-hs", type=int, default=0, help="hierarchical softmax: not implemented, must be 0")
    parser.add_argument("-negative", type=int, default=5, help="negative examples (default 5)")
    parser.add_argument("-threads", type=int, default=12, help="threads (default 12)")
    parser.add_argument("-iter", type=int, default=5, help="training epochs (default 5)")
    parser.add_argument("-min-count", dest="min_count", type=int, default=5, help="discard words rarer than this (default 5)")
    parser.add_argument("-alpha", type=float, default=None, help="starting learning rate (default 0.025 sg, 0.05 cbow)")
    parser.add_argument("-binary", type=int, default=0, help="save vectors in binary (1) or text (0, default)")
    parser.add_argument("-cbow", type=int, default=1, help="1 = CBOW (default), 0 = skip-gram")
    parser.add_argument("-save-vocab", dest="save_vocab", help="write the vocabulary ('word count' lines)")
    parser.add_argument("-read-vocab", dest="read_vocab", help="read the vocabulary from this file instead of counting")
    parser.add_argument("-debug", type=int, default=2, help="2 = progress (default), 0 = quiet")
    parser.add_argument("-classes", type=int, default=0, help="k-means classes: not implemented, must be 0")
    parser.add_argument("-seed", type=int, default=1, help="random seed (pyfast extra; default 1)")
    parser.add_argument("-shared-negatives", dest="shared_negatives", type=int, default=1,
                        help="skip-gram: share negatives across a window (pyfast extra; default 1)")
    args = parser.parse_args(argv)
    if args.hs:
        parser.error("-hs 1 (hierarchical softmax) is not implemented; use -negative")
    if args.classes:
        parser.error("-classes is not implemented")
    if not args.output and not args.save_vocab:
        parser.error("nothing to do: give -output and/or -save-vocab")
    from .word2vec import Word2Vec

    sg = 0 if args.cbow else 1
    alpha = args.alpha if args.alpha is not None else (0.05 if args.cbow else 0.025)
    try:
        model = Word2Vec(vector_size=args.size, window=args.window, sample=args.sample, negative=args.negative,
                         workers=args.threads, epochs=args.iter, min_count=args.min_count, alpha=alpha, sg=sg,
                         seed=args.seed, shared_negatives=bool(args.shared_negatives), progress=args.debug > 0,
                         alpha_schedule="linear")  # word2vec.c: one global decay shared by all threads
        if args.read_vocab:
            freq = {}
            with open(args.read_vocab, "rb") as fh:
                for line in fh:
                    parts = line.split()
                    if len(parts) == 2:
                        freq[parts[0].decode("utf-8", "surrogateescape")] = int(parts[1])
            model.build_vocab_from_freq({w: c for w, c in freq.items() if c >= args.min_count} or freq)
        else:
            model.build_vocab(corpus_file=args.train)
        if args.debug > 0:
            print(f"vocab size: {len(model.wv)}, words in train file: {model.corpus_total_words}", file=sys.stderr)
        if args.save_vocab:
            def write_vocab(fh):
                for key, count in zip(model.wv.index_to_key, model.wv.counts):
                    fh.write(key.encode("utf-8", "surrogateescape") + f" {int(count)}\n".encode())
            from .keyedvectors import atomic_write

            atomic_write(args.save_vocab, write_vocab)
        if args.output:
            try:
                model.train(corpus_file=args.train)
            except KeyboardInterrupt:
                # Ctrl-C: the trainer has stopped and joined its threads; keep what was trained, resumable.
                checkpoint = args.output + ".interrupted.npz"
                model.save(checkpoint)
                print(f"python -m pyfast word2vec: interrupted after {model.epochs_trained} of {args.iter} epochs; "
                      f"model saved to {checkpoint} (continue with pyfast.Word2Vec.load(path).train(corpus_file=..., "
                      "epochs=N))", file=sys.stderr)
                return 130
            model.wv.save_word2vec_format(args.output, binary=bool(args.binary))
    except (FileNotFoundError, ValueError) as exc:
        print(f"python -m pyfast word2vec: {exc}", file=sys.stderr)
        return 1
    return 0


COMMANDS = {
    "info": (_cmd_info, "show how pyfast was built (version, SIMD, OpenMP, threads, CUDA)"),
    "bench": (_cmd_bench, "benchmark pyfast kernels against their peers"),
    "demo": (_cmd_demo, "pretrain word2vec, BERT and GPT on a shipped corpus, fine-tune, compare (--quick: 1 min)"),


    "word2vec": (_cmd_word2vec, "train word vectors with word2vec.c's flags (-train FILE -output FILE ...)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m pyfast COMMAND [ARGS]\n\ncommands:")
        for name, (_fn, help_text) in COMMANDS.items():
            print(f"  {name:<10} {help_text}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"python -m pyfast: unknown command {name!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return COMMANDS[name][0](rest)
