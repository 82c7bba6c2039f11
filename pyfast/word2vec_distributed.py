"""word2vec across processes and machines: the torch.distributed side of ``Word2Vec(distributed=True)``.

Each rank owns one byte range of the same corpus file (lines belong to the range their first byte falls in, the
rule the native reader's threads already split by). The vocabulary is counted per range and the counts merged
with collectives, so every rank builds the vocabulary, in the same order, that one process builds from the whole
file. Each rank then trains its own shard with the native Hogwild threads, and every ``sync_every`` words (and at
each epoch end) the input and output tables are combined across ranks with ``all_reduce``: by default the sum of
every rank's updates since the last sync (``sync_mode="sum"``; what one process running all shards Hogwild-style
would apply, with a staleness of one chunk), or their plain mean (``sync_mode="average"``, model averaging, which
divides each rank's progress by the world size and trains measurably less per epoch, see ``train``). The learning rate is set
from global progress (all ranks' words, all-reduced at each sync). Rank 0 saves; every rank ends with the same
vectors.

Limits: one corpus file readable by every rank (a shared or copied file; checked by size and a sampled checksum);
the tables cross the network at each sync (2 x vocab x dim float32: 56 MB for 70k words x 100 dims); gloo on CPU is
the tested backend, nccl stages the tables through the current CUDA device. Every collective waits at most
``timeout`` seconds, so a rank that failed or never arrived turns into an exception on the others, not a hang.
"""
from __future__ import annotations

import datetime
import hashlib
import os
import time

import numpy as np

from . import _native

_PREFIX = "Word2Vec(distributed=True)"
_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
# Checksum of the corpus file: blocks at evenly spaced offsets, not the whole file, so that each rank does not
# read the full corpus (which may be 100s of GB) just to compare it; with the size this catches a different or
# truncated copy, not a single flipped byte in between the blocks.
_CHECK_BLOCKS, _CHECK_BLOCK_BYTES = 16, 1 << 16


def _dist():
    try:
        import torch.distributed as dist
    except ImportError as exc:  # pragma: no cover - torch without distributed support
        raise RuntimeError(f"{_PREFIX}: torch.distributed is not available in this torch build") from exc
    if not dist.is_available():
        raise RuntimeError(f"{_PREFIX}: torch.distributed is not available in this torch build")
    return dist


def launched_by_torchrun() -> bool:
    return all(k in os.environ for k in _TORCHRUN_ENV)


class Context:
    """The process group a distributed Word2Vec trains in: rank, world size, the device collectives run on
    (CPU for gloo, the current CUDA device for nccl) and the timeout every collective waits at most."""

    def __init__(self, timeout: float):
        dist = _dist()
        self.timeout = datetime.timedelta(seconds=timeout)
        if not dist.is_initialized():
            if not launched_by_torchrun():
                raise RuntimeError(
                    f"{_PREFIX}: no torch.distributed process group: call torch.distributed.init_process_group("
                    f"'gloo') in every process first, or launch the script with torchrun (torchrun "
                    f"--nproc_per_node N script.py); for one process use distributed=False")
            # torchrun set RANK / WORLD_SIZE / MASTER_*: join them. The group stays up for later train() calls.
            dist.init_process_group("gloo", timeout=self.timeout)
        self.dist = dist
        self.rank = dist.get_rank()
        self.world = dist.get_world_size()
        self.backend = str(dist.get_backend())
        import torch

        # nccl reduces CUDA tensors only: the tables are staged through the current device (copies both ways).
        self.device = torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")

    # ---- collectives with a timeout ------------------------------------------------------------------------------
    def _wait(self, work, what: str) -> None:
        try:
            ok = work.wait(self.timeout)
        except RuntimeError as exc:
            raise RuntimeError(f"{_PREFIX}: rank {self.rank}: {what} did not complete within "
                               f"{self.timeout.total_seconds():g} s: another rank failed, exited or is stuck "
                               f"({exc})") from exc
        if ok is False:
            raise RuntimeError(f"{_PREFIX}: rank {self.rank}: {what} did not complete within "
                               f"{self.timeout.total_seconds():g} s: another rank failed, exited or is stuck")

    def all_reduce_(self, arrays: list[np.ndarray], what: str, op: str = "sum") -> None:
        """In-place all_reduce of numpy arrays (float32/float64/int64), all started before any is waited on."""
        import torch

        red = {"sum": self.dist.ReduceOp.SUM, "max": self.dist.ReduceOp.MAX}[op]
        tensors = [torch.from_numpy(a) for a in arrays]
        if self.device.type != "cpu":
            tensors = [t.to(self.device) for t in tensors]
        works = [self.dist.all_reduce(t, op=red, async_op=True) for t in tensors]
        for w in works:
            self._wait(w, what)
        if self.device.type != "cpu":
            for a, t in zip(arrays, tensors):
                a[...] = t.cpu().numpy()

    def all_gather(self, array: np.ndarray, what: str) -> list[np.ndarray]:
        """Every rank's 1-D array (lengths may differ): lengths first, then the arrays padded to the longest."""
        n = np.array([len(array)], dtype=np.int64)
        lengths = self._gather_fixed(n, what)
        longest = int(max(int(x[0]) for x in lengths))
        padded = np.zeros(longest, dtype=array.dtype)
        padded[:len(array)] = array
        parts = self._gather_fixed(padded, what)
        return [p[:int(length[0])] for p, length in zip(parts, lengths)]

    def _gather_fixed(self, array: np.ndarray, what: str) -> list[np.ndarray]:
        import torch

        t = torch.from_numpy(np.ascontiguousarray(array)).to(self.device)
        out = [torch.empty_like(t) for _ in range(self.world)]
        self._wait(self.dist.all_gather(out, t, async_op=True), what)
        return [o.cpu().numpy() for o in out]

    def byte_range(self, size: int) -> tuple[int, int]:
        return size * self.rank // self.world, size * (self.rank + 1) // self.world


