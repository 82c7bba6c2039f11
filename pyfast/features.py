"""Fixed-size features from a pretrained encoder, for linear probes and classic ML: `extract_features` and the
scikit-learn-compatible transformer `FeatureExtractor` (fit / transform, usable inside sklearn.pipeline.Pipeline).

Encoders: pyfast BERT (BertModel, or any head model holding one as `.bert`), pyfast GPT (GPTModel, or GPTLMHeadModel
via `.transformer`), and word vectors (pyfast or gensim Word2Vec / KeyedVectors). Transformers run batched, in eval
mode under torch.inference_mode, on the model's device; rows are sorted by length so a batch pads little, and the
pooling reads only real tokens (masked mean, the [CLS] position, or the last real token), accumulated in float32
whatever the model's dtype. Word vectors: the mean of the in-vocabulary words' vectors (out-of-vocabulary words
skipped, zeros when none is known). The output does not depend on batch_size beyond float rounding.

sklearn is never imported here at import time; FeatureExtractor implements its estimator protocol (get_params /
set_params, parameters stored untouched by __init__, __sklearn_tags__ built lazily), so clone() and Pipeline work.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch

from .models.training import pad_batch
from .nn.pooling import mean_pooling

__all__ = ["extract_features", "FeatureExtractor", "POOLINGS"]

POOLINGS = ("mean", "cls", "last")
# Default word split for word vectors: lower-cased runs of letters/digits with an inner apostrophe kept ("don't"),
# the same words pyfast.demo.corpus.word_sentences trains word2vec on.
_WORD_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


# ---- what kind of encoder ------------------------------------------------------------------------------------
class _Encoder:
    """kind: "bert" | "gpt" | "vectors"; module: the nn.Module to run (or the KeyedVectors); dim: feature size."""

    def __init__(self, kind: str, module: Any, dim: int, max_positions: int | None = None, pad_id: int = 0):
        self.kind, self.module, self.dim, self.max_positions, self.pad_id = kind, module, dim, max_positions, pad_id


def _resolve(model, who: str) -> _Encoder:
    from .models.bert import BertModel
    from .models.gpt import GPTModel

    for enc in (model, getattr(model, "bert", None), getattr(model, "transformer", None)):
        if isinstance(enc, BertModel):
            return _Encoder("bert", enc, enc.config.hidden_size, enc.config.max_position_embeddings,
                            enc.config.pad_token_id)
        if isinstance(enc, GPTModel):
            pad = enc.config.pad_token_id
            return _Encoder("gpt", enc, enc.config.n_embd, enc.config.n_positions, 0 if pad is None else pad)
    vectors = getattr(model, "wv", model)  # Word2Vec -> its KeyedVectors
    if hasattr(vectors, "key_to_index") and hasattr(vectors, "vectors"):
        return _Encoder("vectors", vectors, int(np.asarray(vectors.vectors).shape[1]))
    raise TypeError(f"{who}: model must be a pyfast BERT or GPT model (or a head model holding one as .bert / "
                    f".transformer), a Word2Vec or a KeyedVectors; got {type(model).__name__}")


def _check_pooling(enc: _Encoder, pooling: str, who: str) -> None:
    if pooling not in POOLINGS:
        raise ValueError(f"{who}: pooling must be one of {POOLINGS}, got {pooling!r}")
    if enc.kind == "gpt" and pooling == "cls":
        raise ValueError(f"{who}: pooling='cls' needs a bidirectional encoder; a GPT's first position sees only "
                         "itself. Use pooling='mean' or 'last' (the last token has read the whole text)")
    if enc.kind == "vectors" and pooling != "mean":
        raise ValueError(f"{who}: word vectors are pooled by their mean only, got pooling={pooling!r}")


# ---- inputs -> lists ---------------------------------------------------------------------------------------------
def _as_list(inputs, who: str) -> list:
    """Texts / token lists / id rows as a Python list; 2-D id tensors and tokenizer dicts are handled by the caller."""
    if isinstance(inputs, str):
        raise TypeError(f"{who}: inputs must be a sequence of texts or token lists, got one str (wrap it in a list)")
    if isinstance(inputs, np.ndarray):
        if inputs.ndim == 2 and inputs.shape[1] == 1 and inputs.dtype.kind in "OUS":  # a one-column frame of texts
            inputs = inputs[:, 0]
        return inputs.tolist()
    try:
        return list(inputs)
    except TypeError:
        raise TypeError(f"{who}: inputs must be a sequence of texts or token lists, got {type(inputs).__name__}") \
            from None


def _token_id_rows(inputs, tokenizer, attention_mask, max_len: int, who: str) -> list[list[int]]:
    """Any accepted transformer input -> one list of token ids per row, padding removed (rows are re-padded later)."""
    if hasattr(inputs, "keys") and "input_ids" in inputs:  # a tokenizer's output (dict or HF BatchEncoding)
        if attention_mask is None:
            attention_mask = inputs.get("attention_mask")
        inputs = inputs["input_ids"]
    numeric = isinstance(inputs, torch.Tensor) or (isinstance(inputs, np.ndarray) and inputs.dtype.kind not in "OUS")
    if numeric and np.ndim(inputs) != 2:
        raise ValueError(f"{who}: a tensor of token ids must be 2-D (rows, length), got shape "
                         f"{tuple(np.shape(inputs))}")
    if numeric:
        ids = torch.as_tensor(inputs)
        if ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise TypeError(f"{who}: token ids must be integers, got {ids.dtype}")
        if attention_mask is None:
            return ids.tolist()
        mask = torch.as_tensor(attention_mask)
        if tuple(mask.shape) != tuple(ids.shape):
            raise ValueError(f"{who}: attention_mask shape {tuple(mask.shape)} != input_ids shape {tuple(ids.shape)}")
        return [row[m.bool()].tolist() for row, m in zip(ids, mask)]
    rows = _as_list(inputs, who)
    if attention_mask is not None:
        masks = [list(m) for m in attention_mask]
        if len(masks) != len(rows) or any(len(m) != len(r) for m, r in zip(masks, rows)):
            raise ValueError(f"{who}: attention_mask must have one entry per token of input_ids")
        rows = [[t for t, m in zip(r, ms) if m] for r, ms in zip(rows, masks)]
    if rows and all(isinstance(r, str) for r in rows):
        if tokenizer is None:
            raise ValueError(f"{who}: texts need a tokenizer (e.g. pyfast.models.WordPieceTokenizer), or pass "
                             "token ids")
        # Truncated to the model's positions; pyfast's and HF's tokenizers both keep the closing [SEP].
        return [list(r) for r in tokenizer(rows, truncation=True, max_length=max_len)["input_ids"]]
    out = []
    for i, r in enumerate(rows):
        if not isinstance(r, (str, list, tuple, np.ndarray, torch.Tensor)):
            raise TypeError(f"{who}: inputs must be texts or token-id sequences (one per row); row {i} is "
                            f"{type(r).__name__}")
        if isinstance(r, str) or not all(isinstance(t, (int, np.integer)) or
                                         (isinstance(t, torch.Tensor) and t.dim() == 0 and not t.is_floating_point())
                                         for t in r):
            raise TypeError(f"{who}: inputs must be all texts or all token-id sequences; row {i} is "
                            f"{type(r).__name__}{'' if isinstance(r, str) else ' with non-integer entries'}")
        out.append([int(t) for t in r])
    return out


def _word_rows(inputs, tokenizer, who: str) -> list[list[str]]:
    rows = _as_list(inputs, who)
    out = []
    for i, r in enumerate(rows):
        if isinstance(r, str):
            if tokenizer is None:
                out.append(_WORD_RE.findall(r.lower()))
            elif hasattr(tokenizer, "tokenize"):
                out.append(list(tokenizer.tokenize(r)))
            else:
                out.append(list(tokenizer(r)))
        elif all(isinstance(t, str) for t in r):
            out.append(list(r))
        else:
            raise TypeError(f"{who}: word vectors take texts or lists of words; row {i} is {type(r).__name__}")
    return out


# ---- the extraction ----------------------------------------------------------------------------------------------
def extract_features(model, inputs, *, tokenizer=None, pooling: str = "mean", batch_size: int = 32,
                     max_length: int | None = None, attention_mask=None, progress: bool = False) -> torch.Tensor:
    """-> float32 CPU tensor (N, dim): one feature vector per input row.

    model: pyfast BERT / GPT (or a head model holding one), or Word2Vec / KeyedVectors (pyfast or gensim).
    inputs: a list of texts (with `tokenizer`: pyfast's WordPieceTokenizer or an HF tokenizer; for word vectors the
    tokenizer is optional, a callable or an object with .tokenize, else lower-cased words), a list of token-id lists
    (or of word lists, for word vectors), a 2-D id tensor / array with an optional `attention_mask`, or a
    tokenizer's output dict. pooling: "mean" (masked mean over real tokens), "cls" (first position; BERT only) or
    "last" (last real token). max_length: truncate texts to this many tokens (default: the model's positions).
    progress: a progress bar over the batches (tqdm when installed).
    """
    who = "extract_features"
    enc = _resolve(model, who)
    _check_pooling(enc, pooling, who)
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"{who}: batch_size must be an int >= 1, got {batch_size!r}")
    if enc.kind == "vectors":
        return _vector_features(enc, _word_rows(inputs, tokenizer, who), int(batch_size), progress)
    max_len = enc.max_positions if max_length is None else int(max_length)
    if not 1 <= max_len <= enc.max_positions:
        raise ValueError(f"{who}: max_length must be in [1, {enc.max_positions}] (the model's positions), got "
                         f"{max_length}")
    rows = _token_id_rows(inputs, tokenizer, attention_mask, max_len, who)
    for i, r in enumerate(rows):
        if not r:
            raise ValueError(f"{who}: row {i} has no tokens")
        if len(r) > max_len:
            raise ValueError(f"{who}: row {i} has {len(r)} tokens; the model takes at most {max_len} (truncate it, "
                             "or pass texts with a tokenizer, which truncates)")
    pad_id = getattr(tokenizer, "pad_token_id", None)
    pad_id = enc.pad_id if pad_id is None else int(pad_id)
    return _transformer_features(enc, rows, pooling, int(batch_size), pad_id, progress)


def _batches_by_length(lengths: list[int], batch_size: int) -> list[list[int]]:
    # Longest first: the peak memory shows up in the first batch, and similar lengths share a batch (little padding).
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def _progress(total: int, enabled: bool):
    from .models.training import progress_bar

    return progress_bar(total, "features", disable=not enabled)


def _transformer_features(enc: _Encoder, rows, pooling, batch_size, pad_id, progress) -> torch.Tensor:
    module = enc.module
    device = next(module.parameters()).device
    out = torch.zeros(len(rows), enc.dim, dtype=torch.float32)  # (N, H)
    batches = _batches_by_length([len(r) for r in rows], batch_size)
    bar = _progress(len(batches), progress)
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            for idx in batches:
                batch = [rows[i] for i in idx]
                # Rows were cut to the model's length already: pad_batch only pads (to the batch's longest row).
                ids, mask = pad_batch(batch, pad_id, max(len(r) for r in batch))   # (B, L), mask 1 = token
                ids, mask = ids.to(device), mask.to(device)
                lengths = mask.sum(dim=1)
                hidden = module(ids, attention_mask=mask).last_hidden_state.float()  # (B, L, H)
                if pooling == "mean":
                    pooled = mean_pooling(hidden, mask)                           # fp32 masked mean, (B, H)
                elif pooling == "cls":
                    pooled = hidden[:, 0]
                else:  # "last": rows are right-padded, so the last real token sits at length - 1
                    pooled = hidden[torch.arange(len(idx), device=device), lengths - 1]
                out[torch.tensor(idx)] = pooled.cpu()
                bar.update(1)
    finally:
        module.train(was_training)
        bar.close()
    return out


def _vector_features(enc: _Encoder, rows: list[list[str]], batch_size: int, progress) -> torch.Tensor:
    kv = enc.module
    vectors = np.asarray(kv.vectors)
    index = kv.key_to_index
    out = np.zeros((len(rows), enc.dim), dtype=np.float32)
    n_batches = (len(rows) + batch_size - 1) // batch_size
    bar = _progress(n_batches, progress)
    try:
        for start in range(0, len(rows), batch_size):
            for i in range(start, min(start + batch_size, len(rows))):
                known = [index[w] for w in rows[i] if w in index]
                if known:  # float32 sum whatever the stored dtype; zeros when no word is known
                    out[i] = vectors[known].astype(np.float32, copy=False).sum(axis=0, dtype=np.float32) / len(known)
            bar.update(1)
    finally:
        bar.close()
    return torch.from_numpy(out)


# ---- scikit-learn --------------------------------------------------------------------------------------------------
class FeatureExtractor:
    """A scikit-learn transformer: texts (or token rows) -> features of a pretrained encoder, as float32 numpy arrays.

    FeatureExtractor(model, tokenizer=None, pooling="mean", batch_size=32, max_length=None, progress=False); see
    extract_features for what each means. fit learns nothing (the encoder is pretrained and stays frozen): it
    checks the parameters and records n_features_out_; transform works without it. So a linear probe is
    `Pipeline([("features", FeatureExtractor(bert, tokenizer=tok)), ("probe", LogisticRegression())])`.
    """

    _param_names = ("model", "tokenizer", "pooling", "batch_size", "max_length", "progress")

    def __init__(self, model=None, tokenizer=None, pooling: str = "mean", batch_size: int = 32,
                 max_length: int | None = None, progress: bool = False):
        # sklearn's contract: store the parameters untouched (clone() checks identity); validate in fit/transform.
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.batch_size = batch_size
        self.max_length = max_length
        self.progress = progress

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in self._param_names}

    def set_params(self, **params) -> "FeatureExtractor":
        for name, value in params.items():
            if name not in self._param_names:
                raise ValueError(f"FeatureExtractor.set_params: invalid parameter {name!r}; valid parameters are "
                                 f"{list(self._param_names)}")
            setattr(self, name, value)
        return self

    def _encoder(self) -> _Encoder:
        who = "FeatureExtractor"
        if self.model is None:
            raise ValueError(f"{who}: model is None; pass a pretrained pyfast BERT / GPT, Word2Vec or KeyedVectors")
        enc = _resolve(self.model, who)
        _check_pooling(enc, self.pooling, who)
        return enc

    def fit(self, X, y=None) -> "FeatureExtractor":
        self.n_features_out_ = self._encoder().dim
        return self

    def transform(self, X) -> np.ndarray:
        self._encoder()
        return extract_features(self.model, X, tokenizer=self.tokenizer, pooling=self.pooling,
                                batch_size=self.batch_size, max_length=self.max_length,
                                progress=self.progress).numpy()

    def fit_transform(self, X, y=None, **fit_params) -> np.ndarray:
        return self.fit(X, y).transform(X)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        dim = self._encoder().dim
        return np.asarray([f"{self.pooling}_pooled{i}" for i in range(dim)], dtype=object)

    def __sklearn_is_fitted__(self) -> bool:
        return True  # nothing to learn: a frozen pretrained encoder

    def __sklearn_tags__(self):
        from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags

        # Input: texts or token rows, not a numeric 2-D array (so sklearn's numeric common checks do not apply).
        return Tags(estimator_type=None, target_tags=TargetTags(required=False),
                    transformer_tags=TransformerTags(preserves_dtype=[]), requires_fit=False,
                    input_tags=InputTags(one_d_array=True, two_d_array=False, string=True))

    def __repr__(self) -> str:
        shown = []
        defaults = {"tokenizer": None, "pooling": "mean", "batch_size": 32, "max_length": None, "progress": False}
        for name in self._param_names:
            value = getattr(self, name)
            if name == "model":
                shown.append(f"model={type(value).__name__ if value is not None else None}")
            elif name == "tokenizer":
                if value is not None:
                    shown.append(f"tokenizer={type(value).__name__}")
            elif not (value is defaults[name] or (type(value) is type(defaults[name]) and value == defaults[name])):
                shown.append(f"{name}={value!r}")
        return f"FeatureExtractor({', '.join(shown)})"
