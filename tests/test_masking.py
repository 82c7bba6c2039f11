"""mask_tokens against the numpy reference (bit for bit, every mode), statistical properties with hypothesis
(within binomial bounds far enough out that they cannot flake), bad input, gather_masked, the collator."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pyfast
from pyfast.ops import gather_masked, mask_tokens
from pyfast.ops.masking import span_length_distribution, span_start_probability
from pyfast.reference.masking import mask_tokens_reference

V = 97          # a prime vocabulary
MASK = 4
SPECIALS = [0, 1, 2, 3, 4]


def _batch(B, L, seed, pad_tail=True):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (B, L), generator=g)
    if L >= 2:
        ids[:, 0] = 1
        ids[:, -1] = 2
    if pad_tail and L > 3:
        lengths = torch.randint(2, L + 1, (B,), generator=g)
        ids[torch.arange(L)[None, :] >= lengths[:, None]] = 0
    return ids


def _starts(ids, seed):
    g = torch.Generator().manual_seed(seed + 1)
    return torch.rand(ids.shape, generator=g) < 0.6


@pytest.mark.parametrize("B,L", [(1, 1), (1, 7), (3, 33), (5, 64), (2, 131), (7, 5)])
@pytest.mark.parametrize("mode", ["piece", "word", "exact", "exact_word", "span", "span_word", "mask_col"])
def test_matches_reference_bitwise(B, L, mode):
    ids = _batch(B, L, seed=B * 1000 + L)
    kw = dict(mask_token_id=MASK, vocab_size=V, mlm_probability=0.3, seed=12345 + L)
    ref_kw = dict(mask_token_id=MASK, vocab_size=V, p=0.3, seed=12345 + L)
    starts = _starts(ids, L)
    if mode == "mask_col":
        special = ids == 0
        kw["special_tokens_mask"] = special
        ref_kw["special_mask"] = special.numpy()
    else:
        kw["special_token_ids"] = SPECIALS
        ref_kw["special_ids"] = SPECIALS
    if mode.endswith("word"):
        kw["word_starts"] = starts
        ref_kw["word_starts"] = starts.numpy()
    if mode.startswith("exact"):
        kw["max_predictions"] = 9
        ref_kw["max_predictions"] = 9
    if mode.startswith("span"):
        kw["span_masking"] = True
        cdf, mean = span_length_distribution(0.2, 10)
        ref_kw.update(span=True, span_cdf=cdf, span_start_prob=span_start_probability(0.3, mean))
    out, labels = mask_tokens(ids, **kw)
    ref_out, ref_labels = mask_tokens_reference(ids.numpy(), **ref_kw)
    np.testing.assert_array_equal(labels.numpy(), ref_labels, err_msg=f"labels differ ({mode})")
    np.testing.assert_array_equal(out.numpy(), ref_out, err_msg=f"masked ids differ ({mode})")


def test_independent_of_threads_and_padding():
    ids = _batch(9, 70, seed=3, pad_tail=False)
    kw = dict(mask_token_id=MASK, vocab_size=V, special_token_ids=SPECIALS, seed=99)
    old = pyfast.get_num_threads()
    try:
        pyfast.set_num_threads(1)
        a = mask_tokens(ids, **kw)
        pyfast.set_num_threads(2)
        b = mask_tokens(ids, **kw)
    finally:
        pyfast.set_num_threads(old)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    padded = torch.cat([ids, torch.zeros(9, 45, dtype=ids.dtype)], dim=1)
    c = mask_tokens(padded, **kw)
    assert torch.equal(c[0][:, :70], a[0]) and torch.equal(c[1][:, :70], a[1])
    assert (c[1][:, 70:] == -100).all()


def test_determinism_and_fresh_seed():
    ids = _batch(4, 100, seed=5)
    kw = dict(mask_token_id=MASK, vocab_size=V, special_token_ids=SPECIALS)
    a, b = mask_tokens(ids, seed=7, **kw), mask_tokens(ids, seed=7, **kw)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c, d = mask_tokens(ids, **kw), mask_tokens(ids, **kw)
    assert not torch.equal(c[1], d[1])  # 400 positions: two fresh seeds agree with probability ~0


def _sigma_bound(n, p, k=6.0):
    return k * math.sqrt(max(n * p * (1 - p), 1.0)) + 1


@given(seed=st.integers(0, 2**64 - 1), p=st.sampled_from([0.05, 0.15, 0.5, 0.9]),
       mask_p=st.sampled_from([0.8, 0.5, 0.0, 1.0]), rand_p=st.sampled_from([0.1, 0.0]))
@settings(max_examples=15)
def test_rates_within_binomial_bounds(seed, p, mask_p, rand_p):
    if mask_p + rand_p > 1:
        return
    B, L, V_big = 64, 128, 1000
    g = torch.Generator().manual_seed(seed % 2**63)
    ids = torch.randint(5, V_big, (B, L), generator=g)
    ids[:, 0] = 1
    ids[:, 100:] = 0
    out, labels = mask_tokens(ids, mask_token_id=MASK, vocab_size=V_big, special_token_ids=SPECIALS,
                              mlm_probability=p, mask_replace_prob=mask_p, random_replace_prob=rand_p, seed=seed)
    chosen = labels != -100
    eligible = B * 99
    n = int(chosen.sum())
    assert abs(n - eligible * p) <= _sigma_bound(eligible, p), (n, eligible * p)
    assert not chosen[:, 0].any() and not chosen[:, 100:].any(), "specials or padding chosen"
    assert torch.equal(labels[chosen], ids[chosen]), "labels must be the original ids where chosen"
    assert torch.equal(out[~chosen], ids[~chosen]), "unchosen positions must be unchanged"
    n_mask = int((out[chosen] == MASK).sum())
    assert abs(n_mask - n * mask_p) <= _sigma_bound(n, mask_p)
    replaced = chosen & (out != ids) & (out != MASK)
    n_random = int(replaced.sum())
    # a random draw equal to the original id counts as kept: expected rand_p * (1 - 1/pool) of n
    assert abs(n_random - n * rand_p * (1 - 1 / (V_big - 5))) <= _sigma_bound(n, rand_p)
    assert not torch.isin(out[replaced], torch.tensor(SPECIALS)).any(), "random tokens must not be special"


def test_random_tokens_uniform_over_non_special():
    V_small = 25
    ids = torch.full((256, 512), 10)
    out, labels = mask_tokens(ids, mask_token_id=MASK, vocab_size=V_small, special_token_ids=SPECIALS,
                              mlm_probability=1.0, mask_replace_prob=0.0, random_replace_prob=1.0, seed=3)
    counts = torch.bincount(out.reshape(-1), minlength=V_small).double()
    assert counts[:5].sum() == 0
    n, k = counts.sum().item(), V_small - 5
    expected = n / k
    # chi-square with 19 dof: mean 19, sd ~6.2; 19 + 8 sd cannot be exceeded by a correct sampler in practice
    chi2 = (((counts[5:] - expected) ** 2) / expected).sum().item()
    assert chi2 < 19 + 8 * math.sqrt(2 * 19), chi2


@given(seed=st.integers(0, 2**63 - 1))
@settings(max_examples=10)
def test_whole_words_never_split(seed):
    ids = _batch(8, 96, seed=seed % 1000)
    starts = _starts(ids, seed % 1000)
    for extra in ({}, {"max_predictions": 12}, {"span_masking": True}):
        out, labels = mask_tokens(ids, mask_token_id=MASK, vocab_size=V, special_token_ids=SPECIALS,
                                  word_starts=starts, seed=seed, **extra)
        chosen = labels != -100
        eligible = ~torch.isin(ids, torch.tensor(SPECIALS))
        # a non-start eligible piece that follows an eligible piece belongs to the same word: same decision
        same_word = eligible[:, 1:] & eligible[:, :-1] & ~starts[:, 1:]
        assert torch.equal(chosen[:, 1:][same_word], chosen[:, :-1][same_word]), extra


def test_exact_count_per_row():
    ids = _batch(16, 200, seed=11)
    out, labels = mask_tokens(ids, mask_token_id=MASK, vocab_size=V, special_token_ids=SPECIALS,
                              max_predictions=20, seed=5)
    eligible = (~torch.isin(ids, torch.tensor(SPECIALS))).sum(1)
    want = torch.clamp(torch.floor(eligible.double() * float(np.float32(0.15)) + 0.5), min=1).long().clamp(max=20)
    want[eligible == 0] = 0
    assert torch.equal((labels != -100).sum(1), want)


def test_span_rate_close_to_probability():
    ids = torch.randint(5, V, (64, 512))
    out, labels = mask_tokens(ids, mask_token_id=MASK, vocab_size=V, special_token_ids=SPECIALS,
                              span_masking=True, seed=1)
    rate = (labels != -100).double().mean().item()
    assert 0.12 < rate < 0.18, rate
    cdf, mean = span_length_distribution(0.2, 10)
    assert abs(mean - 3.8) < 0.1  # SpanBERT's reported mean span length


def test_dtypes_shapes_empty():
    ids32 = _batch(3, 10, seed=1).to(torch.int32)
    out, labels = mask_tokens(ids32, mask_token_id=MASK, vocab_size=V, special_token_ids=SPECIALS, seed=1)
    assert out.dtype == torch.int32 and labels.dtype == torch.int64
    ref = mask_tokens(ids32.long(), mask_token_id=MASK, vocab_size=V, special_token_ids=SPECIALS, seed=1)
    assert torch.equal(out.long(), ref[0]) and torch.equal(labels, ref[1])
    one = mask_tokens(ids32[1], mask_token_id=MASK, vocab_size=V, special_token_ids=SPECIALS, seed=1)
    assert one[0].shape == (10,)
    for shape in [(0, 5), (3, 0), (0,)]:
        o, l = mask_tokens(torch.zeros(shape, dtype=torch.long), mask_token_id=MASK, vocab_size=V, seed=1)
        assert o.shape == shape and l.shape == shape
    nc = _batch(6, 20, seed=2).t()  # non-contiguous
    a = mask_tokens(nc, mask_token_id=MASK, vocab_size=V, special_token_ids=SPECIALS, seed=4)
    b = mask_tokens(nc.contiguous(), mask_token_id=MASK, vocab_size=V, special_token_ids=SPECIALS, seed=4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_bad_input():
    ids = _batch(2, 8, seed=1)
    kw = dict(mask_token_id=MASK, vocab_size=V, seed=1)
    for name in ["mlm_probability", "mask_replace_prob", "random_replace_prob"]:
        with pytest.raises(ValueError, match=f"{name} must be in \\[0, 1\\], got 1.5"):
            mask_tokens(ids, **{**kw, name: 1.5})
        with pytest.raises(ValueError, match=f"{name} must be in \\[0, 1\\], got -0.1"):
            mask_tokens(ids, **{**kw, name: -0.1})
    with pytest.raises(ValueError, match="mask_replace_prob \\+ random_replace_prob must be <= 1"):
        mask_tokens(ids, mask_replace_prob=0.8, random_replace_prob=0.3, **kw)
    with pytest.raises(TypeError, match="input_ids must be an integer tensor, got torch.float32"):
        mask_tokens(ids.float(), **kw)
    with pytest.raises(ValueError, match="mask_token_id must be in \\[0, 97\\), got 97"):
        mask_tokens(ids, mask_token_id=97, vocab_size=V, seed=1)
    bad = ids.clone()
    bad[1, 5] = 97
    with pytest.raises(ValueError, match="input_ids\\[1, 5\\] = 97 is outside the vocabulary \\[0, 97\\)"):
        mask_tokens(bad, **kw)
    bad[1, 5] = -3
    with pytest.raises(ValueError, match="input_ids\\[1, 5\\] = -3 is outside the vocabulary"):
        mask_tokens(bad, special_token_ids=SPECIALS, **kw)
    with pytest.raises(ValueError, match="input_ids\\[1, 5\\] = -3 is outside the vocabulary"):
        mask_tokens(bad, max_predictions=3, **kw)
    with pytest.raises(ValueError, match="special token id 200 is outside the vocabulary"):
        mask_tokens(ids, special_token_ids=[200], **kw)
    with pytest.raises(ValueError, match="special_tokens_mask must have the shape of input_ids"):
        mask_tokens(ids, special_tokens_mask=torch.zeros(2, 7, dtype=torch.bool), **kw)
    with pytest.raises(ValueError, match="span_masking with max_predictions is not supported"):
        mask_tokens(ids, span_masking=True, max_predictions=3, **kw)
    with pytest.raises(ValueError, match="every id in the vocabulary is special"):
        mask_tokens(torch.zeros(2, 3, dtype=torch.long), mask_token_id=1, vocab_size=2, special_token_ids=[0], seed=1)


def test_gather_masked_and_gradient():
    hidden = torch.randn(3, 11, 6, dtype=torch.float64, requires_grad=True)
    labels = torch.full((3, 11), -100)
    labels[0, 2], labels[1, 10], labels[2, 0] = 5, 7, 9
    h, l = gather_masked(hidden, labels)
    assert torch.equal(l, torch.tensor([5, 7, 9]))
    ref = torch.stack([hidden[0, 2], hidden[1, 10], hidden[2, 0]])
    assert torch.equal(h, ref)
    w = torch.randn(6, dtype=torch.float64)
    (h @ w).sum().backward()
    expected = torch.zeros_like(hidden)
    expected[0, 2] = expected[1, 10] = expected[2, 0] = w
    assert torch.equal(hidden.grad, expected)
    with pytest.raises(ValueError, match="hidden must be labels' shape plus a feature dimension"):
        gather_masked(hidden, labels[:, :5])


# ---- collator and head ----------------------------------------------------------------------------------------

def _hf_tokenizer(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    d = tmp_path_factory.mktemp("tok")
    words = ["masking", "pretraining", "tokenizer", "collator", "quick", "brown", "fox", "jumps", "lazy", "dog",
             "unbelievable", "international", "the", "a", "of"]
    rnd = np.random.default_rng(0)
    text = "\n".join(" ".join(rnd.choice(words, 12)) for _ in range(400))
    (d / "corpus.txt").write_text(text)
    tok = tokenizers.BertWordPieceTokenizer()
    tok.train([str(d / "corpus.txt")], vocab_size=70, min_frequency=1)
    tok.save(str(d / "tok.json"))
    return transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(d / "tok.json"), unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]")


@pytest.fixture(scope="module")
def hf_tok(tmp_path_factory):
    return _hf_tokenizer(tmp_path_factory)


def _features(tok, n=12):
    rnd = np.random.default_rng(1)
    words = ["masking", "pretraining", "unbelievable", "international", "quick", "fox", "the"]
    texts = [" ".join(rnd.choice(words, int(rnd.integers(1, 15)))) for _ in range(n)]
    return [dict(tok(t)) for t in texts]


def test_collator_matches_hf_layout(hf_tok):
    from transformers import DataCollatorForLanguageModeling as HFCollator

    from pyfast.data import DataCollatorForLanguageModeling

    feats = _features(hf_tok)
    ours = DataCollatorForLanguageModeling(hf_tok, seed=3, pad_to_multiple_of=8)(feats)
    theirs = HFCollator(hf_tok, seed=3, pad_to_multiple_of=8)(feats)
    assert set(ours) == set(theirs)
    assert ours["input_ids"].shape == theirs["input_ids"].shape and ours["input_ids"].shape[1] % 8 == 0
    assert torch.equal(ours["attention_mask"], theirs["attention_mask"])
    if "token_type_ids" in theirs:
        assert torch.equal(ours["token_type_ids"], theirs["token_type_ids"])
    plain = HFCollator(hf_tok, mlm=False, pad_to_multiple_of=8)(feats)["input_ids"]  # HF padding, unmasked
    chosen = ours["labels"] != -100
    assert torch.equal(ours["labels"][chosen], plain[chosen])
    assert torch.equal(ours["input_ids"][~chosen], plain[~chosen])
    special = torch.isin(plain, torch.tensor(hf_tok.all_special_ids))
    assert not (chosen & special).any()
    # lists of lists and lists of tensors give the same ids as dicts
    rows = [f["input_ids"] for f in feats]
    a = DataCollatorForLanguageModeling(hf_tok, seed=3)(rows)
    b = DataCollatorForLanguageModeling(hf_tok, seed=3)([torch.tensor(r) for r in rows])
    assert set(a) == {"input_ids", "labels"}
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])


def test_collator_causal_and_seeding(hf_tok):
    from pyfast.data import DataCollatorForLanguageModeling

    feats = _features(hf_tok)
    out = DataCollatorForLanguageModeling(hf_tok, mlm=False)(feats)
    pad = out["attention_mask"] == 0
    assert (out["labels"][pad] == -100).all() and torch.equal(out["labels"][~pad], out["input_ids"][~pad])
    c1, c2 = DataCollatorForLanguageModeling(hf_tok, seed=5), DataCollatorForLanguageModeling(hf_tok, seed=5)
    first, again = c1(feats), c2(feats)
    assert torch.equal(first["labels"], again["labels"])           # reproducible from the seed
    assert not torch.equal(c1(feats)["labels"], first["labels"])   # a new stream on each call
    c3 = DataCollatorForLanguageModeling(hf_tok, seed=5)
    c3.set_epoch(1)
    assert not torch.equal(c3(feats)["labels"], first["labels"])   # and for each epoch


def test_collator_whole_words(hf_tok):
    from pyfast.data import DataCollatorForLanguageModeling

    feats = _features(hf_tok, n=40)
    col = DataCollatorForLanguageModeling(hf_tok, seed=2, whole_word_mask=True, mlm_probability=0.4)
    out = col(feats)
    ids = DataCollatorForLanguageModeling(hf_tok, mlm=False)(feats)["input_ids"]
    vocab = hf_tok.get_vocab()
    cont = torch.zeros(len(hf_tok), dtype=torch.bool)
    for t, i in vocab.items():
        cont[i] = t.startswith("##")
    chosen = out["labels"] != -100
    is_cont = cont[ids]
    assert is_cont.any(), "the test tokenizer should split some words"
    assert torch.equal(chosen[:, 1:][is_cont[:, 1:]], chosen[:, :-1][is_cont[:, 1:]])


def test_collator_bad_input(hf_tok):
    from pyfast.data import DataCollatorForLanguageModeling

    with pytest.raises(ValueError, match="mlm_probability must be in \\[0, 1\\], got 2.0"):
        DataCollatorForLanguageModeling(hf_tok, mlm_probability=2.0)
    with pytest.raises(ValueError, match="mask_replace_prob \\+ random_replace_prob must be <= 1"):
        DataCollatorForLanguageModeling(hf_tok, mask_replace_prob=0.9, random_replace_prob=0.2)
    with pytest.raises(ValueError, match="cannot collate an empty list"):
        DataCollatorForLanguageModeling(hf_tok)([])


def test_collator_in_dataloader_workers(hf_tok):
    from pyfast.data import DataCollatorForLanguageModeling

    feats = _features(hf_tok, n=16)
    col = DataCollatorForLanguageModeling(hf_tok, seed=9)

    def run():
        loader = torch.utils.data.DataLoader(feats, batch_size=4, num_workers=2, collate_fn=col)
        return [b["labels"] for b in loader]

    a, b = run(), run()
    assert all(torch.equal(x, y) for x, y in zip(a, b))  # reproducible across runs


def test_mlm_head_sparse_equals_dense():
    from pyfast.nn import MLMHead

    torch.manual_seed(0)
    head = MLMHead(8, 31).double()
    hidden = torch.randn(2, 9, 8, dtype=torch.float64, requires_grad=True)
    labels = torch.full((2, 9), -100)
    labels[0, 3], labels[1, 0], labels[1, 8] = 4, 30, 7
    out = head(hidden, labels)
    dense = head(hidden).logits
    ref = torch.nn.functional.cross_entropy(dense.reshape(-1, 31), labels.reshape(-1), ignore_index=-100)
    assert torch.allclose(out.loss, ref, atol=1e-12)
    g1 = torch.autograd.grad(out.loss, hidden)[0]
    g2 = torch.autograd.grad(ref, hidden)[0]
    assert torch.allclose(g1, g2, atol=1e-12)
    empty = head(hidden, torch.full((2, 9), -100))
    assert empty.loss.item() == 0.0 and empty.logits.shape == (0, 31)
