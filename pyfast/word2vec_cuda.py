"""word2vec on a CUDA device: the driver of ``Word2Vec(..., device="cuda")`` (kernel: csrc/word2vec/train_cuda.cu).

Per ``train()`` call the corpus ids (int32), the chunk table, the subsampling probabilities, the noise alias table and
both weight tables go to the device once; each epoch is one kernel launch (a persistent grid of warps over chunks of
``chunk_len`` positions inside sentence pieces), and the vectors come back to the model's numpy arrays after the last
epoch (after every epoch when there are callbacks, which may read them). Draws are keyed by (seed, epoch, position),
so the result does not depend on how many warps run, except through Hogwild ordering; ``warps=1`` processes chunks in
order and is reproducible. Loss, kept words and pairs are written per chunk and summed here in chunk order (float64).

Differences from the CPU trainer (word2vec.h, TrainCudaParams): exact sigmoid instead of the 2049-point table, the
learning rate constant over a chunk (the CPU's over 10,000 tokens per worker), and only the linear global schedule
(``alpha_schedule="gensim_corpus_file"`` models per-CPU-worker progress and has no meaning here). The whole corpus
must fit in device memory (4 bytes per in-vocabulary token, plus 32 bytes per chunk).
"""
from __future__ import annotations

import sys
import time

import numpy as np
import torch

from . import _native

DEFAULT_CHUNK_LEN = 256
_MAX_SENTENCE_LEN = 10000  # csrc/word2vec/word2vec.h kMaxSentenceLen
_INT64_MAX = 2**63 - 1


def resolve_device(device) -> torch.device:
    """The torch device the trainer's tensors live on, after checking that a CUDA build and a GPU exist (tests of
    the emulated kernel replace this with one that returns the CPU, see tests/test_word2vec_cuda.py)."""
    _native.cuda()  # RuntimeError that says how to rebuild
    if not torch.cuda.is_available():
        raise RuntimeError("Word2Vec(device='cuda'): pyfast has CUDA kernels but torch sees no CUDA device "
                           "(torch.cuda.is_available() is False); train with device='cpu'")
    dev = torch.device(device)
    return torch.device("cuda", torch.cuda.current_device() if dev.index is None else dev.index)


def parse_device(device) -> torch.device | None:
    """None for the CPU trainer, the requested CUDA device otherwise; ValueError for anything else."""
    try:
        dev = torch.device(device)
    except (TypeError, RuntimeError):
        raise ValueError(f"Word2Vec: device must be 'cpu', 'cuda', 'cuda:N' or a torch.device, got {device!r}") \
            from None
    if dev.type == "cpu":
        return None
    if dev.type != "cuda":
        raise ValueError(f"Word2Vec: device must be 'cpu' or a CUDA device, got {device!r}")
    return dev


def check_supported(model) -> None:
    """The settings the CUDA trainer does not implement: a precise error for each."""
    if model.distributed:
        raise NotImplementedError("Word2Vec(device='cuda'): distributed=True is CPU-only (torch.distributed over "
                                  "the native CPU trainer); use one process per GPU with device='cuda' instead")
    if model.alpha_schedule == "gensim_corpus_file":
        raise ValueError("Word2Vec(device='cuda'): alpha_schedule='gensim_corpus_file' models gensim's per-CPU-worker "
                         "progress and is CPU-only; use 'linear' (or 'auto', which is 'linear' on cuda)")


def make_chunks(offsets: np.ndarray, chunk_len: int) -> np.ndarray:
    """(n_chunks, 4) int64 rows (c0, c1, p0, p1): sentences cut into pieces of kMaxSentenceLen (as the CPU trainer),
    pieces into chunks of chunk_len positions from the piece's start."""
    offsets = np.asarray(offsets, dtype=np.int64)
    p0, p1, _ = _split(offsets[:-1], offsets[1:], _MAX_SENTENCE_LEN)
    c0, c1, piece = _split(p0, p1, chunk_len)
    return np.ascontiguousarray(np.stack([c0, c1, p0[piece], p1[piece]], axis=1), dtype=np.int64)


