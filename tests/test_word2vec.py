"""word2vec: block kernels against the float64 reference, training behaviour (quality on a planted corpus,
determinism, loss), gensim-compatible API and file formats (both ways), save/load, bad input, CLI."""
from __future__ import annotations

import os
import random
import subprocess
import sys

import numpy as np
import pytest

import pyfast
from pyfast import KeyedVectors, Word2Vec
from pyfast import _native
from pyfast.reference import word2vec as ref

pytestmark = pytest.mark.sanitize  # .ci/sanitize runs this file against the ASan/UBSan build

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---- a corpus with planted structure -----------------------------------------------------------------------------
def planted_corpus(n_sentences=1500, topics=6, words_per_topic=12, length=12, seed=0):
    """Each sentence draws its words from one topic; a word's nearest neighbours should be its topic mates."""
    rng = random.Random(seed)
    vocab = [[f"t{k}w{i}" for i in range(words_per_topic)] for k in range(topics)]
    sentences = []
    for _ in range(n_sentences):
        topic = vocab[rng.randrange(topics)]
        sentences.append([rng.choice(topic) for _ in range(length)])
    return sentences, vocab


def topic_purity(wv, vocab, topn=5):
    hits = total = 0
    for group in vocab:
        for word in group:
            for other, _ in wv.most_similar(word, topn=topn):
                hits += other[:other.index("w")] == word[:word.index("w")]
                total += 1
    return hits / total


def write_corpus(path, sentences):
    with open(path, "w", encoding="utf-8") as fh:
        for s in sentences:
            fh.write(" ".join(s) + "\n")
    return str(path)


# ---- block kernels vs the float64 reference ----------------------------------------------------------------------
@pytest.mark.parametrize("dim", [1, 7, 8, 17, 100, 273])
@pytest.mark.parametrize("kind", ["sg_pair", "sg_window", "cbow_mean", "cbow_sum"])
def test_block_matches_reference(dim, kind):
    rng = np.random.default_rng(dim)
    V = 11
    # Logits with a standard deviation of about 4: most in (-6, 6), some beyond (those examples are skipped).
    scale = (16.0 / dim) ** 0.25
    syn0 = rng.normal(0, scale, (V, dim)).astype(np.float32)
    syn1 = rng.normal(0, scale, (V, dim)).astype(np.float32)
    if kind == "cbow_sum":  # the hidden vector sums 7 rows
        syn0 /= np.float32(7.0)
    contexts = [3] if kind == "sg_pair" else [1, 4, 4, 9, 2, 7, 0]  # a repeated context row
    targets = [5, 8, 5, 2, 8, 10]  # a negative equal to the center (skipped) and a repeated negative
    alpha = 0.05
    a0, a1 = syn0.copy(), syn1.copy()
    r0, r1 = syn0.astype(np.float64), syn1.astype(np.float64)
    sg = kind.startswith("sg")
    cbow_mean = kind != "cbow_sum"
    loss = _native.cpu().w2v_block_(int(sg), a0.ctypes.data, a1.ctypes.data, V, dim, contexts, targets, alpha,
                                    int(cbow_mean))
    if sg:
        ref_loss = ref.sg_block(r0, r1, contexts, targets, alpha)
    else:
        ref_loss = ref.cbow_block(r0, r1, contexts, targets, alpha, cbow_mean)
    # Table sigmoid (2048 points over [-6, 6]): gradient coefficients agree to ~2e-3 * alpha per term.
    scale = np.abs(syn0).max() * np.abs(syn1).max() * len(contexts) * len(targets)
    atol = 3e-3 * alpha * max(scale, 1.0) / 4 + 1e-6
    for name, got, want, before in (("syn0", a0, r0, syn0), ("syn1neg", a1, r1, syn1)):
        err = np.abs(got - want)
        worst = np.unravel_index(np.argmax(err), err.shape)
        assert err.max() <= atol, f"{kind} d={dim} {name}: max |diff| {err.max():.3g} at {worst} (atol {atol:.3g})"
        assert not np.array_equal(got, before), f"{kind} {name}: the block changed nothing"
    assert loss == pytest.approx(ref_loss, rel=1e-5, abs=1e-6)
    # rows not in the block are untouched
    untouched = sorted(set(range(V)) - set(contexts))
    np.testing.assert_array_equal(a0[untouched], syn0[untouched])
    untouched = sorted(set(range(V)) - set(targets))
    np.testing.assert_array_equal(a1[untouched], syn1[untouched])


