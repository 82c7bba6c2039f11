"""mask_tokens on every device (cpu, cuda, emu) against the numpy reference (bit for bit, every mode, tile and
power-of-two edges, seeds up to 2**64 - 1), so CPU and CUDA kernels agree with each other; statistical properties
with hypothesis (within binomial bounds far enough out that they cannot flake), bad input and the bad-id error,
opcheck of pyfast::mask_tokens; gather_masked, the collator and the MLM head (CPU)."""
import math

import numpy as np
import pytest
import torch
from helpers import assert_masking_equal, masking_batch, masking_mode_kwargs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyfast
from pyfast import _native
from pyfast.ops import gather_masked, mask_tokens
from pyfast.ops import masking as M
from pyfast.ops.masking import span_length_distribution, span_start_probability
from pyfast.reference.masking import mask_tokens_reference

pytestmark = pytest.mark.sanitize  # .ci/sanitize runs this file against the ASan/UBSan build

V = 97          # a prime vocabulary
MASK = 4
SPECIALS = [0, 1, 2, 3, 4]
# hypothesis runs every example inside one `device` fixture (its emulator patches are meant to span the test)
DEVICE_SETTINGS = dict(suppress_health_check=[HealthCheck.function_scoped_fixture])
CPU_CUDA = pytest.mark.parametrize("device", ["cpu", "cuda"], indirect=True)


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


def _reference(ids, *, special_tokens_mask=None, special_token_ids=(), mlm_probability=0.15, mask_replace_prob=0.8,
               random_replace_prob=0.1, word_starts=None, span_masking=False, span_p=0.2, max_span_words=10, **kw):
    """pyfast.reference.masking for mask_tokens' keywords, on (B, L) or (L,) CPU ids: (out, labels) tensors."""
    shape = ids.shape
    ids2 = ids.reshape(1, -1) if ids.dim() == 1 else ids
    rows = (lambda t: None if t is None else t.reshape(ids2.shape).bool().numpy())
    if span_masking:
        cdf, mean = span_length_distribution(span_p, max_span_words)
        kw.update(span=True, span_cdf=cdf, span_start_prob=span_start_probability(mlm_probability, mean))
    out, labels = mask_tokens_reference(
        ids2.numpy(), special_mask=rows(special_tokens_mask), special_ids=special_token_ids, p=mlm_probability,
        mask_p=mask_replace_prob, random_p=random_replace_prob, word_starts=rows(word_starts), **kw)
    return torch.from_numpy(out).reshape(shape), torch.from_numpy(labels).reshape(shape)


def _on_device(ids, device, **kw):
    """mask_tokens with input_ids and every tensor keyword moved to `device`; outputs back on the CPU."""
    moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    out, labels = mask_tokens(ids.to(device), **moved)
    assert out.device.type == labels.device.type == device.type
    return out.cpu(), labels.cpu()


@pytest.mark.parametrize("B,L", [(1, 1), (1, 7), (3, 33), (5, 64), (2, 131), (7, 5)])
@pytest.mark.parametrize("mode", ["piece", "word", "exact", "exact_word", "span", "span_word", "mask_col"])
def test_matches_reference_bitwise(device, device_name, B, L, mode):
    ids = _batch(B, L, seed=B * 1000 + L)
    kw = dict(mask_token_id=MASK, vocab_size=V, mlm_probability=0.3, seed=12345 + L)
    if mode == "mask_col":
        kw["special_tokens_mask"] = ids == 0
    else:
        kw["special_token_ids"] = SPECIALS
    if mode.endswith("word"):
        kw["word_starts"] = _starts(ids, L)
    if mode.startswith("exact"):
        kw["max_predictions"] = 9
    if mode.startswith("span"):
        kw["span_masking"] = True
    assert_masking_equal(mode, _reference(ids, **kw), _on_device(ids, device, **kw), device_name, "reference")


# L: 1, a prime, one past a 256-column CUDA tile, a power of two, one past one (the exact-count sort pads to 1024).
EMULATED_SWEEP = {(1, 1), (3, 37), (2, 257), (2, 513)}  # the emulator runs one OS thread per CUDA thread