def file_fingerprint(path: str) -> tuple[int, int]:
    """(size, 63-bit checksum of _CHECK_BLOCKS blocks spread over the file)."""
    size = os.path.getsize(path)
    h = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as fh:
        for i in range(_CHECK_BLOCKS):
            fh.seek(max(0, size - _CHECK_BLOCK_BYTES) * i // max(1, _CHECK_BLOCKS - 1))
            h.update(fh.read(_CHECK_BLOCK_BYTES))
    return size, int.from_bytes(h.digest(), "little") >> 1


def settings_fingerprint(model, extra=()) -> int:
    """A hash of the settings every rank must share (a mismatch would make the all_reduce shapes or the
    vocabulary differ, or silently train a mixture)."""
    keys = ("vector_size", "window", "min_count", "max_vocab_size", "sample", "seed", "sg", "negative", "ns_exponent",
            "cbow_mean", "epochs", "max_final_vocab", "shrink_windows", "shared_negatives", "null_word", "sync_every")
    text = repr([(k, getattr(model, k, None)) for k in keys] + list(extra)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


SYNC_MODES = ("sum", "average")
_STATUS_OK, _STATUS_MISSING, _STATUS_NOT_FILE = 0, 1, 2


def check_same_corpus(ctx: Context, model, path: str, extra=()) -> None:
    """The first collective of a distributed run: every rank sends (status, size, checksum, settings hash) and
    every rank raises the same error when any rank's file is missing or differs from rank 0's, or its settings
    do (``extra``: a train() call's own arguments). A local problem (a missing file) is reported through the collective, not raised before it, so the other
    ranks do not wait for a rank that has given up."""
    if not os.path.exists(path):
        status, size, checksum = _STATUS_MISSING, -1, -1
    elif os.path.isdir(path):
        status, size, checksum = _STATUS_NOT_FILE, -1, -1
    else:
        status, (size, checksum) = _STATUS_OK, file_fingerprint(path)
    mine = np.array([status, size, checksum, settings_fingerprint(model, extra)], dtype=np.int64)
    rows = ctx._gather_fixed(mine, "the corpus_file check")
    problems = []
    first = tuple(int(v) for v in rows[0])
    for r, (st, sz, ck, settings) in enumerate(tuple(int(v) for v in row) for row in rows):
        if st == _STATUS_MISSING:
            problems.append(f"rank {r}: corpus_file not found")
        elif st == _STATUS_NOT_FILE:
            problems.append(f"rank {r}: corpus_file is a directory")
        elif r and first[0] == _STATUS_OK and (sz, ck) != first[1:3]:
            what = f"{sz} bytes vs {first[1]}" if sz != first[1] else "same size, different checksum"
            problems.append(f"rank {r}: corpus_file differs from rank 0's ({what})")
        if r and settings != first[3]:
            problems.append(f"rank {r}: Word2Vec settings differ from rank 0's")
    if problems:
        raise ValueError(f"{_PREFIX}: " + "; ".join(problems) + f" (path on rank {ctx.rank}: {path!r})")


def count_vocab(ctx: Context, path: str, max_vocab_size: int, workers: int):
    """(raw vocabulary word -> count in the order one process counting the whole file gives, total words,
    sentences). Each rank counts its byte range with `workers` threads; the per-rank tables are gathered and
    summed on every rank (word lists differ between ranks, so a plain all_reduce of counts needs them first)."""
    size = os.path.getsize(path)
    begin, end = ctx.byte_range(size)
    words, counts, total, sentences = _native.cpu().w2v_count_file(path, max_vocab_size, workers, begin, end)
    # Tokens contain no ASCII whitespace (the reader splits on it), so b"\n" separates them unambiguously.
    blob = np.frombuffer(b"\n".join(words), dtype=np.uint8)
    blobs = ctx.all_gather(blob, "the vocabulary merge")
    all_counts = ctx.all_gather(np.frombuffer(counts, dtype=np.int64), "the vocabulary merge")
    merged: dict[bytes, int] = {}
    for b, c in zip(blobs, all_counts):
        keys = b.tobytes().split(b"\n") if len(c) else []
        for k, n in zip(keys, c.tolist()):
            merged[k] = merged.get(k, 0) + n
    if max_vocab_size:  # word2vec.c's ReduceVocab on the merged table, as the native merge of threads does
        reduce = 1
        while len(merged) > max_vocab_size:
            merged = {k: n for k, n in merged.items() if n > reduce}
            reduce += 1
    totals = np.array([total, sentences], dtype=np.int64)
    ctx.all_reduce_([totals], "the vocabulary merge")
    # The native counter's order: count descending, ties by byte order.
    items = sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))
    return items, int(totals[0]), int(totals[1])