def test_block_rejects_out_of_range_ids():
    syn = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="out of range"):
        _native.cpu().w2v_block_(1, syn.ctypes.data, syn.ctypes.data, 3, 4, [5], [0, 1], 0.1, 1)


def test_train_epoch_bounds_checks_ids():
    m = Word2Vec(min_count=1, vector_size=4, workers=1)
    m.build_vocab([["a", "b", "c"]])
    C = _native.cpu()
    ids = np.array([0, 1, 7], np.int32)  # 7 is outside the 3-word vocabulary
    offsets = np.array([0, 3], np.int64)
    done = np.zeros(1, np.int64)
    p = C.TrainParams()  # the trainer's params, filled by name (csrc/word2vec/word2vec_pack.h)
    for name, value in (("syn0", m.wv.vectors.ctypes.data), ("syn1neg", m.syn1neg.ctypes.data), ("vocab_size", 3),
                        ("dim", 4), ("ids", ids.ctypes.data), ("n_ids", 3), ("sentence_offsets", offsets.ctypes.data),
                        ("n_sentences", 1), ("keep_prob", m._keep_prob.ctypes.data),
                        ("noise_weights", m._noise_weights.ctypes.data), ("total_words", 3),
                        ("words_done", done.ctypes.data), ("seed", 1)):
        setattr(p, name, value)
    with pytest.raises(ValueError, match="outside"):
        C.w2v_train_epoch(p)
    with pytest.raises(AttributeError):
        p.no_such_field = 1


# ---- training quality and behaviour ------------------------------------------------------------------------------
@pytest.mark.parametrize("sg,shared", [(1, True), (1, False), (0, True)])
@pytest.mark.parametrize("source", ["sentences", "corpus_file"])
def test_learns_planted_topics(tmp_path, sg, shared, source):
    sentences, vocab = planted_corpus()
    kw = dict(vector_size=24, window=4, min_count=1, sample=0, epochs=8, workers=2, sg=sg, seed=3,
              shared_negatives=shared, negative=5)
    if source == "sentences":
        model = Word2Vec(sentences, **kw)
    else:
        model = Word2Vec(corpus_file=write_corpus(tmp_path / "c.txt", sentences), **kw)
    assert len(model.wv) == 72
    purity = topic_purity(model.wv, vocab)
    assert purity > 0.9, f"sg={sg} shared={shared}: only {purity:.2f} of neighbours share the topic"


def test_random_vectors_score_at_chance():
    # The purity check above can fail: untrained vectors score near 1/6.
    sentences, vocab = planted_corpus()
    model = Word2Vec(vector_size=24, min_count=1, workers=1)
    model.build_vocab(sentences)
    assert topic_purity(model.wv, vocab) < 0.5


def test_deterministic_with_one_worker(tmp_path):
    sentences, _ = planted_corpus(400)
    kw = dict(vector_size=16, min_count=1, epochs=2, workers=1, seed=7, compute_loss=True)
    a = Word2Vec(sentences, **kw)
    b = Word2Vec(sentences, **kw)
    assert np.array_equal(a.wv.vectors, b.wv.vectors)
    assert np.array_equal(a.syn1neg, b.syn1neg)
    assert a.training_losses == b.training_losses
    c = Word2Vec(sentences, **dict(kw, seed=8))
    assert not np.array_equal(a.wv.vectors, c.wv.vectors)
    path = write_corpus(tmp_path / "c.txt", sentences)
    f1 = Word2Vec(corpus_file=path, **kw)
    f2 = Word2Vec(corpus_file=path, **kw)
    assert np.array_equal(f1.wv.vectors, f2.wv.vectors)


