"""pyfast.data.DataCollatorForMLMWithFlattening: padding-free MLM batches (HF's DataCollatorWithFlattening layout).

Checked: packed ids / labels equal the padded collator's rows, concatenated, for the same seed and call (so every
invariant of the padded mode carries over, whole words and exact counts per example included); position_ids
restart per example; cu_seqlens are the lengths' prefix sums (int32, B + 1) under HF's and pyfast's names and
feed pyfast.attention_varlen; with mlm=False the batch equals HF's own DataCollatorWithFlattening; masking
statistics; bad input messages.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from helpers import random_texts, wordpiece_tokenizer

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from pyfast.data import DataCollatorForLanguageModeling, DataCollatorForMLMWithFlattening  # noqa: E402

MASK = 4
HF_KEYS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")


@pytest.fixture(scope="module")
def tok():
    return wordpiece_tokenizer()


def _features(tok, n, seed=1, **kw):
    return [dict(tok(t, **kw)) for t in random_texts(n, seed)]


def _pack(padded: torch.Tensor, lengths) -> torch.Tensor:
    return torch.cat([padded[i, :n] for i, n in enumerate(lengths)])[None]


@pytest.mark.parametrize("kw", [
    dict(), dict(whole_word_mask=True), dict(whole_word_mask=True, offsets=True), dict(max_predictions=3),
    dict(span_masking=True, whole_word_mask=True), dict(mlm_probability=0.5, mask_replace_prob=0.4,
                                                        random_replace_prob=0.4),
], ids=["default", "wwm", "wwm-offsets", "exact-count", "spans", "split"])
def test_equals_padded_rows_packed(tok, kw):
    kw = dict(kw)
    offsets = kw.pop("offsets", False)
    feats = _features(tok, 12, seed=2, return_offsets_mapping=offsets)
    lengths = [len(f["input_ids"]) for f in feats]
    flat = DataCollatorForMLMWithFlattening(tok, seed=5, **kw)
    padded = DataCollatorForLanguageModeling(tok, seed=5, **kw)
    for _ in range(2):  # the call counters move on together
        a, b = flat(feats), padded(feats)
        assert "attention_mask" not in a
        for key in ("input_ids", "labels", "token_type_ids"):
            assert a[key].shape == (1, sum(lengths)) and a[key].dtype == torch.int64
            assert torch.equal(a[key], _pack(b[key], lengths)), key
    if kw.get("max_predictions"):
        per_example = [int(x.sum()) for x in torch.split(a["labels"][0] != -100, lengths)]
        assert all(n <= 3 for n in per_example) and max(per_example) == 3  # counted per example, not per pack


@pytest.mark.parametrize("rt", ["pt", "np"])
def test_positions_and_boundaries(tok, rt):
    feats = _features(tok, 7, seed=3)
    lengths = [len(f["input_ids"]) for f in feats]
    batch = DataCollatorForMLMWithFlattening(tok, seed=0, return_seq_idx=True, position_ids_start=2,
                                             return_tensors=rt)(feats)
    cu = np.concatenate([[0], np.cumsum(lengths)])
    pos = np.concatenate([np.arange(n) + 2 for n in lengths])[None]
    seq_idx = np.concatenate([np.full(n, i) for i, n in enumerate(lengths)])[None]
    kind = np.ndarray if rt == "np" else torch.Tensor
    for key, expected, dtype in (("position_ids", pos, np.int64), ("seq_idx", seq_idx, np.int32),
                                 ("cu_seq_lens_q", cu, np.int32), ("cu_seq_lens_k", cu, np.int32),
                                 ("cu_seqlens", cu, np.int32)):
        got = batch[key]
        assert isinstance(got, kind), key
        got = np.asarray(got)
        assert got.dtype == dtype, f"{key}: {got.dtype}"
        np.testing.assert_array_equal(got, expected, err_msg=key)
    for key in ("max_length_q", "max_length_k", "max_seqlen"):
        assert type(batch[key]) is int and batch[key] == max(lengths), key


@pytest.mark.parametrize("rt", ["pt", "np"])
def test_causal_equals_hf_flattening(tok, rt):
    """mlm=False: the very batch HF's DataCollatorWithFlattening builds (labels with -100 at each start)."""
    feats = [{"input_ids": f["input_ids"]} for f in _features(tok, 6, seed=4)]
    ours = DataCollatorForMLMWithFlattening(tok, mlm=False, return_seq_idx=True, return_tensors=rt)(feats)
    theirs = transformers.DataCollatorWithFlattening(return_flash_attn_kwargs=True, return_seq_idx=True,
                                                     return_tensors=rt)(copy.deepcopy(feats))
    assert set(theirs) <= set(ours)
    for key, value in theirs.items():
        if isinstance(value, int):
            assert ours[key] == value, key
        else:
            assert np.asarray(ours[key]).dtype == np.asarray(value).dtype, key
            np.testing.assert_array_equal(np.asarray(ours[key]), np.asarray(value), err_msg=key)


def test_hf_flag_defaults(tok):
    feats = _features(tok, 3)
    plain = DataCollatorForMLMWithFlattening(tok, return_flash_attn_kwargs=False, return_position_ids=False)(feats)
    assert set(plain) == {"input_ids", "labels", "token_type_ids"}
    full = DataCollatorForMLMWithFlattening(tok)(feats)
    assert set(HF_KEYS) <= set(full) and full["cu_seq_lens_q"] is full["cu_seqlens"]


