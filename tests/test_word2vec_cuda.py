"""Word2Vec(device="cuda"): the CUDA trainer (csrc/word2vec/train_cuda.cu, pyfast/word2vec_cuda.py), run on the host
CUDA emulator (the `emu` fixture; kernels compiled by g++, one OS thread per CUDA thread) and on a GPU where there is
one. One warp on chunks in order must match the float64 reference fed the same draws (pyfast/reference/
word2vec_cuda.py); several warps (Hogwild) must track the CPU trainer's loss. Emulated runs are kept small."""
import os
import zlib

import numpy as np
import pytest
import torch

import pyfast
from pyfast import _native
from pyfast import word2vec_cuda as wc
from pyfast.reference import word2vec_cuda as ref


@pytest.fixture
def w2v_emu(emu, monkeypatch):
    """The CUDA trainer with its tensors on the CPU and its kernels in the emulated module."""
    monkeypatch.setattr(wc, "resolve_device", lambda device: torch.device("cpu"))
    return emu


def _zipf_sentences(rng, vocab, lengths):
    return [[f"w{int(x)}" for x in (rng.zipf(1.4, size=int(n)) - 1) % vocab] for n in lengths]


def _assert_close(got, want, rel, what):
    err = np.abs(np.asarray(got, np.float64) - want)
    scale = max(1.0, float(np.abs(want).max()))
    worst = np.unravel_index(int(np.argmax(err)), err.shape)
    bad = int((err > rel * scale).sum())
    assert bad == 0, f"{what}: {bad} of {err.size} elements off by > {rel * scale:g}; worst {err[worst]:g} at {worst}"


def test_numpy_philox_matches_native():
    counters = [(0, 0, 0, 0), (1, 2, 3, 4), (0xFFFFFFFF, 7, 0x12345678, 0x100), (2**31, 0, 5, 1)]
    keys = [(0, 0), (0xDEADBEEF, 42), (1, 0xFFFFFFFF)]
    for c in counters:
        for k in keys:
            got = ref.philox4x32_10(*c, *k)
            assert tuple(int(x) for x in got) == pyfast.rng.philox4x32_10(c, k)


def _model(sentences, **kw):
    args = dict(vector_size=13, window=3, min_count=1, negative=5, sg=1, seed=7, epochs=1, sample=0.05,
                compute_loss=True, device="cuda")
    args.update(kw)
    m = pyfast.Word2Vec(**args)
    m.build_vocab(sentences)
    return m


@pytest.mark.parametrize("pair", [-1, 0, 3])
def test_draws_match_reference(w2v_emu, pair):
    rng = np.random.default_rng(1)
    sentences = _zipf_sentences(rng, 40, rng.integers(1, 30, size=40))
    m = _model(sentences, window=4, negative=5)
    corpus = m._load_corpus(sentences, None)
    dc = wc.DeviceCorpus(m, corpus, torch.device("cpu"), 16)
    p = wc.params(w2v_emu, m, dc, start_alpha=0.025, end_alpha=1e-4, total=len(corpus.ids), progress_base=0, warps=1)
    n = len(corpus.ids)
    keep = torch.zeros(n, dtype=torch.uint8)
    reduce = torch.zeros(n, dtype=torch.int32)
    negs = torch.zeros((n, 5), dtype=torch.int32)
    w2v_emu.w2v_draws(p, keep.data_ptr(), reduce.data_ptr(), negs.data_ptr(), pair, 0)
    thr, al = wc.alias_table(m._noise_weights)
    k_ref, r_ref, n_ref = ref.draws(corpus.ids, m._keep_prob, thr, al, seed=m.seed, epoch=0, window=4, negative=5,
                                    pair=pair)
    assert 0 < int(k_ref.sum()) < n  # subsampling drops some words and keeps others
    np.testing.assert_array_equal(keep.numpy().astype(bool), k_ref)
    np.testing.assert_array_equal(reduce.numpy(), r_ref)
    np.testing.assert_array_equal(negs.numpy(), n_ref)
    # the alias draws follow count^0.75: the most frequent word is the most drawn negative
    assert np.bincount(n_ref.ravel(), minlength=len(m.wv)).argmax() == 0