@pytest.mark.parametrize("sg", [0, 1])
def test_alpha_schedules(sg, tmp_path):
    """linear: the rate falls with all workers' tokens; gensim_corpus_file: with each worker's own tokens measured
    against the whole epoch (gensim 4's corpus_file mode), so with 2 workers an epoch ends half-way down its step.
    The end rates are those of the schedule at each worker's final count: deterministic even with 2 workers."""
    sentences, _ = planted_corpus(600)  # 12-token sentences: the two workers' slices differ by < 1%
    a, lo, n_epochs = 0.025, 0.0001, 3

    def end_rates(schedule, workers):
        m = Word2Vec(sentences, vector_size=8, min_count=1, epochs=n_epochs, workers=workers, seed=5, sg=sg,
                     alpha_schedule=schedule)
        return m, [st["alpha_end"] for st in m.train_stats]

    _, linear = end_rates("linear", 2)
    assert linear == pytest.approx([a - (a - lo) * (e + 1) / n_epochs for e in range(n_epochs)], rel=1e-5)
    m, per_worker = end_rates("gensim_corpus_file", 2)
    assert per_worker == pytest.approx([a - (a - lo) * (e + 0.5) / n_epochs for e in range(n_epochs)], rel=0.01)
    m.save(str(tmp_path / "m.pf"))
    assert Word2Vec.load(str(tmp_path / "m.pf")).alpha_schedule == "gensim_corpus_file"
    # One worker: the two schedules are one schedule, bit for bit.
    m1, r1 = end_rates("linear", 1)
    m2, r2 = end_rates("gensim_corpus_file", 1)
    assert r1 == r2 and np.array_equal(m1.wv.vectors, m2.wv.vectors) and np.array_equal(m1.syn1neg, m2.syn1neg)
    with pytest.raises(ValueError, match="alpha_schedule"):
        Word2Vec(alpha_schedule="sawtooth")


@pytest.mark.parametrize("sg", [0, 1])
def test_alpha_schedule_auto_follows_gensim_per_input(sg, tmp_path):
    """The default runs the schedule gensim 4 runs for the same call: per-worker decay from corpus_file, linear
    from an iterable; each equals the explicit choice bit for bit (workers=1 keeps the runs deterministic, and the
    per-worker end rates are checked with 2 workers, where the two schedules differ)."""
    sentences, _ = planted_corpus(600)
    path = write_corpus(tmp_path / "c.txt", sentences)
    kw = dict(vector_size=8, min_count=1, epochs=3, seed=5, sg=sg)
    a, lo = 0.025, 0.0001
    f_auto = Word2Vec(corpus_file=path, workers=2, **kw)
    assert [st["schedule"] for st in f_auto.train_stats] == ["gensim_corpus_file"] * 3
    assert [st["alpha_end"] for st in f_auto.train_stats] == pytest.approx(
        [a - (a - lo) * (e + 0.5) / 3 for e in range(3)], rel=0.01)
    s_auto = Word2Vec(sentences, workers=2, **kw)
    assert [st["schedule"] for st in s_auto.train_stats] == ["linear"] * 3
    assert [st["alpha_end"] for st in s_auto.train_stats] == pytest.approx(
        [a - (a - lo) * (e + 1) / 3 for e in range(3)], rel=1e-5)
    one = dict(kw, workers=1)
    for source, explicit in (({"corpus_file": path}, "gensim_corpus_file"), ({"sentences": sentences}, "linear")):
        m_auto, m_explicit = Word2Vec(**source, **one), Word2Vec(**source, alpha_schedule=explicit, **one)
        assert np.array_equal(m_auto.wv.vectors, m_explicit.wv.vectors)


