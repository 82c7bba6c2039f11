"""HF's own collator tests, run against pyfast: every behaviour transformers' tests/trainer/test_data_collator.py
checks for DataCollatorForLanguageModeling and whole-word masking (padding, pad_to_multiple_of, list / dict /
numpy / tensor inputs, extra NSP / SOP keys, immutability of the features, missing pad or mask tokens, the
probabilities, seeds in one process and in DataLoader workers, return_tensors="np", whole words from
offset_mapping), written here as properties, not copied.

Each test runs twice: on HF's ``transformers.DataCollatorForLanguageModeling`` (the peer: the suite must hold for
it, else the test is wrong) and on ``pyfast.data.DataCollatorForLanguageModeling``. Where pyfast deliberately
differs, EXPECTED_DIFFERENCES names the test id and why; those run as strict xfails, so a difference that goes
away fails loudly. The two draw from different RNG streams, so masks are compared through invariants and binomial
bounds, never position by position. The tokenizer is a real WordPiece one, trained offline (tests/helpers.py).
"""
from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
import torch

from helpers import random_texts, wordpiece_tokenizer

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import pyfast.data  # noqa: E402

IMPLS = ("hf", "pyfast")
PAD, UNK, CLS, SEP, MASK = range(5)

# test id -> why the two collators differ there (reviewed; each entry runs as a strict xfail).
EXPECTED_DIFFERENCES = {
    "test_random_replacements_never_special[hf]":
        "HF draws random replacements uniformly from the whole vocabulary, so [CLS], [SEP], [PAD] and [MASK] "
        "land mid-sentence; pyfast draws only ids that are neither special nor [MASK] (as BERT's and fairseq's "
        "code do)",
    "test_causal_labels_ignore_only_padding[hf]":
        "with mlm=False HF sets -100 wherever the id equals pad_token_id, also on real tokens (a GPT-2 style "
        "tokenizer with pad = eos loses every eos label); pyfast ignores padding positions only",
    "test_wwm_default_replaces_with_mask_only[pyfast]":
        "HF v5 forces mask_replace_prob=1 under whole_word_mask (with a warning); pyfast keeps the requested "
        "80/10/10 split for whole words, as BERT's whole-word-masking release did",
    "test_wwm_ragged_batch[hf]":
        "HF's tokenizer.pad cannot pad offset_mapping, so whole-word masking of examples of different lengths "
        "raises unless they were padded beforehand; pyfast pads the offsets",
    "test_features_unchanged[hf-tuple]":
        "HF's tokenizer.pad extends each feature's sequence with a list of pad ids, so tuple input_ids that need "
        "padding raise TypeError; pyfast reads any sequence (list, tuple, numpy array, tensor)",
    "test_mlm_probability_none_raises_value_error[pyfast]":
        "pyfast raises TypeError for a probability that is not a number (ValueError for one out of [0, 1])",
    "test_same_seed_same_masks_as_peer[pyfast]":
        "the RNG streams differ: pyfast keys counter-based Philox draws by (seed, row, column), HF draws from a "
        "torch.Generator / numpy Generator in sequence; the same seed gives different (equally distributed) masks",
}


HF_MAJOR = int(transformers.__version__.split(".")[0])


@pytest.fixture(params=IMPLS)
def impl(request):
    if request.param == "hf" and HF_MAJOR < 5:
        pytest.skip(f"the suite follows transformers 5's collator (whole_word_mask from offset_mapping); "
                    f"{transformers.__version__} is installed")
    reason = EXPECTED_DIFFERENCES.get(request.node.name)
    if reason is not None:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
    return request.param


def make(impl: str, tokenizer, **kw):
    """The collator under test: HF's or pyfast's, same arguments."""
    if impl == "hf":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # HF warns that whole_word_mask sets mask_replace_prob to 1
            return transformers.DataCollatorForLanguageModeling(tokenizer, **kw)
    return pyfast.data.DataCollatorForLanguageModeling(tokenizer, **kw)


