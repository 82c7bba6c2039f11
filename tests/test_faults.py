"""Fault injection: a save killed by SIGKILL leaves the previous file loadable; truncated or garbled files raise a
clear exception naming the file; Ctrl-C stops native word2vec training promptly and leaves a usable model; the ops
called from 4 Python threads at once give the serial results; forked DataLoader workers run kernels after the
parent's parallel kernels. Every fault that kills or signals a process runs in a subprocess.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import torch

import pyfast
from pyfast import KeyedVectors, Word2Vec
from pyfast.models import BertConfig, BertForMaskedLM

# The package the tests import (in-tree, installed or the sanitizer's copy): children must import the same one,
# so they run in its parent folder (`python -c` and `-m` put the working directory first on sys.path).
_PKG_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(pyfast.__file__)))


def _child_env() -> dict:
    return dict(os.environ, PYTHONPATH=_PKG_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _run_child(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=_child_env(),
                          cwd=_PKG_ROOT,
                          capture_output=True, text=True, timeout=timeout)


def _w2v_model(seed: int) -> Word2Vec:
    rng = np.random.default_rng(seed)
    sentences = [[f"w{i}" for i in rng.integers(0, 300, 20)] for _ in range(200)]
    return Word2Vec(sentences, vector_size=16, min_count=1, workers=1, epochs=1, seed=seed)


# ---- SIGKILL during a save ------------------------------------------------------------------------------------
# The child overwrites a good file with a different model and is SIGKILLed at a chosen point of the save:
# "mid-write" (after the first 4 KiB reach the temp file), "before-rename" (temp file complete and fsynced, not yet
# renamed). Either way the target must still hold the old, complete file.
_KILL_CHILD = """
import os, signal, sys
import numpy as np
import pyfast._io as fileio
from pyfast import Word2Vec