def test_threads_capped_at_one_per_batch_words_job(tmp_path):
    """As gensim's iterable mode (jobs of batch_words words): below one job a run uses one thread, so two seeded
    runs of a tiny corpus with workers=3 agree bit for bit; a larger corpus gets ceil(words / batch_words) threads,
    and corpus_file's per-worker schedule keeps every worker (gensim's corpus_file mode does)."""
    tiny = [["human", "interface", "computer"], ["survey", "user", "computer", "system", "response", "time"]] * 3
    kw = dict(vector_size=8, min_count=1, epochs=5, workers=3, seed=2, sg=1)
    a, b = Word2Vec(tiny, **kw), Word2Vec(tiny, **kw)
    assert [st["workers"] for st in a.train_stats] == [1] * 5
    assert np.array_equal(a.wv.vectors, b.wv.vectors) and np.array_equal(a.syn1neg, b.syn1neg)
    sentences, _ = planted_corpus(1500)  # 18,000 words: two jobs of 10,000
    assert Word2Vec(sentences, **dict(kw, epochs=1)).train_stats[0]["workers"] == 2
    assert Word2Vec(sentences, batch_words=100, **dict(kw, epochs=1)).train_stats[0]["workers"] == 3
    f = Word2Vec(corpus_file=write_corpus(tmp_path / "t.txt", tiny), **dict(kw, epochs=1))
    assert f.train_stats[0]["schedule"] == "gensim_corpus_file" and f.train_stats[0]["workers"] == 3


def test_deterministic_across_python_hash_seeds(tmp_path):
    path = write_corpus(tmp_path / "c.txt", planted_corpus(300)[0])
    code = ("import sys, hashlib, pyfast; from pyfast import Word2Vec\n"
            "m1 = Word2Vec([l.split() for l in open(sys.argv[1])], vector_size=8, min_count=1, workers=1, epochs=1)\n"
            "m2 = Word2Vec(corpus_file=sys.argv[1], vector_size=8, min_count=1, workers=1, epochs=1)\n"
            "print(hashlib.sha256(m1.wv.vectors.tobytes() + m2.wv.vectors.tobytes()).hexdigest())")
    digests = set()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        out = subprocess.run([sys.executable, "-c", code, path], env=env, capture_output=True, text=True, check=True)
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_loss_per_epoch_float64_and_decreasing():
    sentences, _ = planted_corpus(800)
    model = Word2Vec(sentences, vector_size=16, min_count=1, epochs=4, workers=2, compute_loss=True, sg=1)
    losses = model.training_losses
    assert len(losses) == 4 and all(isinstance(x, float) and x > 0 for x in losses)
    assert losses[-1] < losses[0]
    assert model.get_latest_training_loss() == losses[-1]
    # Far beyond float32's 2^24 integer range would stall a float32 tally; here: magnitude is per-epoch, not cumulative
    pairs = model.train_stats[-1]["pairs"]
    assert losses[0] < pairs * 6 * 1.0  # at most ~ln 2 per example at the start (6 examples per pair)
    one = Word2Vec(sentences, vector_size=16, min_count=1, epochs=4, workers=1, compute_loss=True, sg=1)
    assert one.training_losses[-1] == pytest.approx(losses[-1], rel=0.1)  # both workers' losses are summed
    no_loss = Word2Vec(sentences, vector_size=16, min_count=1, epochs=1, workers=1)
    assert no_loss.get_latest_training_loss() == 0.0


def test_continue_training_and_callbacks():
    sentences, vocab = planted_corpus(600)
    events = []

    class Recorder:
        def on_train_begin(self, model):
            events.append("train_begin")

        def on_epoch_begin(self, model):
            events.append("epoch_begin")

        def on_epoch_end(self, model):
            events.append("epoch_end")

        def on_train_end(self, model):
            events.append("train_end")

    model = Word2Vec(sentences, vector_size=16, min_count=1, epochs=2, workers=1, callbacks=[Recorder()])
    assert events == ["train_begin", "epoch_begin", "epoch_end", "epoch_begin", "epoch_end", "train_end"]
    before = model.wv.vectors.copy()
    trained, raw = model.train(sentences, total_examples=model.corpus_count, epochs=3)
    assert raw == 3 * sum(map(len, sentences)) and 0 < trained <= raw
    assert model.epochs_trained == 5
    assert not np.array_equal(before, model.wv.vectors)


