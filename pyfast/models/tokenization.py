"""WordPiece vocabularies trained offline, behind the small slice of the HF tokenizer API that collators and
training loops use (pad/mask/cls/sep ids, len(), all_special_ids, get_special_tokens_mask, encode/decode).

Training uses HF `tokenizers` (BertWordPieceTokenizer) when it is installed. A freshly trained BertWordPieceTokenizer
has no [CLS] ... [SEP] post-processor until it is reloaded from its vocab file, so `train` reloads it from the
vocab it just wrote. Without `tokenizers`, a word-level vocabulary (lower-cased words and punctuation, most frequent
first, [UNK] for the rest) is built in pure Python so the demo still runs on a bare install; it says so in `.kind`.
"""
from __future__ import annotations

import collections
import os
import re

from .._io import atomic_write

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_WORD_RE = re.compile(r"\w+|[^\w\s]")


class WordPieceTokenizer:
    pad_token, unk_token, cls_token, sep_token, mask_token = SPECIAL_TOKENS

    def __init__(self, vocab: list[str], lowercase: bool = True):
        missing = [t for t in SPECIAL_TOKENS if t not in vocab]
        if missing:
            raise ValueError(f"WordPieceTokenizer: vocabulary lacks special tokens {missing}")
        self.vocab = list(vocab)
        self.token_to_id = {t: i for i, t in enumerate(self.vocab)}
        if len(self.token_to_id) != len(self.vocab):
            raise ValueError("WordPieceTokenizer: vocabulary has duplicate tokens")
        self.lowercase = lowercase
        self._hf = None
        self.kind = "word-level (pure Python)"
        try:
            from tokenizers import BertWordPieceTokenizer

            self._hf = BertWordPieceTokenizer({t: i for i, t in enumerate(self.vocab)}, lowercase=lowercase)
            self._hf.no_truncation()
            self._hf.no_padding()
            self.kind = "WordPiece (HF tokenizers)"
        except ImportError:  # optional peer: fall back to whole words
            pass

    # -- training / files ----------------------------------------------------------------------------------------
    @classmethod
    def train(cls, texts, vocab_size: int = 8000, min_frequency: int = 2, lowercase: bool = True):
        """Train on an iterable of strings (lines or documents)."""
        if vocab_size <= len(SPECIAL_TOKENS):
            raise ValueError(f"WordPieceTokenizer.train: vocab_size must exceed {len(SPECIAL_TOKENS)}, got {vocab_size}")
        try:
            from tokenizers import BertWordPieceTokenizer
        except ImportError:
            counts = collections.Counter()
            for text in texts:
                counts.update(_WORD_RE.findall(text.lower() if lowercase else text))
            words = [w for w, c in counts.most_common() if c >= min_frequency and w not in SPECIAL_TOKENS]
            return cls(SPECIAL_TOKENS + words[:vocab_size - len(SPECIAL_TOKENS)], lowercase=lowercase)
        trainer = BertWordPieceTokenizer(lowercase=lowercase)
        trainer.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=min_frequency,
                                    special_tokens=SPECIAL_TOKENS, show_progress=False)
        vocab = sorted(trainer.get_vocab().items(), key=lambda kv: kv[1])
        return cls([t for t, _ in vocab], lowercase=lowercase)  # rebuilt from the vocab: [CLS]/[SEP] now added

    def save(self, directory: str) -> str:
        """Write vocab.txt (one token a line, id = line number) atomically; returns its path."""
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, "vocab.txt")
        atomic_write(path, lambda fh: fh.write("\n".join(self.vocab) + "\n"), text=True)
        return path

    @classmethod
    def from_file(cls, path: str, lowercase: bool = True):
        """Load vocab.txt (or a directory holding it)."""
        if os.path.isdir(path):
            path = os.path.join(path, "vocab.txt")
        with open(path, encoding="utf-8") as fh:
            return cls([line.rstrip("\n") for line in fh if line.rstrip("\n")], lowercase=lowercase)

    def to_hf(self):
        """A transformers.PreTrainedTokenizerFast over the same vocabulary (needs transformers and tokenizers)."""
        from transformers import PreTrainedTokenizerFast

        if self._hf is None:
            raise ImportError("to_hf needs the tokenizers package")
        return PreTrainedTokenizerFast(tokenizer_object=self._hf._tokenizer, pad_token=self.pad_token,
                                       unk_token=self.unk_token, cls_token=self.cls_token,
                                       sep_token=self.sep_token, mask_token=self.mask_token)

    # -- the HF-shaped surface -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    pad_token_id = property(lambda self: self.token_to_id[self.pad_token])
    unk_token_id = property(lambda self: self.token_to_id[self.unk_token])
    cls_token_id = property(lambda self: self.token_to_id[self.cls_token])
    sep_token_id = property(lambda self: self.token_to_id[self.sep_token])
    mask_token_id = property(lambda self: self.token_to_id[self.mask_token])

    @property
    def all_special_ids(self) -> list[int]:
        return [self.token_to_id[t] for t in SPECIAL_TOKENS]

    @property
    def all_special_tokens(self) -> list[str]:
        return list(SPECIAL_TOKENS)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.token_to_id)

    def convert_tokens_to_ids(self, tokens):
        if isinstance(tokens, str):
            return self.token_to_id.get(tokens, self.unk_token_id)
        return [self.token_to_id.get(t, self.unk_token_id) for t in tokens]

    def convert_ids_to_tokens(self, ids):
        if isinstance(ids, int):
            return self.vocab[ids]
        return [self.vocab[i] for i in ids]

    def get_special_tokens_mask(self, ids, already_has_special_tokens: bool = True) -> list[int]:
        special = set(self.all_special_ids)
        return [1 if i in special else 0 for i in ids]

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.encode_batch([text], add_special_tokens)[0]

    def encode_batch(self, texts: list[str], add_special_tokens: bool = True) -> list[list[int]]:
        if self._hf is not None:
            return [e.ids for e in self._hf.encode_batch(list(texts), add_special_tokens=add_special_tokens)]
        unk = self.unk_token_id
        out = []
        for text in texts:
            words = _WORD_RE.findall(text.lower() if self.lowercase else text)
            ids = [self.token_to_id.get(w, unk) for w in words]
            out.append([self.cls_token_id, *ids, self.sep_token_id] if add_special_tokens else ids)
        return out

    def tokenize(self, text: str) -> list[str]:
        return self.convert_ids_to_tokens(self.encode(text, add_special_tokens=False))

    def __call__(self, texts, truncation: bool = False, max_length: int | None = None, add_special_tokens=True):
        """texts (str or list) -> {"input_ids": [[...]], "attention_mask": [[1...]]}, unpadded, as HF's."""
        single = isinstance(texts, str)
        batch = self.encode_batch([texts] if single else list(texts), add_special_tokens)
        if truncation and max_length is not None:
            batch = [ids[:max_length - 1] + ids[-1:] if len(ids) > max_length and add_special_tokens
                     else ids[:max_length] for ids in batch]
        result = {"input_ids": batch, "attention_mask": [[1] * len(ids) for ids in batch]}
        return {k: v[0] for k, v in result.items()} if single else result

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        ids = [int(i) for i in ids]
        if skip_special_tokens:
            special = set(self.all_special_ids)
            ids = [i for i in ids if i not in special]
        if self._hf is not None:
            return self._hf.decode(ids, skip_special_tokens=skip_special_tokens)
        return " ".join(self.vocab[i] for i in ids)
