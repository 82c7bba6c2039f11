"""`python -m pyfast demo [--quick] [--out DIR]`: pyfast end to end on three Austen novels shipped in the package.

Trains word2vec (nearest neighbours), a WordPiece vocabulary, a tiny BERT (masked LM) and a tiny GPT (causal LM),
fine-tunes classifiers on held-out text, and ends with a table: what ran, the quality reached, and throughput
beside HF transformers / gensim when they are installed. Sized for 2 CPU cores: under 5 minutes, --quick under 1.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

SIZES = {
    # quick: a smoke run that still shows every stage learning something
    True: dict(w2v_epochs=2, vocab=3000, bert_steps=150, gpt_steps=100, batch=32, seq=64,
               hidden=64, layers=2, heads=4, repeat=3, ft_seeds=2, ft_steps=30, fractions=(0.01, 0.1)),
    False: dict(w2v_epochs=5, vocab=4000, bert_steps=400, gpt_steps=300, batch=32, seq=64,
                hidden=128, layers=2, heads=4, repeat=5, ft_seeds=3, ft_steps=60,
                fractions=(0.01, 0.1, 1.0)),
}


def _fmt_rate(value, unit):
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M {unit}"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k {unit}"
    return f"{value:.0f} {unit}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyfast demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run (under a minute on 2 cores)")
    parser.add_argument("--out", default=None, help="where checkpoints, loss logs and curves go (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-peers", action="store_true", help="skip the HF / gensim throughput comparison")
    parser.add_argument("--vision", action="store_true", help="run the vision section in --quick too (~60 s more)")
    parser.add_argument("--no-vision", action="store_true", help="skip the vision section")
    args = parser.parse_args(argv)

    import torch

    from . import tasks
    from .corpus import load_books, split_paragraphs, word_sentences

    size = SIZES[args.quick]
    out_dir = args.out or tempfile.mkdtemp(prefix="pyfast-demo-")
    os.makedirs(out_dir, exist_ok=True)
    start = time.perf_counter()
    rows = []  # (stage, what ran, quality, pyfast throughput, peer throughput, seconds)

    def stage(title):
        print(f"\n== {title} ({time.perf_counter() - start:.0f}s)", flush=True)

    books = load_books()
    train, test = split_paragraphs(books)
    train_text, test_text = [p for p, _ in train], [p for p, _ in test]
    n_words = sum(len(p.split()) for p in train_text)
    print(f"pyfast demo{' --quick' if args.quick else ''}: {len(books)} Austen novels, {len(train)} paragraphs "
          f"({n_words / 1e3:.0f}k words) to train on, {len(test)} held out; torch threads {torch.get_num_threads()}; "
          f"output in {out_dir}")

    # 1. word2vec ----------------------------------------------------------------------------------------------
    stage("word2vec (skip-gram, negative sampling)")
    sentences = word_sentences(train_text)
    w2v = None
    t0 = time.perf_counter()
    try:
        w2v_result = tasks.train_word2vec(sentences, vector_size=size["hidden"], epochs=size["w2v_epochs"],
                                          workers=2, seed=args.seed + 1)
    except ImportError as exc:
        print(f"skipped: {exc}")
        rows.append(("word2vec", "skipped", str(exc), None, None, 0.0))
    else:
        w2v = w2v_result["model"]
        impl = tasks.implementation_name(type(w2v))
        for word, neighbours in w2v_result["probes"].items():
            print(f"  {word:>8}: {', '.join(neighbours[:8])}")
        peer_rate, peer_name = None, None
        peer = tasks.word2vec_peer()
        if peer is not None and not args.no_peers and tasks.implementation_name(peer) != impl:
            peer_name = tasks.implementation_name(peer)
            peer_rate = tasks.train_word2vec(sentences, vector_size=size["hidden"], epochs=size["w2v_epochs"],
                                             workers=2, seed=args.seed + 1, impl=peer)["words_per_s"]
        rows.append(("word2vec", f"{impl}, {size['w2v_epochs']} epoch(s), d={size['hidden']}",
                     f"probe neighbours sensible {w2v_result['probe_hits']:.0%}",
                     _fmt_rate(w2v_result["words_per_s"], "words/s"),
                     f"{peer_name} {_fmt_rate(peer_rate, 'words/s')}" if peer_rate else "-",
                     time.perf_counter() - t0))

    # 2. WordPiece ---------------------------------------------------------------------------------------------
    stage("WordPiece vocabulary")
    tokenizer, seconds = tasks.train_tokenizer(train_text, vocab_size=size["vocab"])
    tokenizer.save(os.path.join(out_dir, "tokenizer"))
    example = tokenizer.tokenize("Elizabeth's astonishment was beyond expression.")
    print(f"  {tokenizer.kind}, {len(tokenizer)} tokens; e.g. {example}")
    rows.append(("tokenizer", f"{tokenizer.kind}, {len(tokenizer)} tokens", f"e.g. {' '.join(example[:6])}",
                 "-", "-", seconds))

    # 3. BERT MLM ----------------------------------------------------------------------------------------------
    stage(f"BERT masked-LM pretraining, {size['bert_steps']} steps")
    t0 = time.perf_counter()
    dims = dict(hidden=size["hidden"], layers=size["layers"], heads=size["heads"])
    bert = tasks.pretrain_bert(tokenizer, train_text, test_text, steps=size["bert_steps"], batch_size=size["batch"],
                               seq_len=size["seq"], seed=args.seed, out_dir=os.path.join(out_dir, "bert"), **dims)
    peers = {} if args.no_peers else tasks.bert_throughput_vs_hf(
        tokenizer, train_text, batch_size=size["batch"], seq_len=size["seq"], repeat=size["repeat"], **dims)
    unigram = tasks.unigram_baseline(tokenizer, train_text, test_text, size["seq"])
    print(f"  loss {bert['first_loss']:.2f} -> {bert['last_loss']:.2f}; held-out masked-token accuracy "
          f"{bert['masked_acc']:.1%} (always guessing the commonest token: {unigram:.1%})")
    rows.append(("BERT MLM", f"{size['bert_steps']} steps, {bert['model'].num_parameters() / 1e6:.1f}M params",
                 f"loss {bert['first_loss']:.2f}->{bert['last_loss']:.2f}, masked acc {bert['masked_acc']:.1%} "
                 f"(unigram {unigram:.1%})",
                 _peer_cell(peers, "pyfast", bert["tokens_per_s"]), _peer_cell(peers, "HF transformers"),
                 time.perf_counter() - t0))

    # 4. GPT causal LM -----------------------------------------------------------------------------------------
    stage(f"GPT causal-LM pretraining, {size['gpt_steps']} steps")
    t0 = time.perf_counter()
    gpt = tasks.pretrain_gpt(tokenizer, train_text, test_text, steps=size["gpt_steps"], batch_size=size["batch"] // 2,
                             seq_len=size["seq"], seed=args.seed, out_dir=os.path.join(out_dir, "gpt"), **dims)
    peers = {} if args.no_peers else tasks.gpt_throughput_vs_hf(
        tokenizer, train_text, batch_size=size["batch"] // 2, seq_len=size["seq"], repeat=size["repeat"], **dims)
    print(f"  loss {gpt['first_loss']:.2f} -> {gpt['last_loss']:.2f}; held-out perplexity {gpt['perplexity']:.0f} "
          f"(vocabulary {len(tokenizer)})\n  sample: {gpt['sample']!r}")
    rows.append(("GPT CLM", f"{size['gpt_steps']} steps, {gpt['model'].num_parameters() / 1e6:.1f}M params",
                 f"loss {gpt['first_loss']:.2f}->{gpt['last_loss']:.2f}, ppl {gpt['perplexity']:.0f}",
                 _peer_cell(peers, "pyfast", gpt["tokens_per_s"]), _peer_cell(peers, "HF transformers"),
                 time.perf_counter() - t0))

    # 5. does pre-training pay? pretrained vs the same model from scratch, few labels, held-out data ----------
    # Tasks where what unlabelled text teaches is what the labels need, one per pretraining objective: names vs
    # common words from word2vec vectors (a word unseen among the labels is placed by its contexts); for BERT,
    # were some words replaced by corpus words of the same frequencies? (whether a word fits its context on both
    # sides is what masked-LM training judges at every step); for GPT, real vs word-shuffled paragraphs (same words
    # either way: a causal LM learned which word follows which). Not BERT on "shuffled?": a bidirectional encoder
    # sees order only through learned positions, and from 400 MLM steps it has too little of them to read out with
    # 41 labels (benchmarks/RESULTS.md, #19). "Which novel?" is not used: character names carry it, and a
    # classifier learns those from the labels themselves.
    stage("pretrained vs scratch: fine-tuning on 1% / 10% / 100% of the labels")
    from . import transfer
    from .corpus import proper_noun_dataset, replaced_word_dataset, word_order_dataset

    comparisons = []
    ft = dict(seeds=range(args.seed, args.seed + size["ft_seeds"]), batch_size=16, progress=lambda m: print("  " + m))
    steps = lambda n: size["ft_steps"]  # noqa: E731 (the same step count for every label fraction)
    if w2v is not None:
        vocab = transfer.word_vocab(w2v)
        words_train, words_test = proper_noun_dataset(train_text, w2v.wv.index_to_key, seed=args.seed)
        pre, scratch = transfer.word2vec_sides(w2v, vocab, 2, lr=3e-3, head_lr=3e-2)
        comparisons.append(transfer.compare(
            "word2vec: name or word?", pre, scratch, transfer.encode_words(words_train, vocab),
            transfer.encode_words(words_test, vocab), num_labels=2, fractions=size["fractions"], steps=steps,
            max_len=4, **ft))
    for method, make_rows, sides in (
            ("BERT: words replaced?", replaced_word_dataset,
             transfer.bert_sides(bert["checkpoint"], 2, lr=3e-4, head_lr=1e-2, scratch_lr=1e-3)),
            ("GPT: shuffled?", word_order_dataset,
             transfer.gpt_sides(gpt["checkpoint"], 2, lr=3e-4, head_lr=1e-2, scratch_lr=1e-3))):
        rows_train = transfer.encode_wordpiece(make_rows(train_text, seed=args.seed), tokenizer)
        rows_test = transfer.encode_wordpiece(make_rows(test_text, seed=args.seed + 1), tokenizer)
        comparisons.append(transfer.compare(method, *sides, rows_train, rows_test, num_labels=2,
                                            fractions=size["fractions"], steps=steps, max_len=size["seq"], **ft))
    for c in comparisons:
        rows.append(("transfer", f"{c.method} {size['ft_seeds']} seeds x {len(c.fractions)} fractions",
                     f"{c.pretrained} {c.stats(c.pretrained, c.fractions[0])[0]:.1%} vs {c.scratch} "
                     f"{c.stats(c.scratch, c.fractions[0])[0]:.1%} at {c.labels_used[c.fractions[0]]} labels",
                     "-", "-", c.seconds))
    curve = os.path.join(out_dir, "transfer.png")
    if not transfer.plot_curves(comparisons, curve, "pretrained vs scratch, held-out accuracy"):
        curve = None
        print("  (matplotlib not installed: no learning-curve PNG)")

    # 5b. vision (#19): MAE and supervised pretraining of a tiny ViT on Fashion-MNIST, linear probes at 1% / 100% of
    # the labels vs the same ViT from scratch (vision.QUICK settings, one seed: ~60 s on 2 cores). Not in --quick,
    # whose one-minute budget the text stages already use; examples/pretrain_vit.py runs the full comparison.
    vision_result = None
    if args.quick and not args.vision:
        print("\n(vision section skipped in --quick; add --vision, or run examples/pretrain_vit.py)")
    elif not args.no_vision:
        stage("vision: ViT pretraining (MAE, supervised 0-4 -> 5-9) vs scratch, Fashion-MNIST")
        from . import vision

        vision_result = vision.run(True, os.path.join(out_dir, "vision"), seeds=(args.seed,),
                                   log=lambda m: print("  " + m, flush=True))
        if "skipped" not in vision_result:
            rows.append(("vision", "ViT, MAE + supervised, linear probes, 1 seed", "see the vision table", "-", "-",
                         vision_result["seconds"]))

    # 6. the table ---------------------------------------------------------------------------------------------
    total = time.perf_counter() - start
    print(f"\n== summary (total {total:.0f}s, torch {torch.__version__}, {torch.get_num_threads()} threads)")
    headers = ("stage", "what ran", "quality (held-out)", "pyfast", "peer", "s")
    table = [headers] + [(a, b, c, d, e, f"{s:.1f}") for a, b, c, d, e, s in rows]
    widths = [max(len(str(r[i])) for r in table) for i in range(len(headers))]
    for i, r in enumerate(table):
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print("\npretrained vs scratch (held-out accuracy, mean +- sd over seeds; 'clear' = gain > larger sd)")
    t_headers = ("method", "labels", "pretrained", "scratch", "gain (points)", "clear")
    t_table = [t_headers] + transfer.table_rows(comparisons)
    t_widths = [max(len(str(r[i])) for r in t_table) for i in range(len(t_headers))]
    for i, r in enumerate(t_table):
        print("  ".join(str(v).ljust(w) for v, w in zip(r, t_widths)))
        if i == 0:
            print("  ".join("-" * w for w in t_widths))
    if curve:
        print(f"learning curves: {curve}")
    if vision_result and "skipped" not in vision_result:
        print("\nvision: pretrained vs scratch ViT on Fashion-MNIST test images")
        print(vision_result["markdown"])
    print(f"\ncheckpoints, loss logs (loss.csv) and curves (loss.png) in {out_dir}")
    return 0


def _peer_cell(peers: dict, name: str, fallback_rate=None) -> str:
    rate = peers.get(name, fallback_rate)
    if rate is None:
        return "-"
    label = "" if name == "pyfast" else "HF "
    return f"{label}{_fmt_rate(rate, 'tok/s')}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
