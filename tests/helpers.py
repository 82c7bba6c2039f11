"""Shared test helpers (the devices come from conftest's `device` fixture): an assert_close that says where the
worst element is, a target for two-process DDP tests, the attention shapes and the masking batches / modes the op
tests share, and the small offline WordPiece tokenizer of the collator tests."""
from __future__ import annotations

import os
import sys

import torch


def assert_close(actual: torch.Tensor, expected: torch.Tensor, *, atol: float, rtol: float, name: str = "tensor") -> None:
    """Like torch.testing.assert_close, but the message gives the count failing, the worst index and values."""
    if actual.shape != expected.shape:
        raise AssertionError(f"{name}: shape {tuple(actual.shape)} != expected {tuple(expected.shape)}")
    a = actual.detach().to(torch.float64).cpu()
    e = expected.detach().to(torch.float64).cpu()
    nan_a, nan_e = torch.isnan(a), torch.isnan(e)
    if not torch.equal(nan_a, nan_e):
        idx = torch.nonzero(nan_a != nan_e)[0].tolist()
        raise AssertionError(f"{name}: NaN pattern differs; first at {idx}: got {a[tuple(idx)]}, expected {e[tuple(idx)]}")
    a = torch.where(nan_a, torch.zeros_like(a), a)
    e = torch.where(nan_e, torch.zeros_like(e), e)
    err = (a - e).abs()
    tol = atol + rtol * e.abs()
    bad = err > tol
    if bad.any():
        n_bad = int(bad.sum())
        excess = torch.where(bad, err - tol, torch.zeros_like(err))
        flat = int(torch.argmax(excess))
        idx = list(torch.unravel_index(torch.tensor(flat), a.shape)) if a.dim() else []
        idx = [int(i) for i in idx]
        raise AssertionError(
            f"{name}: {n_bad} of {a.numel()} elements outside atol={atol} rtol={rtol}; worst at {idx}: "
            f"got {a.reshape(-1)[flat].item():.8g}, expected {e.reshape(-1)[flat].item():.8g}, "
            f"|diff|={err.reshape(-1)[flat].item():.3g}; max |diff| {err.max().item():.3g}"
        )


def spawn_target(rank: int, fn, *args) -> None:
    """torch.multiprocessing.spawn target: runs fn(rank, *args), then leaves with os._exit(0), skipping interpreter
    finalization. torch 2.13's gloo backend sometimes aborts there after destroy_process_group (SIGABRT raised in its
    pt_gloo_runloop thread while Py_FinalizeEx collects; reproduced under gdb with the plain PyTorch SGNS module too,
    ~1 run in 20-40), which would fail a test whose work and checks were complete. fn's exceptions still propagate,
    so spawn reports a failing rank as before."""
    fn(rank, *args)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# (B, Hq, Hkv, L, S, E, Ev) every attention backend is checked on: sizes of 1, primes, head dims 1..256, Ev != E.
# Each test file adds the shapes around its own kernel's tiles.
ATTENTION_SHAPES = [
    (1, 1, 1, 1, 1, 16, 16),
    (2, 3, 3, 37, 53, 20, 24),
    (1, 2, 2, 97, 61, 64, 64),
    (1, 1, 1, 130, 70, 33, 17),
    (2, 2, 2, 1, 7, 128, 128),
    (1, 1, 1, 23, 29, 256, 256),
    (1, 1, 1, 31, 17, 1, 3),
]


