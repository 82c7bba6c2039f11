"""word2vec (skip-gram and CBOW with negative sampling) with gensim's API: ``Word2Vec`` and ``KeyedVectors``.

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
  whatever PYTHONHASHSEED is. Hierarchical softmax (hs=1) and online vocabulary updates are not implemented.
"""
from __future__ import annotations

import io
import itertools
import json
import logging
import math
import os
import sys
import threading
import time
import zipfile
from collections import Counter
from typing import Iterable

import numpy as np

from . import _native
from . import rng as _rng

logger = logging.getLogger(__name__)

_INIT_STREAM = 0x5717  # Philox stream for the initial vectors
_SAVE_FORMAT = "pyfast.word2vec/1"


def _decode_key(raw: bytes) -> str:
    # Corpus bytes are opaque to the native reader; surrogateescape keeps invalid UTF-8 lossless and unique.
    return raw.decode("utf-8", "surrogateescape")


def _encode_key(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


def _atomic_write(path: str, write) -> None:
    """Write through ``write(fileobj)`` into a temp file beside ``path``, then rename over it."""
    path = os.fspath(path)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


# ================================================================================================================
# KeyedVectors
# ================================================================================================================
class KeyedVectors:
    """Word vectors with gensim's KeyedVectors interface (the part people use)."""

    def __init__(self, vector_size: int, count: int = 0, dtype=np.float32):
        if isinstance(vector_size, bool) or not isinstance(vector_size, (int, np.integer)) or vector_size < 1:
            raise ValueError(f"KeyedVectors: vector_size must be an int >= 1, got {vector_size!r}")
        self.vector_size = int(vector_size)
        self.index_to_key: list[str] = []
        self.key_to_index: dict[str, int] = {}
        self.vectors = np.zeros((count, self.vector_size), dtype=dtype)
        self.counts = np.zeros(count, dtype=np.int64)
        self._norms = None

    # ---- container protocol ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.index_to_key)

    def __contains__(self, key) -> bool:
        return key in self.key_to_index

    def has_index_for(self, key) -> bool:
        return key in self.key_to_index

    def __getitem__(self, key_or_keys):
        if isinstance(key_or_keys, (str, int, np.integer)):
            return self.get_vector(key_or_keys)
        return np.vstack([self.get_vector(k) for k in key_or_keys])

    def get_index(self, key, default=None) -> int:
        index = self.key_to_index.get(key)
        if index is not None:
            return index
        if isinstance(key, (int, np.integer)) and 0 <= key < len(self.index_to_key):
            return int(key)
        if default is not None:
            return default
        raise KeyError(f"Key '{key}' not present")

    def get_vector(self, key, norm: bool = False) -> np.ndarray:
        index = self.get_index(key)
        if norm:
            return self.vectors[index] / self._get_norms()[index]
        return self.vectors[index]

    word_vec = get_vector

    def get_vecattr(self, key, attr: str):
        if attr != "count":
            raise KeyError(f"KeyedVectors: unknown attribute {attr!r} (only 'count' is stored)")
        return int(self.counts[self.get_index(key)])

    def _set_vocab(self, keys: list[str], counts) -> None:
        self.index_to_key = list(keys)
        self.key_to_index = {k: i for i, k in enumerate(self.index_to_key)}
        if len(self.key_to_index) != len(self.index_to_key):
            raise ValueError("KeyedVectors: duplicate keys")
        self.counts = np.asarray(counts, dtype=np.int64).copy() if counts is not None else np.zeros(len(keys), np.int64)
        self._norms = None

    # ---- similarity ----------------------------------------------------------------------------------------------
    def _get_norms(self) -> np.ndarray:
        if self._norms is None or self._norms.shape[0] != self.vectors.shape[0]:
            norms = np.linalg.norm(self.vectors, axis=1)
            norms[norms == 0] = 1.0  # an all-zero vector stays zero instead of becoming NaN
            self._norms = norms.astype(np.float32)
        return self._norms

    def fill_norms(self, force: bool = False) -> None:
        if force:
            self._norms = None
        self._get_norms()

    def get_normed_vectors(self) -> np.ndarray:
        return self.vectors / self._get_norms()[:, None]

    def similarity(self, w1, w2) -> float:
        return float(np.dot(self.get_vector(w1, norm=True), self.get_vector(w2, norm=True)))

    def n_similarity(self, ws1, ws2) -> float:
        if not len(ws1) or not len(ws2):
            raise ZeroDivisionError("At least one of the passed lists is empty.")
        a = np.mean([self.get_vector(k, norm=True) for k in ws1], axis=0)
        b = np.mean([self.get_vector(k, norm=True) for k in ws2], axis=0)
        return float(np.dot(a / np.linalg.norm(a), b / np.linalg.norm(b)))

    def most_similar(self, positive=None, negative=None, topn=10, clip_start=0, clip_end=None, restrict_vocab=None,
                     indexer=None):
        """Top-N keys by cosine similarity to the mean of the unit vectors of ``positive`` minus ``negative``
        (gensim's 3CosAdd); the query keys themselves are left out. Keys may be strings, indices, vectors or
        ``(key, weight)`` pairs. ``topn=None`` returns the similarity to every key."""
        if isinstance(topn, int) and topn < 1:
            return []
        positive = _as_list(positive)
        negative = _as_list(negative)
        parts, query_indices = [], set()
        for items, sign in ((positive, 1.0), (negative, -1.0)):
            for item in items:
                weight = sign
                if isinstance(item, tuple) and len(item) == 2 and not isinstance(item[0], (float, np.floating)):
                    item, weight = item[0], sign * float(item[1])
                if isinstance(item, np.ndarray):
                    parts.append(weight * item.astype(np.float32))
                else:
                    index = self.get_index(item)
                    query_indices.add(index)
                    parts.append(weight * self.get_vector(index, norm=True))
        if not parts:
            raise ValueError("cannot compute similarity with no input")
        mean = np.mean(np.asarray(parts, dtype=np.float32), axis=0)
        norm = np.linalg.norm(mean)
        if norm > 0:
            mean = mean / norm
        if clip_end is None:
            clip_end = len(self.vectors) if restrict_vocab is None else min(int(restrict_vocab), len(self.vectors))
        normed = self.vectors[clip_start:clip_end] / self._get_norms()[clip_start:clip_end, None]
        dists = normed @ mean
        if topn is None:
            return dists
        order = np.argsort(-dists, kind="stable")[: topn + len(query_indices)]
        out = []
        for i in order:
            index = int(i) + clip_start
            if index in query_indices:
                continue
            out.append((self.index_to_key[index], float(dists[i])))
            if len(out) == topn:
                break
        return out

    def similar_by_word(self, word, topn=10, restrict_vocab=None):
        return self.most_similar(positive=[word], topn=topn, restrict_vocab=restrict_vocab)

    def similar_by_vector(self, vector, topn=10, restrict_vocab=None):
        return self.most_similar(positive=[np.asarray(vector)], topn=topn, restrict_vocab=restrict_vocab)

    def doesnt_match(self, words):
        words = [w for w in words if w in self.key_to_index]
        if not words:
            raise ValueError("cannot select a word from an empty list")
        vecs = np.vstack([self.get_vector(w, norm=True) for w in words])
        mean = vecs.mean(axis=0)
        mean /= np.linalg.norm(mean)
        return words[int(np.argmin(vecs @ mean))]

    # ---- evaluation (gensim's semantics) ---------------------------------------------------------------------------
    def _ok_vocab(self, restrict_vocab: int, case_insensitive: bool) -> dict:
        ok_keys = self.index_to_key[:restrict_vocab]
        if case_insensitive:
            # reversed: on a case clash the most frequent spelling wins (its index is written last)
            return {k.upper(): self.key_to_index[k] for k in reversed(ok_keys)}
        return {k: self.key_to_index[k] for k in reversed(ok_keys)}

    def evaluate_word_analogies(self, analogies, restrict_vocab=300000, case_insensitive=True, dummy4unknown=False,
                                similarity_function="most_similar"):
        """Accuracy on an analogy file in word2vec's questions-words.txt format (``: section`` headers, then
        ``a b c expected`` lines), the same way gensim scores it: 3CosAdd over the ``restrict_vocab`` most frequent
        keys, the first of the top 5 predictions that is not a question word. Returns ``(score, sections)``."""
        if similarity_function != "most_similar":
            raise ValueError("evaluate_word_analogies: only similarity_function='most_similar' is supported")
        ok_vocab = self._ok_vocab(restrict_vocab, case_insensitive)
        limit = min(int(restrict_vocab), len(self.vectors))
        normed = self.vectors[:limit] / self._get_norms()[:limit, None]
        sections, section = [], None
        questions = []  # (section, a, b, c, expected, ia, ib, ic)
        oov = total = 0
        with open(analogies, encoding="utf-8") as fin:
            for line_no, line in enumerate(fin):
                if line.startswith(": "):
                    if section:
                        sections.append(section)
                    section = {"section": line.lstrip(": ").strip(), "correct": [], "incorrect": []}
                    continue
                if not section:
                    raise ValueError(f"Missing section header before line #{line_no} in {analogies}")
                words = [w.upper() for w in line.split()] if case_insensitive else line.split()
                if len(words) != 4:
                    continue  # gensim skips invalid lines too
                total += 1
                a, b, c, expected = words
                if a not in ok_vocab or b not in ok_vocab or c not in ok_vocab or expected not in ok_vocab:
                    oov += 1
                    if dummy4unknown:
                        section["incorrect"].append((a, b, c, expected))
                    continue
                questions.append((section, a, b, c, expected, ok_vocab[a], ok_vocab[b], ok_vocab[c]))
        if section:
            sections.append(section)
        # All questions at once: (Q, d) queries against the (limit, d) unit vectors, in blocks.
        for start in range(0, len(questions), 2048):
            block = questions[start:start + 2048]
            ia = np.array([q[5] for q in block])
            ib = np.array([q[6] for q in block])
            ic = np.array([q[7] for q in block])
            query = (normed[ib] + normed[ic] - normed[ia]) / 3.0
            query /= np.maximum(np.linalg.norm(query, axis=1, keepdims=True), 1e-30)
            sims = query @ normed.T
            rows = np.arange(len(block))
            for cols in (ia, ib, ic):  # most_similar leaves the query keys out
                sims[rows, cols] = -np.inf
            top = np.argsort(-sims, axis=1, kind="stable")[:, :5]
            for q, cand in zip(block, top):
                sec, a, b, c, expected = q[:5]
                ignore = {a, b, c}
                predicted = None
                for index in cand:
                    key = self.index_to_key[int(index)]
                    predicted = key.upper() if case_insensitive else key
                    if predicted in ok_vocab and predicted not in ignore:
                        break
                (sec["correct"] if predicted == expected else sec["incorrect"]).append((a, b, c, expected))
        correct = list(itertools.chain.from_iterable(s["correct"] for s in sections))
        incorrect = list(itertools.chain.from_iterable(s["incorrect"] for s in sections))
        sections.append({"section": "Total accuracy", "correct": correct, "incorrect": incorrect})
        n = len(correct) + len(incorrect)
        score = len(correct) / n if n else 0.0
        logger.info("analogies: %.1f%% of %d (oov %d of %d)", 100 * score, n, oov, total)
        return score, sections

    def evaluate_word_pairs(self, pairs, delimiter="\t", encoding="utf8", restrict_vocab=300000,
                            case_insensitive=True, dummy4unknown=False):
        """Pearson and Spearman correlation of model cosine similarities with human ratings (WordSim353 format:
        ``a<TAB>b<TAB>score``, ``#`` comments), gensim's semantics. Returns ``(pearson, spearman, oov_ratio)``;
        pearson and spearman are scipy results when scipy is installed, else ``(statistic, nan)`` tuples."""
        ok_vocab = self._ok_vocab(restrict_vocab, case_insensitive)
        gold, model = [], []
        oov = 0
        with open(pairs, encoding=encoding) as fin:
            for line in fin:
                if not line or line.startswith("#"):
                    continue
                try:
                    parts = line.split(delimiter)
                    if case_insensitive:
                        parts = [p.upper() for p in parts]
                    a, b, sim = parts
                    sim = float(sim)
                except (ValueError, TypeError):
                    continue
                if a not in ok_vocab or b not in ok_vocab:
                    oov += 1
                    if dummy4unknown:
                        model.append(0.0)
                        gold.append(sim)
                    continue
                gold.append(sim)
                va = self.vectors[ok_vocab[a]] / self._get_norms()[ok_vocab[a]]
                vb = self.vectors[ok_vocab[b]] / self._get_norms()[ok_vocab[b]]
                model.append(float(np.dot(va, vb)))
        if not gold:
            raise ValueError(f"No valid similarity judgements found in {pairs}: either invalid format or all are out-of-vocabulary")
        oov_ratio = float(oov) / len(gold) * 100 if dummy4unknown else float(oov) / (len(gold) + oov) * 100
        try:
            from scipy import stats

            return stats.pearsonr(gold, model), stats.spearmanr(gold, model), oov_ratio
        except ImportError:  # pragma: no cover - scipy comes with gensim; a fallback without p-values
            g, m = np.asarray(gold), np.asarray(model)
            pearson = float(np.corrcoef(g, m)[0, 1])
            rank = lambda x: np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(float)  # noqa: E731
            spearman = float(np.corrcoef(rank(g), rank(m))[0, 1])
            return (pearson, float("nan")), (spearman, float("nan")), oov_ratio

    # ---- word2vec text / binary formats ----------------------------------------------------------------------------
    def save_word2vec_format(self, fname, fvocab=None, binary=False, total_vec=None, write_header=True,
                             prefix="", append=False, sort_attr="count"):
        """Write word2vec.c's format: header ``"<count> <dim>"``, then per key either ``key v1 v2 ...`` (text,
        9 significant digits: float32 round-trips exactly) or ``key`` + space + dim little-endian float32 + newline
        (binary, as word2vec.c writes it). Written atomically. ``fvocab`` also writes ``key count`` lines."""
        if append:
            raise NotImplementedError("save_word2vec_format: append=True is not supported")
        n = len(self.index_to_key) if total_vec is None else int(total_vec)
        keys = self.index_to_key[:n]
        vectors = np.ascontiguousarray(self.vectors[:n], dtype="<f4")
        d = self.vector_size

        def write(fh):
            if write_header:
                fh.write(f"{len(keys)} {d}\n".encode())
            if binary:
                for key, row in zip(keys, vectors):
                    fh.write(_encode_key(prefix + key) + b" " + row.tobytes() + b"\n")
            else:
                fmt = " ".join(["%.9g"] * d)
                buf = io.StringIO()
                for key, row in zip(keys, vectors):
                    buf.write(prefix + key + " " + fmt % tuple(row.tolist()) + "\n")
                fh.write(buf.getvalue().encode("utf-8", "surrogateescape"))

        _atomic_write(fname, write)
        if fvocab is not None:
            def write_vocab(fh):
                for key, count in zip(keys, self.counts[:n]):
                    fh.write(_encode_key(prefix + key) + f" {int(count)}\n".encode())
            _atomic_write(fvocab, write_vocab)

    @classmethod
    def load_word2vec_format(cls, fname, fvocab=None, binary=False, encoding="utf8", unicode_errors="strict",
                             limit=None, datatype=np.float32, no_header=False):
        """Read word2vec.c's text or binary format (with or without a newline after each binary vector).
        A truncated or malformed file raises EOFError or ValueError; nothing is returned half-loaded."""
        with open(fname, "rb") as fh:
            data = fh.read()
        counts_from_vocab = None
        if fvocab is not None:
            counts_from_vocab = {}
            with open(fvocab, "rb") as fh:
                for line in fh:
                    parts = line.decode(encoding, unicode_errors).split()
                    if len(parts) == 2:
                        counts_from_vocab[parts[0]] = int(parts[1])
        if no_header:
            if binary:
                raise NotImplementedError("load_word2vec_format: no_header=True needs binary=False")
            lines = data.decode(encoding, unicode_errors).splitlines()
            first = lines[0].split() if lines else []
            header = f"{len(lines)} {max(len(first) - 1, 0)}"
            data = (header + "\n").encode() + b"\n".join(ln.encode(encoding, unicode_errors) for ln in lines)
        nl = data.find(b"\n")
        if nl < 0:
            raise EOFError(f"{fname}: no header line")
        try:
            count, dim = (int(x) for x in data[:nl].split())
        except ValueError:
            raise ValueError(f"{fname}: the header must be '<count> <dim>', got {data[:nl][:80]!r}") from None
        if count < 0 or dim < 1:
            raise ValueError(f"{fname}: bad header counts {count} {dim}")
        if limit is not None:
            count = min(count, int(limit))
        keys: list[str] = []
        vectors = np.empty((count, dim), dtype=np.float32)
        pos = nl + 1
        if binary:
            row_bytes = 4 * dim
            for i in range(count):
                while pos < len(data) and data[pos:pos + 1] in (b"\n", b"\r"):
                    pos += 1
                space = data.find(b" ", pos)
                if space < 0:
                    raise EOFError(f"{fname}: unexpected end of file after {i} of {count} vectors")
                keys.append(data[pos:space].decode(encoding, unicode_errors))
                start = space + 1
                if start + row_bytes > len(data):
                    raise EOFError(f"{fname}: unexpected end of file in vector {i} of {count}")
                vectors[i] = np.frombuffer(data, dtype="<f4", count=dim, offset=start)
                pos = start + row_bytes
        else:
            text = data[pos:].decode(encoding, unicode_errors)
            lines = text.split("\n")
            i = 0
            last_vector_line = -1
            for line_no, line in enumerate(lines):
                if i == count:
                    break
                parts = line.rstrip().split(" ")
                if len(parts) == 1 and not parts[0]:
                    continue
                if len(parts) != dim + 1:
                    raise ValueError(f"{fname}: line {line_no + 2} has {len(parts) - 1} values, expected {dim}")
                keys.append(parts[0])
                try:
                    vectors[i] = np.array(parts[1:], dtype=np.float32)
                except ValueError:
                    raise ValueError(f"{fname}: line {line_no + 2} has a value that is not a number") from None
                i += 1
                last_vector_line = line_no
            if i < count:
                raise EOFError(f"{fname}: unexpected end of file after {i} of {count} vectors")
            if count and last_vector_line == len(lines) - 1:
                # The last vector is the file's last line and has no newline: writers (word2vec.c, gensim, ours)
                # always end lines with one, so this is a cut inside the last line, possibly inside a number.
                raise EOFError(f"{fname}: the last line is not terminated by a newline (truncated file?)")
        kv = cls(dim, 0)
        seen = {}
        keep = []
        for i, key in enumerate(keys):
            if key in seen:
                logger.warning("duplicate key %r in %s, keeping the first", key, fname)
                continue
            seen[key] = i
            keep.append(i)
        if len(keep) != len(keys):
            keys = [keys[i] for i in keep]
            vectors = vectors[keep]
        # word2vec files are sorted by frequency; without counts, rank stands in for them (as gensim does).
        counts = [counts_from_vocab.get(k, 0) for k in keys] if counts_from_vocab else list(range(len(keys), 0, -1))
        kv._set_vocab(keys, counts)
        kv.vectors = vectors.astype(datatype, copy=False)
        return kv

    # ---- native save / load --------------------------------------------------------------------------------------
    def save(self, fname) -> None:
        """Save keys, counts and vectors (an uncompressed .npz, written atomically; no pickle)."""
        arrays = {"vectors": self.vectors, "counts": self.counts,
                  "keys": np.frombuffer(json.dumps(self.index_to_key, ensure_ascii=True).encode(), dtype=np.uint8),
                  "meta": _json_array({"format": _SAVE_FORMAT, "kind": "KeyedVectors"})}
        _atomic_write(fname, lambda fh: np.savez(fh, **arrays))

    @classmethod
    def load(cls, fname) -> "KeyedVectors":
        arrays = _load_npz(fname, "KeyedVectors")
        return cls._from_arrays(arrays, "")

    @classmethod
    def _from_arrays(cls, arrays: dict, prefix: str) -> "KeyedVectors":
        vectors = arrays[prefix + "vectors"]
        keys = json.loads(arrays[prefix + "keys"].tobytes().decode())
        counts = arrays[prefix + "counts"]
        if vectors.ndim != 2 or len(keys) != vectors.shape[0] or len(counts) != len(keys):
            raise ValueError("saved vectors, keys and counts disagree in length: the file is corrupt")
        kv = cls(vectors.shape[1], 0)
        kv._set_vocab(keys, counts)
        kv.vectors = np.ascontiguousarray(vectors)
        return kv


def _as_list(x) -> list:
    if x is None:
        return []
    if isinstance(x, (str, np.ndarray, int, np.integer)) or (isinstance(x, tuple) and len(x) == 2):
        return [x]
    return list(x)


def _json_array(obj) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)