def test_vocabulary_rules(tmp_path):
    sentences = [["a"] * 10 + ["b"] * 6 + ["c"] * 3 + ["d"]]
    m = Word2Vec(min_count=3, vector_size=4)
    m.build_vocab(sentences)
    assert m.wv.index_to_key == ["a", "b", "c"]
    assert [m.wv.get_vecattr(k, "count") for k in "abc"] == [10, 6, 3]
    assert m.corpus_total_words == 20 and m.corpus_count == 1
    m = Word2Vec(min_count=1, max_final_vocab=2, vector_size=4)
    m.build_vocab(sentences)
    assert m.wv.index_to_key == ["a", "b"] and m.effective_min_count == 4
    path = write_corpus(tmp_path / "v.txt", sentences)
    m = Word2Vec(min_count=3, vector_size=4)
    m.build_vocab(corpus_file=path)
    assert m.wv.index_to_key == ["a", "b", "c"] and m.corpus_total_words == 20
    # max_vocab_size prunes while counting (word2vec.c ReduceVocab: drop counts <= 1 first)
    many = [[f"rare{i}" for i in range(50)] + ["x", "x", "y", "y", "y"]]
    for source in ("sentences", "file"):
        m = Word2Vec(min_count=1, max_vocab_size=10, vector_size=4)
        if source == "file":
            m.build_vocab(corpus_file=write_corpus(tmp_path / "m.txt", many))
        else:
            m.build_vocab(many)
        # the table never exceeds the limit; frequent words survive, some late rare words may too (as in word2vec.c)
        assert len(m.wv) <= 10 and {"x", "y"} <= set(m.wv.index_to_key)


def test_subsampling_keep_probability():
    m = Word2Vec(min_count=1, sample=1e-3, vector_size=4)
    counts = {"the": 100000, "cat": 50, "dog": 1000}
    m.build_vocab_from_freq(counts)
    t = 1e-3 * sum(counts.values())
    for word, c in counts.items():
        expected = min(1.0, (np.sqrt(c / t) + 1) * t / c)
        assert m._keep_prob[m.wv.key_to_index[word]] == pytest.approx(expected, rel=1e-6)


def test_sentences_and_file_agree_on_corpus(tmp_path):
    sentences, _ = planted_corpus(300)
    sentences[5] = sentences[5] + ["unseen_word"]
    path = write_corpus(tmp_path / "c.txt", sentences)
    m = Word2Vec(vector_size=8, min_count=1)
    m.build_vocab(sentences)
    a = m._load_corpus(sentences, None)
    b = m._load_corpus(None, path)
    assert np.array_equal(a.ids, b.ids) and np.array_equal(a.offsets, b.offsets) and a.raw_words == b.raw_words


def test_long_line_and_invalid_utf8(tmp_path):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(50)]
    long_line = " ".join(words[i] for i in rng.integers(0, 50, 300_000))
    path = tmp_path / "long.txt"
    with open(path, "wb") as fh:
        fh.write(long_line.encode() + b"\n")
        fh.write(b"caf\xe9 \xff\xfe bad\x80bytes w1 w2\n" * 5)
    model = Word2Vec(corpus_file=str(path), vector_size=8, min_count=1, epochs=1, workers=2)
    assert "w3" in model.wv
    odd = [k for k in model.wv.index_to_key if not k.isascii()]
    assert len(odd) == 3  # kept losslessly (surrogate escapes), never a crash
    out = tmp_path / "odd.txt"
    model.wv.save_word2vec_format(str(out))  # keys with invalid UTF-8 round-trip through their original bytes
    with open(out, "rb") as fh:
        assert b"caf\xe9 " in fh.read()
    sentences_model = Word2Vec([long_line.split()], vector_size=8, min_count=1, epochs=1)
    assert len(sentences_model.wv) == 50