CASES = {
    # name: (model kwargs, sentence lengths, vocab, chunk_len)
    "sg-shared-d13-w3-k5": (dict(sg=1, vector_size=13, window=3, negative=5), [1, 2, 3, 40, 75, 9], 30, 16),
    "sg-pair-d8-w3-k5": (dict(sg=1, shared_negatives=False, vector_size=8, window=3, negative=5), [2, 50, 33], 12, 16),
    "sg-w1-k1-chunk8": (dict(sg=1, vector_size=8, window=1, negative=1), [3, 60, 1], 20, 8),
    "sg-tiny-vocab-dups-k1": (dict(sg=1, vector_size=24, window=5, negative=1, sample=0), [120, 4], 4, 32),
    "cbow-mean-d13": (dict(sg=0, cbow_mean=1, vector_size=13, window=3, negative=5), [70, 2, 30], 25, 16),
    "cbow-sum-d24-fixed-window": (dict(sg=0, cbow_mean=0, vector_size=24, window=2, negative=3,
                                       shrink_windows=False), [45, 1, 60], 15, 32),
}


def _reference_run(m, corpus, epochs, chunk_len):
    syn0 = m.wv.vectors.astype(np.float64)
    syn1 = m.syn1neg.astype(np.float64)
    thr, al = wc.alias_table(m._noise_weights)
    stats = []
    n = len(corpus.ids)
    for e in range(epochs):
        stats.append(ref.train_epoch(
            syn0, syn1, corpus.ids, corpus.offsets, m._keep_prob, thr, al, sg=m.sg, cbow_mean=m.cbow_mean,
            negative=m.negative, window=m.window, shrink_windows=m.shrink_windows,
            shared_negatives=m.shared_negatives, alpha0=m.alpha, min_alpha=m.min_alpha, total_words=n * epochs,
            progress_base=e * n, seed=m.seed, epoch=m.epochs_trained + e, chunk_len=chunk_len))
    return syn0, syn1, stats


@pytest.mark.parametrize("case", list(CASES))
def test_one_warp_matches_reference(w2v_emu, monkeypatch, case):
    kwargs, lengths, vocab, chunk_len = CASES[case]
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    sentences = _zipf_sentences(rng, vocab, lengths)
    monkeypatch.setattr(wc, "DEFAULT_CHUNK_LEN", chunk_len)
    m = _model(sentences, epochs=2, **kwargs)
    corpus = m._load_corpus(sentences, None)
    syn0, syn1, stats = _reference_run(m, corpus, 2, chunk_len)
    trained, raw = m.train(sentences, epochs=2)
    assert isinstance(m.wv.vectors, np.ndarray) and m.wv.vectors.dtype == np.float32
    _assert_close(m.wv.vectors, syn0, 5e-6, "syn0")
    _assert_close(m.syn1neg, syn1, 5e-6, "syn1neg")
    assert trained == sum(s["trained"] for s in stats) and raw == 2 * sum(lengths)
    assert [s["pairs"] for s in m.train_stats] == [s["pairs"] for s in stats]
    np.testing.assert_allclose(m.training_losses, [s["loss"] for s in stats], rtol=1e-6)
    assert m.get_latest_training_loss() == m.training_losses[-1]
    assert not np.allclose(syn0, m._initial_vectors(0, len(m.wv)))  # training moved the vectors