where, kind, path = sys.argv[1:4]
if where == "mid-write":
    real_open = open
    class KillAfter4K:
        def __init__(self, fh): self.fh, self.n = fh, 0
        def write(self, data):
            self.n += len(data)
            if self.n > 4096:
                self.fh.write(data[: len(data) // 2]); self.fh.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return self.fh.write(data)
        def __enter__(self): return self
        def __exit__(self, *exc): return self.fh.__exit__(*exc)
        def __getattr__(self, name): return getattr(self.fh, name)
    fileio.open = lambda *a, **k: KillAfter4K(real_open(*a, **k))
else:
    fileio.replace = lambda tmp, dst: os.kill(os.getpid(), signal.SIGKILL)
rng = np.random.default_rng(7)
sentences = [[f"w{i}" for i in rng.integers(0, 300, 20)] for _ in range(200)]
model = Word2Vec(sentences, vector_size=24, min_count=1, workers=1, epochs=1, seed=7)  # differs from the old one
if kind == "w2v":
    model.save(path)
elif kind == "text":
    model.wv.save_word2vec_format(path)
elif kind == "binary":
    model.wv.save_word2vec_format(path, binary=True)
else:
    import torch
    from pyfast.models import BertConfig, BertForMaskedLM
    torch.manual_seed(1)
    BertForMaskedLM(BertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=32)).save_pretrained(path)
print("save returned: the kill did not happen")
"""


def _tiny_bert(seed: int) -> BertForMaskedLM:
    torch.manual_seed(seed)
    return BertForMaskedLM(BertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=64, max_position_embeddings=32)).eval()


@pytest.mark.parametrize("where", ["mid-write", "before-rename"])
@pytest.mark.parametrize("kind", ["w2v", "text", "binary", "pretrained"])
def test_sigkill_during_save_keeps_the_old_file(tmp_path, kind, where):
    if kind == "pretrained" and where == "mid-write":
        pytest.skip("torch.save / safetensors write the temp file from C++: killed before the rename instead")
    old = _w2v_model(3)
    path = str(tmp_path / ("model" if kind == "pretrained" else "vectors"))
    if kind == "w2v":
        old.save(path)
    elif kind == "text":
        old.wv.save_word2vec_format(path)
    elif kind == "binary":
        old.wv.save_word2vec_format(path, binary=True)
    else:
        bert = _tiny_bert(0)
        bert.save_pretrained(path)
    before = sorted(os.listdir(tmp_path if kind != "pretrained" else path))
    child = _run_child(_KILL_CHILD, where, kind, path)
    assert child.returncode == -signal.SIGKILL, (child.returncode, child.stdout, child.stderr[-2000:])
    if kind == "w2v":
        loaded = Word2Vec.load(path)
        assert np.array_equal(loaded.wv.vectors, old.wv.vectors) and loaded.wv.index_to_key == old.wv.index_to_key
    elif kind in ("text", "binary"):
        loaded = KeyedVectors.load_word2vec_format(path, binary=kind == "binary")
        assert loaded.index_to_key == old.wv.index_to_key
        assert np.array_equal(loaded.vectors, old.wv.vectors)
    else:
        loaded = BertForMaskedLM.from_pretrained(path).eval()
        ids = torch.randint(5, 300, (2, 7))
        assert torch.equal(loaded(ids).logits, bert(ids).logits)
    # What a SIGKILL can leave: the temp file beside the target (no process is left to remove it), nothing else.
    after = sorted(os.listdir(tmp_path if kind != "pretrained" else path))
    extra = [f for f in after if f not in before]
    assert all(".tmp." in f for f in extra), extra


# ---- truncated and corrupt files ------------------------------------------------------------------------------
def _truncate(path: str, keep: float) -> None:
    with open(path, "rb") as fh:
        data = fh.read()
    with open(path, "wb") as fh:
        fh.write(data[: int(len(data) * keep)])


def _garble(path: str) -> None:
    with open(path, "r+b") as fh:
        data = bytearray(fh.read())
        rng = np.random.default_rng(0)
        for i in rng.integers(0, len(data), 64):
            data[i] ^= 0xFF
        fh.seek(0)
        fh.write(bytes(data))


@pytest.mark.parametrize("damage", ["truncate-half", "truncate-10", "empty", "garble"])
def test_damaged_word2vec_files_raise_naming_the_file(tmp_path, damage):
    model = _w2v_model(1)
    files = {"npz": str(tmp_path / "model.npz"), "text": str(tmp_path / "v.txt"), "bin": str(tmp_path / "v.bin")}
    model.save(files["npz"])
    model.wv.save_word2vec_format(files["text"])
    model.wv.save_word2vec_format(files["bin"], binary=True)
    for kind, path in files.items():
        if damage == "garble" and kind != "npz":
            continue  # word2vec.c's formats have no checksum: flipped digits are valid numbers (checked below)
        if damage.startswith("truncate"):
            _truncate(path, 0.5 if damage == "truncate-half" else 0.1)
        elif damage == "empty":
            _truncate(path, 0.0)
        else:
            _garble(path)
        with pytest.raises((ValueError, EOFError)) as info:
            if kind == "npz":
                Word2Vec.load(path)
            else:
                KeyedVectors.load_word2vec_format(path, binary=kind == "bin")
        assert os.path.basename(path) in str(info.value) or kind != "npz", (kind, str(info.value))
        assert str(info.value), kind


def test_damaged_word2vec_text_formats_raise_naming_the_file(tmp_path):
    model = _w2v_model(1)
    for binary in (False, True):
        path = str(tmp_path / f"v{int(binary)}")
        model.wv.save_word2vec_format(path, binary=binary)
        _truncate(path, 0.5)
        with pytest.raises((ValueError, EOFError), match=os.path.basename(path)):
            KeyedVectors.load_word2vec_format(path, binary=binary)


def test_damaged_pretrained_folders_raise_naming_the_file(tmp_path):
    pytest.importorskip("safetensors")
    good = _tiny_bert(0)
    for safe in (True, False):
        folder = tmp_path / f"m{int(safe)}"
        weights = good.save_pretrained(str(folder), safe_serialization=safe)
        config = str(folder / "config.json")
        with open(config) as fh:
            config_text = fh.read()
        os.remove(config)
        with pytest.raises(FileNotFoundError, match="config.json"):
            BertForMaskedLM.from_pretrained(str(folder))
        with open(config, "w") as fh:
            fh.write(config_text[: len(config_text) // 2])
        with pytest.raises(ValueError, match=r"config.json is not valid JSON"):
            BertForMaskedLM.from_pretrained(str(folder))
        with open(config, "w") as fh:
            fh.write("[1, 2]")
        with pytest.raises(ValueError, match=r"config.json holds a JSON list"):
            BertForMaskedLM.from_pretrained(str(folder))
        with open(config, "w") as fh:  # weights of the wrong shape for this config
            fh.write(json.dumps({**json.loads(config_text), "hidden_size": 48, "intermediate_size": 96}))
        with pytest.raises(ValueError, match=os.path.basename(weights) + r": \d+ weight\(s\) do not match"):
            BertForMaskedLM.from_pretrained(str(folder))
        with pytest.warns(UserWarning, match="newly initialised"):
            BertForMaskedLM.from_pretrained(str(folder), ignore_mismatched_sizes=True)
        with open(config, "w") as fh:
            fh.write(config_text)
        for damage in ("truncate", "garble"):
            good.save_pretrained(str(folder), safe_serialization=safe)
            _truncate(weights, 0.5) if damage == "truncate" else _garble(weights)
            try:
                BertForMaskedLM.from_pretrained(str(folder))
            except ValueError as exc:
                assert os.path.basename(weights) in str(exc), str(exc)
            else:  # a garbled byte can land in the payload of a format without checksums: it then loads, changed
                assert damage == "garble", f"{damage} {weights} loaded"
        os.remove(weights)
        with pytest.raises(FileNotFoundError, match=str(folder.name)):
            BertForMaskedLM.from_pretrained(str(folder))


def test_damaged_checkpoint_raises_naming_the_file(tmp_path):
    from pyfast.models.training import save_checkpoint

    model = _tiny_bert(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ckpt = save_checkpoint(model, str(tmp_path / "ckpt"), opt, step=3)
    state = os.path.join(ckpt, "trainer_state.pt")
    assert torch.load(state, weights_only=True)["step"] == 3
    _truncate(os.path.join(ckpt, "model.safetensors") if os.path.exists(os.path.join(ckpt, "model.safetensors"))
              else os.path.join(ckpt, "pytorch_model.bin"), 0.3)
    with pytest.raises(ValueError, match="cannot read the weights"):
        BertForMaskedLM.from_pretrained(ckpt)


# ---- Ctrl-C during native training ----------------------------------------------------------------------------
_SIGINT_CHILD = """
import os, sys, threading, time
import numpy as np
from pyfast import Word2Vec

rng = np.random.default_rng(0)
small = [[f"w{i}" for i in rng.integers(0, 500, 30)] for _ in range(100)]
model = Word2Vec(small, vector_size=64, min_count=1, workers=2, epochs=1, seed=1)  # one finished epoch
before = model.wv.vectors.copy()
# One long epoch: 4M tokens, window 10, 20 negatives: minutes of native work, far past the 2 s limit.
big = [list(np.array([f"w{i}" for i in range(500)])[rng.integers(0, 500, 10000)]) for _ in range(8)] * 50

class Ready:
    def on_epoch_begin(self, m):
        print("READY", flush=True)
t_sig = None
try:
    model.window, model.negative = 10, 20
    model.train(big, total_examples=len(big), epochs=3, callbacks=[Ready()])
    print("FINISHED", flush=True)
except KeyboardInterrupt:
    t_caught = time.monotonic()
    print("CAUGHT", t_caught, flush=True)
print("threads", threading.active_count(), [t.name for t in threading.enumerate()], flush=True)
print("epochs_trained", model.epochs_trained, "losses", len(model.training_losses), flush=True)
print("changed", bool((model.wv.vectors != before).any()), "finite", bool(np.isfinite(model.wv.vectors).all()))
model.window, model.negative = 5, 5
model.train(small, total_examples=len(small), epochs=1)  # still trainable
model.save(sys.argv[1])
print("SAVED", Word2Vec.load(sys.argv[1]).epochs_trained, flush=True)
"""


def test_sigint_stops_native_training_promptly(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", _SIGINT_CHILD, str(tmp_path / "m.npz")], env=_child_env(),
                             cwd=_PKG_ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()
        assert line.strip() == "READY", (line, child.stderr.read()[-3000:] if child.poll() is not None else "")
        time.sleep(0.5)  # well inside the native epoch (the corpus load is done before on_epoch_begin)
        t_sent = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process on the machine
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, (out, err[-3000:])
    lines = dict(line.split(" ", 1) for line in out.strip().splitlines() if " " in line)
    assert "CAUGHT" in lines, out
    # The hang check the issue asks for: an uninterruptible epoch of this size runs for minutes.
    assert float(lines["CAUGHT"]) - t_sent < 2.0, out
    assert lines["threads"].startswith("1 "), out  # the helper thread that ran the native epoch was joined
    assert lines["epochs_trained"] == "1 losses 0", out  # the documented state: counters of finished epochs only
    assert lines["changed"] == "True finite True", out  # the interrupted epoch's partial updates stay
    assert lines["SAVED"] == "2", out


def test_sigint_in_the_word2vec_cli_saves_a_resumable_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(300)])
    corpus = tmp_path / "corpus.txt"
    with open(corpus, "w") as fh:
        for _ in range(40):  # 2M tokens, -iter 50: minutes of training, interrupted after the first second
            fh.write(" ".join(words[rng.integers(0, 300, 50000)]) + "\n")
    out = str(tmp_path / "vec.txt")
    child = subprocess.Popen([sys.executable, "-m", "pyfast", "word2vec", "-train", str(corpus), "-output", out,
                              "-size", "32", "-iter", "50", "-threads", "2", "-min-count", "1", "-debug", "1"],
                             env=_child_env(), cwd=_PKG_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        line = child.stderr.readline()  # "vocab size: ...": printed once the vocabulary is built, before training
        assert line.startswith("vocab size"), line
        time.sleep(1.0)  # the corpus is read (~0.2 s) and training runs
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 130, err[-3000:]
    assert "interrupted after" in err and not os.path.exists(out)
    model = Word2Vec.load(out + ".interrupted.npz")
    assert len(model.wv) == 300 and model.epochs_trained < 50
    model.train(corpus_iterable=[["w1", "w2", "w3"]] * 10, epochs=1)  # resumes from the checkpoint


# The pretraining examples: a signal stops them at the next step boundary with a resumable checkpoint.
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # examples/ live in the repository only


@pytest.mark.parametrize("example, sig", [("pretrain_bert", signal.SIGINT), ("pretrain_bert", signal.SIGTERM),
                                          ("pretrain_gpt", signal.SIGINT)])
def test_signal_in_a_pretraining_example_saves_a_resumable_checkpoint(tmp_path, example, sig):
    from pyfast.demo.corpus import load_books

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join([p for b in load_books().values() for p in b][:400]) + "\n")
    # 2000 steps of a tiny model: ~20 s uninterrupted; the first progress line comes at 10% (step 200).
    cmd = [sys.executable, os.path.join(_REPO, "examples", f"{example}.py"), "--corpus", str(corpus),
           "--vocab-size", "300", "--steps", "2000", "--batch-size", "4", "--seq-len", "16", "--hidden", "16",
           "--layers", "1", "--heads", "2", "--save-every", "0", "--out", str(tmp_path / "out")]
    child = subprocess.Popen(cmd, env=_child_env(), cwd=str(tmp_path), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(120, child.kill)  # readline below must not wait forever on a hung child
    watchdog.start()
    try:
        seen = []
        for line in child.stderr:  # tqdm is off (not a terminal): "  bert mlm: 200/2000 loss 5.3"
            seen.append(line)
            if "/2000 loss" in line:
                break
        assert seen and "/2000 loss" in seen[-1], "".join(seen)[-3000:]
        child.send_signal(sig)
        out, err = child.communicate(timeout=60)
    finally:
        watchdog.cancel()
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 128 + sig, (out, err[-3000:])
    stopped = [line for line in err.splitlines() if f"interrupted by {signal.Signals(sig).name} at step" in line]
    assert stopped, err[-3000:]
    step = int(stopped[0].split(" at step ")[1].split()[0])
    assert 200 <= step < 2000, stopped
    name = f"step-{step:08d}"
    assert (tmp_path / "out" / "checkpoints" / "latest").read_text().strip() == name
    assert not os.path.exists(tmp_path / "out" / "checkpoint")  # no final model: the run did not finish
    # --resume continues from that step (three more steps here, then a planned stop: status 0).
    resumed = subprocess.run(cmd + ["--resume", "--stop-after", "3"], env=_child_env(), cwd=str(tmp_path),
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resume: continuing from {tmp_path / 'out' / 'checkpoints' / name} (step {step})" in resumed.stdout
    assert f"stopped as asked at step {step + 3} of 2000" in resumed.stderr


@pytest.mark.slow
def test_sigint_to_torchrun_stops_every_rank_at_one_step_with_a_resumable_checkpoint(tmp_path):
    # Ctrl-C in a terminal: torchrun gets SIGINT and forwards it to its workers; the ranks agree on the step
    # (StopRequest.check all-reduces the flag), rank 0 saves every rank's state, a 2-process --resume continues.
    from pyfast.demo.corpus import load_books

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join([p for b in load_books().values() for p in b][:400]) + "\n")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           os.path.join(_REPO, "examples", "pretrain_bert.py"), "--corpus", str(corpus), "--vocab-size", "300",
           "--steps", "2000", "--batch-size", "4", "--seq-len", "16", "--hidden", "16", "--layers", "1", "--heads",
           "2", "--save-every", "0", "--device", "cpu", "--out", str(tmp_path / "out")]
    env = _child_env()
    env.pop("WORLD_SIZE", None)
    child = subprocess.Popen(cmd, env=env, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    watchdog = threading.Timer(180, child.kill)
    watchdog.start()
    try:
        seen = []
        for line in child.stderr:
            seen.append(line)
            if "/2000 loss" in line:
                break
        assert seen and "/2000 loss" in seen[-1], "".join(seen)[-3000:]
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=90)
    finally:
        watchdog.cancel()
        if child.poll() is None:
            child.kill()
            child.wait()
    stopped = [line for line in err.splitlines() if "interrupted by SIGINT at step" in line]
    assert len(stopped) == 1, err[-3000:]  # rank 0 reports it
    step = int(stopped[0].split(" at step ")[1].split()[0])
    name = f"step-{step:08d}"
    assert (tmp_path / "out" / "checkpoints" / "latest").read_text().strip() == name
    state = torch.load(tmp_path / "out" / "checkpoints" / name / "trainer_state.pt", weights_only=True)
    assert state["step"] == step and len(state["ranks"]) == 2
    assert state["ranks"][0]["batches"]["pos"] == state["ranks"][1]["batches"]["pos"]  # the same step on both
    assert state["ranks"][0]["collator"]["calls"] == state["ranks"][1]["collator"]["calls"] == step
    resumed = subprocess.run(cmd + ["--resume", "--stop-after", "2", "--quiet"], env=env, cwd=str(tmp_path),
                             capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"(step {step})" in resumed.stdout and f"stopped as asked at step {step + 2} of 2000" in resumed.stderr


def test_training_from_a_worker_thread_is_not_intercepted():
    # Off the main thread (no signals there) the native epoch is called directly; results match the main thread's.
    a = _w2v_model(5)
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("m", _w2v_model(5)))
    t.start()
    t.join()
    assert np.array_equal(a.wv.vectors, box["m"].wv.vectors)


# ---- concurrency ----------------------------------------------------------------------------------------------
def _concurrent_equals_serial(fn, n_threads: int = 4, repeats: int = 3):
    serial = [fn(i) for i in range(n_threads)]
    results = [[None] * n_threads for _ in range(repeats)]
    errors = []
    barrier = threading.Barrier(n_threads)

    def work(i):
        try:
            barrier.wait()
            for r in range(repeats):
                results[r][i] = fn(i)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors
    for r in range(repeats):
        for i in range(n_threads):
            yield serial[i], results[r][i]


@pytest.mark.sanitize
def test_attention_from_4_threads_equals_serial():
    g = torch.Generator().manual_seed(0)
    qkv = [torch.randn(2, 3, 33, 16, generator=g) for _ in range(3 * 4)]

    def fn(i):
        q, k, v = qkv[3 * i: 3 * i + 3]
        return pyfast.scaled_dot_product_attention(q, k, v, is_causal=bool(i % 2))

    for want, got in _concurrent_equals_serial(fn):
        assert torch.equal(want, got)


@pytest.mark.sanitize
def test_mask_tokens_from_4_threads_equals_serial():
    from pyfast.ops import mask_tokens

    ids = torch.randint(5, 1000, (8, 64), generator=torch.Generator().manual_seed(0))

    def fn(i):
        return mask_tokens(ids, vocab_size=1000, mask_token_id=4, seed=i)

    for want, got in _concurrent_equals_serial(fn):
        for a, b in zip(want, got):
            assert torch.equal(a, b)


@pytest.mark.sanitize
def test_sgns_loss_from_4_threads_equals_serial():
    from pyfast.ops import sgns_loss

    g = torch.Generator().manual_seed(0)
    emb_in, emb_out = torch.randn(200, 32, generator=g), torch.randn(200, 32, generator=g)
    centers, contexts = torch.randint(0, 200, (64,), generator=g), torch.randint(0, 200, (64,), generator=g)
    negatives = torch.randint(0, 200, (64, 5), generator=g)

    def fn(i):
        return sgns_loss(emb_in * (i + 1), emb_out, centers, contexts, negatives)

    for want, got in _concurrent_equals_serial(fn):
        assert torch.equal(want, got)


@pytest.mark.sanitize
def test_most_similar_from_4_threads_equals_serial():
    model = _w2v_model(2)
    keys = model.wv.index_to_key[:4]

    def fn(i):
        return model.wv.most_similar(keys[i], topn=10)

    for want, got in _concurrent_equals_serial(fn):
        assert want == got


# ---- fork after parallel kernels ------------------------------------------------------------------------------
_FORK_CHILD = """
import torch, pyfast
from pyfast.ops import mask_tokens
torch.manual_seed(0)
q = torch.randn(4, 4, 128, 32)
pyfast.scaled_dot_product_attention(q, q, q)            # parallel kernels in the parent (threads started)
ids = torch.randint(5, 1000, (64, 128))
mask_tokens(ids, vocab_size=1000, mask_token_id=4, seed=0)

class Batches(torch.utils.data.Dataset):
    def __len__(self): return 8
    def __getitem__(self, i):
        x = torch.randn(2, 4, 64, 32)
        out = pyfast.scaled_dot_product_attention(x, x, x)   # kernels in the forked worker
        m = mask_tokens(ids[i:i + 8], vocab_size=1000, mask_token_id=4, seed=i)
        return out.sum() + m[0].sum()

loader = torch.utils.data.DataLoader(Batches(), batch_size=2, num_workers=2,
                                     multiprocessing_context="fork", timeout=60)
print("OK", len([b for b in loader]), flush=True)
"""


def test_forked_dataloader_workers_after_parallel_kernels_do_not_hang():
    child = _run_child(_FORK_CHILD, timeout=120)
    assert child.returncode == 0, child.stderr[-3000:]
    assert child.stdout.strip() == "OK 4"
