"""Model configurations (HF-shaped field names) saved as config.json beside the weights.

A config is a plain dataclass: `to_dict` / `from_dict` round-trip through JSON, `save`/`load` write and read the file
atomically. Unknown keys in a loaded file are an error rather than silently dropped.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

from .._io import atomic_write


class _ConfigBase:
    model_type = ""

    def to_dict(self) -> dict:
        return {"model_type": self.model_type, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict, **overrides):
        data = {k: v for k, v in {**data, **overrides}.items() if k != "model_type"}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown config keys {unknown}")
        return cls(**data)

    def save(self, path: str) -> None:
        atomic_write(path, lambda fh: json.dump(self.to_dict(), fh, indent=2, sort_keys=True), text=True)

    @classmethod
    def load(cls, path: str, **overrides):
        with open(path, "rb") as fh:  # a missing file: FileNotFoundError, which names it
            raw = fh.read()
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{cls.__name__}.load: {path} is not valid JSON (truncated or corrupt?): {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__}.load: {path} holds a JSON {type(data).__name__}, not an object")
        if data.get("model_type", cls.model_type) != cls.model_type:
            raise ValueError(f"{cls.__name__}.load: {path} holds a {data['model_type']!r} config, not {cls.model_type!r}")
        return cls.from_dict(data, **overrides)

    def _check_heads(self, hidden: int, heads: int, kv_heads: int | None) -> None:
        if hidden <= 0 or heads <= 0 or hidden % heads:
            raise ValueError(f"{type(self).__name__}: hidden size {hidden} must be a positive multiple of "
                             f"the number of heads {heads}")
        if kv_heads is not None and (kv_heads <= 0 or heads % kv_heads):
            raise ValueError(f"{type(self).__name__}: num_kv_heads {kv_heads} must divide the number of heads {heads}")


@dataclass
class BertConfig(_ConfigBase):
    vocab_size: int = 30522
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int = 0
    num_labels: int = 2
    problem_type: str | None = None      # "regression" | "single_label_classification" | "multi_label_classification"
    classifier_dropout: float | None = None
    classifier_pooling: str = "cls"      # "cls" (BERT's pooler on [CLS]) or "mean" (mean over attention_mask)
    sparse_prediction: bool = True       # MLM head runs only on labelled positions when labels are given
    tie_word_embeddings: bool = True
    pre_norm: bool = False               # pre-LayerNorm blocks (x + f(LN(x)), one LN after the last layer) instead
                                         # of the paper's post-LN: leaves the MLM unigram plateau sooner, tolerates
                                         # higher learning rates; a checkpoint's config says which it was trained as

    model_type = "bert"

    def __post_init__(self):
        self._check_heads(self.hidden_size, self.num_attention_heads, None)
        if self.classifier_pooling not in ("cls", "mean"):
            raise ValueError(f"BertConfig: classifier_pooling must be 'cls' or 'mean', got {self.classifier_pooling!r}")
        if self.vocab_size <= 0 or self.num_labels <= 0:
            raise ValueError(f"BertConfig: vocab_size and num_labels must be positive, got {self.vocab_size}, "
                             f"{self.num_labels}")


@dataclass
class GPTConfig(_ConfigBase):
    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int | None = None         # grouped-query attention when smaller than n_head
    n_inner: int | None = None           # MLP width; 4 * n_embd when None
    dropout: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    tie_word_embeddings: bool = True

    model_type = "gpt"

    def __post_init__(self):
        self._check_heads(self.n_embd, self.n_head, self.n_kv_head)
        if self.vocab_size <= 0 or self.n_positions <= 0:
            raise ValueError(f"GPTConfig: vocab_size and n_positions must be positive, got {self.vocab_size}, "
                             f"{self.n_positions}")


# The shared base under a public name, for configs that live beside their model (models/vit.py's ViTConfig).
ConfigBase = _ConfigBase