def _split(starts, ends, step):
    """Every [start, end) cut into consecutive pieces of at most `step`: (piece starts, piece ends, source index)."""
    lengths = ends - starts
    counts = (lengths + step - 1) // step
    source = np.repeat(np.arange(len(starts)), counts)
    k = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    s = starts[source] + k * step
    return s, np.minimum(s + step, ends[source]), source


def alias_table(noise_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The noise distribution's alias table (common/alias_table.h, the CPU trainer's): thresholds, aliases (uint32)."""
    w = np.ascontiguousarray(noise_weights, dtype=np.float64)
    thresholds = np.zeros(len(w), dtype=np.uint32)
    aliases = np.zeros(len(w), dtype=np.uint32)
    _native.cpu().w2v_alias_table(w.ctypes.data, len(w), thresholds.ctypes.data, aliases.ctypes.data)
    return thresholds, aliases


def default_warps(dev: torch.device, n_chunks: int) -> int:
    """Enough warps to fill the GPU (16 per SM) without more warps than chunks."""
    if dev.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(dev).multi_processor_count
    return max(1, min(n_chunks, 16 * sms))


class DeviceCorpus:
    """One train() call's device state: ids, chunk table, keep probabilities, noise table, weights, stats buffers."""

    def __init__(self, model, corpus, dev: torch.device, chunk_len: int):
        V, d = model.wv.vectors.shape
        if len(corpus.ids) and (int(corpus.ids.min()) < 0 or int(corpus.ids.max()) >= V):
            raise ValueError(f"Word2Vec(device='cuda'): corpus ids must be in [0, {V})")
        self.dev = dev
        chunks = make_chunks(corpus.offsets, chunk_len)
        thresholds, aliases = alias_table(model._noise_weights)
        # A copy even when dev is the CPU (emulated tests): the device tables never alias the model's arrays.
        put = lambda a: torch.from_numpy(np.require(a, requirements=["C", "W"])).to(dev, copy=True)  # noqa: E731
        self.ids = put(corpus.ids.astype(np.int32, copy=False))
        self.chunks = put(chunks)
        self.keep_prob = put(model._keep_prob.astype(np.float32))
        # uint32 tables travel as int32 (torch has no uint32 arithmetic to worry about here: only the bits matter)
        self.threshold = put(thresholds.view(np.int32))
        self.alias = put(aliases.view(np.int32))
        self.syn0 = put(model.wv.vectors.astype(np.float32, copy=False))
        self.syn1neg = put(model.syn1neg.astype(np.float32, copy=False))
        self.chunk_loss = torch.zeros(len(chunks), dtype=torch.float64, device=dev)
        self.chunk_counts = torch.zeros((len(chunks), 2), dtype=torch.int64, device=dev)
        self.error = torch.full((2,), _INT64_MAX, dtype=torch.int64, device=dev)
        self.n_chunks = len(chunks)
        self.chunk_len = chunk_len
        self.kernel_seconds = None

    def download(self, model) -> None:
        model.wv.vectors = self.syn0.cpu().numpy()
        model.syn1neg = self.syn1neg.cpu().numpy()
        model.wv.norms = None


def params(native, model, dc: DeviceCorpus, *, start_alpha, end_alpha, total, progress_base, warps):
    V, d = model.wv.vectors.shape
    return _native.fill(
        native.TrainCudaParams(), syn0=_native.ptr(dc.syn0), syn1neg=_native.ptr(dc.syn1neg), vocab_size=V, dim=d,
        ids=_native.ptr(dc.ids), n_ids=dc.ids.numel(), chunks=_native.ptr(dc.chunks), n_chunks=dc.n_chunks,
        max_chunk_len=dc.chunk_len, keep_prob=_native.ptr(dc.keep_prob), noise_threshold=_native.ptr(dc.threshold),
        noise_alias=_native.ptr(dc.alias), sg=int(model.sg), cbow_mean=int(model.cbow_mean),
        negative=model.negative, window=model.window, shrink_windows=int(model.shrink_windows),
        shared_negatives=int(model.shared_negatives), compute_loss=int(model.compute_loss), alpha0=start_alpha,
        min_alpha=end_alpha, total_words=total, progress_base=progress_base, seed=model.seed,
        epoch=model.epochs_trained, warps=warps, chunk_loss=_native.ptr(dc.chunk_loss),
        chunk_counts=_native.ptr(dc.chunk_counts), error=_native.ptr(dc.error))


