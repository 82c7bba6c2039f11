"""The gensim API breadth of Word2Vec / KeyedVectors (#20) checked without gensim, against hand-computed answers:
trim_rule, online vocabulary updates, generators, null_word, predict_output_word, the KeyedVectors extras, gensim
pickle loading (with gensim when installed; the conversion hint without). gensim's own suite runs in
tests/test_gensim_suite.py."""
from __future__ import annotations

import logging
import sys

import numpy as np
import pytest

from pyfast import KeyedVectors, Word2Vec
from pyfast.word2vec import RULE_DEFAULT, RULE_DISCARD, RULE_KEEP

CORPUS = [["a", "b", "c", "a"], ["a", "b", "d"], ["b", "a", "e", "a"], ["c", "a", "b"]] * 5


def test_trim_rule_semantics():
    rules = {"e": RULE_KEEP, "b": RULE_DISCARD}
    rule = lambda w, c, mc: rules.get(w, RULE_DEFAULT)  # noqa: E731
    m = Word2Vec(CORPUS, min_count=6, vector_size=4, trim_rule=rule, workers=1)
    # e (count 5) kept against min_count, b (count 20) discarded, d (5) dropped by min_count
    assert m.wv.index_to_key == ["a", "c", "e"]
    m = Word2Vec(min_count=1, vector_size=4)
    m.build_vocab(CORPUS, trim_rule=rule)
    assert "b" not in m.wv and set(m.wv.index_to_key) == {"a", "c", "d", "e"}
    with pytest.raises(TypeError, match="trim_rule must be callable"):
        Word2Vec(trim_rule="b")


def test_prepare_vocab_report():
    m = Word2Vec(min_count=6, vector_size=4, sample=0)
    assert m.scan_vocab(CORPUS) == (70, 20)
    report = m.prepare_vocab(dry_run=True)
    assert (report["drop_unique"], report["retain_total"], report["num_retained_words"]) == (2, 60, 3)
    assert not len(m.wv)  # a dry run changes nothing


def test_online_update_appends_and_keeps_rows(tmp_path):
    m = Word2Vec(CORPUS, min_count=1, vector_size=8, workers=1, seed=3)
    before, out_before = m.wv.vectors.copy(), m.syn1neg.copy()
    keys_before = list(m.wv.index_to_key)
    counts_before = m.wv.counts.copy()
    m.build_vocab([["zz", "a", "yy"], ["yy"]], update=True)
    assert m.wv.index_to_key == keys_before + ["zz", "yy"]  # appended in first-seen order, as gensim does
    assert np.array_equal(m.wv.vectors[:len(keys_before)], before)
    assert np.array_equal(m.syn1neg[:len(keys_before)], out_before) and not m.syn1neg[len(keys_before):].any()
    assert m.wv.get_vecattr("a", "count") == counts_before[0] + 1 and m.wv.get_vecattr("yy", "count") == 2
    # the new rows are the rows a fresh model with the same seed draws at those indices
    fresh = Word2Vec(vector_size=8, seed=3, min_count=1)
    fresh.build_vocab_from_freq({k: 100 - i for i, k in enumerate(m.wv.index_to_key)})
    assert np.array_equal(m.wv.vectors[len(keys_before):], fresh.wv.vectors[len(keys_before):])
    grown = m.wv.vectors.copy()
    m.train([["zz", "a", "yy", "b"]] * 20, total_examples=20, epochs=2)
    assert not np.array_equal(grown[-2:], m.wv.vectors[-2:])
    path = str(tmp_path / "m.pf")
    m.save(path)
    loaded = Word2Vec.load(path)
    corpus_file = tmp_path / "new.txt"
    corpus_file.write_text("new1 new1 a\nnew2 b\n")
    loaded.build_vocab(corpus_file=str(corpus_file), update=True)
    assert loaded.wv.index_to_key[-2:] == ["new1", "new2"]
    loaded.train(corpus_file=str(corpus_file), epochs=1)
    with pytest.raises(RuntimeError, match="already built"):
        Word2Vec().build_vocab(CORPUS, update=True)


