"""Word vectors with gensim's KeyedVectors interface (the part people use): lookup, similarity, analogy and
word-pair evaluation, word2vec.c's text / binary formats, and pyfast's own .npz save / load (no pickle). Trained by
pyfast.word2vec.Word2Vec, which also uses the file helpers here (atomic writes, the .npz format).
"""
from __future__ import annotations

import io
import itertools
import json
import logging
import os
import zipfile

import numpy as np

from ._io import atomic_write  # re-exported: word2vec.py and cli.py save through it

logger = logging.getLogger(__name__)

SAVE_FORMAT = "pyfast.word2vec/1"  # the format tag of pyfast's .npz files (KeyedVectors and Word2Vec)


def decode_key(raw: bytes) -> str:
    # Corpus bytes are opaque to the native reader; surrogateescape keeps invalid UTF-8 lossless and unique.
    return raw.decode("utf-8", "surrogateescape")


def encode_key(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


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
        self.norms = None

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

    def __setitem__(self, keys, weights):
        """``kv[key] = vector`` / ``kv[keys] = vectors``: replace known keys' vectors, append new keys."""
        if isinstance(keys, (str, int, np.integer)):
            keys, weights = [keys], np.asarray(weights).reshape(1, -1)
        self.add_vectors(keys, weights, replace=True)

    @property
    def expandos(self) -> dict:
        """gensim's per-key attribute arrays; pyfast stores one, ``count``."""
        return {"count": self.counts}

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

    def set_vecattr(self, key, attr: str, value) -> None:
        if attr != "count":
            raise KeyError(f"KeyedVectors: unknown attribute {attr!r} (only 'count' is stored)")
        self.counts[self.get_index(key)] = int(value)

    def add_vectors(self, keys, weights, extras=None, replace=False) -> None:
        """Append vectors for new keys (count 0, or ``extras={"count": [...]}``); keys already present keep their
        vectors unless ``replace=True``. One reallocation per call: add many keys at once, not one by one."""
        if isinstance(keys, (str, int, np.integer)):
            keys, weights = [keys], np.asarray(weights).reshape(1, -1)
        keys = list(keys)
        if not keys:
            return
        weights = np.asarray(weights).reshape(len(keys), -1)
        if weights.shape[1] != self.vector_size:
            raise ValueError(f"add_vectors: vectors have {weights.shape[1]} values, this KeyedVectors has "
                             f"vector_size={self.vector_size}")
        extras = dict(extras or {})
        counts = np.asarray(extras.pop("count", np.zeros(len(keys))), dtype=np.int64).reshape(len(keys))
        if extras:
            raise KeyError(f"add_vectors: unknown attributes {sorted(extras)} (only 'count' is stored)")
        new: dict = {}  # new key -> position of its last vector in this call (a repeated key: the last one wins)
        for i, k in enumerate(keys):
            index = self.key_to_index.get(k)
            if index is None:
                new[k] = i
            elif replace:
                self.vectors[index] = weights[i]
                if counts[i]:
                    self.counts[index] = counts[i]
        if new:
            at = list(new.values())
            dtype = self.vectors.dtype
            self.vectors = np.vstack([self.vectors, weights[at].astype(dtype)])
            self.counts = np.concatenate([self.counts, counts[at]])
            for k in new:
                self.key_to_index[k] = len(self.index_to_key)
                self.index_to_key.append(k)
        self.norms = None

    def add_vector(self, key, vector) -> int:
        """Add (or replace) one key's vector; returns its index."""
        self.add_vectors([key], np.asarray(vector).reshape(1, -1), replace=True)
        return self.key_to_index[key]

    def resize_vectors(self, seed=0) -> None:
        """Make ``vectors`` as long as ``index_to_key``: rows past the end get small random values (gensim's
        range, [-1/d, 1/d)), rows past the vocabulary are dropped."""
        n, have = len(self.index_to_key), self.vectors.shape[0]
        if have < n:
            rng = np.random.default_rng(seed)
            extra = ((rng.random((n - have, self.vector_size)) * 2 - 1) / self.vector_size).astype(self.vectors.dtype)
            self.vectors = np.vstack([self.vectors, extra])
        self.vectors = self.vectors[:n]
        self.counts = np.concatenate([self.counts, np.zeros(max(0, n - len(self.counts)), np.int64)])[:n]
        self.norms = None

    def vectors_for_all(self, keys, allow_inference=True, copy_vecattrs=False) -> "KeyedVectors":
        """A new KeyedVectors with the vectors of those ``keys`` that are present (first occurrence order).
        ``allow_inference`` is for gensim's FastText (vectors of unknown words from n-grams): no effect here."""
        keys = [k for k in dict.fromkeys(keys) if k in self.key_to_index]
        at = [self.key_to_index[k] for k in keys]
        kv = type(self)(self.vector_size, 0, dtype=self.vectors.dtype)
        kv.set_vocab(keys, self.counts[at] if copy_vecattrs else np.zeros(len(keys), np.int64))
        kv.vectors = self.vectors[at].copy()
        return kv

    def unit_normalize_all(self) -> None:
        """Scale every vector to unit length, in place (the raw vectors are gone)."""
        self.vectors = self.vectors / self._get_norms()[:, None].astype(self.vectors.dtype)
        self.norms = np.ones(len(self.vectors), dtype=np.float32)

    def set_vocab(self, keys: list[str], counts) -> None:
        self.index_to_key = list(keys)
        self.key_to_index = {k: i for i, k in enumerate(self.index_to_key)}
        if len(self.key_to_index) != len(self.index_to_key):
            raise ValueError("KeyedVectors: duplicate keys")
        self.counts = np.asarray(counts, dtype=np.int64).copy() if counts is not None else np.zeros(len(keys), np.int64)
        self.norms = None

    # ---- similarity ----------------------------------------------------------------------------------------------
    def _get_norms(self) -> np.ndarray:
        if self.norms is None or self.norms.shape[0] != self.vectors.shape[0]:
            norms = np.linalg.norm(self.vectors, axis=1)
            norms[norms == 0] = 1.0  # an all-zero vector stays zero instead of becoming NaN
            self.norms = norms.astype(np.float32)
        return self.norms

    def fill_norms(self, force: bool = False) -> None:
        if force:
            self.norms = None
        self._get_norms()

    def get_normed_vectors(self) -> np.ndarray:
        return self.vectors / self._get_norms()[:, None]

    def similarity(self, w1, w2) -> float:
        return _cosine(self.get_vector(w1), self.get_vector(w2))

    def n_similarity(self, ws1, ws2) -> float:
        """Cosine similarity of the means of two sets of (raw) vectors, gensim's definition; one key each gives
        exactly ``similarity``."""
        if not len(ws1) or not len(ws2):
            raise ZeroDivisionError("At least one of the passed lists is empty.")
        a = np.mean([self.get_vector(k) for k in ws1], axis=0)
        b = np.mean([self.get_vector(k) for k in ws2], axis=0)
        return _cosine(a, b)

    def distance(self, w1, w2) -> float:
        """Cosine distance, 1 - similarity."""
        return 1.0 - self.similarity(w1, w2)

    @staticmethod
    def cosine_similarities(vector_1, vectors_all) -> np.ndarray:
        """Cosine similarity of one vector (d,) with each row of (n, d)."""
        vectors_all = np.asarray(vectors_all)
        norms = np.linalg.norm(vectors_all, axis=1) * np.linalg.norm(vector_1)
        return vectors_all @ vector_1 / np.where(norms == 0, 1.0, norms)

    def distances(self, word_or_vector, other_words=()) -> np.ndarray:
        """Cosine distances from a key (or vector) to ``other_words``, or to every key when none are given."""
        query = self.get_vector(word_or_vector) if not isinstance(word_or_vector, np.ndarray) else word_or_vector
        others = self.vectors if not len(other_words) else self.vectors[[self.get_index(k) for k in other_words]]
        return 1.0 - self.cosine_similarities(query, others)

    def closer_than(self, key1, key2) -> list:
        """Keys closer to ``key1`` than ``key2`` is (``key1`` itself left out), in index order."""
        dists = self.distances(key1)
        i1, i2 = self.get_index(key1), self.get_index(key2)
        return [self.index_to_key[i] for i in np.flatnonzero(dists < dists[i2]) if i != i1]

    words_closer_than = closer_than

    def rank(self, key1, key2) -> int:
        """The rank of ``key2`` among the neighbours of ``key1`` (1 = nearest)."""
        return len(self.closer_than(key1, key2)) + 1

    def most_similar_to_given(self, key1, keys_list):
        """The key of ``keys_list`` most similar to ``key1``."""
        return keys_list[int(np.argmax([self.similarity(key1, k) for k in keys_list]))]

    def relative_cosine_similarity(self, wa, wb, topn=10) -> float:
        """Artetxe et al.'s relative cosine similarity: similarity(wa, wb) over the sum of wa's top-n
        similarities."""
        top = self.similar_by_word(wa, topn=topn)
        return self.similarity(wa, wb) / sum(sim for _, sim in top)

    def get_mean_vector(self, keys, weights=None, pre_normalize=True, post_normalize=False, ignore_missing=True):
        """Weighted mean of keys' vectors (unit vectors with ``pre_normalize``) or of given vectors, divided by
        the sum of |weights| of the entries used; missing keys are skipped (``ignore_missing``) or raise
        KeyError."""
        if len(keys) == 0:
            raise ValueError("cannot compute mean with no input")
        weights = np.ones(len(keys)) if weights is None else np.asarray(weights, dtype=np.float64)
        if weights.shape != (len(keys),):
            raise ValueError("keys and weights array must have same number of elements")
        total = 0.0
        mean = np.zeros(self.vector_size, dtype=np.float64)
        for key, w in zip(keys, weights):
            if isinstance(key, np.ndarray):
                vec = key
            elif key in self.key_to_index:
                vec = self.get_vector(key, norm=pre_normalize)
            elif ignore_missing:
                continue
            else:
                raise KeyError(f"Key '{key}' not present in vocabulary")
            mean += w * vec
            total += abs(w)
        if total > 0:
            mean /= total
        if post_normalize:
            mean = _unit(mean)
        return mean.astype(self.vectors.dtype if self.vectors.dtype.kind == "f" else np.float32)

    def most_similar_cosmul(self, positive=None, negative=None, topn=10, restrict_vocab=None):
        """3CosMul (Levy & Goldberg 2014): rank keys by the product of (1 + cos) / 2 to each positive over the
        product for each negative (+1e-6); query keys are left out. ``topn=None`` returns every score."""
        if isinstance(topn, (int, np.integer)) and topn < 1:
            return []
        positive, negative = _as_list(positive), _as_list(negative)
        query_indices = set()
        terms = []
        for items in (positive, negative):
            vecs = []
            for item in items:
                if isinstance(item, np.ndarray):
                    vecs.append(_unit(item.astype(np.float32)))
                else:
                    query_indices.add(self.get_index(item))
                    vecs.append(self.get_vector(item, norm=True))
            terms.append(vecs)
        if not terms[0] and not terms[1]:
            raise ValueError("cannot compute similarity with no input")
        limit = len(self.vectors) if restrict_vocab is None else min(int(restrict_vocab), len(self.vectors))
        normed = self.vectors[:limit] / self._get_norms()[:limit, None]
        pos = np.prod([(1 + normed @ v) / 2 for v in terms[0]], axis=0) if terms[0] else np.ones(limit)
        neg = np.prod([(1 + normed @ v) / 2 for v in terms[1]], axis=0) if terms[1] else np.ones(limit)
        dists = pos / (neg + 1e-6)
        if topn is None:
            return dists
        return self._top(dists, topn, query_indices, 0)

    def _top(self, dists, topn, skip, offset) -> list:
        order = np.argsort(-dists, kind="stable")[: topn + len(skip)]
        out = []
        for i in order:
            index = int(i) + offset
            if index in skip:
                continue
            out.append((self.index_to_key[index], float(dists[i])))
            if len(out) == topn:
                break
        return out

    def most_similar(self, positive=None, negative=None, topn=10, clip_start=0, clip_end=None, restrict_vocab=None,
                     indexer=None):
        """Top-N keys by cosine similarity to the mean of the unit vectors of ``positive`` minus ``negative``
        (gensim's 3CosAdd); the query keys themselves are left out. Keys may be strings, indices, vectors or
        ``(key, weight)`` pairs. ``topn=None`` returns the similarity to every key."""
        if isinstance(topn, (int, np.integer)) and topn < 1:
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
        return self._top(dists, topn, query_indices, clip_start)

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
        if similarity_function not in ("most_similar", "most_similar_cosmul"):
            raise ValueError("evaluate_word_analogies: similarity_function must be 'most_similar' (3CosAdd) or "
                             f"'most_similar_cosmul' (3CosMul), got {similarity_function!r}")
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
            if similarity_function == "most_similar":
                query = (normed[ib] + normed[ic] - normed[ia]) / 3.0
                query /= np.maximum(np.linalg.norm(query, axis=1, keepdims=True), 1e-30)
                sims = query @ normed.T
            else:  # 3CosMul, as most_similar_cosmul(positive=[b, c], negative=[a])
                sims = ((1 + normed[ib] @ normed.T) / 2) * ((1 + normed[ic] @ normed.T) / 2)
                sims /= (1 + normed[ia] @ normed.T) / 2 + 1e-6
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
            raise ValueError(f"No valid similarity judgements found in {pairs}: either invalid format or all are "
                             "out-of-vocabulary")
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
                    fh.write(encode_key(prefix + key) + b" " + row.tobytes() + b"\n")
            else:
                fmt = " ".join(["%.9g"] * d)
                buf = io.StringIO()
                for key, row in zip(keys, vectors):
                    buf.write(prefix + key + " " + fmt % tuple(row.tolist()) + "\n")
                fh.write(buf.getvalue().encode("utf-8", "surrogateescape"))

        atomic_write(fname, write)
        if fvocab is not None:
            def write_vocab(fh):
                for key, count in zip(keys, self.counts[:n]):
                    fh.write(encode_key(prefix + key) + f" {int(count)}\n".encode())
            atomic_write(fvocab, write_vocab)

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
            data = (header + "\n").encode() + b"".join(ln.encode(encoding, unicode_errors) + b"\n" for ln in lines)
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
        kv.set_vocab(keys, counts)
        kv.vectors = vectors.astype(datatype, copy=False)
        return kv

    # ---- native save / load --------------------------------------------------------------------------------------
    def save(self, fname) -> None:
        """Save keys, counts and vectors (an uncompressed .npz, written atomically; no pickle)."""
        arrays = {"vectors": self.vectors, "counts": self.counts,
                  "keys": np.frombuffer(json.dumps(self.index_to_key, ensure_ascii=True).encode(), dtype=np.uint8),
                  "meta": json_array({"format": SAVE_FORMAT, "kind": "KeyedVectors"})}
        atomic_write(fname, lambda fh: np.savez(fh, **arrays))

    @classmethod
    def load(cls, fname, mmap=None) -> "KeyedVectors":
        """Load a file written by ``save``; KeyedVectors pickled by gensim's ``save`` are converted (needs gensim
        installed, and runs gensim's unpickler: load only files you trust)."""
        if not is_npz(fname):
            return cls.from_gensim(load_gensim_pickle(fname, "KeyedVectors", mmap))
        arrays = load_npz(fname, "KeyedVectors")
        return cls.from_arrays(arrays, "")

    @classmethod
    def from_gensim(cls, gkv) -> "KeyedVectors":
        """Copy a gensim KeyedVectors (keys in index order, vectors, counts where gensim kept them)."""
        keys = list(gkv.index_to_key)
        vectors = np.asarray(gkv.vectors)
        counts = getattr(gkv, "expandos", {}).get("count")
        if counts is None or len(counts) != len(keys):
            counts = np.zeros(len(keys), dtype=np.int64)
        kv = cls(vectors.shape[1], 0, dtype=vectors.dtype)
        kv.set_vocab(keys, np.asarray(counts, dtype=np.int64))
        kv.vectors = np.array(vectors)  # a copy: gensim may hand out a read-only mmap
        return kv

    @classmethod
    def from_arrays(cls, arrays: dict, prefix: str) -> "KeyedVectors":
        vectors = arrays[prefix + "vectors"]
        keys = json.loads(arrays[prefix + "keys"].tobytes().decode())
        counts = arrays[prefix + "counts"]
        if vectors.ndim != 2 or len(keys) != vectors.shape[0] or len(counts) != len(keys):
            raise ValueError("saved vectors, keys and counts disagree in length: the file is corrupt")
        kv = cls(vectors.shape[1], 0)
        kv.set_vocab(keys, counts)
        kv.vectors = np.ascontiguousarray(vectors)
        return kv


def _cosine(a, b) -> float:
    """Cosine in float64, rounded to float32 (the vectors' precision): a key with itself gives exactly 1.0, so
    distance(w, w) is exactly 0 (gensim's tests rely on it)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    return float(np.float32(np.dot(a, b) / norms)) if norms > 0 else 0.0


def _unit(v) -> np.ndarray:
    norm = np.linalg.norm(v)
    return v / norm if norm > 0 else v


def _as_list(x) -> list:
    if x is None:
        return []
    if isinstance(x, np.ndarray) and x.ndim == 2:  # a matrix of query vectors, one per row
        return list(x)
    if isinstance(x, (str, np.ndarray, int, np.integer)) or (isinstance(x, tuple) and len(x) == 2):
        return [x]
    return list(x)


def is_npz(fname) -> bool:
    """True for a zip file (pyfast's .npz); anything else (a gensim pickle) is not."""
    fname = os.fspath(fname)
    if not os.path.exists(fname):
        raise FileNotFoundError(f"No such file: {fname!r}")
    return zipfile.is_zipfile(fname)


def load_gensim_pickle(fname, kind: str, mmap=None):
    """A model pickled by gensim's ``save`` (``kind``: "Word2Vec" or "KeyedVectors"), loaded by gensim itself,
    which knows every old version's layout. Without gensim: a ValueError that says how to convert."""
    convert = ("in an environment with gensim, save the vectors in word2vec format: "
               "gensim_model.wv.save_word2vec_format('vec.bin', binary=True) (or kv.save_word2vec_format for "
               "KeyedVectors), then load them with pyfast.KeyedVectors.load_word2vec_format('vec.bin', binary=True)")
    try:
        import gensim.models
    except ImportError:
        raise ValueError(f"{fname}: not a pyfast {kind} file; if gensim saved it, install gensim to load it here, "
                         f"or {convert}") from None
    loader = gensim.models.Word2Vec if kind == "Word2Vec" else gensim.models.KeyedVectors
    try:
        obj = loader.load(os.fspath(fname), mmap=mmap)
    except Exception as exc:
        raise ValueError(f"{fname}: not a pyfast {kind} file, and gensim could not load it either "
                         f"({type(exc).__name__}: {exc})") from exc
    if kind == "Word2Vec" and not hasattr(obj, "wv"):
        raise ValueError(f"{fname}: gensim loaded a {type(obj).__name__}, not a Word2Vec model; "
                         f"load it with KeyedVectors.load")
    if kind == "KeyedVectors" and hasattr(obj, "wv"):
        obj = obj.wv  # a whole gensim model: its vectors
    return obj


def json_array(obj) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)


def load_npz(fname, kind: str) -> dict:
    fname = os.fspath(fname)
    if not os.path.exists(fname):
        raise FileNotFoundError(f"No such file: {fname!r}")
    try:
        with np.load(fname, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(arrays["meta"].tobytes().decode())
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, ValueError, UnicodeDecodeError) as exc:  # ValueError: a
        # garbled .npy header (numpy's own message names no file); json.JSONDecodeError is one too
        raise ValueError(f"{fname}: not a pyfast {kind} file, or truncated/corrupt ({exc})") from None
    if meta.get("format") != SAVE_FORMAT or meta.get("kind") != kind:
        raise ValueError(f"{fname}: not a pyfast {kind} file (format {meta.get('format')!r}, "
                         f"kind {meta.get('kind')!r})")
    arrays["meta"] = meta
    return arrays


__all__ = ["KeyedVectors", "SAVE_FORMAT", "atomic_write", "decode_key", "encode_key", "is_npz", "json_array",
           "load_gensim_pickle", "load_npz"]