def test_negative_zero_and_long_sentence(w2v_emu):
    """T = 1 (no negatives; only reachable through the params) and a sentence longer than kMaxSentenceLen, whose
    window must not cross the piece boundary; one warp, against the reference."""
    rng = np.random.default_rng(5)
    sentences = _zipf_sentences(rng, 6, [10030, 5])
    m = _model(sentences, vector_size=8, window=2, negative=1, sample=0)
    m.negative = 0
    corpus = m._load_corpus(sentences, None)
    syn0, syn1, stats = _reference_run(m, corpus, 1, 256)
    dc = wc.DeviceCorpus(m, corpus, torch.device("cpu"), 256)
    p = wc.params(w2v_emu, m, dc, start_alpha=m.alpha, end_alpha=m.min_alpha, total=len(corpus.ids),
                  progress_base=0, warps=1)
    loss, kept, pairs = wc.run_epoch(w2v_emu, p, dc)
    _assert_close(dc.syn0.numpy(), syn0, 5e-6, "syn0")
    _assert_close(dc.syn1neg.numpy(), syn1, 5e-6, "syn1neg")
    assert (kept, pairs) == (stats[0]["trained"], stats[0]["pairs"])
    np.testing.assert_allclose(loss, stats[0]["loss"], rtol=1e-6)


def test_chunk_table():
    offsets = np.array([0, 0, 5, 10005 + 5, 10005 + 5 + 3])
    chunks = wc.make_chunks(offsets, 4096)
    assert chunks.tolist() == [[0, 5, 0, 5], [5, 4101, 5, 10005], [4101, 8197, 5, 10005], [8197, 10005, 5, 10005],
                               [10005, 10010, 10005, 10010], [10010, 10013, 10010, 10013]]


def _lee():
    gensim = pytest.importorskip("gensim")
    path = os.path.join(os.path.dirname(gensim.__file__), "test", "test_data", "lee_background.cor")
    with open(path) as f:
        return [line.split() for line in f]


def test_several_warps_track_cpu_loss(w2v_emu, monkeypatch):
    """Hogwild: 4 warps (one emulated block of 128 threads) on the first 60 lines of gensim's lee_background.cor
    (~11k tokens): the per-pair loss of each epoch tracks the CPU trainer's (different draws, same model).
    Constant learning rate, because the schedules' granularity differs (the CPU steps alpha every 10,000 tokens, the
    kernel per chunk): on a corpus this small the CPU's lagging steps train at a higher mean rate, which measured
    (100 lines, 3 epochs, seeds 1-3) as a 2-4% lower loss by epoch 3 for skip-gram, 1.2% for CBOW. With a constant
    rate the measured ratios were within 0.3% (seed-to-seed spread of either trainer: ~0.3%); bound 1.5%."""
    sentences = _lee()[:60]
    monkeypatch.setattr(wc, "default_warps", lambda dev, n: 4)
    monkeypatch.setattr(wc, "DEFAULT_CHUNK_LEN", 64)
    common = dict(vector_size=16, window=3, min_count=2, negative=5, sg=1, epochs=3, compute_loss=True, seed=3,
                  sample=1e-3, alpha=0.025, min_alpha=0.025)
    gpu = pyfast.Word2Vec(sentences, device="cuda", **common)
    cpu = pyfast.Word2Vec(sentences, workers=1, **common)
    per_pair = lambda m: np.array([s["loss"] / s["pairs"] for s in m.train_stats])  # noqa: E731
    ratio = per_pair(gpu) / per_pair(cpu)
    assert np.all(np.abs(ratio - 1) < 0.015), (per_pair(gpu), per_pair(cpu))
    assert per_pair(gpu)[-1] < 0.9 * per_pair(gpu)[0]  # it learns
    kept_ratio = np.array([g["trained_words"] / c["trained_words"] for g, c in zip(gpu.train_stats, cpu.train_stats)])
    assert np.all(np.abs(kept_ratio - 1) < 0.02)


def test_cuda_model_saves_loads_and_calls_back(w2v_emu, tmp_path, capsys):
    rng = np.random.default_rng(2)
    sentences = _zipf_sentences(rng, 20, [30, 40, 12])
    seen = []

    class Recorder:
        def on_epoch_end(self, model):
            seen.append((model.get_latest_training_loss(), model.wv.vectors.copy()))

    m = pyfast.Word2Vec(sentences, vector_size=8, window=2, min_count=1, epochs=2, device="cuda", compute_loss=True,
                        callbacks=[Recorder()], seed=1, progress=True)
    assert "word2vec (cuda): epoch 2/2 done in" in capsys.readouterr().err
    assert len(seen) == 2 and seen[0][0] > 0 and not np.array_equal(seen[0][1], seen[1][1])
    np.testing.assert_array_equal(seen[1][1], m.wv.vectors)
    m.save(str(tmp_path / "m.npz"))
    back = pyfast.Word2Vec.load(str(tmp_path / "m.npz"))
    np.testing.assert_array_equal(back.wv.vectors, m.wv.vectors)
    np.testing.assert_array_equal(back.syn1neg, m.syn1neg)
    assert m.train_stats[-1]["schedule"] == "linear"