@pytest.fixture(scope="module")
def tok():
    return wordpiece_tokenizer()


def _variant(tok, **attrs):
    t = copy.deepcopy(tok)
    for name, value in attrs.items():
        setattr(t, name, value)
    return t


def arr(x) -> np.ndarray:
    return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def assert_rate(k: int, n: int, p: float, name: str, slack: float = 0.0) -> None:
    """k successes of n within 5 binomial sigmas (plus slack) of p."""
    assert n > 0, f"{name}: no trials"
    bound = 5 * math.sqrt(max(p * (1 - p), 1e-12) / n) + slack
    assert abs(k / n - p) <= bound, f"{name}: {k}/{n} = {k / n:.4f}, expected {p} +- {bound:.4f}"


def _features(tok, n: int, seed: int = 1, **kw) -> list[dict]:
    return [dict(tok(t, **kw)) for t in random_texts(n, seed)]


def _special(ids: np.ndarray) -> np.ndarray:
    return ids < 5  # the tokenizer's specials are ids 0-4


def test_expected_differences_name_real_tests():
    for test_id in EXPECTED_DIFFERENCES:
        name, _, param = test_id.partition("[")
        assert callable(globals().get(name)), f"EXPECTED_DIFFERENCES: no test {name}"
        assert set(param.rstrip("]").split("-")) & set(IMPLS), f"EXPECTED_DIFFERENCES: {test_id} names no collator"


# ---- padding and shapes (HF: _test_no_pad_and_pad, test_data_collator_for_language_modeling) ----------------------

@pytest.mark.parametrize("rt", ["pt", "np"])
@pytest.mark.parametrize("as_dict", [False, True])
def test_no_pad_and_pad(impl, tok, rt, as_dict):
    def feats(lengths):
        rows = [list(range(10, 10 + n)) for n in lengths]
        return [{"input_ids": r} for r in rows] if as_dict else rows

    array_type = np.ndarray if rt == "np" else torch.Tensor
    for mlm in (False, True):
        for multiple, width in ((None, 10), (8, 16)):
            col = make(impl, tok, mlm=mlm, pad_to_multiple_of=multiple, return_tensors=rt, seed=42)
            for lengths in ((10, 10), (5, 10)):
                masked_any = False
                for _ in range(8):
                    batch = col(feats(lengths))
                    assert isinstance(batch["input_ids"], array_type) and isinstance(batch["labels"], array_type)
                    ids, labels = arr(batch["input_ids"]), arr(batch["labels"])
                    assert ids.shape == labels.shape == (2, width)
                    assert ids.dtype == labels.dtype == np.int64
                    if mlm:
                        chosen = labels != -100
                        assert ((ids == MASK) <= chosen).all()  # every [MASK] sits at a position to predict
                        masked_any |= bool((ids == MASK).any())
                assert masked_any or not mlm, "no token masked in 8 batches"


def test_per_call_return_tensors(impl, tok):
    col = make(impl, tok, seed=0)
    feats = _features(tok, 4)
    assert isinstance(col(feats, return_tensors="np")["input_ids"], np.ndarray)
    assert isinstance(col(feats)["input_ids"], torch.Tensor)


def _hand_padded(rows, width, value, left):
    out = np.full((len(rows), width), value, dtype=np.int64)
    for i, r in enumerate(rows):
        if left:
            out[i, width - len(r):] = r
        else:
            out[i, :len(r)] = r
    return out