# ---- gensim-shaped API ---------------------------------------------------------------------------------------------
def small_model(**kw):
    sentences, _ = planted_corpus(500)
    args = dict(vector_size=16, min_count=1, epochs=3, workers=1, seed=5)
    args.update(kw)
    return Word2Vec(sentences, **args)


def test_keyedvectors_api():
    m = small_model()
    wv = m.wv
    assert len(wv) == 72 and "t0w1" in wv and "nope" not in wv
    assert wv["t0w1"].shape == (16,) and wv[["t0w1", "t1w2"]].shape == (2, 16)
    assert wv.get_vector("t0w1", norm=True) == pytest.approx(wv["t0w1"] / np.linalg.norm(wv["t0w1"]), rel=1e-5)
    assert wv.vectors.shape == (72, 16) and wv.vectors.dtype == np.float32
    assert wv.index_to_key[wv.key_to_index["t2w3"]] == "t2w3"
    sims = wv.most_similar("t0w1", topn=4)
    assert len(sims) == 4 and all(k != "t0w1" for k, _ in sims)
    assert sims == sorted(sims, key=lambda kv: -kv[1])
    assert wv.similarity("t0w1", "t0w2") == pytest.approx(
        float(np.dot(wv.get_vector("t0w1", norm=True), wv.get_vector("t0w2", norm=True))), rel=1e-6)
    assert len(wv.most_similar(positive=["t0w1", "t1w1"], negative=["t2w1"], topn=3, restrict_vocab=20)) == 3
    assert wv.most_similar("t0w1", topn=None).shape == (72,)
    for bad in (lambda: wv["nope"], lambda: wv.most_similar("nope"), lambda: wv.similarity("t0w1", "nope"),
                lambda: wv.get_vector("nope")):
        with pytest.raises(KeyError):
            bad()


def test_most_similar_and_evaluators_match_gensim(tmp_path):
    gensim = pytest.importorskip("gensim")
    from gensim.models import KeyedVectors as GKV

    data = os.path.join(os.path.dirname(gensim.__file__), "test", "test_data")
    lee = os.path.join(data, "lee_background.cor")
    model = Word2Vec(corpus_file=lee, vector_size=32, min_count=2, epochs=3, workers=1, seed=1)
    path = tmp_path / "v.bin"
    model.wv.save_word2vec_format(str(path), binary=True)
    gkv = GKV.load_word2vec_format(str(path), binary=True)

    def same_ranking(ours, theirs):
        # Scores must agree; keys must agree except where two neighbours' scores tie to within float32 rounding
        # (pyfast and gensim may sum in a different order, which can swap near-equal entries).
        np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], rtol=1e-4, atol=1e-6)
        for i, ((k, sc), (gk, _)) in enumerate(zip(ours, theirs)):
            tied = any(abs(sc - s2) < 1e-5 for j, (_, s2) in enumerate(theirs) if j != i)
            assert k == gk or tied, (i, ours, theirs)

    for word in ("the", "government", "said"):
        same_ranking(model.wv.most_similar(word, topn=5), gkv.most_similar(word, topn=5))
    same_ranking(model.wv.most_similar(positive=["government", "said"], negative=["the"], topn=5),
                 gkv.most_similar(positive=["government", "said"], negative=["the"], topn=5))
    questions = os.path.join(data, "questions-words.txt")
    score, sections = model.wv.evaluate_word_analogies(questions)
    g_score, g_sections = gkv.evaluate_word_analogies(questions)
    assert score == pytest.approx(g_score)
    assert [(s["section"], len(s["correct"]), len(s["incorrect"])) for s in sections] == \
        [(s["section"], len(s["correct"]), len(s["incorrect"])) for s in g_sections]
    pairs = os.path.join(data, "wordsim353.tsv")
    p, s, oov = model.wv.evaluate_word_pairs(pairs)
    gp, gs, goov = gkv.evaluate_word_pairs(pairs)
    assert p[0] == pytest.approx(gp[0], abs=1e-5) and s[0] == pytest.approx(gs[0], abs=1e-5)
    assert oov == pytest.approx(goov)