def test_bad_ids_and_chunks_raise(w2v_emu):
    rng = np.random.default_rng(3)
    sentences = _zipf_sentences(rng, 10, [20, 20])
    m = _model(sentences)
    corpus = m._load_corpus(sentences, None)
    corpus.ids[7] = len(m.wv) + 3
    with pytest.raises(ValueError, match=r"corpus ids must be in \[0, \d+\)"):
        wc.DeviceCorpus(m, corpus, torch.device("cpu"), 16)
    corpus.ids[7] = 0
    dc = wc.DeviceCorpus(m, corpus, torch.device("cpu"), 16)
    dc.ids[7] = -1  # bad id on the device: the kernel reports it and never uses it as a row
    p = wc.params(w2v_emu, m, dc, start_alpha=0.025, end_alpha=1e-4, total=len(corpus.ids), progress_base=0, warps=1)
    with pytest.raises(ValueError, match=rf"token id outside \[0, {len(m.wv)}\) at position 7"):
        wc.run_epoch(w2v_emu, p, dc)
    dc.ids[7] = 0
    dc.error.fill_(2**63 - 1)
    dc.chunks[1, 1] = dc.chunks[1, 0] + 17  # longer than max_chunk_len
    with pytest.raises(ValueError, match=r"malformed chunk 1 in the chunk table"):
        wc.run_epoch(w2v_emu, p, dc)
    p.window = 0
    with pytest.raises(ValueError, match=r"window must be in \[1, 1024\], got 0"):
        w2v_emu.w2v_train_epoch(p, 0)


def test_device_argument_errors(monkeypatch):
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda', 'cuda:N' or a torch.device, got 'gpu'"):
        pyfast.Word2Vec(device="gpu")
    with pytest.raises(ValueError, match="device must be 'cpu' or a CUDA device, got 'meta'"):
        pyfast.Word2Vec(device="meta")
    with pytest.raises(ValueError, match="alpha_schedule='gensim_corpus_file' models gensim's per-CPU-worker"):
        pyfast.Word2Vec(device="cuda", alpha_schedule="gensim_corpus_file")
    with pytest.raises(NotImplementedError, match=r"distributed=True is CPU-only"):
        pyfast.Word2Vec(device="cuda", distributed=True)
    assert pyfast.Word2Vec(device=torch.device("cpu")).device == "cpu"
    # no CUDA build: the rebuild hint
    monkeypatch.setattr(_native, "_cuda_module", None)
    monkeypatch.setattr(_native, "_cuda_import_error", "No module named 'pyfast._C_cuda'")
    with pytest.raises(RuntimeError, match=r"built without CUDA support .*PYFAST_CUDA=ON pip install"):
        pyfast.Word2Vec([["a", "b", "a"]], min_count=1, device="cuda")


def test_no_visible_gpu(emu, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"torch sees no CUDA device .*train with device='cpu'"):
        pyfast.Word2Vec([["a", "b", "a"]], min_count=1, device="cuda")


@pytest.mark.cuda_only
def test_gpu_matches_reference_one_warp(monkeypatch):
    """On a real GPU: one warp in order against the reference, and the default launch tracking it."""
    rng = np.random.default_rng(11)
    sentences = _zipf_sentences(rng, 50, rng.integers(1, 80, size=60))
    monkeypatch.setattr(wc, "default_warps", lambda dev, n: 1)
    monkeypatch.setattr(wc, "DEFAULT_CHUNK_LEN", 32)
    m = _model(sentences, vector_size=37)
    corpus = m._load_corpus(sentences, None)
    syn0, syn1, stats = _reference_run(m, corpus, 1, 32)
    m.train(sentences, epochs=1)
    _assert_close(m.wv.vectors, syn0, 2e-5, "syn0")  # fast-math expf on the GPU: a looser bound than emulated
    _assert_close(m.syn1neg, syn1, 2e-5, "syn1neg")