def test_generators_and_restartable_iterables():
    with pytest.raises(TypeError, match="generator"):
        Word2Vec((s for s in CORPUS), min_count=1)

    class Restartable:
        def __iter__(self):
            return iter(CORPUS)

    m = Word2Vec(Restartable(), min_count=1, vector_size=4, epochs=2)
    assert len(m.wv) == 5 and m.corpus_count == 20
    m.build_vocab(s for s in CORPUS)  # one pass each: generators are fine here
    m.train((s for s in CORPUS), total_examples=m.corpus_count, epochs=2)


def test_null_word():
    m = Word2Vec(CORPUS, min_count=1, vector_size=4, null_word=1)
    assert m.wv.index_to_key[-1] == "\0" and m.wv.get_vecattr("\0", "count") == 1


def test_predict_output_word_is_the_softmax():
    m = Word2Vec(CORPUS, min_count=1, vector_size=8, workers=1)
    h = (m.wv["a"].astype(np.float64) + m.wv["c"]) / 2
    p = np.exp(m.syn1neg.astype(np.float64) @ h)
    p /= p.sum()
    got = m.predict_output_word(["a", "c", "oov"], topn=3)
    expected = [(m.wv.index_to_key[i], p[i]) for i in np.argsort(-p)[:3]]
    assert [k for k, _ in got] == [k for k, _ in expected]
    assert [v for _, v in got] == pytest.approx([v for _, v in expected], rel=1e-9)
    assert m.predict_output_word([m.wv.get_index("a"), "c"], topn=3) == got
    assert m.predict_output_word(["oov"]) is None
    bare = Word2Vec()
    bare.wv = m.wv
    with pytest.raises(RuntimeError, match="syn1neg"):
        bare.predict_output_word(["a"])
    with pytest.raises(ValueError, match="no output weights"):
        bare.train(CORPUS, total_examples=20, epochs=1)
    with pytest.raises(NotImplementedError, match="hierarchical softmax"):
        m.score(CORPUS)
    with pytest.raises(AttributeError, match="class method"):
        m.load("x")


def test_alpha_rising_again_warns(caplog):
    m = Word2Vec(min_count=1, vector_size=4)
    m.build_vocab(CORPUS)
    with caplog.at_level(logging.WARNING, logger="pyfast.word2vec"):
        m.train(CORPUS, total_examples=20, epochs=1)
        assert "higher than previous" not in caplog.text
        m.train(CORPUS, total_examples=20, epochs=1, start_alpha=0.01)
    assert "Effective 'alpha' higher than previous training cycles" in caplog.text


def _kv():
    kv = KeyedVectors(2)
    kv.add_vectors(["x", "y", "z", "w"], [[1, 0], [1, 1], [0, 1], [-1, 0]], extras={"count": [4, 3, 2, 1]})
    return kv


def test_keyedvectors_editing():
    kv = _kv()
    assert kv.index_to_key == ["x", "y", "z", "w"] and kv.vectors.dtype == np.float32
    kv.add_vectors(["x", "v"], [[5, 5], [2, 0]])  # replace=False: x keeps its vector
    assert kv["x"].tolist() == [1, 0] and kv["v"].tolist() == [2, 0] and kv.get_vecattr("v", "count") == 0
    kv["x"] = [3, 3]
    kv[["y", "u"]] = [[0, 2], [7, 7]]
    assert kv["x"].tolist() == [3, 3] and kv["y"].tolist() == [0, 2] and kv.index_to_key[-1] == "u"
    assert kv.add_vector("t", [1, 2]) == 6 and len(kv) == 7 == len(kv.vectors) == len(kv.counts)
    with pytest.raises(ValueError, match="vector_size=2"):
        kv.add_vectors(["q"], [[1, 2, 3]])
    sub = _kv().vectors_for_all(["z", "nope", "x", "z"], copy_vecattrs=True)
    assert sub.index_to_key == ["z", "x"] and sub.counts.tolist() == [2, 4]
    assert _kv().vectors_for_all(["z"]).counts.tolist() == [0]
    kv = _kv()
    kv.unit_normalize_all()
    assert np.allclose(np.linalg.norm(kv.vectors, axis=1), 1)