# ---- file formats ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("binary", [False, True])
def test_word2vec_format_roundtrip(tmp_path, binary):
    wv = small_model().wv
    path = str(tmp_path / "v.w2v")
    wv.save_word2vec_format(path, binary=binary)
    back = KeyedVectors.load_word2vec_format(path, binary=binary)
    assert back.index_to_key == wv.index_to_key
    assert np.array_equal(back.vectors, wv.vectors)  # text uses 9 significant digits: exact for float32
    limited = KeyedVectors.load_word2vec_format(path, binary=binary, limit=5)
    assert limited.index_to_key == wv.index_to_key[:5] and np.array_equal(limited.vectors, wv.vectors[:5])


@pytest.mark.parametrize("binary", [False, True])
def test_word2vec_format_interoperates_with_gensim(tmp_path, binary):
    pytest.importorskip("gensim")
    from gensim.models import KeyedVectors as GKV

    wv = small_model().wv
    ours = str(tmp_path / "ours")
    wv.save_word2vec_format(ours, binary=binary)
    g = GKV.load_word2vec_format(ours, binary=binary)
    assert g.index_to_key == wv.index_to_key and np.array_equal(g.vectors, wv.vectors)
    theirs = str(tmp_path / "theirs")
    g.vectors[3] = np.float32(1.0) / 3  # values that need all their digits
    g.save_word2vec_format(theirs, binary=binary)
    back = KeyedVectors.load_word2vec_format(theirs, binary=binary)
    assert back.index_to_key == g.index_to_key and np.array_equal(back.vectors, g.vectors)


def test_reads_word2vec_c_binary_layout(tmp_path):
    # word2vec.c writes "</s>" first and a newline after every binary vector; gensim writes none.
    vecs = np.arange(12, dtype="<f4").reshape(3, 4) / 7
    words = ["</s>", "the", "caf\u00e9"]
    for sep in (b"\n", b""):
        path = tmp_path / f"c{len(sep)}.bin"
        with open(path, "wb") as fh:
            fh.write(b"3 4\n")
            for w, v in zip(words, vecs):
                fh.write(w.encode() + b" " + v.tobytes() + sep)
        kv = KeyedVectors.load_word2vec_format(str(path), binary=True)
        assert kv.index_to_key == words and np.array_equal(kv.vectors, vecs)


@pytest.mark.parametrize("binary", [False, True])
def test_truncated_or_corrupt_vectors_file(tmp_path, binary):
    wv = small_model().wv
    path = tmp_path / "v"
    wv.save_word2vec_format(str(path), binary=binary)
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 3, 10):
        (tmp_path / "cut").write_bytes(data[:cut])
        with pytest.raises((ValueError, EOFError)):
            KeyedVectors.load_word2vec_format(str(tmp_path / "cut"), binary=binary)
    for header in (b"abc def\n", b"", b"72\n"):
        (tmp_path / "bad").write_bytes(header + data[data.index(b"\n") + 1:])
        with pytest.raises((ValueError, EOFError)):
            KeyedVectors.load_word2vec_format(str(tmp_path / "bad"), binary=binary)
    if not binary:
        (tmp_path / "nan").write_bytes(b"1 3\nword 1.0 x 2.0\n")
        with pytest.raises(ValueError):
            KeyedVectors.load_word2vec_format(str(tmp_path / "nan"))
    with pytest.raises(FileNotFoundError):
        KeyedVectors.load_word2vec_format(str(tmp_path / "missing"), binary=binary)


