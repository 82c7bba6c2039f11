"""word2vec benchmark: pyfast vs gensim (corpus_file mode, its fastest) vs a numba version of word2vec.c's loop,
same settings (vector_size 100, window 5, negative 5, sample 1e-3, 3 epochs, 2 workers, min_count 5), raw words/s
of train() (vocabulary built untimed for every contender), plus quality: analogy accuracy and WordSim353 Spearman,
scored by gensim's own evaluators on each run's vectors (pyfast's go through a saved word2vec binary file). Each
timed repeat uses a new seed, so the quality columns are means over seeds.

Corpus: ``PYFAST_W2V_CORPUS`` if set (one sentence per line), else one built from the real English text that ships
with gensim's tests (a shortened Wikipedia dump, tokenised by gensim's WikiCorpus, plus lee_background, the
Pang-Lee polarity and the IMDB sample: ~0.52M words), repeated to ~5M words (quick: 2 copies). Repetition inflates
nothing in words/s but makes the analogy scores small and noisy: read them as equal-or-not, not as absolute quality.

Floors (2 cores, d=100): skip-gram does about 2*(K+1)*2*d*2 = 4800 flops per context-center pair, ~6 pairs per
kept word -> ~30 kflop/word; at ~50 GFLOP/s fp32 FMA peak for 2 cores that is ~1.7M words/s; the real limit is
random-row latency (each window touches ~2*window + K + 1 rows of 400 bytes, out of L2 for big vocabularies).
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

from .harness import Case, Contender

SETTINGS = dict(vector_size=100, window=5, negative=5, sample=1e-3, epochs=3, workers=2, min_count=5)


def gensim_data_dir() -> str | None:
    try:
        import gensim
    except ImportError:
        return None
    return os.path.join(os.path.dirname(gensim.__file__), "test", "test_data")


def gensim_corpus_lines() -> list[str]:
    """The real English text in gensim's test data, one sentence per line, lower-cased tokens (see module doc)."""
    from gensim.corpora.wikicorpus import WikiCorpus
    from gensim.utils import simple_preprocess

    data = gensim_data_dir()
    lines = []
    wiki = WikiCorpus(os.path.join(data, "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"),
                      dictionary={}, processes=1)
    for tokens in wiki.get_texts():
        for i in range(0, len(tokens), 1000):
            lines.append(" ".join(tokens[i:i + 1000]))
    for name in ("lee_background.cor", "pang_lee_polarity.cor", "alldata-id-10.txt"):
        with open(os.path.join(data, name), encoding="utf8", errors="replace") as fh:
            for line in fh:
                tokens = simple_preprocess(line.replace("__label__neg", "").replace("__label__pos", ""))
                if tokens:
                    lines.append(" ".join(tokens))
    return lines


def build_corpus(path: str, copies: int) -> int:
    """Write the benchmark corpus to ``path`` (see module doc); returns its word count."""
    lines = gensim_corpus_lines()
    text = "\n".join(lines) + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        for _ in range(copies):
            fh.write(text)
    os.replace(tmp, path)
    return sum(len(ln.split()) for ln in lines) * copies


def quality(kv) -> dict:
    """Analogy accuracy and WordSim353 Spearman by gensim's evaluators (kv: a gensim KeyedVectors)."""
    data = gensim_data_dir()
    analogy = kv.evaluate_word_analogies(os.path.join(data, "questions-words.txt"))[0]
    spearman = kv.evaluate_word_pairs(os.path.join(data, "wordsim353.tsv"))[1][0]
    return {"analogy": float(analogy), "ws353": float(spearman)}


# ---- numba: word2vec.c's per-pair loop, Hogwild over 2 threads ---------------------------------------------------------
_numba_train = None