def test_bench_cuda_contender_runs_emulated(w2v_emu, monkeypatch):
    """The GPU bench's Zipf case (benchmarks/gpu_check.sh runs it on a GPU), through the harness, on a tiny corpus."""
    from pyfast.bench import word2vec as bench_w2v
    from pyfast.bench.harness import run_case

    monkeypatch.setattr(torch.cuda, "synchronize", lambda *args: None)  # the harness syncs "cuda" cases
    case = bench_w2v.zipf_case(60, 8, 3000, repeat=1)
    res = run_case(case)
    assert res.throughput["pyfast cuda"] > 0 and 0 < case.contenders[0].extra["trained_words"] <= 3000
    # without a GPU the --device cuda cases are none, and the CPU bench has no cuda contender
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not bench_w2v.cuda_available() and list(bench_w2v.cuda_cases(quick=True)) == []


def test_bench_real_text_case_runs_emulated(w2v_emu, monkeypatch, tmp_path):
    """The GPU bench's quality case (cuda vs cpu trainer, scored by gensim's evaluators) on a tiny text."""
    pytest.importorskip("gensim")
    from pyfast.bench import word2vec as bench_w2v
    from pyfast.bench.harness import run_case

    monkeypatch.setattr(torch.cuda, "synchronize", lambda *args: None)
    path = tmp_path / "tiny.txt"
    path.write_text("\n".join(" ".join(s) for s in _lee()[:100]) + "\n")  # enough for a few WS353 pairs
    monkeypatch.setitem(bench_w2v.SETTINGS, "epochs", 1)
    monkeypatch.setitem(bench_w2v.SETTINGS, "min_count", 2)
    case = bench_w2v.real_text_case(corpus_path=str(path))
    res = run_case(case, repeat=1)
    case.finalize()
    assert case.work > 0 and set(res.throughput) == {c.name for c in case.contenders}
    for c in case.contenders:
        assert len(c.extra["analogy_runs"]) == 1 and np.isfinite(c.extra["ws353_mean"]), c.extra


def test_warp_count_changes_only_hogwild_ordering(w2v_emu, monkeypatch):
    """Draws are keyed by position: 1 warp and 9 warps (two emulated blocks, the grid-stride over chunks) keep the
    same words and train the same pairs; only the update order (Hogwild) differs, so the losses are close. Measured
    (this corpus, ~18k tokens, 2000 words): 9 warps +0.7% / +0.3% loss over 1 warp by epoch, 2 warps +0.02%; on an
    80-word, 2.5k-token corpus 9 warps gave +1.1% / +2.0% (staleness grows with the share of the corpus in flight)."""
    rng = np.random.default_rng(9)
    sentences = _zipf_sentences(rng, 2000, rng.integers(5, 120, size=300))
    monkeypatch.setattr(wc, "DEFAULT_CHUNK_LEN", 32)
    runs = {}
    for warps in (1, 9):
        monkeypatch.setattr(wc, "default_warps", lambda dev, n, warps=warps: warps)
        runs[warps] = pyfast.Word2Vec(sentences, vector_size=24, window=4, min_count=1, epochs=2, sg=1, seed=5,
                                      compute_loss=True, device="cuda")
    one, many = runs[1].train_stats, runs[9].train_stats
    assert [s["trained_words"] for s in one] == [s["trained_words"] for s in many]
    assert [s["pairs"] for s in one] == [s["pairs"] for s in many]
    np.testing.assert_allclose(runs[9].training_losses, runs[1].training_losses, rtol=0.02)
    assert not np.array_equal(runs[1].wv.vectors, runs[9].wv.vectors)  # the order did change