def test_save_load_resumable(tmp_path):
    sentences, _ = planted_corpus(400)
    kw = dict(vector_size=12, min_count=1, epochs=2, workers=1, seed=11, sg=1)
    model = Word2Vec(sentences, **kw)
    path = str(tmp_path / "model.pf")
    model.save(path)
    assert not any(p.name.startswith("model.pf.tmp") for p in tmp_path.iterdir())
    loaded = Word2Vec.load(path)
    assert loaded.alpha_schedule == "auto"
    assert loaded.wv.index_to_key == model.wv.index_to_key
    assert np.array_equal(loaded.wv.vectors, model.wv.vectors) and np.array_equal(loaded.syn1neg, model.syn1neg)
    assert loaded.sg == 1 and loaded.epochs_trained == 2
    # continuing a loaded model gives exactly what continuing the original gives
    model.train(sentences, epochs=1)
    loaded.train(sentences, epochs=1)
    assert np.array_equal(loaded.wv.vectors, model.wv.vectors)
    kv_path = str(tmp_path / "kv.pf")
    model.wv.save(kv_path)
    kv = KeyedVectors.load(kv_path)
    assert np.array_equal(kv.vectors, model.wv.vectors) and kv.index_to_key == model.wv.index_to_key
    data = open(path, "rb").read()
    with open(tmp_path / "trunc.pf", "wb") as fh:
        fh.write(data[: len(data) // 2])
    with pytest.raises(ValueError):
        Word2Vec.load(str(tmp_path / "trunc.pf"))
    with pytest.raises(ValueError):
        Word2Vec.load(kv_path)  # a KeyedVectors file is not a model
    with pytest.raises(FileNotFoundError):
        Word2Vec.load(str(tmp_path / "missing.pf"))


# ---- bad input ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,match", [
    (dict(vector_size=0), "vector_size"), (dict(window=0), "window"), (dict(negative=-1), "negative"),
    (dict(sample=-0.1), "sample"), (dict(alpha=0), "alpha"), (dict(alpha=-1), "alpha"), (dict(workers=0), "workers"),
    (dict(epochs=0), "epochs"), (dict(vector_size=2.5), "vector_size"), (dict(min_count=-1), "min_count"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Word2Vec(**kwargs)


def test_bad_corpus(tmp_path):
    with pytest.raises(FileNotFoundError):
        Word2Vec(corpus_file=str(tmp_path / "missing.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n\n")
    with pytest.raises(ValueError, match="empty"):
        Word2Vec(corpus_file=str(empty))
    with pytest.raises(ValueError, match="empty"):
        Word2Vec([[], []])
    with pytest.raises(ValueError, match="min_count"):
        Word2Vec([["a", "b", "c"]], min_count=5)
    with pytest.raises(NotImplementedError, match="hierarchical softmax"):
        Word2Vec(hs=1)
    with pytest.raises(TypeError):
        Word2Vec(["one", "sentence", "as", "strings"], min_count=1)
    with pytest.raises(TypeError):
        Word2Vec([["a"]], corpus_file=str(empty))


# ---- CLI ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("binary", ["0", "1"])
def test_cli(tmp_path, binary):
    corpus = write_corpus(tmp_path / "c.txt", planted_corpus(300)[0])
    out, vocab = str(tmp_path / "vec"), str(tmp_path / "vocab.txt")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "pyfast", "word2vec", "-train", corpus, "-output", out, "-size", "10", "-window", "3",
           "-negative", "4", "-threads", "2", "-iter", "2", "-min-count", "1", "-cbow", "0", "-binary", binary,
           "-save-vocab", vocab, "-debug", "0"]
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    kv = KeyedVectors.load_word2vec_format(out, binary=binary == "1")
    assert kv.vectors.shape == (72, 10)
    lines = open(vocab).read().split("\n")
    assert len([ln for ln in lines if ln]) == 72 and lines[0].split()[0] == kv.index_to_key[0]
    out2 = str(tmp_path / "vec2")
    cmd2 = [sys.executable, "-m", "pyfast", "word2vec", "-train", corpus, "-output", out2, "-read-vocab", vocab,
            "-size", "10", "-iter", "1", "-threads", "1", "-debug", "0"]
    subprocess.run(cmd2, check=True, env=env, capture_output=True)
    assert KeyedVectors.load_word2vec_format(out2).index_to_key == kv.index_to_key
    bad = subprocess.run([sys.executable, "-m", "pyfast", "word2vec", "-train", str(tmp_path / "nope"), "-output", out],
                         env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "not found" in bad.stderr