def numba_trainer():
    global _numba_train
    if _numba_train is not None:
        return _numba_train
    import numba

    @numba.njit(fastmath=True, cache=False)
    def ns_update(h, syn1, center, negative, rnd, cum, alpha, neu1e):
        """One positive (center) and `negative` noise targets against hidden vector h, word2vec.c's update:
        neu1e gathers the gradient for h, syn1's rows are updated in place. Returns the LCG state."""
        d = h.shape[0]
        for k in range(negative + 1):
            if k == 0:
                target, label = center, 1.0
            else:
                rnd = rnd * np.uint64(25214903917) + np.uint64(11)
                r = ((rnd >> np.uint64(16)) & np.uint64(0xFFFFFFFF)) / 4294967296.0 * cum[-1]
                target, label = np.searchsorted(cum, r), 0.0
                if target == center:
                    continue
            f = 0.0
            for c in range(d):
                f += h[c] * syn1[target, c]
            if f > 6.0:
                g = (label - 1.0) * alpha
            elif f < -6.0:
                g = label * alpha
            else:
                g = (label - 1.0 / (1.0 + np.exp(-f))) * alpha
            for c in range(d):
                neu1e[c] += g * syn1[target, c]
                syn1[target, c] += g * h[c]
        return rnd

    @numba.njit(fastmath=True, cache=False)
    def train_slice(syn0, syn1, ids, offsets, s_begin, s_end, keep, cum, sg, window, negative, alpha0, min_alpha,
                    total, before, workers, seed):
        d = syn0.shape[1]
        rnd = np.uint64(seed)
        neu1 = np.zeros(d, np.float32)
        neu1e = np.zeros(d, np.float32)
        kept = np.empty(10000, np.int32)
        words = 0
        alpha = alpha0
        for s in range(s_begin, s_end):
            a, b = offsets[s], offsets[s + 1]
            m = 0
            for i in range(a, b):
                w = ids[i]
                rnd = rnd * np.uint64(25214903917) + np.uint64(11)
                if keep[w] < 1.0 and keep[w] < ((rnd >> np.uint64(16)) & np.uint64(0xFFFF)) / 65536.0:
                    continue
                if m < 10000:
                    kept[m] = w
                    m += 1
            words += b - a
            progress = (before + words * workers) / total  # global progress, workers assumed in step
            alpha = max(min_alpha, alpha0 - (alpha0 - min_alpha) * progress)
            for i in range(m):
                rnd = rnd * np.uint64(25214903917) + np.uint64(11)
                red = int(rnd % np.uint64(window))
                lo, hi = max(0, i - window + red), min(m, i + window + 1 - red)
                center = kept[i]
                if sg:
                    for j in range(lo, hi):
                        if j == i:
                            continue
                        x = kept[j]
                        neu1e[:] = 0.0
                        rnd = ns_update(syn0[x], syn1, center, negative, rnd, cum, alpha, neu1e)
                        for c in range(d):
                            syn0[x, c] += neu1e[c]
                else:
                    neu1[:] = 0.0
                    cnt = 0
                    for j in range(lo, hi):
                        if j != i:
                            neu1 += syn0[kept[j]]
                            cnt += 1
                    if cnt == 0:
                        continue
                    neu1 /= cnt
                    neu1e[:] = 0.0
                    rnd = ns_update(neu1, syn1, center, negative, rnd, cum, alpha, neu1e)
                    for j in range(lo, hi):
                        if j != i:
                            syn0[kept[j]] += neu1e
        return words

    @numba.njit(parallel=True)
    def train_epochs(syn0, syn1, ids, offsets, keep, cum, sg, window, negative, alpha0, min_alpha, epochs, workers,
                     seed):
        n = len(ids)
        nsent = len(offsets) - 1
        bounds = np.searchsorted(offsets[:-1], np.arange(workers + 1) * n // workers)
        bounds[-1] = nsent
        total = float(n) * epochs
        for w in numba.prange(workers):  # Hogwild: workers write the shared tables without locks
            for e in range(epochs):
                train_slice(syn0, syn1, ids, offsets, bounds[w], bounds[w + 1], keep, cum, sg, window, negative,
                            alpha0, min_alpha, total, float(e) * n, workers, seed + 7919 * w + 104729 * e)
        return 0

    # Compile now (tiny input), so no timed call pays for it.
    tiny_ids = np.array([0, 1, 0, 1], np.int32)
    for mode in (0, 1):
        train_epochs(np.zeros((2, 4), np.float32), np.zeros((2, 4), np.float32), tiny_ids,
                     np.array([0, 4], np.int64), np.ones(2), np.array([1.0, 2.0]), mode, 2, 1, 0.025, 0.0001, 1, 2, 1)
    _numba_train = train_epochs
    return train_epochs


def _numba_contender(model, corpus, sg, seeds):
    """Runs the numba loop on pyfast's vocabulary and id array (the same tokens every contender sees)."""
    train = numba_trainer()
    keep = model._keep_prob.astype(np.float64)
    cum = np.cumsum(model._noise_weights)
    state = {}

    def setup():
        seed = next(seeds)
        rng = np.random.default_rng(seed)
        V, d = model.wv.vectors.shape
        state["syn0"] = ((2.0 * rng.random((V, d)) - 1.0) / d).astype(np.float32)  # gensim's init
        state["syn1"] = np.zeros((V, d), np.float32)
        state["seed"] = seed

    def fn():
        train(state["syn0"], state["syn1"], corpus.ids, corpus.offsets, keep, cum, sg, SETTINGS["window"],
              SETTINGS["negative"], 0.025, 0.0001, SETTINGS["epochs"], SETTINGS["workers"], state["seed"])
        state["last"] = state["syn0"]

    return setup, fn, state


def cases(quick: bool = False, corpus_path: str | None = None, copies: int | None = None,
          device: str = "cpu") -> list[Case]:
    if device != "cpu":  # --device cuda (benchmarks/gpu_check.sh): the CUDA trainer's own cases
        return cuda_cases(quick=quick, corpus_path=corpus_path, copies=copies)
    try:
        import gensim  # noqa: F401
    except ImportError:
        print("word2vec bench: gensim is not installed; nothing to compare against")
        return []
    import itertools

    from gensim.models import KeyedVectors as GKV
    from gensim.models import Word2Vec as GWord2Vec

    from ..word2vec import Word2Vec

    path = corpus_path or os.environ.get("PYFAST_W2V_CORPUS")
    if not path:
        copies = copies or (2 if quick else 10)
        path = os.path.join(tempfile.gettempdir(), f"pyfast_w2v_bench_x{copies}.txt")
        if not os.path.exists(path):
            build_corpus(path, copies)
    out = []
    for sg in (1, 0):
        name = "skip-gram" if sg else "CBOW"
        probe = Word2Vec(sg=sg, **SETTINGS)
        probe.build_vocab(corpus_file=path)
        raw_words = probe.corpus_total_words
        contenders = []
        scorers = []  # (contender name, function scoring that contender's latest run)
        scores: dict[str, list] = {}

        def add(label, setup_model, train, last_kv, scores=scores):  # bind this case's dict, not the loop's last
            """A contender whose untimed setup first scores the previous run, then prepares a fresh model."""
            state = {"runs": 0}

            def score():
                if state["runs"]:
                    scores.setdefault(label, []).append(quality(last_kv(state)))
                    state["runs"] = 0

            def setup():
                score()
                setup_model(state)

            def fn():
                train(state)
                state["runs"] = 1

            scorers.append(score)
            contenders.append(Contender(label, fn, setup=setup))

        # gensim, corpus_file mode
        g_seeds = itertools.count(1)

        def g_setup(state, sg=sg, g_seeds=g_seeds):
            m = GWord2Vec(sg=sg, seed=next(g_seeds), **SETTINGS)
            m.build_vocab(corpus_file=path)
            state["model"] = m

        def g_train(state):
            m = state["model"]
            m.train(corpus_file=path, total_examples=m.corpus_count, total_words=m.corpus_total_words,
                    epochs=SETTINGS["epochs"])

        add("gensim", g_setup, g_train, lambda state: state["model"].wv)

        def pyfast_kv(state):
            # Scored through the file format: gensim's evaluators read pyfast's saved vectors.
            vec = os.path.join(tempfile.gettempdir(), "pyfast_w2v_bench_vectors.bin")
            state["model"].wv.save_word2vec_format(vec, binary=True)
            return GKV.load_word2vec_format(vec, binary=True)

        # pyfast's default (alpha_schedule="auto": from corpus_file it runs gensim corpus_file's per-worker decay,
        # the learning rates gensim's row gets; see Word2Vec), the classic per-pair skip-gram, and the linear
        # global decay (word2vec.c's, pyfast's CLI) for comparison.
        variants = [("pyfast", True, "auto")]
        variants += [("pyfast per-pair", False, "auto")] if sg else []
        variants += [("pyfast linear", True, "linear")]
        # the CUDA trainer (Word2Vec(device="cuda"), linear schedule) where a GPU and a CUDA build exist
        variants += [("pyfast cuda", True, "linear")] if cuda_available() else []
        for label, shared, schedule in variants:
            p_seeds = itertools.count(1)

            def p_setup(state, sg=sg, shared=shared, schedule=schedule, p_seeds=p_seeds, label=label):
                m = Word2Vec(sg=sg, seed=next(p_seeds), shared_negatives=shared, alpha_schedule=schedule,
                             device="cuda" if label == "pyfast cuda" else "cpu", **SETTINGS)
                m.build_vocab(corpus_file=path)
                state["model"] = m

            add(label, p_setup, lambda state: state["model"].train(corpus_file=path), pyfast_kv)
        try:
            corpus = probe._load_corpus(None, path)
            n_setup, n_fn, n_state = _numba_contender(probe, corpus, sg, itertools.count(1))

            def numba_kv(state, n_state=n_state, probe=probe):
                kv = GKV(probe.vector_size)
                kv.add_vectors(probe.wv.index_to_key, n_state["last"])
                return kv

            add("numba", lambda state, n_setup=n_setup: n_setup(), lambda state, n_fn=n_fn: n_fn(), numba_kv)
        except ImportError:
            pass
        case = Case(bench="word2vec", name=f"{name} d100 w5 n5 3 epochs 2 workers, {raw_words / 1e6:.2f}M words",
                    contenders=contenders, work=raw_words * SETTINGS["epochs"] / 1e6, unit="Mwords/s",
                    baseline="gensim", params=dict(SETTINGS, sg=sg, corpus=path, raw_words=raw_words),
                    repeat=2 if quick else 3, warmup=0)
        case.scores = scores  # filled by the setups; finalize() adds the last run's and summarises
        case.finalize = _finalizer(case, contenders, scorers)
        out.append(case)
    return out


def _finalizer(case, contenders, scorers):
    def finalize():
        for score in scorers:  # the last timed run of each contender (setups score the earlier ones)
            score()
        for c in contenders:
            runs = case.scores.get(c.name, [])
            if runs:
                c.extra.update({
                    "analogy_mean": float(np.mean([r["analogy"] for r in runs])),
                    "analogy_runs": [r["analogy"] for r in runs],
                    "ws353_mean": float(np.mean([r["ws353"] for r in runs])),
                    "ws353_runs": [r["ws353"] for r in runs],
                })
    return finalize


def report(results, cases_) -> str:
    """The quality columns under `python -m pyfast bench word2vec`'s timing table."""
    return quality_table(results, cases_)


def quality_table(results, cases_) -> str:
    lines = [f"{'case':<14} {'contender':<16} {'Mwords/s':>9} {'x gensim':>8} {'analogy %':>10} {'WS353 rho':>10} runs"]
    for res, case in zip(results, cases_):
        if not hasattr(case, "scores"):  # the CUDA trainer's Zipf cases: speed only
            continue
        label = "skip-gram" if case.params["sg"] else "CBOW"
        for c in case.contenders:
            e = c.extra
            lines.append(f"{label:<14} {c.name:<16} {res.throughput[c.name]:>9.3f} {res.ratio[c.name] or 0:>8.2f} "
                         f"{100 * e.get('analogy_mean', float('nan')):>10.2f} {e.get('ws353_mean', float('nan')):>10.3f} "
                         f"{len(e.get('analogy_runs', []))}")
    return "\n".join(lines)


# ---- the CUDA trainer (Word2Vec(device="cuda"), pyfast/word2vec_cuda.py) ------------------------------------------------
# One epoch of skip-gram (window 5, negative 5, sample 1e-3) on synthetic Zipf(1) corpora: (vocabulary, dim).
CUDA_ZIPF = ((100_000, 100), (100_000, 300), (1_000_000, 100), (1_000_000, 300))


def cuda_available() -> bool:
    """A visible GPU and a CUDA build of pyfast."""
    import torch

    from .. import _native

    return torch.cuda.is_available() and _native.cuda_built()


def zipf_model(vocab: int, dim: int, tokens: int, seed: int = 0, line: int = 1000, device="cuda"):
    """A Word2Vec model with a Zipf(1) vocabulary of `vocab` words and a corpus of `tokens` ids drawn from it (lines of
    `line` tokens), built without strings per token: (model, corpus)."""
    from ..word2vec import Word2Vec, EncodedCorpus

    rng = np.random.default_rng(seed)
    cdf = np.cumsum(1.0 / np.arange(1, vocab + 1))
    ids = np.minimum(np.searchsorted(cdf / cdf[-1], rng.random(tokens)), vocab - 1).astype(np.int32)
    counts = np.maximum(np.bincount(ids, minlength=vocab), 1)
    model = Word2Vec(vector_size=dim, window=5, negative=5, sg=1, sample=1e-3, epochs=1, min_count=1, sorted_vocab=0,
                     seed=seed + 1, device=device)
    model.build_vocab_from_freq({f"w{i}": int(c) for i, c in enumerate(counts)})  # id i is word i (unsorted)
    offsets = np.append(np.arange(0, tokens, line, dtype=np.int64), np.int64(tokens))
    return model, EncodedCorpus(ids, offsets, tokens)


def zipf_case(vocab: int, dim: int, tokens: int, device: str = "cuda", repeat: int = 3) -> Case:
    """One epoch per timed call (continuing from the previous call's weights); the wall time includes the uploads of
    corpus and tables and the download of the vectors, the kernel-only rate (CUDA events) goes into extra."""
    from .. import word2vec_cuda

    contender = Contender("pyfast cuda", fn=None)
    kernel_rates = []
    built = {}

    def setup():  # built on first use, so a case skipped for the time budget costs nothing
        if not built:
            built["model"], built["corpus"] = zipf_model(vocab, dim, tokens, device=device)

    def fn():
        model, corpus = built["model"], built["corpus"]
        word2vec_cuda.train(model, corpus, 1, model.alpha, model.min_alpha, (), None)
        stats = model.train_stats[-1]
        if stats.get("kernel_seconds"):
            kernel_rates.append(tokens / stats["kernel_seconds"] / 1e6)
            contender.extra["kernel_Mwords_per_s"] = list(kernel_rates)
            contender.extra["kernel_Mwords_per_s_median"] = float(np.median(kernel_rates))
        contender.extra["trained_words"] = stats["trained_words"]

    contender.fn, contender.setup = fn, setup
    # Bytes each trained word moves without window reuse: ~2 span contexts (span ~3) + K + 1 targets, each row read
    # and written once per centre: 2 * 12 * 4 * dim.
    floor = f"~{96 * dim} B/trained word without window reuse; H200 ~4.8 TB/s"
    return Case(bench="word2vec", name=f"cuda skip-gram zipf V{vocab} d{dim} w5 n5 1 epoch, {tokens / 1e6:g}M words",
                contenders=[contender], work=tokens / 1e6, unit="Mwords/s", baseline=None,
                params=dict(vocab=vocab, dim=dim, tokens=tokens, window=5, negative=5, sample=1e-3),
                repeat=repeat, warmup=1, floor_note=floor, device="cuda" if device != "cpu" else "cpu")


def cuda_cases(quick: bool = False, corpus_path: str | None = None, copies: int | None = None):
    """GPU cases, built one at a time (a generator: run_cases stops starting them when the budget is spent): the Zipf
    corpora, then the real-text corpus (the CPU bench's, fewer copies) with quality beside the CPU trainer."""
    if not cuda_available():
        print("word2vec bench: --device cuda needs a GPU and a CUDA build of pyfast")
        return
    tokens = 2_000_000 if quick else 10_000_000
    # The acceptance case (V 100k, d 100) first, then quality on real text, then the larger tables: when the budget
    # runs out, the cases skipped are the least informative.
    yield zipf_case(*CUDA_ZIPF[0], tokens)
    try:
        import gensim  # noqa: F401
    except Exception as exc:  # not installed, or a carried wheel that does not load beside this numpy / scipy
        print(f"word2vec bench: gensim does not import ({type(exc).__name__}: {exc}); no real-text quality case")
    else:
        yield real_text_case(quick=quick, corpus_path=corpus_path, copies=copies)
    for vocab, dim in CUDA_ZIPF[1:]:
        yield zipf_case(vocab, dim, tokens)


def real_text_case(quick: bool = False, corpus_path: str | None = None, copies: int | None = None) -> Case:
    """Skip-gram, SETTINGS, 3 epochs on the benchmark corpus: the CUDA trainer against the CPU trainer with every
    core, both scored (analogy, WS353) on every run."""
    import itertools

    from gensim.models import KeyedVectors as GKV

    from ..word2vec import Word2Vec

    path = corpus_path or os.environ.get("PYFAST_W2V_CORPUS")
    if not path:
        copies = copies or (1 if quick else 4)
        path = os.path.join(tempfile.gettempdir(), f"pyfast_w2v_bench_x{copies}.txt")
    workers = os.cpu_count() or 2
    case = Case(bench="word2vec", name="cuda vs cpu skip-gram d100 w5 n5 3 epochs, real text", contenders=[], work=0.0,
                unit="Mwords/s", params=dict(SETTINGS, sg=1, corpus=path), repeat=2, warmup=0, device="cuda")

    def prepare():  # on the first setup (untimed): a case skipped for the time budget builds nothing
        if case.work:
            return
        if not os.path.exists(path):
            build_corpus(path, copies)
        probe = Word2Vec(**SETTINGS)
        probe.build_vocab(corpus_file=path)
        case.work = probe.corpus_total_words * SETTINGS["epochs"] / 1e6
        case.params["raw_words"] = probe.corpus_total_words

    scores: dict[str, list] = {}
    contenders, scorers = [], []
    for label, device in (("pyfast cuda", "cuda"), (f"pyfast cpu {workers}w", "cpu")):
        seeds = itertools.count(1)
        state = {"runs": 0}

        def score(label=label, state=state):
            if state["runs"]:
                vec = os.path.join(tempfile.gettempdir(), "pyfast_w2v_bench_cuda_vectors.bin")
                state["model"].wv.save_word2vec_format(vec, binary=True)
                scores.setdefault(label, []).append(quality(GKV.load_word2vec_format(vec, binary=True)))
                state["runs"] = 0

        def setup(device=device, seeds=seeds, state=state, score=score):
            prepare()
            score()
            m = Word2Vec(sg=1, seed=next(seeds), alpha_schedule="linear", device=device,
                         **dict(SETTINGS, workers=workers))
            m.build_vocab(corpus_file=path)
            state["model"] = m

        def fn(state=state):
            state["model"].train(corpus_file=path)
            state["runs"] = 1

        scorers.append(score)
        contenders.append(Contender(label, fn, setup=setup))
    case.contenders, case.baseline = contenders, contenders[1].name
    case.scores = scores
    case.finalize = _finalizer(case, contenders, scorers)
    return case

