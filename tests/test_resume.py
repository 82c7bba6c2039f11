"""Resumable pretraining (pyfast.models.training.ResumableRun, examples/pretrain_*.py --resume): a run stopped at a
step boundary and resumed reproduces the uninterrupted run's losses and parameters; the pieces it restores (RNGs,
data order, collator stream) each round-trip; checkpoints and the `latest` pointer are atomic and pruned; a resume
under other settings is a clear error. Then the BERT example on two torchrun "nodes" over the loopback, and a
resume under 2-process DDP. The Ctrl-C / SIGTERM subprocess tests are in test_faults.py beside the word2vec ones.
"""
from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import pyfast.models.training as training
from pyfast.data import DataCollatorForLanguageModeling
from pyfast.demo import tasks
from pyfast.models import WordPieceTokenizer
from pyfast.models.training import (ResumableRun, ShuffledBatches, StopRequest, TrainingInterrupted, rng_state,
                                    set_rng_state)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Small enough that 20 steps take a second or two on 2 shared cores; dropout on, so the torch RNG state matters.
SMALL = dict(steps=20, batch_size=4, seq_len=16, hidden=16, layers=1, heads=2, lr=3e-3, seed=3, quiet=True,
             dropout=0.1)


@pytest.fixture(scope="module")
def corpus():
    from pyfast.demo.corpus import load_books, split_paragraphs

    train, test = split_paragraphs(load_books())
    train, test = [p for p, _ in train][:300], [p for p, _ in test][:20]
    return WordPieceTokenizer.train(train, vocab_size=300), train, test


def _pretrain(name):
    return {"bert": tasks.pretrain_bert, "gpt": tasks.pretrain_gpt}[name]


# ---- the acceptance test: 20 steps straight vs 10 + resume 10 ------------------------------------------------
@pytest.mark.parametrize("name", ["bert", "gpt"])
def test_stop_and_resume_reproduces_the_uninterrupted_run(tmp_path, corpus, name):
    tok, train, test = corpus
    straight = _pretrain(name)(tok, train, test, out_dir=str(tmp_path / "straight"), **SMALL)
    with pytest.raises(TrainingInterrupted, match="stopped as asked at step 10 of 20") as info:
        _pretrain(name)(tok, train, test, out_dir=str(tmp_path / "split"), stop=StopRequest(after_steps=10), **SMALL)
    assert info.value.exit_code == 0 and info.value.checkpoint.endswith("step-00000010")
    assert (tmp_path / "split" / "checkpoints" / "latest").read_text() == "step-00000010\n"
    # A fresh process would start here: reseed everything differently, so nothing carries over by accident.
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    resumed = _pretrain(name)(tok, train, test, out_dir=str(tmp_path / "split"), resume=True, **SMALL)

    a, b = straight["log"].rows, resumed["log"].rows
    assert [r["step"] for r in b] == list(range(20)), "the resumed run's log lacks the first part's rows"
    worst = max(abs(x["loss"] - y["loss"]) for x, y in zip(a, b))
    assert worst <= 1e-6, f"losses differ by up to {worst}: {[(x['loss'], y['loss']) for x, y in zip(a, b)]}"
    assert [r["lr"] for r in a] == [r["lr"] for r in b]
    for (key, p), q in zip(straight["model"].named_parameters(), resumed["model"].parameters()):
        assert torch.equal(p, q), f"{key} differs after resuming"


def test_resume_without_a_checkpoint_says_so_and_starts_at_step_0(tmp_path, corpus, capsys):
    tok, train, test = corpus
    kw = dict(SMALL, steps=3)
    fresh = tasks.pretrain_gpt(tok, train, test, out_dir=str(tmp_path / "a"), resume=True, **kw)
    assert f"resume: no checkpoint in {tmp_path / 'a' / 'checkpoints'}; starting from step 0" in capsys.readouterr().err
    straight = tasks.pretrain_gpt(tok, train, test, out_dir=str(tmp_path / "b"), **kw)
    assert fresh["log"].losses() == straight["log"].losses()


def test_resume_under_other_settings_is_a_clear_error(tmp_path, corpus):
    tok, train, test = corpus
    with pytest.raises(TrainingInterrupted):
        tasks.pretrain_bert(tok, train, test, out_dir=str(tmp_path), stop=StopRequest(after_steps=2), **SMALL)
    with pytest.raises(ValueError, match=r"was written by a run with lr=0\.003; this run has lr=0\.001; resume "
                                         r"with the same settings"):
        tasks.pretrain_bert(tok, train, test, out_dir=str(tmp_path), resume=True, **dict(SMALL, lr=1e-3))
    with pytest.raises(ValueError, match=r"this run has pre_norm=True"):  # the architecture is a setting too
        tasks.pretrain_bert(tok, train, test, out_dir=str(tmp_path), resume=True, pre_norm=True, **SMALL)
    other = WordPieceTokenizer.train(train, vocab_size=200)
    with pytest.raises(ValueError, match="vocab_sha1="):
        tasks.pretrain_bert(other, train, test, out_dir=str(tmp_path), resume=True, **SMALL)
    with pytest.raises(ValueError, match="resume and stop need out_dir"):
        tasks.pretrain_bert(tok, train, test, resume=True, **SMALL)


