"""word2vec (skip-gram and CBOW with negative sampling) with gensim's API: ``Word2Vec`` (the word vectors it trains
are a ``KeyedVectors``, pyfast/keyedvectors.py, re-exported here as gensim does).

Training runs in native Hogwild threads (csrc/word2vec/) with the GIL released for each whole epoch. The corpus is
held as one int32 array of in-vocabulary token ids plus sentence offsets, built once per ``train()`` call: by the
native reader (``corpus_file``, each thread on its own byte range) or from an iterable of token lists (whole
sentences are mapped through the vocabulary with C-level iteration, never a per-word Python loop). Memory cost:
4 bytes per in-vocabulary token.

Semantics are word2vec.c's and gensim's (subsampling formula, count^0.75 noise, reduced windows, linear alpha decay
over all epochs). Differences, on purpose:
- skip-gram shares one set of K negatives across a window by default (``shared_negatives=True``, pWord2Vec);
  ``shared_negatives=False`` is the classic per-pair scheme.
- an example whose logit is outside (-6, 6) is skipped (gensim's rule; word2vec.c saturates the gradient).
- ``get_latest_training_loss()`` is the loss of the latest epoch, summed in float64 over all threads;
  ``training_losses`` holds one value per epoch. (gensim's is a cumulative float32 that saturates.)
- initial vectors come from Philox keyed by (seed, row, column), so ``workers=1`` + seed is bitwise reproducible
  whatever PYTHONHASHSEED is. Hierarchical softmax (hs=1, and so score()) is not implemented. Online vocabulary
  updates (build_vocab(update=True)) append new words after the existing ones, as gensim does.
"""
from __future__ import annotations

import itertools
import json
import logging
import math
import os
import sys
import threading
import time
import types
from collections import Counter

import numpy as np

from . import _native
from . import rng as _rng
from . import word2vec_cuda as _cuda
from . import word2vec_distributed as _distributed
from .keyedvectors import (SAVE_FORMAT, KeyedVectors, atomic_write, decode_key, encode_key, is_npz as _is_npz,
                           json_array, load_gensim_pickle, load_npz)

logger = logging.getLogger(__name__)

_INIT_STREAM = 0x5717  # Philox stream for the initial vectors
# distributed=True: words each rank trains between two syncs of the tables. Measured on 5.17M words, 2 processes
# (benchmarks/RESULTS.md, #21): 250k keeps analogy / WS353 within 0.22 points / 0.034 of one process, 1M already loses
# 0.065 WS353 (skip-gram); a sync moves 2 x vocab x dim float32 (~55 ms for 36k x 100 on the 2-core VM).
DEFAULT_SYNC_EVERY = 250_000


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"Word2Vec: {name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"Word2Vec: {name} must be >= {minimum}, got {value}")
    return int(value)


def _check_float(name: str, value, minimum: float, strict: bool) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"Word2Vec: {name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or (v <= minimum if strict else v < minimum):
        raise ValueError(f"Word2Vec: {name} must be {'>' if strict else '>='} {minimum}, got {value}")
    return v


class EncodedCorpus:
    """A corpus as native training input: int32 ids (in-vocabulary tokens only), int64 sentence offsets. Not in
    __all__: the trainers (CPU, CUDA, distributed) and the benchmarks build it; users pass sentences or a file."""

    def __init__(self, ids: np.ndarray, offsets: np.ndarray, raw_words: int):
        self.ids = np.ascontiguousarray(ids, dtype=np.int32)
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        self.raw_words = int(raw_words)

    @property
    def n_sentences(self) -> int:
        return len(self.offsets) - 1


def _iter_chunks(sentences, size: int = 8192):
    it = iter(sentences)
    while True:
        chunk = list(itertools.islice(it, size))
        if not chunk:
            return
        yield chunk


def _check_sentence(sentence) -> None:
    if isinstance(sentence, (str, bytes)):
        raise TypeError("Word2Vec: sentences must be an iterable of lists of str tokens, got a str where a list "
                        "of tokens was expected (did you pass one sentence instead of a list of sentences?)")


# alpha_schedule -> the native trainer's alpha_per_worker flag (see Word2Vec's docstring and TrainParams);
# "auto" is resolved per train() call by _resolve_schedule.
_ALPHA_SCHEDULES = {"linear": 0, "gensim_corpus_file": 1}
_SCHEDULE_CHOICES = ("auto", *_ALPHA_SCHEDULES)


def _resolve_schedule(schedule: str, corpus_file) -> str:
    """"auto": the schedule gensim 4 runs for the same call: per-worker decay when training from corpus_file,
    linear global decay when training from an iterable of sentences."""
    if schedule != "auto":
        return schedule
    return "gensim_corpus_file" if corpus_file is not None else "linear"


class _class_only:
    """A classmethod that refuses to run on an instance (gensim's rule for load: ``model.load(f)`` returns a new
    model and leaves ``model`` unchanged, a silent bug when the result is dropped)."""

    def __init__(self, fn):
        self.fn = fn
        self.__doc__ = fn.__doc__

    def __get__(self, instance, owner):
        if instance is not None:
            raise AttributeError(f"{self.fn.__name__} is a class method: call {owner.__name__}.{self.fn.__name__}"
                                 f"(fname), which returns the loaded model, not model.{self.fn.__name__}(fname)")
        return self.fn.__get__(owner, owner)