@pytest.mark.parametrize("b,l", [(1, 1), (3, 37), (2, 257), (4, 512), (2, 513), (1, 1000)])
@pytest.mark.parametrize("mode", ["piece", "word", "exact", "exact_word", "span", "span_word", "mask_col"])
@pytest.mark.parametrize("seed", [0, 12345, 2**64 - 1])
def test_matches_reference_across_tiles_and_seeds(device, device_name, b, l, mode, seed):
    if device_name == "emu" and ((b, l) not in EMULATED_SWEEP or seed == 12345):
        pytest.skip("too slow emulated; the smaller shapes cover the same code paths")
    ids, starts = masking_batch(b, l, seed=b * 1000 + l, vocab_size=V)
    kw = masking_mode_kwargs(mode, ids, starts, SPECIALS, mask_token_id=MASK, vocab_size=V, mlm_probability=0.3,
                             seed=seed)
    want = _reference(ids, **kw)
    assert_masking_equal(mode, want, _on_device(ids, device, **kw), device_name, "reference")
    assert (want[1] != -100).any() or l < 4  # the comparison is not vacuous


@pytest.mark.parametrize("kw", [dict(mlm_probability=1.0), dict(mlm_probability=0.0), dict(max_predictions=0),
                                dict(mask_replace_prob=0.0, random_replace_prob=1.0),
                                dict(span_masking=True, span_p=1.0, max_span_words=1),
                                dict(span_masking=True, mlm_probability=0.9, max_span_words=64)])
def test_edge_probabilities_match_reference(device, device_name, kw):
    ids, starts = masking_batch(3, 300, seed=3, vocab_size=V)
    kw = dict(mask_token_id=MASK, vocab_size=V, special_token_ids=SPECIALS, word_starts=starts, seed=77, **kw)
    assert_masking_equal(str(kw), _reference(ids, **kw), _on_device(ids, device, **kw), device_name, "reference")


def test_independent_of_threads_and_padding(device):
    ids = _batch(9, 70, seed=3, pad_tail=False).to(device)
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
    padded = torch.cat([ids, torch.zeros(9, 45, dtype=ids.dtype, device=device)], dim=1)
    c = mask_tokens(padded, **kw)
    assert torch.equal(c[0][:, :70], a[0]) and torch.equal(c[1][:, :70], a[1])
    assert (c[1][:, 70:] == -100).all()


def test_determinism_and_fresh_seed(device):
    ids = _batch(4, 100, seed=5).to(device)
    kw = dict(mask_token_id=MASK, vocab_size=V, special_token_ids=SPECIALS)
    a, b = mask_tokens(ids, seed=7, **kw), mask_tokens(ids, seed=7, **kw)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c, d = mask_tokens(ids, **kw), mask_tokens(ids, **kw)
    assert not torch.equal(c[1], d[1])  # 400 positions: two fresh seeds agree with probability ~0


def _sigma_bound(n, p, k=6.0):
    return k * math.sqrt(max(n * p * (1 - p), 1.0)) + 1


@given(seed=st.integers(0, 2**64 - 1), p=st.sampled_from([0.05, 0.15, 0.5, 0.9]),
       mask_p=st.sampled_from([0.8, 0.5, 0.0, 1.0]), rand_p=st.sampled_from([0.1, 0.0]))