def test_a_finished_run_resumes_to_the_same_end(tmp_path, corpus):
    tok, train, test = corpus
    kw = dict(SMALL, steps=4, save_every=2)
    done = tasks.pretrain_gpt(tok, train, test, out_dir=str(tmp_path), **kw)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["latest", "step-00000002", "step-00000004"]
    assert done["checkpoint"] == str(tmp_path / "checkpoint")  # the final model, loadable with from_pretrained
    assert os.path.exists(os.path.join(done["checkpoint"], "config.json"))
    again = tasks.pretrain_gpt(tok, train, test, out_dir=str(tmp_path), resume=True, **kw)  # nothing left to train
    assert again["log"].losses() == done["log"].losses()
    assert again["perplexity"] == done["perplexity"]


# ---- the pieces ------------------------------------------------------------------------------------------------
def test_rng_state_round_trips_every_generator_through_a_weights_only_file(tmp_path):
    random.random(), np.random.randn(), torch.randn(3)
    state = rng_state()
    torch.save(state, tmp_path / "rng.pt")
    want = (random.random(), random.gauss(0, 1), np.random.randn(5), torch.randn(5), torch.rand(2))
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (random.random(), random.gauss(0, 1), np.random.randn(5), torch.randn(5), torch.rand(2))
    assert got[:2] == want[:2]
    assert np.array_equal(got[2], want[2])
    assert torch.equal(got[3], want[3]) and torch.equal(got[4], want[4])


def test_shuffled_batches_match_the_old_generator_and_restore_mid_epoch_and_at_its_end():
    ref = tasks._batches(10, 3, seed=5)  # the generator the loops used before: the same batches, in order
    fresh = ShuffledBatches(10, 3, seed=5)
    assert all(torch.equal(next(ref), next(fresh)) for _ in range(10))
    for taken in (0, 1, 3, 4, 7):  # 3 batches an epoch: 3 is an epoch's end, 4 inside the second
        it = ShuffledBatches(10, 3, seed=5)
        for _ in range(taken):
            next(it)
        state = it.state_dict()
        want = [next(it) for _ in range(5)]
        again = ShuffledBatches(10, 3, seed=5)
        again.load_state_dict(state)
        assert all(torch.equal(x, y) for x, y in zip(want, (next(again) for _ in range(5)))), taken
    with pytest.raises(ValueError, match=r"taken over 10 rows in batches of 3, this run has 11 rows"):
        ShuffledBatches(11, 3, seed=5).load_state_dict(state)
    with pytest.raises(ValueError, match=r"batch_size must be in \[1, n_rows=2\], got 3"):
        ShuffledBatches(2, 3, seed=0)


def test_collator_state_dict_continues_its_mask_stream(corpus):
    tok = corpus[0]
    rows = [{"input_ids": torch.arange(5, 25)} for _ in range(4)]
    a = DataCollatorForLanguageModeling(tok, seed=11)
    a(rows), a.set_epoch(2), a(rows)
    state = a.state_dict()
    want = a(rows)
    b = DataCollatorForLanguageModeling(tok, seed=0)
    b.load_state_dict(state)
    got = b(rows)
    assert state == {"seed": 11, "epoch": 2, "calls": 2}
    assert torch.equal(got["input_ids"], want["input_ids"]) and torch.equal(got["labels"], want["labels"])


class _Counter:
    def __init__(self):
        self.n = 0

    def state_dict(self):
        return {"n": self.n}

    def load_state_dict(self, state):
        self.n = state["n"]


def _tiny_run(directory, **kw):
    from pyfast.models import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=16, max_position_embeddings=8))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    counter = _Counter()
    return ResumableRun(str(directory), model, optimizer, settings={"x": 1}, counter=counter, **kw), counter


def test_checkpoints_are_pruned_and_latest_names_a_complete_one_even_when_a_save_dies(tmp_path, monkeypatch):
    run, counter = _tiny_run(tmp_path, keep=2, save_every=1)
    for step in range(1, 5):
        counter.n = step
        run.step_done(step, 10)
    folder = tmp_path / "checkpoints"
    assert sorted(os.listdir(folder)) == ["latest", "step-00000003", "step-00000004"]
    # Killed between writing a checkpoint and moving the pointer: `latest` still names the complete step 4.
    monkeypatch.setattr(training, "atomic_write", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        run.save(5)
    monkeypatch.undo()
    again, counter = _tiny_run(tmp_path)
    assert again.restore() == 4 and counter.n == 4
    (folder / "latest").write_text("step-00000009\n")
    with pytest.raises(RuntimeError, match=r"names 'step-00000009', which is not a complete checkpoint"):
        _tiny_run(tmp_path)[0].restore()


def test_stop_request_catches_sigint_and_sigterm_and_restores_the_handlers():
    import signal

    before = signal.getsignal(signal.SIGINT)
    for sig in (signal.SIGINT, signal.SIGTERM):
        with StopRequest() as stop:
            assert stop.check(1) is None
            signal.raise_signal(sig)  # handled at once, on this (the main) thread: only a flag is set
            assert stop.check(1) == sig
        assert signal.getsignal(signal.SIGINT) is before
    assert StopRequest(after_steps=3).check(2) is None and StopRequest(after_steps=3).check(3) == 0
    with pytest.raises(ValueError, match="after_steps must be >= 1 or None, got 0"):
        StopRequest(after_steps=0)


# ---- torchrun: two "nodes" on the loopback, and a resume under DDP ----------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_EXAMPLE_ARGS = ["--steps", "6", "--batch-size", "4", "--seq-len", "16", "--hidden", "16", "--layers", "1",
                 "--heads", "2", "--vocab-size", "300", "--save-every", "0", "--device", "cpu"]