class Word2Vec:
    """Skip-gram / CBOW with negative sampling, gensim's constructor and methods. Extra keyword-only options:
    ``shared_negatives`` (skip-gram: share one set of negatives per window; False = classic per-pair),
    ``alpha_schedule`` (how the learning rate decays, see below) and ``progress`` (tqdm bar or log lines while
    training; off by default).

    ``alpha_schedule="auto"`` (default): the schedule gensim 4 runs for the same call, so a gensim script gives
    the same quality: ``"gensim_corpus_file"`` when training from ``corpus_file``, ``"linear"`` from ``sentences``.
    ``alpha_schedule="linear"``: the rate falls linearly from alpha to min_alpha with the tokens trained by all
    workers over all epochs (word2vec.c, gensim's documented schedule and its iterable mode; the CLI uses it).
    ``alpha_schedule="gensim_corpus_file"``: what gensim 4's corpus_file mode actually does: each worker measures
    its own progress against the whole epoch, so with W workers an epoch only covers 1/W of its decay step and the
    rate jumps back at the next epoch (with 2 workers and 3 epochs: ~17% higher mean rate, last rate ~alpha/6).
    With workers=1 the two schedules are the same. The schedule a call ran is in ``train_stats[i]["schedule"]``.
    Under "linear", as in gensim's iterable mode (jobs of ``batch_words`` words), at most one thread per
    ``batch_words`` in-vocabulary words of the corpus trains: a corpus below 10,000 words runs on one thread, so two
    seeded runs of it agree.

    ``distributed=True`` (needs ``corpus_file`` and a torch.distributed process group, or a launch by torchrun,
    which this joins with gloo): every process (rank) reads its own byte range of the same file; the vocabulary is
    merged across ranks (the same words, counts and order as one process on the whole file), each rank trains its
    shard with ``workers`` threads, and every ``sync_every`` words per rank and at each epoch end the ranks' updates
    are added up with all_reduce (``sync_mode="sum"``; ``"average"``: model averaging). The learning rate follows
    global progress (the "linear" schedule over all ranks' words). Every rank returns the same vectors; ``save``
    writes on rank 0 only. Each collective waits at most ``dist_timeout`` seconds, then raises (a dead or missing
    rank is an error, not a hang); a rank whose corpus_file or settings differ from rank 0's makes every rank
    raise. See pyfast/word2vec_distributed.py.

    ``device="cuda"`` (or ``"cuda:N"``, a ``torch.device``): each epoch runs as one CUDA kernel (skip-gram with
    shared or per-pair negatives, CBOW; pyfast/word2vec_cuda.py, csrc/word2vec/train_cuda.cu) on the same vocabulary,
    subsampling, noise distribution and linear schedule; the vectors are numpy arrays on the CPU afterwards, and
    save / load / ``wv`` are unchanged. Its draws are keyed by corpus position (not the CPU's per-thread streams),
    its sigmoid is exact (not the 2049-point table), and ``alpha_schedule`` is always "linear". Needs a CUDA build
    and a visible GPU (else RuntimeError); compiled, unverified on a GPU so far."""

    def __init__(self, sentences=None, corpus_file=None, vector_size=100, alpha=0.025, window=5, min_count=5,
                 max_vocab_size=None, sample=1e-3, seed=1, workers=3, min_alpha=0.0001, sg=0, hs=0, negative=5,
                 ns_exponent=0.75, cbow_mean=1, epochs=5, sorted_vocab=1, batch_words=10000, compute_loss=False,
                 callbacks=(), max_final_vocab=None, shrink_windows=True, *, shared_negatives=True,
                 alpha_schedule="auto", progress=False, distributed=False, sync_every=DEFAULT_SYNC_EVERY,
                 sync_mode="sum", dist_timeout=1800.0, device="cpu", null_word=0, trim_rule=None, hashfxn=None,
                 comment=None):
        self.vector_size = _check_int("vector_size", vector_size, 1)
        self.alpha = _check_float("alpha", alpha, 0.0, strict=True)
        self.window = _check_int("window", window, 1)
        self.min_count = _check_int("min_count", min_count, 0)
        self.max_vocab_size = None if max_vocab_size is None else _check_int("max_vocab_size", max_vocab_size, 1)
        self.sample = _check_float("sample", sample, 0.0, strict=False)
        self.seed = _rng.check_seed(seed, "Word2Vec")
        self.workers = _check_int("workers", workers, 1)
        self.min_alpha = _check_float("min_alpha", min_alpha, 0.0, strict=False)
        self.sg = int(bool(sg))
        self.hs = int(bool(hs))
        self.negative = _check_int("negative", negative, 0)
        self.ns_exponent = _check_float("ns_exponent", ns_exponent, -math.inf, strict=True)
        self.cbow_mean = int(bool(cbow_mean))
        self.epochs = _check_int("epochs", epochs, 1)
        self.sorted_vocab = int(bool(sorted_vocab))
        self.batch_words = _check_int("batch_words", batch_words, 1)
        self.compute_loss = bool(compute_loss)
        self.callbacks = tuple(callbacks)
        self.max_final_vocab = None if max_final_vocab is None else _check_int("max_final_vocab", max_final_vocab, 1)
        self.shrink_windows = bool(shrink_windows)
        self.shared_negatives = bool(shared_negatives)
        if alpha_schedule not in _SCHEDULE_CHOICES:
            raise ValueError(f"Word2Vec: alpha_schedule must be one of {list(_SCHEDULE_CHOICES)}, "
                             f"got {alpha_schedule!r}")
        self.alpha_schedule = alpha_schedule
        self.progress = bool(progress)
        self.distributed = bool(distributed)
        self.sync_every = _check_int("sync_every", sync_every, 1)
        self.dist_timeout = _check_float("dist_timeout", dist_timeout, 0.0, strict=True)
        if sync_mode not in _distributed.SYNC_MODES:
            raise ValueError(f"Word2Vec: sync_mode must be one of {list(_distributed.SYNC_MODES)}, got {sync_mode!r}")
        self.sync_mode = sync_mode
        self._dist_ctx = None
        # device="cuda" (pyfast/word2vec_cuda.py): training runs on the GPU, the vectors stay numpy arrays here.
        self.device = _cuda.parse_device(device) or "cpu"
        if self.device != "cpu":
            _cuda.check_supported(self)
        if self.distributed and alpha_schedule == "gensim_corpus_file":
            raise ValueError("Word2Vec: distributed=True trains with the linear schedule over global progress; "
                             "alpha_schedule='gensim_corpus_file' is single-process only")
        if self.distributed and sentences is not None:
            raise ValueError("Word2Vec: distributed=True needs corpus_file (each rank reads its own byte range "
                             "of the file), not sentences")
        if self.hs:
            raise NotImplementedError("Word2Vec: hierarchical softmax (hs=1) is not implemented; use hs=0 with "
                                      "negative sampling (negative > 0)")
        if self.negative == 0:
            raise ValueError("Word2Vec: negative must be >= 1 (negative sampling is the only training objective; "
                             "hs=1 is not implemented)")
        if trim_rule is not None and not callable(trim_rule):
            raise TypeError(f"Word2Vec: trim_rule must be callable (word, count, min_count) -> RULE_*, "
                            f"got {trim_rule!r}")
        self.trim_rule = trim_rule  # used by build_vocab; not saved (gensim does not save it either)
        self.null_word = int(bool(null_word))
        self.raw_vocab = None
        self.wv = KeyedVectors(self.vector_size)
        self.syn1neg = np.zeros((0, self.vector_size), dtype=np.float32)
        self.corpus_count = 0
        self.corpus_total_words = 0
        self.effective_min_count = self.min_count
        self.epochs_trained = 0        # global epoch index (keys the RNG streams of later train() calls)
        self.training_losses: list[float] = []
        self.running_training_loss = 0.0
        self.min_alpha_yet_reached = self.alpha  # lowest rate a train() call ended at (gensim's alpha warning)
        self.train_stats: list[dict] = []
        self._keep_prob = np.zeros(0, dtype=np.float32)
        self._noise_weights = np.zeros(0, dtype=np.float64)
        if sentences is not None and corpus_file is not None:
            raise TypeError("Word2Vec: pass either sentences or corpus_file, not both")
        if isinstance(sentences, types.GeneratorType):
            # build_vocab and train each need a pass: a generator would be empty for the second (gensim's rule).
            raise TypeError("Word2Vec: sentences is a generator, which can be read only once; pass a list or a "
                            "restartable iterable (an object whose __iter__ starts over), or call build_vocab and "
                            "train yourself with a fresh generator each")
        if sentences is not None or corpus_file is not None:
            self.build_vocab(sentences, corpus_file=corpus_file, trim_rule=trim_rule)
            self.train(sentences, corpus_file=corpus_file, total_examples=self.corpus_count,
                       total_words=self.corpus_total_words, epochs=self.epochs, start_alpha=self.alpha,
                       end_alpha=self.min_alpha, compute_loss=self.compute_loss, callbacks=self.callbacks)

    # ---- vocabulary ------------------------------------------------------------------------------------------------
    def scan_vocab(self, corpus_iterable=None, corpus_file=None, progress_per=10000, trim_rule=None):
        """Count tokens into ``self.raw_vocab`` (word -> count); sets corpus_count / corpus_total_words and returns
        gensim's ``(total_words, corpus_count)``. ``max_vocab_size`` prunes while counting (word2vec.c's
        ReduceVocab: drop words seen at most n times, n = 1, 2, ... until the table fits)."""
        if self.distributed:
            ctx = self._distributed_context(corpus_file)
            items, total, sentences = _distributed.count_vocab(ctx, os.fspath(corpus_file),
                                                               self.max_vocab_size or 0, self.workers)
            raw = {decode_key(w): n for w, n in items}
        elif corpus_file is not None:
            path = _check_corpus_file(corpus_file)
            words, counts, total, sentences = _native.cpu().w2v_count_file(path, self.max_vocab_size or 0,
                                                                           self.workers)
            counts = np.frombuffer(counts, dtype=np.int64)
            raw = dict(zip((decode_key(w) for w in words), counts.tolist()))
        else:
            if corpus_iterable is None:
                raise TypeError("Word2Vec: pass sentences (corpus_iterable) or corpus_file")
            counter: Counter = Counter()
            total = sentences = 0
            min_reduce = 1
            for chunk in _iter_chunks(corpus_iterable):
                for s in chunk[:1]:
                    _check_sentence(s)
                counter.update(itertools.chain.from_iterable(chunk))
                sentences += len(chunk)
                total += sum(map(len, chunk))
                if self.max_vocab_size and len(counter) > self.max_vocab_size:
                    while len(counter) > self.max_vocab_size:
                        counter = Counter({w: c for w, c in counter.items() if c > min_reduce})
                        min_reduce += 1
            raw = dict(counter)
        self.raw_vocab = raw
        self.corpus_count = int(sentences)
        self.corpus_total_words = int(total)
        return int(total), int(sentences)

    def build_vocab(self, corpus_iterable=None, corpus_file=None, update=False, progress_per=10000,
                    keep_raw_vocab=False, trim_rule=None, **kwargs):
        """Count the corpus, keep words with count >= min_count (raised to fit max_final_vocab; ``trim_rule``
        overrides per word), sort by count, set up subsampling and the noise distribution, initialise the vectors.
        ``update=True`` grows a built model instead (gensim's online training): counts of known words that pass
        min_count in the new corpus go up, new words are appended after the existing ones with fresh vectors
        (zero output weights); the existing vectors and their order are kept."""
        corpus_iterable = kwargs.pop("sentences", corpus_iterable)
        if kwargs:
            raise TypeError(f"build_vocab: unexpected arguments {sorted(kwargs)}")
        if corpus_iterable is not None and corpus_file is not None:
            raise TypeError("build_vocab: pass either sentences or corpus_file, not both")
        if update and not len(self.wv):
            raise RuntimeError("build_vocab: update=True needs a model whose vocabulary is already built")
        total, _ = self.scan_vocab(corpus_iterable, corpus_file)
        if total == 0 and not update:
            raise ValueError("Word2Vec: the corpus is empty (no tokens)")
        self.prepare_vocab(update=update, keep_raw_vocab=keep_raw_vocab, trim_rule=trim_rule)

    def build_vocab_from_freq(self, word_freq: dict, keep_raw_vocab=False, corpus_count=None, trim_rule=None,
                              update=False):
        """build_vocab from a word -> count dict instead of a corpus (``update=True``: grow the model)."""
        if not word_freq:
            raise ValueError("Word2Vec: empty word frequencies")
        self.raw_vocab = dict(word_freq)
        self.corpus_count = int(corpus_count or 0)
        self.corpus_total_words = int(sum(word_freq.values()))
        self.prepare_vocab(update=update, keep_raw_vocab=keep_raw_vocab, trim_rule=trim_rule)

    def prepare_vocab(self, update=False, keep_raw_vocab=False, trim_rule=None, dry_run=False, **_ignored) -> dict:
        """Turn ``self.raw_vocab`` into the model's vocabulary (see build_vocab) and return gensim's report:
        drop_unique, retain_total, num_retained_words, downsample_unique, downsample_total."""
        raw = getattr(self, "raw_vocab", None)
        if raw is None:
            raise RuntimeError("prepare_vocab: no raw vocabulary; call scan_vocab first")
        trim_rule = self.trim_rule if trim_rule is None else trim_rule
        min_count = self.min_count
        if not update and self.max_final_vocab is not None and self.max_final_vocab < len(raw):
            # gensim's rule: raise min_count just past the count of the first word that does not fit.
            sorted_counts = sorted(raw.values(), reverse=True)
            min_count = max(min_count, sorted_counts[self.max_final_vocab] + 1)
        if not update:
            self.effective_min_count = min_count
        kept = [(w, c) for w, c in raw.items() if _keep_word(w, c, min_count, trim_rule)]
        report = {"drop_unique": len(raw) - len(kept), "retain_total": sum(c for _, c in kept),
                  "num_retained_words": len(kept)}
        if dry_run:
            return report
        old_size = len(self.wv)
        if update:
            counts = self.wv.counts.copy()
            new = []
            for w, c in kept:
                index = self.wv.key_to_index.get(w)
                if index is None:
                    new.append((w, c))
                else:
                    counts[index] += c
            keys = self.wv.index_to_key + [w for w, _ in new]
            counts = np.concatenate([counts, np.array([c for _, c in new], dtype=np.int64)])
        else:
            if not kept:
                raise ValueError(f"Word2Vec: no word occurs at least min_count={min_count} times "
                                 f"({len(raw)} distinct words); lower min_count")
            if self.sorted_vocab:
                kept.sort(key=lambda wc: -wc[1])  # stable: ties keep first-seen (or native byte) order
            if self.null_word and "\0" not in raw:
                kept.append(("\0", 1))  # gensim's null word: the last key, count 1
            keys = [w for w, _ in kept]
            counts = np.array([c for _, c in kept], dtype=np.int64)
        self.wv.set_vocab(keys, counts)
        report.update(self._set_vocab_tables())
        if update:
            self._grow_weights(old_size)
        else:
            self.init_weights()
        if not keep_raw_vocab:
            self.raw_vocab = None
        return report

    def _set_vocab_tables(self) -> dict:
        """Subsampling keep probabilities and noise weights from the counts (word2vec.c / gensim): keep an
        occurrence of a word with count c with probability (sqrt(c / t) + 1) * t / c, t = sample * (retained
        words), capped at 1; noise weight c ** ns_exponent."""
        c = self.wv.counts.astype(np.float64)
        retain_total = float(c.sum())
        if not self.sample:
            threshold = retain_total
        elif self.sample < 1.0:
            threshold = self.sample * retain_total
        else:
            threshold = self.sample * (3 + math.sqrt(5)) / 2
        keep = np.minimum((np.sqrt(c / threshold) + 1.0) * (threshold / np.maximum(c, 1.0)), 1.0)
        self._keep_prob = keep.astype(np.float32)
        self._noise_weights = np.power(np.maximum(c, 1.0), self.ns_exponent)
        return {"downsample_unique": int((keep < 1.0).sum()), "downsample_total": int(round(float((keep * c).sum())))}

    def _initial_vectors(self, first_row: int, rows: int) -> np.ndarray:
        """Rows [first_row, first_row + rows) of the initial vectors: uniform in [-1/d, 1/d) (gensim 4's range;
        word2vec.c's is half as wide) from Philox keyed by (seed, element); a row does not depend on how many were
        drawn with it, so a model grown by build_vocab(update=True) gets the rows a fresh one would."""
        d = self.vector_size
        draws = _rng.uniform(rows * d, self.seed, offset=first_row * d, stream=_INIT_STREAM).numpy()
        return ((2.0 * draws - 1.0) / d).astype(np.float32).reshape(rows, d)

    def init_weights(self) -> None:
        """Fresh vectors (see _initial_vectors), zero syn1neg. Reproducible from the seed alone."""
        V, d = len(self.wv.index_to_key), self.vector_size
        self.wv.vectors = self._initial_vectors(0, V)
        self.wv.norms = None
        self.syn1neg = np.zeros((V, d), dtype=np.float32)
        self.epochs_trained = 0

    def _grow_weights(self, old_size: int) -> None:
        V, d = len(self.wv.index_to_key), self.vector_size
        if self.wv.vectors.shape[0] != old_size or self.syn1neg.shape != (old_size, d):
            raise ValueError("build_vocab(update=True): the model's vectors or syn1neg do not match its vocabulary "
                             "(vectors loaded from word2vec format have no output weights to grow)")
        self.wv.vectors = np.vstack([self.wv.vectors.astype(np.float32), self._initial_vectors(old_size, V - old_size)])
        self.syn1neg = np.vstack([self.syn1neg, np.zeros((V - old_size, d), dtype=np.float32)])
        self.wv.norms = None

    def reset_from(self, other_model: "Word2Vec") -> None:
        """Take another model's vocabulary (keys, counts, corpus counts) and start from fresh weights."""
        self.wv.set_vocab(list(other_model.wv.index_to_key), other_model.wv.counts)
        self.corpus_count = other_model.corpus_count
        self.corpus_total_words = other_model.corpus_total_words
        self.effective_min_count = other_model.effective_min_count
        self._set_vocab_tables()
        self.init_weights()

    # ---- corpus ----------------------------------------------------------------------------------------------------
    def _distributed_context(self, corpus_file, extra=()) -> "_distributed.Context":
        """The process group (joined on first use, see pyfast/word2vec_distributed.py), after the check collective
        that every rank reads the same corpus_file with the same settings (raises the same error on every rank)."""
        if corpus_file is None:
            raise ValueError("Word2Vec: distributed=True needs corpus_file (each rank reads its own byte range of "
                             "the file), not sentences")
        if self._dist_ctx is None:
            self._dist_ctx = _distributed.Context(self.dist_timeout)
        _distributed.check_same_corpus(self._dist_ctx, self, os.fspath(corpus_file), extra)
        return self._dist_ctx

    def _load_corpus(self, corpus_iterable, corpus_file, train_args=()) -> EncodedCorpus:
        if self.distributed:
            vocab = [encode_key(k) for k in self.wv.index_to_key]
            ids, offsets, raw = _distributed.read_shard(self._distributed_context(corpus_file, train_args),
                                                        os.fspath(corpus_file), vocab, self.workers)
            return EncodedCorpus(np.frombuffer(ids, dtype=np.int32), np.frombuffer(offsets, dtype=np.int64), raw)
        if corpus_file is not None:
            path = _check_corpus_file(corpus_file)
            vocab = [encode_key(k) for k in self.wv.index_to_key]
            ids, offsets, raw = _native.cpu().w2v_read_file(path, vocab, self.workers)
            return EncodedCorpus(np.frombuffer(ids, dtype=np.int32), np.frombuffer(offsets, dtype=np.int64), raw)
        if corpus_iterable is None:
            raise TypeError("Word2Vec.train: pass sentences (corpus_iterable) or corpus_file")
        lookup = self.wv.key_to_index.get
        id_parts, length_parts = [], []
        raw = 0
        for chunk in _iter_chunks(corpus_iterable):
            for s in chunk[:1]:
                _check_sentence(s)
            lengths = np.fromiter(map(len, chunk), dtype=np.int64, count=len(chunk))
            total = int(lengths.sum())
            raw += total
            # Whole chunk through the vocabulary with C-level iteration (map over dict.get), no Python loop per word.
            ids = np.fromiter(map(lookup, itertools.chain.from_iterable(chunk), itertools.repeat(-1, total)),
                              dtype=np.int64, count=total)
            keep = ids >= 0
            sentence_of = np.repeat(np.arange(len(chunk)), lengths)
            kept_lengths = np.bincount(sentence_of[keep], minlength=len(chunk))
            id_parts.append(ids[keep].astype(np.int32))
            length_parts.append(kept_lengths[kept_lengths > 0])
        ids = np.concatenate(id_parts) if id_parts else np.zeros(0, np.int32)
        lengths = np.concatenate(length_parts) if length_parts else np.zeros(0, np.int64)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return EncodedCorpus(ids, offsets, raw)

    # ---- training --------------------------------------------------------------------------------------------------
    def train(self, corpus_iterable=None, corpus_file=None, total_examples=None, total_words=None, epochs=None,
              start_alpha=None, end_alpha=None, word_count=0, queue_factor=2, report_delay=1.0, compute_loss=False,
              callbacks=(), **kwargs):
        """Train for ``epochs`` epochs (continues from the current weights). The learning rate decays from
        start_alpha (default alpha) to end_alpha (default min_alpha) over all epochs of this call, by the model's
        ``alpha_schedule`` (see the class docstring; "auto" picks by whether corpus_file is given). Returns
        (trained_words, raw_words) summed over the epochs, like gensim.

        Ctrl-C (KeyboardInterrupt, or any exception raised by a signal handler) stops the native workers within a
        sentence piece (<= 10,000 tokens each, milliseconds), joins them and re-raises. The model is then left with
        the counters of the last finished epoch (``epochs_trained``, ``training_losses``, ``train_stats``) and its
        vectors holding the finished epochs plus the interrupted epoch's partial updates (Hogwild writes are not
        rolled back): it stays valid, can be saved, and ``train()`` continues from it."""
        corpus_iterable = kwargs.pop("sentences", corpus_iterable)
        if kwargs:
            raise TypeError(f"train: unexpected arguments {sorted(kwargs)}")
        if not len(self.wv):
            raise RuntimeError("Word2Vec.train: build the vocabulary first (build_vocab)")
        if corpus_iterable is not None and corpus_file is not None:
            raise TypeError("train: pass either sentences or corpus_file, not both")
        epochs = self.epochs if epochs is None else _check_int("epochs", epochs, 1)
        start_alpha = self.alpha if start_alpha is None else _check_float("start_alpha", start_alpha, 0.0, True)
        end_alpha = self.min_alpha if end_alpha is None else _check_float("end_alpha", end_alpha, 0.0, False)
        self.compute_loss = bool(compute_loss) or self.compute_loss
        callbacks = tuple(callbacks) or self.callbacks
        V, d = self.wv.vectors.shape
        if self.syn1neg.shape != (V, d):
            raise ValueError("Word2Vec.train: the model has no output weights (syn1neg) for its vectors: vectors "
                             "assigned to model.wv or read from word2vec format cannot be trained further; train "
                             "a model built with build_vocab, or one saved with Word2Vec.save")
        if start_alpha > self.min_alpha_yet_reached:
            logger.warning("Effective 'alpha' higher than previous training cycles: start_alpha %g > %g, the lowest "
                           "rate an earlier train() call ended at", start_alpha, self.min_alpha_yet_reached)
        # (distributed: the train() arguments every rank must share, with the vocabulary size, join the check)
        corpus = self._load_corpus(corpus_iterable, corpus_file, (epochs, start_alpha, end_alpha, V, d))
        if len(corpus.ids) == 0 and not self.distributed:  # distributed: a rank's shard may be empty, not all
            raise ValueError("Word2Vec.train: no in-vocabulary word in the corpus")
        schedule = "linear" if self.distributed or self.device != "cpu" else _resolve_schedule(self.alpha_schedule,
                                                                                               corpus_file)
        per_worker = _ALPHA_SCHEDULES[schedule]
        self.wv.vectors = np.ascontiguousarray(self.wv.vectors, dtype=np.float32)
        self.syn1neg = np.ascontiguousarray(self.syn1neg, dtype=np.float32)
        keep_prob = np.ascontiguousarray(self._keep_prob, dtype=np.float32)
        noise = np.ascontiguousarray(self._noise_weights, dtype=np.float64)
        words_done = np.zeros(1, dtype=np.int64)  # the native workers add to it; the progress thread reads it
        cancel = np.zeros(1, dtype=np.int32)  # 1 on Ctrl-C: the native workers stop (_train_epoch_interruptibly)
        total = len(corpus.ids) * epochs
        native = _native.cpu()
        # gensim's iterable mode hands its workers jobs of batch_words words, so a corpus below one job trains on one
        # thread and two seeded runs agree; more threads than jobs would only race on a tiny table (Hogwild). The same
        # cap here for the linear schedule. gensim's corpus_file mode (the per-worker schedule) and the distributed
        # trainer keep every worker, as there.
        workers = self.workers
        if not per_worker and not self.distributed:
            workers = max(1, min(self.workers, -(-len(corpus.ids) // self.batch_words)))

        def make_params(**changes):
            # The native trainer's params for this call; the distributed driver overrides the corpus slice, the
            # progress counter and the RNG key per chunk.
            fields = dict(
                syn0=self.wv.vectors.ctypes.data, syn1neg=self.syn1neg.ctypes.data, vocab_size=V, dim=d,
                ids=corpus.ids.ctypes.data, n_ids=len(corpus.ids), sentence_offsets=corpus.offsets.ctypes.data,
                n_sentences=corpus.n_sentences, keep_prob=keep_prob.ctypes.data, noise_weights=noise.ctypes.data,
                sg=int(self.sg), cbow_mean=int(self.cbow_mean), negative=self.negative, window=self.window,
                shrink_windows=int(self.shrink_windows), shared_negatives=int(self.shared_negatives),
                workers=workers, compute_loss=int(self.compute_loss), alpha0=start_alpha,
                min_alpha=end_alpha, total_words=total, words_done=words_done.ctypes.data, seed=self.seed,
                epoch=self.epochs_trained, alpha_per_worker=per_worker, cancel=cancel.ctypes.data)
            fields.update(changes)
            return _native.fill(native.TrainParams(), **fields)

        for cb in callbacks:
            _call(cb, "on_train_begin", self)
        trained = raw = 0
        self.training_losses = []
        if self.device != "cpu":
            _cuda.check_supported(self)
            trained, raw = _cuda.train(self, corpus, epochs, start_alpha, end_alpha, callbacks, _call)
            self.min_alpha_yet_reached = min(self.min_alpha_yet_reached, end_alpha)
            for cb in callbacks:
                _call(cb, "on_train_end", self)
            return trained, raw
        if self.distributed:
            trained, raw = _distributed.train(self, self._dist_ctx, corpus, epochs, start_alpha, end_alpha,
                                              make_params, lambda p: _train_epoch_interruptibly(native, p, cancel),
                                              callbacks, _call)
            self.min_alpha_yet_reached = min(self.min_alpha_yet_reached, end_alpha)
            for cb in callbacks:
                _call(cb, "on_train_end", self)
            return trained, raw
        for epoch in range(epochs):
            for cb in callbacks:
                _call(cb, "on_epoch_begin", self)
            t0 = time.perf_counter()
            reporter = _Progress(self.progress, words_done, total, epoch, epochs, len(corpus.ids), start_alpha,
                                 end_alpha, workers if per_worker else 0)
            try:
                params = make_params()
                result = _train_epoch_interruptibly(native, params, cancel)
                loss, kept, pairs, alpha_end = result.loss, result.trained_words, result.pairs, result.end_alpha
            finally:
                reporter.close()
            seconds = time.perf_counter() - t0
            self.epochs_trained += 1
            trained += kept
            raw += corpus.raw_words
            self.training_losses.append(float(loss))
            self.running_training_loss = float(loss)
            self.train_stats.append({"epoch": self.epochs_trained, "seconds": seconds, "raw_words": corpus.raw_words,
                                     "trained_words": int(kept), "pairs": int(pairs), "loss": float(loss),
                                     "alpha_end": float(alpha_end), "schedule": schedule, "workers": workers,
                                     "words_per_s": corpus.raw_words / seconds if seconds > 0 else float("inf")})
            reporter.epoch_done(seconds, corpus.raw_words, float(loss) if self.compute_loss else None)
            self.wv.norms = None
            for cb in callbacks:
                _call(cb, "on_epoch_end", self)
        self.min_alpha_yet_reached = min(self.min_alpha_yet_reached, end_alpha)
        for cb in callbacks:
            _call(cb, "on_train_end", self)
        return trained, raw

    def predict_output_word(self, context_words_list, topn=10):
        """The ``topn`` most probable center words given context words (keys or indices), as gensim: the softmax
        of syn1neg against the (mean, for cbow_mean) context vector. Returns [(key, probability)], or None when no
        context word is in the vocabulary."""
        if not self.negative:
            raise RuntimeError("predict_output_word needs a model trained with negative sampling (negative > 0)")
        if self.syn1neg.shape != self.wv.vectors.shape or not len(self.wv):
            raise RuntimeError("predict_output_word needs the model's output weights (syn1neg); vectors assigned "
                               "to model.wv or read from word2vec format have none")
        indices = [self.wv.get_index(w) for w in context_words_list if w in self.wv.key_to_index
                   or (isinstance(w, (int, np.integer)) and 0 <= w < len(self.wv))]
        if not indices:
            logger.warning("predict_output_word: none of the context words is in the vocabulary")
            return None
        context = self.wv.vectors[indices].astype(np.float64).sum(axis=0)
        if self.cbow_mean:
            context /= len(indices)
        logits = self.syn1neg.astype(np.float64) @ context
        prob = np.exp(logits - logits.max())
        prob /= prob.sum()
        top = np.argsort(-prob, kind="stable")[:topn]
        return [(self.wv.index_to_key[i], float(prob[i])) for i in top]

    def score(self, sentences, total_sentences=int(1e6), chunksize=100, queue_factor=2, report_delay=1):
        """gensim's score() is the log probability of each sentence under hierarchical softmax, which pyfast
        does not implement."""
        raise NotImplementedError("Word2Vec.score needs hierarchical softmax (hs=1), which pyfast does not "
                                  "implement; score with gensim (gensim.models.Word2Vec(..., hs=1, negative=0))")

    def get_latest_training_loss(self) -> float:
        """Loss of the latest epoch (sum of -log sigmoid over every positive and negative example, float64 over
        all workers); 0.0 unless compute_loss=True."""
        return self.running_training_loss

    # ---- save / load -----------------------------------------------------------------------------------------------
    _PARAMS = ("vector_size", "alpha", "window", "min_count", "max_vocab_size", "sample", "seed", "workers",
               "min_alpha", "sg", "hs", "negative", "ns_exponent", "cbow_mean", "epochs", "sorted_vocab",
               "batch_words", "compute_loss", "max_final_vocab", "shrink_windows", "shared_negatives",
               "alpha_schedule", "null_word", "corpus_count", "corpus_total_words", "effective_min_count",
               "epochs_trained")

    def save(self, fname, **_ignored) -> None:
        """Save everything needed to continue training (vectors, syn1neg, vocabulary with counts, settings, the
        epoch counter that keys the RNG): one uncompressed .npz, written atomically, no pickle. A distributed model
        is written by rank 0 only (every rank holds the same vectors); on the others this does nothing."""
        if self.distributed and self._dist_ctx is not None and self._dist_ctx.rank != 0:
            return
        meta = {"format": SAVE_FORMAT, "kind": "Word2Vec", "params": {k: getattr(self, k) for k in self._PARAMS},
                "training_losses": self.training_losses}
        arrays = {"vectors": self.wv.vectors, "counts": self.wv.counts, "syn1neg": self.syn1neg,
                  "keys": np.frombuffer(json.dumps(self.wv.index_to_key, ensure_ascii=True).encode(), dtype=np.uint8),
                  "meta": json_array(meta)}
        atomic_write(fname, lambda fh: np.savez(fh, **arrays))

    @_class_only
    def load(cls, fname, mmap=None, **_ignored) -> "Word2Vec":
        """Load a model saved by ``save``; a model pickled by gensim's ``save`` is converted (needs gensim
        installed, and runs gensim's unpickler: load only files you trust)."""
        if not _is_npz(fname):
            return cls._from_gensim(load_gensim_pickle(fname, "Word2Vec", mmap))
        arrays = load_npz(fname, "Word2Vec")
        meta = arrays["meta"]
        params = dict(meta["params"])
        model = cls.__new__(cls)
        ctor = {k: params[k] for k in ("vector_size", "alpha", "window", "min_count", "max_vocab_size", "sample",
                                      "seed", "workers", "min_alpha", "sg", "hs", "negative", "ns_exponent",
                                      "cbow_mean", "epochs", "sorted_vocab", "batch_words", "compute_loss",
                                      "max_final_vocab", "shrink_windows")}
        model.__init__(**ctor, shared_negatives=params["shared_negatives"],
                       alpha_schedule=params.get("alpha_schedule", "linear"),  # files saved before the option
                       null_word=params.get("null_word", 0))
        model.wv = KeyedVectors.from_arrays(arrays, "")
        if arrays["syn1neg"].shape != model.wv.vectors.shape or model.wv.vector_size != model.vector_size:
            raise ValueError(f"{fname}: syn1neg and vectors disagree in shape: the file is corrupt")
        model.syn1neg = np.ascontiguousarray(arrays["syn1neg"], dtype=np.float32)
        model.corpus_count = params["corpus_count"]
        model.corpus_total_words = params["corpus_total_words"]
        model.effective_min_count = params["effective_min_count"]
        model.epochs_trained = params["epochs_trained"]
        model.training_losses = list(meta.get("training_losses", []))
        model.running_training_loss = model.training_losses[-1] if model.training_losses else 0.0
        model._set_vocab_tables()  # subsampling and noise depend only on the counts
        return model

    @classmethod
    def _from_gensim(cls, g) -> "Word2Vec":
        """A pyfast model from a gensim Word2Vec object: settings, vocabulary with counts, vectors, syn1neg."""
        if not getattr(g, "negative", 0) or getattr(g, "syn1neg", None) is None:
            raise NotImplementedError(
                "Word2Vec.load: this gensim model was trained with hierarchical softmax only (hs=1, negative=0), "
                "which pyfast cannot continue training; use its vectors: gensim_model.wv.save_word2vec_format("
                "'vec.bin', binary=True), then pyfast.KeyedVectors.load_word2vec_format('vec.bin', binary=True)")
        names = ("vector_size", "alpha", "window", "min_count", "max_vocab_size", "sample", "seed", "workers",
                 "min_alpha", "sg", "negative", "ns_exponent", "cbow_mean", "epochs", "sorted_vocab", "batch_words",
                 "max_final_vocab")
        if getattr(g, "hs", 0):
            logger.warning("Word2Vec.load: the gensim model also has hierarchical softmax weights (syn1); pyfast "
                           "keeps training it with negative sampling only")
        ctor = {k: getattr(g, k) for k in names if getattr(g, k, None) is not None}
        ctor["vector_size"] = g.wv.vector_size
        ctor["shrink_windows"] = getattr(g, "shrink_windows", True)
        if hasattr(g, "null_word"):
            ctor["null_word"] = g.null_word
        model = cls(**ctor)
        model.wv = KeyedVectors.from_gensim(g.wv)
        model.syn1neg = np.ascontiguousarray(g.syn1neg, dtype=np.float32)
        if model.syn1neg.shape != model.wv.vectors.shape:
            raise ValueError("Word2Vec.load: the gensim model's syn1neg and vectors disagree in shape")
        model.corpus_count = getattr(g, "corpus_count", 0)
        model.corpus_total_words = getattr(g, "corpus_total_words", None)  # None in models saved before gensim 3.4
        model.effective_min_count = getattr(g, "effective_min_count", model.min_count)
        model.min_alpha_yet_reached = getattr(g, "min_alpha_yet_reached", model.alpha)
        model._set_vocab_tables()
        return model

    def __str__(self) -> str:
        return f"Word2Vec<vocab={len(self.wv)}, vector_size={self.vector_size}, alpha={self.alpha}>"


# trim_rule results (gensim.utils' values, so gensim's constants work unchanged)
RULE_DEFAULT, RULE_DISCARD, RULE_KEEP = 0, 1, 2


def _keep_word(word, count, min_count, trim_rule) -> bool:
    """gensim's rule: trim_rule(word, count, min_count) decides (RULE_KEEP / RULE_DISCARD), RULE_DEFAULT (or
    None) falls back to count >= min_count."""
    default = count >= min_count
    if trim_rule is None:
        return default
    decision = trim_rule(word, count, min_count)
    if decision == RULE_KEEP:
        return True
    if decision == RULE_DISCARD:
        return False
    return default


def _train_epoch_interruptibly(native, params, cancel: np.ndarray):
    """One native epoch, interruptible by Ctrl-C. The native call releases the GIL but Python runs signal handlers
    only between bytecodes of the main thread, so a main thread blocked in the call would see SIGINT only when the
    epoch ends (minutes). The epoch therefore runs on a helper thread while the main thread waits in short joins;
    when a signal handler raises there, ``cancel`` is set, the workers stop at their next sentence piece, the helper
    is joined (no native thread outlives the call) and the exception propagates. Off the main thread (which gets no
    signals) the call is made directly."""
    if threading.current_thread() is not threading.main_thread():
        return native.w2v_train_epoch(params)
    outcome = {}
    finished = threading.Event()  # not Thread.join: an interrupted join marks a live thread stopped (3.11, bpo-45274)

    def run():
        try:
            outcome["result"] = native.w2v_train_epoch(params)
        except BaseException as exc:  # noqa: BLE001 - re-raised on the calling thread
            outcome["error"] = exc
        finally:
            finished.set()

    helper = threading.Thread(target=run, name="pyfast-word2vec-epoch", daemon=True)
    helper.start()
    try:
        while not finished.wait(0.05):
            pass
    except BaseException:
        cancel[0] = 1
        finished.wait()
        raise
    finally:
        if finished.is_set():
            helper.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _check_corpus_file(corpus_file) -> str:
    path = os.fspath(corpus_file)
    if not os.path.exists(path):
        raise FileNotFoundError(f"corpus_file not found: {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"corpus_file is a directory: {path!r}")
    return path


def _call(callback, name: str, model) -> None:
    fn = getattr(callback, name, None)
    if fn is not None:
        fn(model)


class _Progress:
    """Progress of one epoch read from the native word counter by a background thread: a tqdm bar when tqdm is
    installed, else a log line every few seconds (words/s, alpha, ETA). Does nothing when disabled."""

    def __init__(self, enabled, words_done, total, epoch, epochs, epoch_words, start_alpha, end_alpha,
                 per_worker_of=0):
        self.enabled = enabled
        if not enabled:
            return
        self.per_worker_of = per_worker_of  # > 0: gensim_corpus_file schedule with this many workers
        self.words_done, self.total, self.epoch, self.epochs = words_done, total, epoch, epochs
        self.epoch_words, self.start_alpha, self.end_alpha = epoch_words, start_alpha, end_alpha
        self.base = epoch * epoch_words
        self.stop = threading.Event()
        self.bar = None
        try:
            from tqdm import tqdm

            self.bar = tqdm(total=epoch_words, desc=f"epoch {epoch + 1}/{epochs}", unit="w", unit_scale=True,
                            leave=True, file=sys.stderr)
        except ImportError:
            pass
        self.t0 = time.perf_counter()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _alpha(self, done):
        if self.per_worker_of:  # each worker is ~1/W of the way through its own share of the epoch
            done = self.base + (done - self.base) / self.per_worker_of
        return max(self.end_alpha, self.start_alpha - (self.start_alpha - self.end_alpha) * done / self.total)

    def _run(self):
        shown = 0
        last_log = time.perf_counter()
        while not self.stop.wait(0.25):
            done = int(self.words_done[0])
            in_epoch = max(0, min(done - self.base, self.epoch_words))
            if self.bar is not None:
                self.bar.update(in_epoch - shown)
                self.bar.set_postfix(alpha=f"{self._alpha(done):.5f}", refresh=False)
                shown = in_epoch
            elif time.perf_counter() - last_log > 5:
                last_log = time.perf_counter()
                rate = in_epoch / max(last_log - self.t0, 1e-9)
                eta = (self.total - done) / max(rate, 1e-9)
                print(f"word2vec: epoch {self.epoch + 1}/{self.epochs} {100 * in_epoch / self.epoch_words:.1f}% "
                      f"{rate / 1e3:.0f}k words/s alpha {self._alpha(done):.5f} ETA {eta:.0f}s", file=sys.stderr)
        if self.bar is not None:
            self.bar.update(self.epoch_words - shown)

    def close(self):
        if not self.enabled:
            return
        self.stop.set()
        self.thread.join()
        if self.bar is not None:
            self.bar.close()

    def epoch_done(self, seconds, raw_words, loss):
        if not self.enabled:
            return
        msg = (f"word2vec: epoch {self.epoch + 1}/{self.epochs} done in {seconds:.2f}s, "
               f"{raw_words / seconds / 1e3:.0f}k words/s")
        if loss is not None:
            msg += f", loss {loss:.6g}"
        print(msg, file=sys.stderr)


__all__ = ["Word2Vec", "KeyedVectors"]  # KeyedVectors re-exported from pyfast.keyedvectors (gensim has both)