def read_shard(ctx: Context, path: str, vocab: list[bytes], workers: int):
    """This rank's byte range of the corpus as (ids, sentence offsets, raw words)."""
    begin, end = ctx.byte_range(os.path.getsize(path))
    return _native.cpu().w2v_read_file(path, vocab, workers, begin, end)


def chunk_bounds(offsets: np.ndarray, chunks: int) -> np.ndarray:
    """(chunks + 1,) sentence indices splitting the shard into `chunks` pieces of about equal token count."""
    n = int(offsets[-1])
    targets = n * np.arange(chunks + 1, dtype=np.int64) // chunks
    bounds = np.searchsorted(offsets[:-1], targets, side="left").astype(np.int64)
    bounds[-1] = len(offsets) - 1
    return np.maximum.accumulate(bounds)


def train(model, ctx: Context, corpus, epochs: int, start_alpha: float, end_alpha: float, make_params, run_native,
          callbacks, call) -> tuple[int, int]:
    """The distributed epochs: each rank trains its shard in chunks of about ``model.sync_every`` words with the
    native threads and averages the tables after each chunk. Returns (trained_words, raw_words) over all ranks.

    Learning rate: the native schedule decays with its words_done counter against total_words; here total_words
    is this rank's words over all epochs and the counter starts each chunk at (global words done / global total)
    of it, so at every sync the rate is the single-process rate at the same global progress, and within a chunk
    it moves as if every rank progressed at the same speed (the chunks are equal fractions of every shard)."""
    n_local = len(corpus.ids)
    sizes = np.array([n_local, corpus.raw_words], dtype=np.int64)
    ctx.all_reduce_([sizes], "the corpus size sum")
    n_global, raw_global = int(sizes[0]), int(sizes[1])
    if n_global == 0:
        raise ValueError("Word2Vec.train: no in-vocabulary word in the corpus")
    longest = np.array([n_local], dtype=np.int64)
    ctx.all_reduce_([longest], "the chunk count", op="max")
    chunks = max(1, -(-int(longest[0]) // model.sync_every))  # the same on every rank: collectives must match
    bounds = chunk_bounds(corpus.offsets, chunks)
    pieces = []
    for k in range(chunks):
        s0, s1 = int(bounds[k]), int(bounds[k + 1])
        base = int(corpus.offsets[s0])
        pieces.append((base, np.ascontiguousarray(corpus.offsets[s0:s1 + 1] - base), s1 - s0))
    syn0, syn1 = model.wv.vectors, model.syn1neg
    local_total = max(1, n_local * epochs)
    global_total = n_global * epochs
    words_done = np.zeros(1, dtype=np.int64)
    global_done = 0
    trained = 0
    inv_world = np.float32(1.0 / ctx.world)
    summing = model.sync_mode == "sum"
    if summing:  # the tables as of the last sync (identical on every rank): 2 x vocab x dim float32 more memory
        base0, base1 = syn0.copy(), syn1.copy()
    syncs = 0
    sync_seconds = 0.0
    for epoch in range(epochs):
        for cb in callbacks:
            call(cb, "on_epoch_begin", model)
        t0 = time.perf_counter()
        tally = np.zeros(4, dtype=np.float64)  # loss, trained words, pairs, ids processed: this epoch, this rank
        alpha_end = start_alpha
        for k, (base, offsets, n_sentences) in enumerate(pieces):
            n_ids = int(offsets[-1])
            if n_ids:
                words_done[0] = round(global_done * local_total / global_total)
                # A distinct RNG stream per (epoch, rank, chunk): each native call reseeds from this key, and
                # repeating one chunk's stream in the next would repeat its subsampling and negative draws.
                key = (model.epochs_trained * ctx.world + ctx.rank) * chunks + k
                params = make_params(ids=corpus.ids.ctypes.data + 4 * base, n_ids=n_ids,
                                     sentence_offsets=offsets.ctypes.data, n_sentences=n_sentences,
                                     total_words=local_total, words_done=words_done.ctypes.data, epoch=key,
                                     alpha0=start_alpha, min_alpha=end_alpha)
                result = run_native(params)
                tally += (result.loss, result.trained_words, result.pairs, 0)
                alpha_end = min(alpha_end, result.end_alpha)
            ts = time.perf_counter()
            step = np.array([n_ids], dtype=np.int64)
            if summing:
                # Every rank's updates since the last sync, added up: one process training all shards
                # Hogwild-style with a staleness of one chunk. Averaging the tables instead divides each rank's
                # progress by the world size: on lee (20 epochs) the last epoch's loss per pair is 2.51 against
                # 2.30 single-process (the sum: 2.30); on 5.17M words WS353 falls 0.06 (benchmarks/RESULTS.md).
                # The difference is reduced, not the tables, so
                # float32 rounding is that of the updates, not of world_size x the weights.
                syn0 -= base0
                syn1 -= base1
                ctx.all_reduce_([syn0, syn1, step], "the table sync")
                syn0 += base0
                syn1 += base1
                base0[...] = syn0
                base1[...] = syn1
            else:
                ctx.all_reduce_([syn0, syn1, step], "the table sync")
                syn0 *= inv_world
                syn1 *= inv_world
            sync_seconds += time.perf_counter() - ts
            syncs += 1
            global_done += int(step[0])
            tally[3] += n_ids
        ctx.all_reduce_([tally], "the epoch tally")
        seconds = time.perf_counter() - t0
        loss, kept, pairs = float(tally[0]), int(tally[1]), int(tally[2])
        model.epochs_trained += 1
        trained += kept
        model.training_losses.append(loss)
        model.running_training_loss = loss
        model.train_stats.append({"epoch": model.epochs_trained, "seconds": seconds, "raw_words": raw_global,
                                  "trained_words": kept, "pairs": pairs, "loss": loss, "alpha_end": float(alpha_end),
                                  "schedule": "linear", "world_size": ctx.world, "syncs": syncs,
                                  "sync_seconds": sync_seconds,
                                  "words_per_s": raw_global / seconds if seconds > 0 else float("inf")})
        syncs, sync_seconds = 0, 0.0
        if model.progress and ctx.rank == 0:
            print(f"word2vec: epoch {epoch + 1}/{epochs} done in {seconds:.2f}s on {ctx.world} ranks, "
                  f"{raw_global / seconds / 1e3:.0f}k words/s", flush=True)
        model.wv.norms = None
        for cb in callbacks:
            call(cb, "on_epoch_end", model)
    return trained, raw_global * epochs