def test_keyedvectors_geometry():
    kv = _kv()
    s = 1 / np.sqrt(2)
    assert kv.similarity("x", "y") == pytest.approx(s) and kv.distance("x", "x") == 0.0
    assert kv.n_similarity(["x"], ["y"]) == kv.similarity("x", "y")
    assert kv.n_similarity(["x", "z"], ["y"]) == pytest.approx(1.0)  # the mean of x and z points along y
    assert kv.distances("x").tolist() == pytest.approx([0, 1 - s, 1, 2])
    assert kv.distances("x", ["w", "y"]).tolist() == pytest.approx([2, 1 - s])
    assert kv.closer_than("x", "z") == ["y"] and kv.rank("x", "z") == 2 and kv.rank("x", "y") == 1
    assert kv.most_similar_to_given("x", ["w", "z", "y"]) == "y"
    assert kv.relative_cosine_similarity("x", "y", topn=2) == pytest.approx(s / (s + 0))
    assert kv.get_mean_vector(["x", "y", "nope"], weights=[1, 1, 5]) == pytest.approx([(1 + s) / 2, s / 2])
    assert kv.get_mean_vector(["y"], pre_normalize=False).tolist() == [1, 1]
    with pytest.raises(KeyError):
        kv.get_mean_vector(["nope"], ignore_missing=False)
    # 3CosMul: prod((1 + cos) / 2) over positives / (prod over negatives + 1e-6)
    cos = lambda a, b: kv.similarity(a, b)  # noqa: E731
    expected = {k: (1 + cos(k, "y")) / 2 / ((1 + cos(k, "w")) / 2 + 1e-6) for k in ("x", "z")}
    got = dict(kv.most_similar_cosmul(positive=["y"], negative=["w"]))
    assert got.keys() == expected.keys() and all(got[k] == pytest.approx(v, rel=1e-5) for k, v in expected.items())
    assert kv.most_similar(positive=kv.vectors[:2], topn=1)[0][0] == "y"  # a matrix: one query per row


def test_evaluate_analogies_cosmul(tmp_path):
    kv = KeyedVectors(3)
    rng = np.random.default_rng(0)
    keys = [f"k{i}" for i in range(30)]
    kv.add_vectors(keys, rng.normal(size=(30, 3)))
    lines = [": s"] + [" ".join(rng.choice(keys, 4, replace=False)) for _ in range(40)]
    path = tmp_path / "q.txt"
    path.write_text("\n".join(lines) + "\n")
    _, sections = kv.evaluate_word_analogies(str(path), similarity_function="most_similar_cosmul",
                                             case_insensitive=False)
    correct = 0
    for line in lines[1:]:
        a, b, c, expected = line.split()
        correct += kv.most_similar_cosmul(positive=[b, c], negative=[a], topn=1)[0][0] == expected
    assert len(sections[-1]["correct"]) == correct
    with pytest.raises(ValueError, match="most_similar_cosmul"):
        kv.evaluate_word_analogies(str(path), similarity_function="nope")


def test_loading_gensim_pickles(tmp_path, monkeypatch):
    gensim_model_path = tmp_path / "g.model"
    gensim_model_path.write_bytes(b"\x80\x04not a zip")
    monkeypatch.setitem(sys.modules, "gensim", None)  # as if gensim were not installed
    monkeypatch.setitem(sys.modules, "gensim.models", None)
    for cls in (Word2Vec, KeyedVectors):
        with pytest.raises(ValueError, match="save_word2vec_format"):
            cls.load(str(gensim_model_path))
    monkeypatch.undo()
    gensim = pytest.importorskip("gensim")
    g = gensim.models.Word2Vec(CORPUS, min_count=1, vector_size=6, workers=1, epochs=2)
    g.save(str(gensim_model_path))
    m = Word2Vec.load(str(gensim_model_path))
    assert m.wv.index_to_key == g.wv.index_to_key and np.array_equal(m.wv.vectors, g.wv.vectors)
    assert np.array_equal(m.syn1neg, g.syn1neg) and m.wv.get_vecattr("a", "count") == g.wv.get_vecattr("a", "count")
    m.build_vocab([["brand", "new"]] * 3, update=True)
    m.train([["brand", "new", "a"]] * 3, total_examples=3, epochs=1)
    g.wv.save(str(tmp_path / "g.kv"))
    assert np.array_equal(KeyedVectors.load(str(tmp_path / "g.kv")).vectors, g.wv.vectors)