def _env() -> dict:
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("WORLD_SIZE", None)  # a torchrun'd pytest must not leak its own rank variables into the launchers
    return env


def _small_corpus(tmp_path) -> str:
    from pyfast.demo.corpus import load_books

    path = tmp_path / "corpus.txt"
    path.write_text("\n".join([p for b in load_books().values() for p in b][:400]) + "\n")
    return str(path)


def _two_nodes(tmp_path, extra, timeout=240):
    """Two torchrun launchers (node ranks 0 and 1, one process each) meeting through c10d rendezvous on
    127.0.0.1 -> [(returncode, stdout, stderr)] per node."""
    endpoint = f"127.0.0.1:{_free_port()}"
    procs = []
    for node in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
               "--node_rank", str(node), "--rdzv_backend", "c10d", "--rdzv_endpoint", endpoint,
               "--rdzv_id", "pyfast-test", "--rdzv_conf", f"is_host={int(node == 0)}", "--max_restarts", "0",
               "--local_addr", "127.0.0.1", os.path.join(REPO, "examples", "pretrain_bert.py"), *_EXAMPLE_ARGS,
               "--corpus", _small_corpus(tmp_path), "--out", str(tmp_path / "out"), *extra]
        # Output to files, not pipes: waiting on node 0 while node 1's undrained pipe fills would block node 1
        # before torchrun's exit barrier, and node 0's launcher would then wait there until the timeout.
        logs = (open(tmp_path / f"node{node}.out", "w+"), open(tmp_path / f"node{node}.err", "w+"))
        procs.append((subprocess.Popen(cmd, cwd=str(tmp_path), env=_env(), stdout=logs[0], stderr=logs[1],
                                       text=True), logs))
    results = []
    try:
        deadline = time.monotonic() + timeout
        for p, _ in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
        for p, (out, err) in procs:
            out.seek(0)
            err.seek(0)
            results.append((p.returncode, out.read(), err.read()))
    finally:
        for p, logs in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            for fh in logs:
                fh.close()
    return results


def test_bert_example_on_two_torchrun_nodes_over_the_loopback(tmp_path):
    results = _two_nodes(tmp_path, ["--quiet"])
    for node, (rc, out, err) in enumerate(results):
        assert rc == 0, f"node {node} exited {rc}\n{out[-3000:]}\n{err[-3000:]}"
    out = results[0][1] + results[1][1]
    assert "2 process(es) on cpu" in out
    assert "rank 0: max |param - rank 0 param| = 0" in out and "rank 1: max |param - rank 0 param| = 0" in out
    assert os.path.exists(tmp_path / "out" / "checkpoint" / "config.json")


@pytest.mark.slow
def test_resume_under_two_process_ddp_reproduces_the_uninterrupted_run(tmp_path):
    def torchrun(out, *extra):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               os.path.join(REPO, "examples", "pretrain_bert.py"), *_EXAMPLE_ARGS, "--quiet", "--dropout", "0.1",
               "--corpus", corpus, "--out", str(tmp_path / out), *extra]
        proc = subprocess.run(cmd, cwd=str(tmp_path), env=_env(), capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, f"{extra} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    corpus = _small_corpus(tmp_path)
    torchrun("straight")
    # The same vocabulary for both runs (a retrained one might order ties differently): the split run reuses it.
    shutil.copytree(tmp_path / "straight" / "tokenizer", tmp_path / "split" / "tokenizer")
    stopped = torchrun("split", "--stop-after", "3", "--resume")
    assert "stopped as asked at step 3 of 6" in stopped.stderr
    resumed = torchrun("split", "--resume")
    assert "resume: continuing from" in resumed.stdout and resumed.stdout.count("param| = 0") == 2
    straight_csv = (tmp_path / "straight" / "loss.csv").read_text().splitlines()
    split_csv = (tmp_path / "split" / "loss.csv").read_text().splitlines()
    assert len(split_csv) == 7 and split_csv == straight_csv  # rank 0's losses, written with repr precision
    from pyfast.models import BertForMaskedLM

    a = BertForMaskedLM.from_pretrained(str(tmp_path / "straight" / "checkpoint"))
    b = BertForMaskedLM.from_pretrained(str(tmp_path / "split" / "checkpoint"))
    for (key, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), key