def _load_npz(fname, kind: str) -> dict:
    fname = os.fspath(fname)
    if not os.path.exists(fname):
        raise FileNotFoundError(f"No such file: {fname!r}")
    try:
        with np.load(fname, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(arrays["meta"].tobytes().decode())
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{fname}: not a pyfast {kind} file, or truncated/corrupt ({exc})") from None
    if meta.get("format") != _SAVE_FORMAT or meta.get("kind") != kind:
        raise ValueError(f"{fname}: not a pyfast {kind} file (format {meta.get('format')!r}, kind {meta.get('kind')!r})")
    arrays["meta"] = meta
    return arrays


# ================================================================================================================
# Word2Vec
# ================================================================================================================
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


class _Corpus:
    """A corpus as native training input: int32 ids (in-vocabulary tokens only), int64 sentence offsets."""

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
    With workers=1 the two schedules are the same. The schedule a call ran is in ``train_stats[i]["schedule"]``."""

    def __init__(self, sentences=None, corpus_file=None, vector_size=100, alpha=0.025, window=5, min_count=5,
                 max_vocab_size=None, sample=1e-3, seed=1, workers=3, min_alpha=0.0001, sg=0, hs=0, negative=5,
                 ns_exponent=0.75, cbow_mean=1, epochs=5, sorted_vocab=1, batch_words=10000, compute_loss=False,
                 callbacks=(), max_final_vocab=None, shrink_windows=True, *, shared_negatives=True,
                 alpha_schedule="auto", progress=False, null_word=0, trim_rule=None, hashfxn=None, comment=None):
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
        if self.hs:
            raise NotImplementedError("Word2Vec: hierarchical softmax (hs=1) is not implemented; use hs=0 with "
                                      "negative sampling (negative > 0)")
        if self.negative == 0:
            raise ValueError("Word2Vec: negative must be >= 1 (negative sampling is the only training objective; "
                             "hs=1 is not implemented)")
        if trim_rule is not None:
            raise NotImplementedError("Word2Vec: trim_rule is not supported")
        self.wv = KeyedVectors(self.vector_size)
        self.syn1neg = np.zeros((0, self.vector_size), dtype=np.float32)
        self.corpus_count = 0
        self.corpus_total_words = 0
        self.effective_min_count = self.min_count
        self.epochs_trained = 0        # global epoch index (keys the RNG streams of later train() calls)
        self.training_losses: list[float] = []
        self.running_training_loss = 0.0
        self.train_stats: list[dict] = []
        self._keep_prob = np.zeros(0, dtype=np.float32)
        self._noise_weights = np.zeros(0, dtype=np.float64)
        if sentences is not None and corpus_file is not None:
            raise TypeError("Word2Vec: pass either sentences or corpus_file, not both")
        if sentences is not None or corpus_file is not None:
            self.build_vocab(sentences, corpus_file=corpus_file)
            self.train(sentences, corpus_file=corpus_file, total_examples=self.corpus_count,
                       total_words=self.corpus_total_words, epochs=self.epochs, start_alpha=self.alpha,
                       end_alpha=self.min_alpha, compute_loss=self.compute_loss, callbacks=self.callbacks)

    # ---- vocabulary ------------------------------------------------------------------------------------------------
    def scan_vocab(self, corpus_iterable=None, corpus_file=None):
        """Count tokens. Returns (raw counts dict, total words, sentences)."""
        if corpus_file is not None:
            path = _check_corpus_file(corpus_file)
            words, counts, total, sentences = _native.cpu().w2v_count_file(path, self.max_vocab_size or 0,
                                                                           self.workers)
            counts = np.frombuffer(counts, dtype=np.int64)
            raw = dict(zip((_decode_key(w) for w in words), counts.tolist()))
            return raw, int(total), int(sentences)
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
                # word2vec.c's ReduceVocab: drop words seen at most min_reduce times, then raise the bar.
                while len(counter) > self.max_vocab_size:
                    counter = Counter({w: c for w, c in counter.items() if c > min_reduce})
                    min_reduce += 1
        return dict(counter), total, sentences

    def build_vocab(self, corpus_iterable=None, corpus_file=None, update=False, progress_per=10000, keep_raw_vocab=False,
                    trim_rule=None, **kwargs):
        """Count the corpus, keep words with count >= min_count (raised to fit max_final_vocab), sort by count,
        set up subsampling and the noise distribution, and initialise the vectors."""
        corpus_iterable = kwargs.pop("sentences", corpus_iterable)
        if kwargs:
            raise TypeError(f"build_vocab: unexpected arguments {sorted(kwargs)}")
        if update:
            raise NotImplementedError("build_vocab: update=True (online vocabulary growth) is not supported; "
                                      "build a new model")
        if corpus_iterable is not None and corpus_file is not None:
            raise TypeError("build_vocab: pass either sentences or corpus_file, not both")
        raw, total, sentences = self.scan_vocab(corpus_iterable, corpus_file)
        if total == 0:
            raise ValueError("Word2Vec: the corpus is empty (no tokens)")
        self.corpus_count = sentences
        self.corpus_total_words = total
        self.prepare_vocab(raw)
        self.init_weights()

    def build_vocab_from_freq(self, word_freq: dict, corpus_count=None, **_ignored):
        if not word_freq:
            raise ValueError("Word2Vec: empty word frequencies")
        self.corpus_count = int(corpus_count or 0)
        self.corpus_total_words = int(sum(word_freq.values()))
        self.prepare_vocab(dict(word_freq))
        self.init_weights()

    def prepare_vocab(self, raw: dict) -> None:
        min_count = self.min_count
        if self.max_final_vocab is not None and self.max_final_vocab < len(raw):
            # gensim's rule: raise min_count just past the count of the first word that does not fit.
            sorted_counts = sorted(raw.values(), reverse=True)
            min_count = max(min_count, sorted_counts[self.max_final_vocab] + 1)
        self.effective_min_count = min_count
        kept = [(w, c) for w, c in raw.items() if c >= min_count]
        if not kept:
            raise ValueError(f"Word2Vec: no word occurs at least min_count={min_count} times "
                             f"({len(raw)} distinct words); lower min_count")
        if self.sorted_vocab:
            kept.sort(key=lambda wc: -wc[1])  # stable: ties keep first-seen (or native byte) order
        keys = [w for w, _ in kept]
        counts = np.array([c for _, c in kept], dtype=np.int64)
        self.wv._set_vocab(keys, counts)
        # Subsampling (word2vec.c / gensim): keep an occurrence of a word with count c with probability
        # (sqrt(c / t) + 1) * t / c, t = sample * (retained words); capped at 1.
        retain_total = float(counts.sum())
        if not self.sample:
            threshold = retain_total
        elif self.sample < 1.0:
            threshold = self.sample * retain_total
        else:
            threshold = self.sample * (3 + math.sqrt(5)) / 2
        c = counts.astype(np.float64)
        keep = (np.sqrt(c / threshold) + 1.0) * (threshold / c)
        self._keep_prob = np.minimum(keep, 1.0).astype(np.float32)
        self._noise_weights = np.power(c, self.ns_exponent)

    def init_weights(self) -> None:
        """syn0 uniform in [-1/d, 1/d) (gensim 4's range; word2vec.c's is half as wide) from Philox keyed by
        (seed, element), syn1neg zero. Reproducible from the seed alone."""
        V, d = len(self.wv.index_to_key), self.vector_size
        draws = _rng.uniform(V * d, self.seed, offset=0, stream=_INIT_STREAM).numpy()
        self.wv.vectors = ((2.0 * draws - 1.0) / d).astype(np.float32).reshape(V, d)
        self.wv._norms = None
        self.syn1neg = np.zeros((V, d), dtype=np.float32)
        self.epochs_trained = 0

    # ---- corpus ----------------------------------------------------------------------------------------------------
    def _load_corpus(self, corpus_iterable, corpus_file) -> _Corpus:
        if corpus_file is not None:
            path = _check_corpus_file(corpus_file)
            vocab = [_encode_key(k) for k in self.wv.index_to_key]
            ids, offsets, raw = _native.cpu().w2v_read_file(path, vocab, self.workers)
            return _Corpus(np.frombuffer(ids, dtype=np.int32), np.frombuffer(offsets, dtype=np.int64), raw)
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
        return _Corpus(ids, offsets, raw)

    # ---- training --------------------------------------------------------------------------------------------------
    def train(self, corpus_iterable=None, corpus_file=None, total_examples=None, total_words=None, epochs=None,
              start_alpha=None, end_alpha=None, word_count=0, queue_factor=2, report_delay=1.0, compute_loss=False,
              callbacks=(), **kwargs):
        """Train for ``epochs`` epochs (continues from the current weights). The learning rate decays from
        start_alpha (default alpha) to end_alpha (default min_alpha) over all epochs of this call, by the model's
        ``alpha_schedule`` (see the class docstring; "auto" picks by whether corpus_file is given). Returns
        (trained_words, raw_words) summed over the epochs, like gensim."""
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
        corpus = self._load_corpus(corpus_iterable, corpus_file)
        if len(corpus.ids) == 0:
            raise ValueError("Word2Vec.train: no in-vocabulary word in the corpus")
        schedule = _resolve_schedule(self.alpha_schedule, corpus_file)
        per_worker = _ALPHA_SCHEDULES[schedule]
        V, d = self.wv.vectors.shape
        if self.syn1neg.shape != (V, d):
            raise RuntimeError("Word2Vec.train: syn1neg does not match the vocabulary (corrupt model)")
        self.wv.vectors = np.ascontiguousarray(self.wv.vectors, dtype=np.float32)
        self.syn1neg = np.ascontiguousarray(self.syn1neg, dtype=np.float32)
        keep_prob = np.ascontiguousarray(self._keep_prob, dtype=np.float32)
        noise = np.ascontiguousarray(self._noise_weights, dtype=np.float64)
        words_done = np.zeros(1, dtype=np.int64)  # the native workers add to it; the progress thread reads it
        total = len(corpus.ids) * epochs
        for cb in callbacks:
            _call(cb, "on_train_begin", self)
        trained = raw = 0
        self.training_losses = []
        for epoch in range(epochs):
            for cb in callbacks:
                _call(cb, "on_epoch_begin", self)
            t0 = time.perf_counter()
            reporter = _Progress(self.progress, words_done, total, epoch, epochs, len(corpus.ids), start_alpha,
                                 end_alpha, self.workers if per_worker else 0)
            try:
                loss, kept, pairs, alpha_end = _native.cpu().w2v_train_epoch(
                    self.wv.vectors.ctypes.data, self.syn1neg.ctypes.data, V, d, corpus.ids.ctypes.data,
                    len(corpus.ids), corpus.offsets.ctypes.data, corpus.n_sentences, keep_prob.ctypes.data,
                    noise.ctypes.data, self.sg, self.cbow_mean, self.negative, self.window, int(self.shrink_windows),
                    int(self.shared_negatives), self.workers, int(self.compute_loss), start_alpha, end_alpha, total,
                    words_done.ctypes.data, self.seed, self.epochs_trained,
                    per_worker)
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
                                     "alpha_end": float(alpha_end), "schedule": schedule,
                                     "words_per_s": corpus.raw_words / seconds if seconds > 0 else float("inf")})
            reporter.epoch_done(seconds, corpus.raw_words, float(loss) if self.compute_loss else None)
            self.wv._norms = None
            for cb in callbacks:
                _call(cb, "on_epoch_end", self)
        for cb in callbacks:
            _call(cb, "on_train_end", self)
        return trained, raw

    def get_latest_training_loss(self) -> float:
        """Loss of the latest epoch (sum of -log sigmoid over every positive and negative example, float64 over
        all workers); 0.0 unless compute_loss=True."""
        return self.running_training_loss

    # ---- save / load -----------------------------------------------------------------------------------------------
    _PARAMS = ("vector_size", "alpha", "window", "min_count", "max_vocab_size", "sample", "seed", "workers",
               "min_alpha", "sg", "hs", "negative", "ns_exponent", "cbow_mean", "epochs", "sorted_vocab",
               "batch_words", "compute_loss", "max_final_vocab", "shrink_windows", "shared_negatives",
               "alpha_schedule", "corpus_count", "corpus_total_words", "effective_min_count", "epochs_trained")

    def save(self, fname, **_ignored) -> None:
        """Save everything needed to continue training (vectors, syn1neg, vocabulary with counts, settings, the
        epoch counter that keys the RNG): one uncompressed .npz, written atomically, no pickle."""
        meta = {"format": _SAVE_FORMAT, "kind": "Word2Vec", "params": {k: getattr(self, k) for k in self._PARAMS},
                "training_losses": self.training_losses}
        arrays = {"vectors": self.wv.vectors, "counts": self.wv.counts, "syn1neg": self.syn1neg,
                  "keys": np.frombuffer(json.dumps(self.wv.index_to_key, ensure_ascii=True).encode(), dtype=np.uint8),
                  "meta": _json_array(meta)}
        _atomic_write(fname, lambda fh: np.savez(fh, **arrays))

    @classmethod
    def load(cls, fname, **_ignored) -> "Word2Vec":
        arrays = _load_npz(fname, "Word2Vec")
        meta = arrays["meta"]
        params = dict(meta["params"])
        model = cls.__new__(cls)
        ctor = {k: params[k] for k in ("vector_size", "alpha", "window", "min_count", "max_vocab_size", "sample",
                                      "seed", "workers", "min_alpha", "sg", "hs", "negative", "ns_exponent",
                                      "cbow_mean", "epochs", "sorted_vocab", "batch_words", "compute_loss",
                                      "max_final_vocab", "shrink_windows")}
        model.__init__(**ctor, shared_negatives=params["shared_negatives"],
                       alpha_schedule=params.get("alpha_schedule", "linear"))  # files saved before the option
        model.wv = KeyedVectors._from_arrays(arrays, "")
        if arrays["syn1neg"].shape != model.wv.vectors.shape or model.wv.vector_size != model.vector_size:
            raise ValueError(f"{fname}: syn1neg and vectors disagree in shape: the file is corrupt")
        model.syn1neg = np.ascontiguousarray(arrays["syn1neg"], dtype=np.float32)
        model.corpus_count = params["corpus_count"]
        model.corpus_total_words = params["corpus_total_words"]
        model.effective_min_count = params["effective_min_count"]
        model.epochs_trained = params["epochs_trained"]
        model.training_losses = list(meta.get("training_losses", []))
        model.running_training_loss = model.training_losses[-1] if model.training_losses else 0.0
        # Subsampling and noise depend only on the counts: rebuild them exactly as build_vocab did.
        keys, counts, vectors = model.wv.index_to_key, model.wv.counts, model.wv.vectors
        model.prepare_vocab_from_counts(keys, counts)
        model.wv.vectors = vectors
        return model

    def prepare_vocab_from_counts(self, keys, counts) -> None:
        saved_min, saved_final, saved_sorted = self.min_count, self.max_final_vocab, self.sorted_vocab
        self.min_count, self.max_final_vocab, self.sorted_vocab = 0, None, 0
        try:
            self.prepare_vocab(dict(zip(keys, np.asarray(counts).tolist())))
        finally:
            self.min_count, self.max_final_vocab, self.sorted_vocab = saved_min, saved_final, saved_sorted

    def __str__(self) -> str:
        return f"Word2Vec<vocab={len(self.wv)}, vector_size={self.vector_size}, alpha={self.alpha}>"


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
        msg = f"word2vec: epoch {self.epoch + 1}/{self.epochs} done in {seconds:.2f}s, {raw_words / seconds / 1e3:.0f}k words/s"
        if loss is not None:
            msg += f", loss {loss:.6g}"
        print(msg, file=sys.stderr)


__all__ = ["Word2Vec", "KeyedVectors"]