@settings(max_examples=15, **DEVICE_SETTINGS)
def test_rates_within_binomial_bounds(device, seed, p, mask_p, rand_p):
    if mask_p + rand_p > 1:
        return
    B, L, V_big = 64, 128, 1000
    g = torch.Generator().manual_seed(seed % 2**63)
    ids = torch.randint(5, V_big, (B, L), generator=g)
    ids[:, 0] = 1
    ids[:, 100:] = 0
    out, labels = _on_device(ids, device, mask_token_id=MASK, vocab_size=V_big, special_token_ids=SPECIALS,
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


@CPU_CUDA  # 128k positions: too many OS threads emulated; the bitwise sweeps cover emu
def test_random_tokens_uniform_over_non_special(device):
    V_small = 25
    ids = torch.full((256, 512), 10)
    out, labels = _on_device(ids, device, mask_token_id=MASK, vocab_size=V_small, special_token_ids=SPECIALS,
                             mlm_probability=1.0, mask_replace_prob=0.0, random_replace_prob=1.0, seed=3)
    counts = torch.bincount(out.reshape(-1), minlength=V_small).double()
    assert counts[:5].sum() == 0
    n, k = counts.sum().item(), V_small - 5
    expected = n / k
    # chi-square with 19 dof: mean 19, sd ~6.2; 19 + 8 sd cannot be exceeded by a correct sampler in practice
    chi2 = (((counts[5:] - expected) ** 2) / expected).sum().item()
    assert chi2 < 19 + 8 * math.sqrt(2 * 19), chi2


@given(seed=st.integers(0, 2**63 - 1))
@settings(max_examples=10, **DEVICE_SETTINGS)
def test_whole_words_never_split(device, seed):
    ids = _batch(8, 96, seed=seed % 1000)
    starts = _starts(ids, seed % 1000)
    for extra in ({}, {"max_predictions": 12}, {"span_masking": True}):
        out, labels = _on_device(ids, device, mask_token_id=MASK, vocab_size=V, special_token_ids=SPECIALS,
                                 word_starts=starts, seed=seed, **extra)
        chosen = labels != -100
        eligible = ~torch.isin(ids, torch.tensor(SPECIALS))
        # a non-start eligible piece that follows an eligible piece belongs to the same word: same decision
        same_word = eligible[:, 1:] & eligible[:, :-1] & ~starts[:, 1:]
        assert torch.equal(chosen[:, 1:][same_word], chosen[:, :-1][same_word]), extra


def test_exact_count_per_row(device):
    ids = _batch(16, 200, seed=11)
    out, labels = _on_device(ids, device, mask_token_id=MASK, vocab_size=V, special_token_ids=SPECIALS,
                             max_predictions=20, seed=5)
    eligible = (~torch.isin(ids, torch.tensor(SPECIALS))).sum(1)
    want = torch.clamp(torch.floor(eligible.double() * float(np.float32(0.15)) + 0.5), min=1).long().clamp(max=20)
    want[eligible == 0] = 0
    assert torch.equal((labels != -100).sum(1), want)


def test_span_rate_close_to_probability(device):
    ids = torch.randint(5, V, (64, 512))
    out, labels = _on_device(ids, device, mask_token_id=MASK, vocab_size=V, special_token_ids=SPECIALS,
                             span_masking=True, seed=1)
    rate = (labels != -100).double().mean().item()
    assert 0.12 < rate < 0.18, rate
    cdf, mean = span_length_distribution(0.2, 10)
    assert abs(mean - 3.8) < 0.1  # SpanBERT's reported mean span length


def test_dtypes_shapes_strides_empty(device, device_name):
    ids = _batch(4, 50, seed=9)
    kw = dict(mask_token_id=MASK, vocab_size=V, special_token_ids=SPECIALS, seed=5)
    ref = _reference(ids, **kw)
    # int32 ids keep their dtype (labels are int64); 1-D ids; non-contiguous rows and columns
    out, labels = mask_tokens(ids.to(torch.int32).to(device), **kw)
    assert out.dtype == torch.int32 and labels.dtype == torch.int64 and out.device == ids.to(device).device
    assert_masking_equal("int32", ref, (out.long().cpu(), labels.cpu()), device_name, "reference")
    one = _on_device(ids[1], device, **kw)
    assert one[0].shape == (50,)
    assert_masking_equal("1-D", _reference(ids[1], **kw), one, device_name, "reference")
    for name, x in (("transposed", ids.t().contiguous().t()), ("strided", ids[:, ::2]), ("t", ids.t())):
        assert_masking_equal(name, _reference(x.contiguous(), **kw), _on_device(x, device, **kw), device_name,
                             "reference")
    for shape in [(0, 5), (3, 0), (0,)]:
        o, l = mask_tokens(torch.zeros(shape, dtype=torch.long, device=device), mask_token_id=MASK, vocab_size=V,
                           seed=1)
        assert o.shape == shape and l.shape == shape


@pytest.mark.parametrize("extra", [dict(), dict(max_predictions=3), dict(span_masking=True), dict(word_starts=True)])
def test_bad_id_reports_first_position(device, extra):
    ids, starts = masking_batch(3, 300, seed=2, vocab_size=V)
    ids[1, 260] = V
    ids[2, 5] = -7  # a later row: the first bad position (row-major) is reported on every device
    kw = dict(mask_token_id=MASK, vocab_size=V, special_token_ids=SPECIALS, seed=1, **extra)
    if extra.get("word_starts"):
        kw["word_starts"] = starts
    with pytest.raises(ValueError, match=r"input_ids\[1, 260\] = 97 is outside the vocabulary \[0, 97\)"):
        _on_device(ids, device, **kw)


def test_bad_input(device):
    ids = _batch(2, 8, seed=1).to(device)
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
        mask_tokens(torch.zeros(2, 3, dtype=torch.long, device=device), mask_token_id=1, vocab_size=2,
                    special_token_ids=[0], seed=1)


def _op_args(ids, special=None, starts=None, special_ids=(), max_predictions=-1, span=False, seed=-5):
    """pyfast::mask_tokens' positional arguments (mask_tokens normalises into these)."""
    as_u8 = (lambda t: None if t is None else t.to(torch.uint8))
    return (ids, as_u8(special), as_u8(starts), list(special_ids), V, MASK, 0.3, 0.8, 0.1, max_predictions, span,
            0.2, 10, seed)


@pytest.mark.parametrize("case", ["piece", "mask_word", "exact", "span"])
def test_opcheck(device, case):
    ids = _batch(3, 40, seed=4).to(device)
    starts = _starts(ids.cpu(), 4).to(device)
    args = {"piece": _op_args(ids, special_ids=SPECIALS),
            "mask_word": _op_args(ids, special=ids == 0, starts=starts),
            "exact": _op_args(ids, special_ids=SPECIALS, starts=starts, max_predictions=7),
            "span": _op_args(ids, special_ids=SPECIALS, span=True, seed=2**63 - 1)}[case]
    torch.library.opcheck(torch.ops.pyfast.mask_tokens.default, args)


def test_op_seed_is_the_uint64_reinterpreted():
    ids = _batch(2, 64, seed=6)
    kw = dict(mask_token_id=MASK, vocab_size=V, special_token_ids=SPECIALS)
    out, labels = torch.ops.pyfast.mask_tokens(*_op_args(ids, special_ids=SPECIALS, seed=-1))
    want = mask_tokens(ids, seed=2**64 - 1, **kw)
    assert torch.equal(out, want[0]) and torch.equal(labels, want[1])


def test_cuda_body_without_a_cuda_build_raises(monkeypatch):
    (op, _cpu_body, cuda_body), = M.KERNELS
    monkeypatch.setattr(_native, "_cuda_module", None)
    monkeypatch.setattr(_native, "_cuda_import_error", "No module named 'pyfast._C_cuda'")
    with pytest.raises(RuntimeError, match="PYFAST_CUDA=ON"):
        cuda_body(*_op_args(_batch(2, 8, seed=1), special_ids=SPECIALS))


@CPU_CUDA  # no kernel of ours: plain torch ops
def test_gather_masked_and_gradient(device):
    hidden = torch.randn(3, 11, 6, dtype=torch.float64, device=device, requires_grad=True)
    labels = torch.full((3, 11), -100, device=device)
    labels[0, 2], labels[1, 10], labels[2, 0] = 5, 7, 9
    h, l = gather_masked(hidden, labels)
    assert torch.equal(l.cpu(), torch.tensor([5, 7, 9]))
    ref = torch.stack([hidden[0, 2], hidden[1, 10], hidden[2, 0]])
    assert torch.equal(h, ref)
    w = torch.randn(6, dtype=torch.float64, device=device)
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