def test_masking_statistics(tok):
    feats = _features(tok, 160, seed=6)
    batch = DataCollatorForMLMWithFlattening(tok, seed=1, mlm_probability=0.3)(feats)
    plain = torch.cat([torch.tensor(f["input_ids"]) for f in feats])
    labels, ids = batch["labels"][0], batch["input_ids"][0]
    chosen = labels != -100
    eligible = plain >= 5
    n, k = int(eligible.sum()), int(chosen.sum())
    assert not (chosen & ~eligible).any(), "a special token was chosen"
    assert torch.equal(labels[chosen], plain[chosen]) and torch.equal(ids[~chosen], plain[~chosen])
    assert abs(k / n - 0.3) <= 5 * math.sqrt(0.3 * 0.7 / n), f"chosen {k}/{n}"
    to_mask = int((ids[chosen] == MASK).sum())
    assert abs(to_mask / k - 0.8) <= 5 * math.sqrt(0.8 * 0.2 / k), f"[MASK] {to_mask}/{k}"
    random = ids[chosen & (ids != plain) & (ids != MASK)]
    assert random.numel() > 0 and (random >= 5).all(), "random replacements must not be special"


def test_whole_words_stop_at_boundaries(tok):
    """Without specials, an example that opens with a "##" piece must not join the previous example's last word."""
    cont = [i for t, i in tok.get_vocab().items() if t.startswith("##")]
    words = [i for t, i in tok.get_vocab().items() if not t.startswith("##") and i >= 5]
    feats = [[words[0], cont[0]], [cont[1], cont[2]]]  # "w ##a" | "##b ##c": two words, one per example
    seen = set()
    for seed in range(40):
        labels = DataCollatorForMLMWithFlattening(tok, seed=seed, whole_word_mask=True, mlm_probability=0.5)(
            feats)["labels"][0] != -100
        assert bool(labels[0]) == bool(labels[1]) and bool(labels[2]) == bool(labels[3]), "a word was split"
        seen.add((bool(labels[1]), bool(labels[2])))
    assert (True, False) in seen and (False, True) in seen, "the two examples' words were chosen together"


def test_feeds_attention_varlen(tok):
    """cu_seqlens / max_seqlen go straight into pyfast.attention_varlen: equal to attention per example."""
    import pyfast

    feats = _features(tok, 5, seed=7)
    batch = DataCollatorForMLMWithFlattening(tok, seed=0)(feats)
    total, H, E = batch["input_ids"].shape[1], 2, 8
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(total, H, E, generator=g) for _ in range(3))
    cu, m = batch["cu_seqlens"], batch["max_seqlen"]
    out = pyfast.attention_varlen(q, k, v, cu, cu, m, m)
    for a, b in zip(cu[:-1].tolist(), cu[1:].tolist()):
        ref = torch.nn.functional.scaled_dot_product_attention(*(x[a:b].transpose(0, 1) for x in (q, k, v)))
        torch.testing.assert_close(out[a:b], ref.transpose(0, 1), atol=1e-5, rtol=1e-5)


def test_empty_examples_dropped_and_extra_keys(tok):
    feats = [{"input_ids": [], "next_sentence_label": 0}] + [
        {"input_ids": f["input_ids"], "next_sentence_label": i + 1} for i, f in enumerate(_features(tok, 3))]
    batch = DataCollatorForMLMWithFlattening(tok, seed=0)(feats)
    assert batch["cu_seqlens"].numel() == 4 and batch["next_sentence_label"].tolist() == [1, 2, 3]
    lists = DataCollatorForMLMWithFlattening(tok, seed=0)([f["input_ids"] for f in feats])
    assert torch.equal(lists["input_ids"], batch["input_ids"]) and set(lists) == {
        "input_ids", "labels", "position_ids", "cu_seqlens", "max_seqlen", *HF_KEYS}


def test_tokenizer_without_pad_token(tok):
    t = copy.deepcopy(tok)
    t.pad_token = None
    batch = DataCollatorForMLMWithFlattening(t, seed=0)(_features(tok, 4))  # nothing is padded: fine
    assert batch["input_ids"].shape[0] == 1


def test_bad_input(tok):
    C = DataCollatorForMLMWithFlattening
    with pytest.raises(ValueError, match="^DataCollatorForMLMWithFlattening: cannot collate an empty list of "
                                         "features$"):
        C(tok)([])
    with pytest.raises(ValueError, match="^DataCollatorForMLMWithFlattening: every example in the batch is empty$"):
        C(tok)([{"input_ids": []}, {"input_ids": []}])
    padded = [{"input_ids": [2, 10, 3, 0], "attention_mask": [1, 1, 1, 0]}]
    with pytest.raises(ValueError, match=r"example 0 is padded \(attention_mask has zeros\); flattening takes "
                                         "unpadded examples"):
        C(tok)(padded)
    with pytest.raises(ValueError, match="pad_to_multiple_of has no meaning without padding; leave it None"):
        C(tok, pad_to_multiple_of=8)
    with pytest.raises(ValueError, match="^DataCollatorForMLMWithFlattening: return_tensors must be 'pt' or 'np', "
                                         "got 'tf'$"):
        C(tok, return_tensors="tf")
    with pytest.raises(TypeError, match="position_ids_start must be an int, got float"):
        C(tok, position_ids_start=1.0)
    with pytest.raises(ValueError, match="DataCollatorForMLMWithFlattening: mlm_probability must be in"):
        C(tok, mlm_probability=1.5)
    with pytest.raises(ValueError, match="offset_mapping must hold one \\(start, end\\) pair per input id"):
        C(tok, whole_word_mask=True)([{"input_ids": [2, 10, 3], "offset_mapping": [(0, 0), (0, 3)]}])