def masking_batch(b: int, l: int, seed: int, vocab_size: int) -> tuple:
    """(ids, word_starts) for the masking kernels' CPU-vs-GPU comparisons: ids (b, l) int64 in [5, vocab_size) with
    1 first, 2 last and 0 padding after a random length (ids 0-4 are the special tokens), word_starts (b, l) bool."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab_size, (b, l), generator=g)
    if l >= 2:
        ids[:, 0], ids[:, -1] = 1, 2
    if l > 3:
        lengths = torch.randint(2, l + 1, (b,), generator=g)
        ids[torch.arange(l)[None, :] >= lengths[:, None]] = 0
    return ids, torch.rand(ids.shape, generator=g) < 0.6


def masking_mode_kwargs(mode: str, ids: torch.Tensor, word_starts: torch.Tensor, special_token_ids, **kw) -> dict:
    """kw plus mask_tokens' keywords for one mode of the bitwise sweeps: specials by id, or by a column mask
    ("mask_col"); "...word" adds word_starts, "exact..." max_predictions = L // 5, "span..." span masking."""
    kw = dict(kw)
    if mode == "mask_col":
        kw["special_tokens_mask"] = ids == 0
    else:
        kw["special_token_ids"] = special_token_ids
    if mode.endswith("word"):
        kw["word_starts"] = word_starts
    if mode.startswith("exact"):
        kw["max_predictions"] = max(1, ids.shape[1] // 5)
    if mode.startswith("span"):
        kw["span_masking"] = True
    return kw


def assert_masking_equal(mode: str, cpu: tuple, other: tuple, other_name: str, expected_name: str = "cpu") -> None:
    """(masked ids, labels) of another backend equal the expected ones (the CPU kernel's, or the reference's) bit
    for bit; the message gives the first differing position and how many differ."""
    (co, cl), (go, gl) = cpu, other
    for name, c, g in (("labels", cl, gl), ("masked ids", co, go)):
        diff = torch.nonzero(c != g)
        assert diff.numel() == 0, (f"{mode}: {name} differ at {diff.shape[0]} positions, first {diff[0].tolist()}: "
                                   f"{expected_name} {c[tuple(diff[0])]}, {other_name} {g[tuple(diff[0])]}")


# A small real tokenizer for the collator tests, built offline: HF tokenizers' WordPiece trained on an in-memory
# corpus (vocab 110: the common words stay whole, the rare ones split into "##" pieces), wrapped as HF's
# BertTokenizerFast with [CLS] ... [SEP] post-processing. Ids 0-4 are [PAD] [UNK] [CLS] [SEP] [MASK].
COMMON_WORDS = ["the", "a", "of", "and", "to", "in", "is", "quick", "brown", "fox", "dog", "lazy", "jumps", "over",
                "cat"]
RARE_WORDS = ["unbelievable", "international", "pretraining", "tokenization", "collaborator", "masking",
              "whispering", "extraordinary", "misunderstanding", "reconstruction"]


def wordpiece_tokenizer(vocab_size: int = 110):
    """A transformers BertTokenizerFast over a WordPiece vocabulary trained here (no hub access)."""
    import numpy as np
    import tokenizers
    import transformers
    from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

    rnd = np.random.default_rng(0)
    corpus = [" ".join(rnd.choice(COMMON_WORDS, 10)) + " " + str(rnd.choice(RARE_WORDS))
              + str(rnd.choice([".", ",", "!", ""])) for _ in range(400)]
    tok = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(corpus, trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], min_frequency=1))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.decoder = decoders.WordPiece()
    return transformers.BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                          cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def random_texts(n: int, seed: int, max_words: int = 14) -> list[str]:
    """n sentences of 1..max_words words, common and rare mixed, some with punctuation."""
    import numpy as np

    rnd = np.random.default_rng(seed)
    words = COMMON_WORDS + RARE_WORDS
    return [" ".join(rnd.choice(words, int(rnd.integers(1, max_words + 1)))) + str(rnd.choice(["", ".", ","]))
            for _ in range(n)]


def sgns_problem(v: int, d: int, n: int, k: int, dtype, dup: bool = False, seed: int = 0, scale: float = 0.3) -> tuple:
    """An SGNS batch: (in_weight, out_weight (V, D) of N(0, scale^2) in `dtype`, centers, contexts (N,), negatives
    (N, K)); dup: ids from only min(V, 3) values, so every row accumulates many contributions."""
    g = torch.Generator().manual_seed(seed)
    w_in = (torch.randn(v, d, generator=g, dtype=torch.float64) * scale).to(dtype)
    w_out = (torch.randn(v, d, generator=g, dtype=torch.float64) * scale).to(dtype)
    hi = min(v, 3) if dup else v
    centers = torch.randint(0, hi, (n,), generator=g)
    contexts = torch.randint(0, hi, (n,), generator=g)
    negatives = torch.randint(0, hi, (n, k), generator=g)
    return w_in, w_out, centers, contexts, negatives