@pytest.mark.parametrize("rt", ["pt", "np"])
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("multiple", [None, 8])
@pytest.mark.parametrize("mode", ["causal", "p0", "p1"])
def test_deterministic_batches_exact(impl, tok, rt, side, multiple, mode):
    """Where the output does not depend on the draws (mlm=False; mlm_probability 0; probability 1 with only
    [MASK] replacements) it must equal the batch built here by hand, key for key and dtype for dtype."""
    t = tok if side == "right" else _variant(tok, padding_side="left")
    kw = {"causal": dict(mlm=False), "p0": dict(mlm_probability=0.0),
          "p1": dict(mlm_probability=1.0, mask_replace_prob=1.0, random_replace_prob=0.0)}[mode]
    feats = _features(tok, 5, seed=3)
    batch = make(impl, t, pad_to_multiple_of=multiple, return_tensors=rt, **kw)(feats)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    rows = [f["input_ids"] for f in feats]
    width = max(map(len, rows))
    width = width if multiple is None else -(-width // multiple) * multiple
    left = side == "left"
    ids = _hand_padded(rows, width, PAD, left)
    real = _hand_padded([[1] * len(r) for r in rows], width, 0, left).astype(bool)
    if mode == "causal":
        labels = np.where(real, ids, -100)
    elif mode == "p0":
        labels = np.full_like(ids, -100)
    else:
        chosen = real & ~_special(ids)
        labels = np.where(chosen, ids, -100)
        ids = np.where(chosen, MASK, ids)
    expected = {"input_ids": ids, "attention_mask": real.astype(np.int64), "token_type_ids": np.zeros_like(ids),
                "labels": labels}
    for key, value in expected.items():
        got = batch[key]
        assert isinstance(got, np.ndarray if rt == "np" else torch.Tensor), key
        got = arr(got)
        assert got.dtype == np.int64, f"{key}: dtype {got.dtype}"
        np.testing.assert_array_equal(got, value, err_msg=key)


def test_input_types_agree(impl, tok):
    """Lists, tuples, numpy arrays, tensors and dicts of them: the same batch, the same masks for one seed."""
    rows = [f["input_ids"] for f in _features(tok, 6, seed=4)]
    kinds = {
        "lists": rows, "tuples": [tuple(r) for r in rows], "numpy": [np.array(r) for r in rows],
        "tensors": [torch.tensor(r) for r in rows], "dicts": [{"input_ids": r} for r in rows],
        "dicts of numpy": [{"input_ids": np.array(r)} for r in rows],
    }
    outs = {k: make(impl, tok, seed=11)(v) for k, v in kinds.items()}
    ref = outs["lists"]
    for k, out in outs.items():
        for key in ("input_ids", "labels"):
            assert torch.equal(out[key], ref[key]), f"{k}: {key} differs from list input"


def test_left_padding(impl, tok):
    t = _variant(tok, padding_side="left")
    out = make(impl, t, mlm=False)([list(range(10, 13)), list(range(10, 16))])
    assert out["input_ids"][0].tolist() == [PAD] * 3 + [10, 11, 12]
    assert out["labels"][0].tolist() == [-100] * 3 + [10, 11, 12]


@pytest.mark.parametrize("rt", ["pt", "np"])
@pytest.mark.parametrize("key", ["next_sentence_label", "sentence_order_label"])
def test_sentence_pair_keys(impl, tok, rt, key):
    """HF: test_nsp, test_sop: token_type_ids padded with the ids, the pair label stacked to (B,)."""
    as_tensor = key == "sentence_order_label"  # HF's SOP case feeds tensors
    wrap = torch.tensor if as_tensor else list
    feats = [{"input_ids": wrap([CLS, 10, 11, SEP, 12]), "token_type_ids": wrap([0, 0, 0, 0, 1]), key: i}
             for i in range(2)]
    for multiple, width in ((None, 5), (8, 8)):
        batch = make(impl, tok, pad_to_multiple_of=multiple, return_tensors=rt)(feats)
        assert arr(batch["input_ids"]).shape == arr(batch["token_type_ids"]).shape == (2, width)
        assert arr(batch["labels"]).shape == (2, width)
        assert arr(batch[key]).tolist() == [0, 1]


# ---- the features are never modified (HF: DataCollatorImmutabilityTest) ---------------------------------------------

@pytest.mark.parametrize("kind", [list, tuple, np.array, torch.tensor])
def test_features_unchanged(impl, tok, kind):
    def feats():
        rows = [list(range(10, 20)), list(range(10, 15))]
        return [{"input_ids": kind(r), "token_type_ids": [0] * len(r), "next_sentence_label": i}
                for i, r in enumerate(rows)]

    original = feats()
    for kw in (dict(mlm=False), dict(mlm=False, pad_to_multiple_of=8), dict(), dict(pad_to_multiple_of=8),
               dict(mlm_probability=1.0)):
        batch = feats()
        make(impl, tok, seed=0, **kw)(batch)
        for before, after in zip(original, batch):
            for k in before:
                assert arr(before[k]).tolist() == arr(after[k]).tolist(), f"{kw}: feature {k} was modified"


def test_list_features_unchanged(impl, tok):
    rows = [list(range(10, 20)), list(range(10, 15))]
    batch = [list(r) for r in rows]
    make(impl, tok, mlm_probability=1.0, seed=0)(batch)
    assert batch == rows


# ---- bad input ------------------------------------------------------------------------------------------------------

def test_missing_pad_token(impl, tok):
    t = _variant(tok, pad_token=None)
    col = make(impl, t, mlm=False)
    with pytest.raises(ValueError):
        col([list(range(10, 15)), list(range(10, 20))])
    with pytest.raises(ValueError):
        col([{"input_ids": list(range(10, 15))}, {"input_ids": list(range(10, 20))}])
    with pytest.raises(ValueError):
        make(impl, t, mlm=False, pad_to_multiple_of=8)([list(range(10, 15))] * 2)
    out = col([list(range(10, 15))] * 2)  # nothing to pad: fine without a pad token
    assert out["input_ids"].shape == (2, 5) and out["labels"].tolist() == out["input_ids"].tolist()


def test_missing_mask_token(impl, tok):
    t = _variant(tok, mask_token=None)
    with pytest.raises(ValueError):
        make(impl, t)
    assert make(impl, t, mlm=False)([list(range(10, 15))])["labels"].shape == (1, 5)


@pytest.mark.parametrize("kw", [
    dict(mlm_probability=1.5), dict(mlm_probability=-0.1), dict(mask_replace_prob=0.9, random_replace_prob=0.2),
    dict(mask_replace_prob=-0.1), dict(random_replace_prob=1.2), dict(mlm=False, whole_word_mask=True),
], ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_bad_arguments(impl, tok, kw):
    with pytest.raises(ValueError):
        make(impl, tok, **kw)


def test_mlm_probability_none_raises_value_error(impl, tok):
    with pytest.raises(ValueError):
        make(impl, tok, mlm_probability=None)


def test_unknown_framework(impl, tok):
    with pytest.raises(ValueError):
        make(impl, tok, return_tensors="tf")([list(range(10, 15))])
    with pytest.raises(ValueError):
        make(impl, tok)([list(range(10, 15))], return_tensors="jax")


# ---- what gets chosen and how it is replaced -----------------------------------------------------------------------

def _big_batch(tok, n=96, seed=5):
    return _features(tok, n, seed=seed)


@pytest.mark.parametrize("p", [0.15, 0.4])
def test_masking_rate(impl, tok, p):
    feats = _big_batch(tok)
    batch = make(impl, tok, mlm_probability=p, seed=1)(feats)
    ids_plain = make(impl, tok, mlm=False)(feats)["input_ids"].numpy()
    labels = batch["labels"].numpy()
    chosen = labels != -100
    eligible = ~_special(ids_plain)
    assert not (chosen & ~eligible).any(), "a special or padding position was chosen"
    assert (labels[chosen] == ids_plain[chosen]).all(), "labels must hold the original ids"
    assert (batch["input_ids"].numpy()[~chosen] == ids_plain[~chosen]).all(), "an unchosen position changed"
    assert_rate(int(chosen.sum()), int(eligible.sum()), p, "chosen fraction")


@pytest.mark.parametrize("mask_p,random_p", [(0.8, 0.1), (0.5, 0.4), (0.2, 0.0)])
def test_replacement_split(impl, tok, mask_p, random_p):
    feats = _big_batch(tok)
    V = len(tok)
    batch = make(impl, tok, mlm_probability=0.5, mask_replace_prob=mask_p, random_replace_prob=random_p, seed=2)(feats)
    ids, labels = batch["input_ids"].numpy(), batch["labels"].numpy()
    chosen = labels != -100
    n = int(chosen.sum())
    to_mask = int((ids[chosen] == MASK).sum())
    kept = int((ids[chosen] == labels[chosen]).sum())
    # A random draw may hit [MASK] or the original id (HF: 1 / V each; pyfast: never [MASK]).
    slack = random_p / (V - 5)
    assert_rate(to_mask, n, mask_p, "[MASK] fraction", slack)
    assert_rate(kept, n, 1 - mask_p - random_p, "kept fraction", slack)
    assert_rate(n - to_mask - kept, n, random_p, "random fraction", 2 * slack)


def test_replacement_extremes(impl, tok):
    feats = _big_batch(tok, n=48)
    plain = make(impl, tok, mlm=False)(feats)["input_ids"].numpy()
    only_mask = make(impl, tok, mlm_probability=0.3, mask_replace_prob=1.0, random_replace_prob=0.0, seed=3)(feats)
    ids, labels = only_mask["input_ids"].numpy(), only_mask["labels"].numpy()
    assert ((ids == MASK) == (labels != -100)).all(), "with mask_replace_prob=1 exactly the chosen become [MASK]"
    keep = make(impl, tok, mlm_probability=0.3, mask_replace_prob=0.0, random_replace_prob=0.0, seed=3)(feats)
    assert (keep["input_ids"].numpy() == plain).all() and (keep["labels"].numpy() != -100).any()


def test_random_replacements_never_special(impl, tok):
    feats = _big_batch(tok, n=64)
    batch = make(impl, tok, mlm_probability=1.0, mask_replace_prob=0.0, random_replace_prob=1.0, seed=4)(feats)
    chosen = batch["labels"].numpy() != -100
    drawn = batch["input_ids"].numpy()[chosen]
    assert chosen.sum() > 1000
    assert not _special(drawn).any(), f"{int(_special(drawn).sum())} random replacements are special tokens"


def test_random_replacements_cover_the_vocabulary(impl, tok):
    feats = _big_batch(tok, n=64)
    batch = make(impl, tok, mlm_probability=1.0, mask_replace_prob=0.0, random_replace_prob=1.0, seed=4)(feats)
    drawn = batch["input_ids"].numpy()[batch["labels"].numpy() != -100]
    assert set(range(5, len(tok))) <= set(drawn.tolist()), "some ordinary ids are never drawn"


def test_special_tokens_mask_input(impl, tok):
    """A given special_tokens_mask decides what is never chosen, and leaves the batch."""
    feats = _features(tok, 8, seed=6, return_special_tokens_mask=True)
    for f in feats:
        f["special_tokens_mask"] = list(f["special_tokens_mask"])
        f["special_tokens_mask"][1] = 1  # protect the first word piece too
    batch = make(impl, tok, mlm_probability=1.0, seed=0)(feats)
    assert "special_tokens_mask" not in batch
    chosen = batch["labels"].numpy() != -100
    protected = _hand_padded([f["special_tokens_mask"] for f in feats], chosen.shape[1], 1, False).astype(bool)
    assert (chosen == ~protected).all()


def test_masking_step_alone(impl, tok):
    """HF's torch_mask_tokens / numpy_mask_tokens: (inputs, labels), inputs overwritten."""
    row = [[CLS, 10, 11, 12, SEP, PAD]]
    expect_ids, expect_labels = [[CLS, MASK, MASK, MASK, SEP, PAD]], [[-100, 10, 11, 12, -100, -100]]
    kw = dict(mlm_probability=1.0, mask_replace_prob=1.0, random_replace_prob=0.0)
    inputs = torch.tensor(row)
    out, labels = make(impl, tok, **kw).torch_mask_tokens(inputs)
    assert out is inputs and inputs.tolist() == expect_ids and labels.tolist() == expect_labels
    inputs = np.array(row)
    out, labels = make(impl, tok, return_tensors="np", **kw).numpy_mask_tokens(inputs)
    assert out is inputs and inputs.tolist() == expect_ids and arr(labels).tolist() == expect_labels


def test_causal_labels_ignore_only_padding(impl, tok):
    feats = [{"input_ids": [CLS, PAD, 12, SEP]}, {"input_ids": [CLS, 12, SEP]}]  # a real token with the pad id
    out = make(impl, tok, mlm=False)(feats)
    assert out["labels"].tolist() == [[CLS, PAD, 12, SEP], [CLS, 12, SEP, -100]]


# ---- seeds (HF: test_data_collator_for_language_modeling_with_seed, set_seed) ---------------------------------------

def _long_rows(tok, n=2, length=400, seed=0):
    rnd = np.random.default_rng(seed)
    return [{"input_ids": [CLS] + rnd.integers(5, len(tok), length - 2).tolist() + [SEP]} for _ in range(n)]


@pytest.mark.parametrize("rt", ["pt", "np"])
def test_seed_reproducible_and_distinct(impl, tok, rt):
    feats = _long_rows(tok)
    a = make(impl, tok, seed=42, return_tensors=rt)(feats)
    b = make(impl, tok, seed=42, return_tensors=rt)(feats)
    c = make(impl, tok, seed=43, return_tensors=rt)(feats)
    assert (arr(a["labels"]) == arr(b["labels"])).all() and (arr(a["input_ids"]) == arr(b["input_ids"])).all()
    assert not (arr(a["labels"]) == arr(c["labels"])).all()


@pytest.mark.parametrize("rt", ["pt", "np"])
def test_global_rng_without_seed(impl, tok, rt):
    """seed=None: the framework's global RNG decides (torch's for "pt", numpy's for "np"), as HF's set_seed does."""
    feats = _long_rows(tok)
    runs = []
    for _ in range(2):
        torch.manual_seed(7)
        np.random.seed(7)
        runs.append(arr(make(impl, tok, return_tensors=rt)(feats)["labels"]))
    assert (runs[0] == runs[1]).all()
    torch.manual_seed(8)
    np.random.seed(8)
    assert not (arr(make(impl, tok, return_tensors=rt)(feats)["labels"]) == runs[0]).all()


def test_seed_in_dataloader_workers(impl, tok):
    feats = _long_rows(tok, n=1, length=120) * 8  # identical rows: only the worker's stream tells batches apart

    def run():
        loader = torch.utils.data.DataLoader(feats, batch_size=2, num_workers=2,
                                             collate_fn=make(impl, tok, seed=42))
        return [b["labels"] for b in loader]

    a, b = run(), run()
    assert len(a) == 4 and all(torch.equal(x, y) for x, y in zip(a, b)), "not reproducible across runs"
    assert not torch.equal(a[0], a[1]), "workers 0 and 1 drew the same masks"


@pytest.mark.parametrize("impl", ["pyfast"], indirect=True)
def test_same_seed_same_masks_as_peer(impl, tok):
    feats = _long_rows(tok)
    ours = make(impl, tok, seed=42)(feats)
    theirs = make("hf", tok, seed=42)(feats)
    assert torch.equal(ours["labels"], theirs["labels"])


# ---- whole-word masking (HF: test_data_collator_for_whole_word_mask, ..._with_seed) --------------------------------

def _wwm_features(tok, n, seed, length=None):
    """Features with offset_mapping (HF v5 finds words from the offsets), padded to `length` when given, since
    HF cannot pad offsets itself."""
    texts = random_texts(n, seed)
    kw = dict(padding="max_length", max_length=length, truncation=True) if length else {}
    enc = tok(texts, return_offsets_mapping=True, **kw)
    return [{k: enc[k][i] for k in enc} for i in range(n)]


def _word_ids(ids_row, offsets_row) -> list[int]:
    """HF's word rule, plainly: a non-special piece opens a word after a gap in the offsets or after a special;
    -1 for specials."""
    out, word, prev_end, prev_special = [], -1, None, True
    for i, (s, e) in zip(ids_row, offsets_row):
        if i < 5:
            out.append(-1)
            prev_special = True
            continue
        if prev_special or s != prev_end:
            word += 1
        out.append(word)
        prev_end, prev_special = e, False
    return out


@pytest.mark.parametrize("rt", ["pt", "np"])
def test_wwm_shapes(impl, tok, rt):
    feats = _wwm_features(tok, 2, seed=7, length=16)
    for inputs in (feats, [{**f, "input_ids": np.array(f["input_ids"])} for f in feats]):
        batch = make(impl, tok, whole_word_mask=True, return_tensors=rt, seed=0)(inputs)
        assert arr(batch["input_ids"]).shape == arr(batch["labels"]).shape == (2, 16)
        assert "offset_mapping" not in batch


@pytest.mark.parametrize("p", [0.15, 0.5])
def test_wwm_words_all_or_nothing(impl, tok, p):
    L = 48
    feats = _wwm_features(tok, 96, seed=8, length=L)
    batch = make(impl, tok, whole_word_mask=True, mlm_probability=p, mask_replace_prob=1.0,
                 random_replace_prob=0.0, seed=3)(feats)
    chosen = batch["labels"].numpy() != -100
    words = chosen_words = 0
    split_words = 0
    for r, f in enumerate(feats):
        w = np.array(_word_ids(f["input_ids"], f["offset_mapping"]))
        assert not chosen[r][w == -1].any(), "a special or padding position was chosen"
        for word in range(w.max() + 1):
            picked = chosen[r][w == word]
            assert picked.all() or not picked.any(), f"row {r}: word {word} partly chosen: {picked.tolist()}"
            words += 1
            chosen_words += bool(picked[0])
            split_words += picked.size > 1
    assert split_words > 50, "the test tokenizer should split many words"
    assert_rate(chosen_words, words, p, "chosen word fraction")


def test_wwm_seeded(impl, tok):
    feats = _wwm_features(tok, 8, seed=9, length=32)
    a, b, c = (make(impl, tok, whole_word_mask=True, seed=s, mlm_probability=0.3)(feats) for s in (42, 42, 43))
    assert torch.equal(a["labels"], b["labels"]) and torch.equal(a["input_ids"], b["input_ids"])
    assert not torch.equal(a["labels"], c["labels"])


def test_wwm_default_replaces_with_mask_only(impl, tok):
    feats = _wwm_features(tok, 96, seed=10, length=48)
    batch = make(impl, tok, whole_word_mask=True, mlm_probability=0.5, seed=1)(feats)
    chosen = batch["labels"].numpy() != -100
    assert chosen.sum() > 500 and (batch["input_ids"].numpy()[chosen] == MASK).all()


def test_wwm_ragged_batch(impl, tok):
    feats = _wwm_features(tok, 6, seed=11)  # unpadded, lengths differ
    assert len({len(f["input_ids"]) for f in feats}) > 1
    batch = make(impl, tok, whole_word_mask=True, mlm_probability=1.0, seed=0)(feats)
    width = max(len(f["input_ids"]) for f in feats)
    assert batch["labels"].shape == (6, width)
    real = batch["attention_mask"].numpy().astype(bool)
    labels = batch["labels"].numpy()
    chosen = labels != -100
    original = np.where(chosen, labels, batch["input_ids"].numpy())
    assert (chosen == (real & ~_special(original))).all(), "with probability 1 every real word is chosen"


def test_wwm_features_unchanged(impl, tok):
    original = _wwm_features(tok, 2, seed=12, length=20)
    for kind in (list, np.array):
        batch = [{k: kind(v) for k, v in f.items()} for f in copy.deepcopy(original)]
        make(impl, tok, whole_word_mask=True, seed=0)(batch)
        for before, after in zip(original, batch):
            assert all(np.asarray(before[k]).tolist() == np.asarray(after[k]).tolist() for k in before)
