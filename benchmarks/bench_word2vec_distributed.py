"""Benchmark Word2Vec(distributed=True): 1 process against N processes (torchrun, gloo, one native thread each by
default) on the same corpus file, same settings and total epochs; raw words/s of train() (the vocabulary, built
with collectives in the distributed runs, is timed separately) and quality (analogy accuracy on questions-words.txt
over the questions whose words are all in the vocabulary, WordSim353 Spearman; gensim's evaluators).

    python benchmarks/bench_word2vec_distributed.py [--sg 0|1] [--corpus PATH] [--copies N] [--repeat N]
        [--procs N] [--threads N] [--sync-every S ...] [--sync-mode sum|average] [--json PATH]

Corpus: ``--corpus``, else the gensim-test-data text of pyfast/bench/word2vec.py (Wikipedia sample, lee_background,
Pang-Lee, IMDB sample: ~0.52M words) repeated ``--copies`` times (10: ~5.2M words) into the temp directory.
Contenders run interleaved (seed 1: A B C, seed 2: A B C, ...), each in fresh processes; speed is the median over
seeds, quality the mean. Needs gensim (corpus and evaluators). Hold /tmp/pyfast-cpu.lock around it on shared machines.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = dict(vector_size=100, window=5, negative=5, sample=1e-3, epochs=3, min_count=5, alpha_schedule="linear")


def worker(args) -> None:
    """One process of a contender (rank r under torchrun): build the vocabulary, train, rank 0 scores and writes."""
    import numpy as np

    import pyfast
    from pyfast.bench import word2vec as w2v_bench

    distributed = args.procs > 1
    model = pyfast.Word2Vec(sg=args.sg, seed=args.seed, workers=args.threads, distributed=distributed,
                            sync_every=args.sync_every, sync_mode=args.sync_mode, **SETTINGS)
    t0 = time.perf_counter()
    model.build_vocab(corpus_file=args.corpus)
    t1 = time.perf_counter()
    model.train(corpus_file=args.corpus, total_examples=model.corpus_count, total_words=model.corpus_total_words,
                epochs=model.epochs)
    t2 = time.perf_counter()
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        from gensim.models import KeyedVectors as GensimKV

        kv = GensimKV(model.vector_size)
        kv.add_vectors(model.wv.index_to_key, np.asarray(model.wv.vectors))
        stats = model.train_stats
        record = {"vocab_s": t1 - t0, "train_s": t2 - t1, "words": model.corpus_total_words * model.epochs,
                  "words_per_s": model.corpus_total_words * model.epochs / (t2 - t1), "vocab_size": len(model.wv),
                  "syncs_per_epoch": stats[-1].get("syncs", 0),
                  "sync_s": sum(s.get("sync_seconds", 0.0) for s in stats), **w2v_bench.quality(kv)}
        with open(args.out, "w") as fh:
            json.dump(record, fh)
    if distributed:
        import torch.distributed as dist

        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_contender(args, procs: int, sync_every: int, seed: int) -> dict:
    out = os.path.join(tempfile.gettempdir(), f"pyfast_w2v_dist_{os.getpid()}.json")
    script = [os.path.abspath(__file__), "--worker", "--corpus", args.corpus, "--sg", str(args.sg), "--seed",
              str(seed), "--procs", str(procs), "--threads", str(args.threads), "--sync-every", str(sync_every),
              "--sync-mode", args.sync_mode, "--out", out]
    if procs > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs), "--master_addr",
               "127.0.0.1", "--master_port", str(free_port())] + script
    else:
        cmd = [sys.executable] + script
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS=str(args.threads))
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    with open(out) as fh:
        record = json.load(fh)
    os.remove(out)
    return record


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--sg", type=int, choices=(0, 1), default=1)
    parser.add_argument("--corpus", default=None)
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--procs", type=int, default=2, help="processes of the distributed contender(s)")
    parser.add_argument("--threads", type=int, default=1, help="native worker threads per process")
    parser.add_argument("--sync-every", type=int, nargs="+", default=None,
                        help="one distributed contender per value (default: Word2Vec's default)")
    parser.add_argument("--sync-mode", choices=("sum", "average"), default="sum")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.worker:
        args.sync_every = args.sync_every[0]
        worker(args)
        return 0
    from pyfast.bench import word2vec as w2v_bench
    from pyfast.word2vec import DEFAULT_SYNC_EVERY

    if args.corpus is None:
        args.corpus = os.path.join(tempfile.gettempdir(), f"pyfast_w2v_bench_x{args.copies}.txt")
        if not os.path.exists(args.corpus):
            w2v_bench.build_corpus(args.corpus, args.copies)
    syncs = args.sync_every or [DEFAULT_SYNC_EVERY]
    contenders = [("1 process", 1, syncs[0])] + [(f"{args.procs} processes, sync_every {s}", args.procs, s)
                                                 for s in syncs]
    runs = {name: [] for name, _, _ in contenders}
    for seed in range(1, args.repeat + 1):
        for name, procs, sync_every in contenders:
            runs[name].append(run_contender(args, procs, sync_every, seed))
            r = runs[name][-1]
            print(f"seed {seed} {name}: {r['words_per_s'] / 1e6:.3f} Mwords/s, analogy {100 * r['analogy']:.2f}%, "
                  f"WS353 {r['ws353']:.3f}, {r['syncs_per_epoch']} syncs/epoch, sync {r['sync_s']:.2f}s",
                  flush=True)
    base = statistics.median(r["words_per_s"] for r in runs[contenders[0][0]])
    print(f"\n{'sg' if args.sg else 'CBOW'}, {args.threads} thread(s) per process, corpus {args.corpus} "
          f"({runs[contenders[0][0]][0]['words'] // SETTINGS['epochs'] / 1e6:.2f}M words, vocabulary "
          f"{runs[contenders[0][0]][0]['vocab_size']})")
    print("| contender | Mwords/s | x 1 process | analogy % | WS353 rho | syncs/epoch | sync s | vocab s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, _, _ in contenders:
        rs = runs[name]
        speed = statistics.median(r["words_per_s"] for r in rs)
        print(f"| {name} | {speed / 1e6:.3f} | {speed / base:.2f} | "
              f"{100 * statistics.mean(r['analogy'] for r in rs):.2f} | {statistics.mean(r['ws353'] for r in rs):.3f} "
              f"| {rs[0]['syncs_per_epoch']} | {statistics.median(r['sync_s'] for r in rs):.2f} | "
              f"{statistics.median(r['vocab_s'] for r in rs):.2f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"command": "python benchmarks/bench_word2vec_distributed.py " + " ".join(sys.argv[1:]),
                       "settings": SETTINGS, "sg": args.sg, "threads": args.threads, "runs": runs}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