def run_epoch(native, p, dc: DeviceCorpus) -> tuple[float, int, int]:
    """Launch one epoch and wait for it; (loss, kept words, pairs). A bad id or chunk raises ValueError. On a GPU the
    kernel's own time (CUDA events) is left in dc.kernel_seconds."""
    timed = dc.dev.type == "cuda"
    with torch.cuda.device(dc.dev):
        stream = torch.cuda.current_stream(dc.dev)
        if timed:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(stream)
        native.w2v_train_epoch(p, stream.cuda_stream)
        if timed:
            end.record(stream)
    bad_id, bad_chunk = dc.error.tolist()  # waits for the kernel
    dc.kernel_seconds = start.elapsed_time(end) / 1e3 if timed else None
    if bad_id != _INT64_MAX:
        raise ValueError(f"Word2Vec(device='cuda'): token id outside [0, {p.vocab_size}) at position {bad_id}")
    if bad_chunk != _INT64_MAX:
        raise ValueError(f"Word2Vec(device='cuda'): malformed chunk {bad_chunk} in the chunk table")
    counts = dc.chunk_counts.sum(dim=0).tolist()
    return float(dc.chunk_loss.cpu().numpy().sum()), int(counts[0]), int(counts[1])


def train(model, corpus, epochs, start_alpha, end_alpha, callbacks, call, *, warps=None, chunk_len=None):
    """Word2Vec.train's epoch loop on the device: the same stats, losses and callbacks as the CPU loop. warps /
    chunk_len: launch shape (default: default_warps, DEFAULT_CHUNK_LEN, read at call time so tests can set them)."""
    dev = resolve_device(model.device)
    native = _native.cuda()
    dc = DeviceCorpus(model, corpus, dev, DEFAULT_CHUNK_LEN if chunk_len is None else int(chunk_len))
    warps = default_warps(dev, dc.n_chunks) if warps is None else int(warps)
    total = len(corpus.ids) * epochs
    trained = raw = 0
    try:
        for epoch in range(epochs):
            for cb in callbacks:
                call(cb, "on_epoch_begin", model)
            t0 = time.perf_counter()
            p = params(native, model, dc, start_alpha=start_alpha, end_alpha=end_alpha, total=total,
                       progress_base=epoch * len(corpus.ids), warps=warps)
            loss, kept, pairs = run_epoch(native, p, dc)
            seconds = time.perf_counter() - t0
            alpha_end = max(end_alpha, start_alpha - (start_alpha - end_alpha) * (epoch + 1) / epochs)
            model.epochs_trained += 1
            trained += kept
            raw += corpus.raw_words
            model.training_losses.append(loss)
            model.running_training_loss = loss
            model.train_stats.append({"epoch": model.epochs_trained, "seconds": seconds, "raw_words": corpus.raw_words,
                                      "trained_words": kept, "pairs": pairs, "loss": loss, "alpha_end": alpha_end,
                                      "schedule": "linear", "device": str(dev), "kernel_seconds": dc.kernel_seconds,
                                      "words_per_s": corpus.raw_words / seconds if seconds > 0 else float("inf")})
            if model.progress:  # one line per epoch (the CPU trainer's live bar reads a host counter this has not)
                rate = corpus.raw_words / seconds / 1e6 if seconds > 0 else float("inf")
                print(f"word2vec (cuda): epoch {epoch + 1}/{epochs} done in {seconds:.2f}s, {rate:.1f}M words/s"
                      + (f", loss {loss:.6g}" if model.compute_loss else ""), file=sys.stderr)
            if callbacks:
                dc.download(model)
            for cb in callbacks:
                call(cb, "on_epoch_end", model)
    finally:
        dc.download(model)  # also after an exception: the finished epochs (and any partial one) are kept
    return trained, raw
