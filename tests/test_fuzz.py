"""hypothesis fuzzing of the native entry points through their public functions: random shapes (0 and 1 included),
layouts (transposed, expanded stride-0, sliced), dtypes, meta tensors, masks, ids at and beyond the vocabulary edge,
negative ids, out-of-range probabilities, NaN and inf. The property: a clear Python exception (ValueError,
TypeError, RuntimeError, NotImplementedError with a message) or the reference's result (pyfast/reference) - never
a crash, which .ci/sanitize also checks for out-of-bounds access under ASan/UBSan.
"""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import pyfast
from pyfast.data import sample_negatives, skipgram_pairs
from pyfast.ops import mask_tokens
from pyfast.reference import attention as attention_ref
from pyfast.reference.masking import mask_tokens_reference
from pyfast.reference.sgns import sgns_loss_reference

pytestmark = pytest.mark.sanitize  # .ci/sanitize runs this file against the ASan/UBSan build

CLEAR = (ValueError, TypeError, RuntimeError, NotImplementedError)
SANITIZED = bool(os.environ.get("PYFAST_EXPECT_SANITIZED"))  # .ci/sanitize: fewer examples, the code runs slower
FUZZ = settings(max_examples=20 if SANITIZED else 60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SIZES = st.sampled_from([0, 1, 1, 2, 3, 7, 17])


def _clear_or(fn):
    """fn() or None when it raised a clear exception (whose message must say something)."""
    try:
        result = fn()
    except CLEAR as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        event(f"raised {type(exc).__name__}")  # pytest --hypothesis-show-statistics: how many reach the reference
        return None
    event("returned")
    return result


def _layout(t: torch.Tensor, kind: str) -> torch.Tensor:
    """The same values as t in another memory layout."""
    if kind == "transposed":  # the last two dims swapped in memory, then swapped back: strides (1, n)
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    if kind == "sliced":  # every other element of a twice-as-wide buffer: last-dim stride 2
        wide = torch.empty(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype)
        wide[..., ::2] = t
        return wide[..., ::2]
    if kind == "expanded" and t.dim() >= 3 and t.shape[0] >= 1:  # stride 0 over the first dim
        return t[:1].expand(t.shape)
    return t


def _poison(t: torch.Tensor, kind: str, draw_index: int) -> torch.Tensor:
    if kind == "finite" or t.numel() == 0 or not t.dtype.is_floating_point:
        return t
    t = t.clone()
    t[np.unravel_index(draw_index % t.numel(), t.shape)] = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[kind]
    return t


# ---- attention --------------------------------------------------------------------------------------------------
@FUZZ
@given(b=st.sampled_from([0, 1, 2]), h=st.sampled_from([1, 2]), gqa=st.booleans(), l=SIZES, s=SIZES,
       e=st.sampled_from([1, 3, 16, 33]), ev=st.sampled_from([1, 8, 16]),
       dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16, torch.float16, torch.int32]),
       layout=st.sampled_from(["contiguous", "transposed", "sliced", "expanded"]),
       mask=st.sampled_from([None, "bool", "float", "bool-broadcast", "wrong-shape"]), causal=st.booleans(),
       poison=st.sampled_from(["finite", "finite", "nan", "inf", "-inf"]), where=st.integers(0, 10**6),
       seed=st.integers(0, 2**31 - 1))
def test_fuzz_attention(b, h, gqa, l, s, e, ev, dtype, layout, mask, causal, poison, where, seed):
    g = torch.Generator().manual_seed(seed)
    hkv = 1 if gqa else h
    mk = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    q, k, v = mk(b, h, l, e), mk(b, hkv, s, e), mk(b, hkv, s, ev)
    q = _poison(q, poison, where)  # before the layout, so the poisoned tensor keeps it
    q, k, v = (_layout(x.to(dtype) if dtype.is_floating_point else x.round().to(dtype), layout) for x in (q, k, v))
    attn_mask = None
    if mask == "bool":
        attn_mask = torch.rand(b, h, l, s, generator=g) > 0.3
    elif mask == "bool-broadcast":
        attn_mask = torch.rand(l, s, generator=g) > 0.3
    elif mask == "float":
        attn_mask = torch.where(torch.rand(b, 1, l, s, generator=g) > 0.3, 0.0, -math.inf).to(
            dtype if dtype.is_floating_point else torch.float32)
    elif mask == "wrong-shape":
        attn_mask = torch.ones(l + 1, s + 2, dtype=torch.bool)
    call = lambda: pyfast.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=causal,  # noqa: E731
                                                       enable_gqa=gqa)
    out = _clear_or(call)
    if out is None:
        return
    assert out.shape == (b, h, l, ev) and out.dtype == q.dtype
    if poison != "finite":
        return  # non-finite inputs: any output values, but no crash and the right shape
    want = attention_ref.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=causal,
                                                      enable_gqa=gqa)
    tol = {torch.float64: 1e-10, torch.float32: 2e-5, torch.bfloat16: 5e-2, torch.float16: 1e-2}[dtype]
    torch.testing.assert_close(out.double(), want, atol=tol, rtol=tol, equal_nan=True)


@FUZZ
@given(b=st.sampled_from([0, 1, 3]), l=SIZES, s=SIZES, e=st.sampled_from([1, 16]), causal=st.booleans())
def test_fuzz_attention_meta(b, l, s, e, causal):
    q, k, v = (torch.empty(b, 2, n, e, device="meta") for n in (l, s, s))
    out = _clear_or(lambda: pyfast.scaled_dot_product_attention(q, k, v, is_causal=causal))
    if out is not None:
        assert out.device.type == "meta" and out.shape == (b, 2, l, e)


# ---- masking ----------------------------------------------------------------------------------------------------
@FUZZ
@given(b=st.sampled_from([0, 1, 2, 5]), l=SIZES, vocab=st.sampled_from([1, 2, 6, 50]),
       lo=st.sampled_from([0, 0, 0, -1, -5]), hi_extra=st.sampled_from([0, 0, 0, 1, 3]),
       dtype=st.sampled_from([torch.int64, torch.int64, torch.int32, torch.int16, torch.uint8, torch.float32]),
       mask_at=st.sampled_from(["last", "last", "first", "vocab", "negative"]),
       p=st.sampled_from([0.0, 0.15, 0.15, 0.5, 1.0, 1.5, -0.1, math.nan]),
       replace=st.sampled_from([(0.8, 0.1), (1.0, 0.0), (0.0, 1.0), (0.7, 0.5)]),
       special=st.sampled_from([None, "ids", "mask"]), transposed=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_fuzz_mask_tokens(b, l, vocab, lo, hi_extra, dtype, mask_at, p, replace, special, transposed, seed):
    g = torch.Generator().manual_seed(seed)
    mask_id = {"last": vocab - 1, "first": 0, "vocab": vocab, "negative": -1}[mask_at]
    high = vocab + hi_extra
    ids64 = torch.randint(lo, high, (l, b) if transposed else (b, l), generator=g) if high > lo else \
        torch.zeros((b, l), dtype=torch.int64)
    ids64 = ids64.t() if transposed else ids64
    ids = ids64.to(dtype) if not (dtype == torch.uint8 and lo < 0) else ids64.clamp(min=0).to(dtype)
    kw = dict(vocab_size=vocab, mask_token_id=mask_id, mlm_probability=p, mask_replace_prob=replace[0],
              random_replace_prob=replace[1], seed=seed)
    special_mask, special_ids = None, ()
    if special == "ids":
        special_ids = (0, 1)
        kw["special_token_ids"] = list(special_ids)
    elif special == "mask":
        special_mask = ids64 == 0
        kw["special_tokens_mask"] = special_mask
    got = _clear_or(lambda: mask_tokens(ids, **kw))
    if got is None:
        return
    assert ids64.min().item() >= 0 if ids64.numel() else True, "a negative id was accepted"
    assert ids64.max().item() < vocab if ids64.numel() else True, "an id >= vocab_size was accepted"
    assert 0 <= p <= 1 and 0 <= mask_id < vocab
    out, labels = mask_tokens_reference(
        ids64.numpy(), mask_token_id=mask_id, vocab_size=vocab, special_mask=None if special_mask is None else
        special_mask.numpy(), special_ids=special_ids, p=p, mask_p=replace[0], random_p=replace[1], seed=seed)
    assert torch.equal(got[1], torch.from_numpy(labels))
    assert torch.equal(got[0].long(), torch.from_numpy(out)) and got[0].dtype == ids.dtype


# ---- SGNS loss --------------------------------------------------------------------------------------------------
@FUZZ
@given(v=st.sampled_from([1, 2, 13]), d=st.sampled_from([1, 4, 17]), n=SIZES, k=st.sampled_from([0, 1, 5]),
       id_lo=st.sampled_from([0, 0, -1]), id_extra=st.sampled_from([0, 0, 1]),
       dtype=st.sampled_from([torch.float32, torch.float32, torch.float64, torch.float16, torch.int64]),
       id_dtype=st.sampled_from([torch.int64, torch.int64, torch.int32, torch.float32]),
       layout=st.sampled_from(["contiguous", "transposed", "sliced"]),
       reduction=st.sampled_from(["mean", "sum", "none", "mean", "max"]),
       poison=st.sampled_from(["finite", "nan", "inf"]),
       where=st.integers(0, 10**6), seed=st.integers(0, 2**31 - 1))
def test_fuzz_sgns_loss(v, d, n, k, id_lo, id_extra, dtype, id_dtype, layout, reduction, poison, where, seed):
    g = torch.Generator().manual_seed(seed)
    w_in = _layout(_poison(torch.randn(v, d, generator=g), poison, where).to(dtype), layout)
    w_out = _layout(torch.randn(v, d, generator=g).to(dtype), layout)
    ids = lambda *shape: torch.randint(id_lo, v + id_extra, shape, generator=g)  # noqa: E731
    centers, contexts, negatives = ids(n), ids(n), ids(n, k)
    if dtype.is_floating_point:
        w_in, w_out = w_in.requires_grad_(), w_out.requires_grad_()
    args = (w_in, w_out, centers.to(id_dtype), contexts.to(id_dtype), negatives.to(id_dtype))
    loss = _clear_or(lambda: pyfast.sgns_loss(*args, reduction=reduction))
    if loss is None:
        return
    every = torch.cat([centers, contexts, negatives.flatten()])
    assert every.numel() == 0 or (every.min() >= 0 and every.max() < v), "an out-of-range id was accepted"
    want = sgns_loss_reference(w_in.detach().double().requires_grad_(), w_out.detach().double().requires_grad_(),
                               centers, contexts, negatives, reduction)
    if poison != "finite":
        assert loss.shape == want.shape
        return
    tol = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 2e-2}[dtype]
    torch.testing.assert_close(loss.double(), want.detach(), atol=tol, rtol=tol)
    if n and loss.requires_grad:
        loss.sum().backward()
        ref_in = w_in.detach().double().requires_grad_()
        ref_out = w_out.detach().double().requires_grad_()
        sgns_loss_reference(ref_in, ref_out, centers, contexts, negatives, reduction).sum().backward()
        torch.testing.assert_close(w_in.grad.double(), ref_in.grad, atol=tol, rtol=tol)
        torch.testing.assert_close(w_out.grad.double(), ref_out.grad, atol=tol, rtol=tol)


# ---- negative sampling table (the native alias table) -----------------------------------------------------------
@FUZZ
@given(v=st.sampled_from([0, 1, 2, 9]), rows=SIZES, k=st.sampled_from([0, 1, 5]),
       kind=st.sampled_from(["counts", "zeros", "one-hot", "negative", "nan", "inf", "huge"]),
       exponent=st.sampled_from([0.75, 0.0, 1.0]), seed=st.integers(0, 2**31 - 1))
def test_fuzz_sample_negatives(v, rows, k, kind, exponent, seed):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 100, v).astype(np.float64)
    if kind == "zeros":
        counts[:] = 0
    elif kind == "one-hot" and v:
        counts[:] = 0
        counts[v // 2] = 3
    elif kind in ("negative", "nan", "inf", "huge") and v:
        counts[0] = {"negative": -1.0, "nan": math.nan, "inf": math.inf, "huge": 1e300}[kind]
    got = _clear_or(lambda: sample_negatives(torch.from_numpy(counts), rows, k, exponent=exponent, seed=seed))
    if got is None:
        return
    assert got.shape == (rows, k) and got.dtype == torch.int64
    if got.numel():
        assert got.min() >= 0 and got.max() < v
        weights = counts ** exponent
        assert np.all(np.isfinite(weights)) and weights.min() >= 0 and weights.sum() > 0, kind
        assert np.all(weights[got.flatten().numpy()] > 0), "drew an id of weight 0"


# ---- word2vec trainer ---------------------------------------------------------------------------------------------
@settings(max_examples=8 if SANITIZED else 25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n_sent=st.sampled_from([1, 2, 9]), length=st.sampled_from([1, 2, 30]), vocab=st.sampled_from([1, 2, 40]),
       dim=st.sampled_from([1, 3, 16]), window=st.sampled_from([1, 2, 8]), negative=st.sampled_from([1, 7, 7, 0]),
       sg=st.booleans(), shared=st.booleans(), workers=st.sampled_from([1, 2, 5]),
       sample=st.sampled_from([0.0, 1e-3, 1.0]), seed=st.integers(0, 2**31 - 1))
def test_fuzz_word2vec_training(n_sent, length, vocab, dim, window, negative, sg, shared, workers, sample, seed):
    rng = np.random.default_rng(seed)
    sentences = [[f"w{i}" for i in rng.integers(0, vocab, length)] for _ in range(n_sent)]
    model = _clear_or(lambda: pyfast.Word2Vec(sentences, vector_size=dim, window=window, negative=negative, sg=int(sg),
                                              shared_negatives=shared, workers=workers, sample=sample, min_count=1,
                                              epochs=2, seed=seed % 1000, compute_loss=True))
    if model is None:
        return
    assert model.wv.vectors.shape == (len(model.wv), dim)
    assert np.isfinite(model.wv.vectors).all() and np.isfinite(model.get_latest_training_loss())
    key = model.wv.index_to_key[0]
    sims = _clear_or(lambda: model.wv.most_similar(key, topn=vocab + 3))
    if sims is not None:
        assert len(sims) == len(model.wv) - 1 and all(k != key for k, _ in sims)


# ---- packed (varlen) attention ------------------------------------------------------------------------------------
def _cu(lengths) -> torch.Tensor:
    return torch.tensor([0, *np.cumsum(lengths).tolist()], dtype=torch.int32)


def _damage_cu(cu: torch.Tensor, kind: str) -> torch.Tensor:
    """cu_seqlens made invalid in one way (or left as it is when the damage does not apply to it)."""
    if kind == "unsorted" and cu.numel() >= 3 and cu[1] != cu[2]:
        cu = cu.clone()
        cu[1], cu[2] = cu[2].item(), cu[1].item()
    elif kind == "not-from-0":
        cu = cu + 1
    elif kind == "beyond-total":
        cu = cu.clone()
        cu[-1] += 1
    elif kind == "int64":
        cu = cu.long()
    elif kind == "float":
        cu = cu.float()
    elif kind == "2-D":
        cu = cu.unsqueeze(0)
    elif kind == "strided":  # valid values in a non-contiguous view
        wide = torch.zeros(2 * cu.numel(), dtype=torch.int32)
        wide[::2] = cu
        cu = wide[::2]
    return cu


@FUZZ
@given(lengths=st.lists(st.sampled_from([0, 0, 1, 1, 2, 5, 9]), min_size=0, max_size=4), self_attn=st.booleans(),
       k_lengths=st.lists(st.sampled_from([0, 1, 3, 7]), min_size=4, max_size=4),
       hkv=st.sampled_from([1, 2]), group=st.sampled_from([1, 2, 3]), bad_heads=st.sampled_from([False] * 5 + [True]),
       e=st.sampled_from([1, 8, 17]), ev=st.sampled_from([1, 8]),
       dtype=st.sampled_from([torch.float32, torch.float32, torch.bfloat16, torch.float64, torch.int32]),
       damage=st.sampled_from(["none"] * 6 + ["unsorted", "not-from-0", "beyond-total", "int64", "float", "2-D",
                                              "strided", "k-count"]),
       damaged=st.sampled_from(["q", "k"]), max_len=st.sampled_from(["exact", "exact", "larger", "smaller", "-1"]),
       causal=st.booleans(), layout=st.sampled_from(["contiguous", "transposed", "sliced"]),
       seed=st.integers(0, 2**31 - 1))
def test_fuzz_attention_varlen(lengths, self_attn, k_lengths, hkv, group, bad_heads, e, ev, dtype, damage, damaged,
                               max_len, causal, layout, seed):
    g = torch.Generator().manual_seed(seed)
    k_lengths = lengths if self_attn else k_lengths[:len(lengths)]
    hq = hkv * group + (1 if bad_heads else 0)
    cu_q, cu_k = _cu(lengths), _cu(k_lengths)
    mk = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    q, k, v = mk(int(cu_q[-1]), hq, e), mk(int(cu_k[-1]), hkv, e), mk(int(cu_k[-1]), hkv, ev)
    q, k, v = (_layout(x.to(dtype) if dtype.is_floating_point else x.round().to(dtype), layout) for x in (q, k, v))
    longest_q, longest_k = max(lengths, default=0), max(k_lengths, default=0)
    max_q, max_k = {"exact": (longest_q, longest_k), "larger": (longest_q + 3, longest_k + 3),
                    "smaller": (longest_q - 1, longest_k - 1), "-1": (-1, -1)}[max_len]
    if damage == "k-count":  # one sequence more in k than in q
        cu_k = torch.cat([cu_k, cu_k[-1:]])
    elif damaged == "q":
        cu_q = _damage_cu(cu_q, damage)
    else:
        cu_k = _damage_cu(cu_k, damage)
    if dtype.is_floating_point and dtype != torch.float64:
        q, k, v = (x.detach().requires_grad_() for x in (q, k, v))
    out = _clear_or(lambda: pyfast.attention_varlen(q, k, v, cu_q, cu_k, max_q, max_k, is_causal=causal))
    if out is None:
        return
    # Accepted: then the inputs were valid, and the result is the per-sequence reference's.
    assert dtype in (torch.float32, torch.bfloat16), f"{dtype} accepted"
    assert hq % hkv == 0, "q heads not a multiple of k/v heads accepted"
    for cu, total, mx in ((cu_q, q.shape[0], max_q), (cu_k, k.shape[0], max_k)):
        assert cu.dtype == torch.int32 and cu.dim() == 1 and cu.numel() == len(lengths) + 1, cu
        assert int(cu[0]) == 0 and int(cu[-1]) == total and bool((cu[1:] >= cu[:-1]).all()), cu
        assert int((cu[1:] - cu[:-1]).max()) <= mx if cu.numel() > 1 else True, (cu, mx)
    assert out.shape == (q.shape[0], hq, ev) and out.dtype == dtype
    ref_inputs = [x.detach().double().requires_grad_() for x in (q, k, v)]
    want = attention_ref.attention_varlen(*ref_inputs, cu_q, cu_k, is_causal=causal)
    tol = {torch.float32: 2e-5, torch.bfloat16: 5e-2}[dtype]
    torch.testing.assert_close(out.double(), want, atol=tol, rtol=tol)
    if out.numel():
        grad = torch.randn(out.shape, generator=g, dtype=torch.float64)
        out.backward(grad.to(dtype))
        if want.requires_grad:  # not when every key set is empty: the reference's zeros hang off no graph
            want.backward(grad)
        for name, got, ref in zip("qkv", (q, k, v), ref_inputs):
            ref_grad = torch.zeros_like(ref) if ref.grad is None else ref.grad
            torch.testing.assert_close(got.grad.double(), ref_grad, atol=10 * tol, rtol=10 * tol,
                                       msg=lambda m, name=name: f"d{name}: {m}")


# ---- skip-gram pairs ------------------------------------------------------------------------------------------------
def _skipgram_reference(sentences, window, counts, sample, seed, shrink_window):
    """Plain loops over word2vec's rule, the same Philox draws (pyfast.rng) as the function."""
    from pyfast import rng

    tokens = [t for s in sentences for t in s]
    segment = [i for i, s in enumerate(sentences) for _ in s]
    if not tokens:
        return [], []
    if sample > 0:
        counts = np.bincount(tokens).astype(np.float64) if counts is None else np.asarray(counts, np.float64)
        threshold = sample * counts.sum()
        draws = rng.uniform(len(tokens), seed, stream=0x5B5A).double().tolist()
        keep = []
        for i, t in enumerate(tokens):
            c = max(counts[t], 1e-300)
            p = (math.sqrt(c / threshold) + 1) * threshold / c if threshold > 0 else 0.0
            keep.append(draws[i] < p)
        tokens = [t for t, kept in zip(tokens, keep) if kept]
        segment = [s for s, kept in zip(segment, keep) if kept]
    n = len(tokens)
    if shrink_window and n:
        # float32 products, as the function's tensor arithmetic (a float64 one may round across an integer)
        draws = rng.uniform(n, seed, stream=0x5B5B).numpy()
        reach = [1 + min(int(u * np.float32(window)), window - 1) for u in draws]
    else:
        reach = [window] * n
    centers, contexts = [], []
    for i in range(n):
        for off in [*range(-min(window, n), 0), *range(1, min(window, n) + 1)]:
            j = i + off
            if 0 <= j < n and abs(off) <= reach[i] and segment[j] == segment[i]:
                centers.append(tokens[i])
                contexts.append(tokens[j])
    return centers, contexts


@FUZZ
@given(n_sent=st.sampled_from([0, 1, 1, 3]), lengths=st.lists(SIZES, min_size=3, max_size=3),
       vocab=st.sampled_from([1, 2, 9]), lo=st.sampled_from([0, 0, 0, -1]), hi_extra=st.sampled_from([0, 0, 1]),
       window=st.sampled_from([1, 1, 2, 5, 10**9, 0, -1, 2.0, True]),
       counts_kind=st.sampled_from(["none", "none", "exact", "short", "zeros", "nan", "2-D", "negative"]),
       sample=st.sampled_from([0.0, 1e-3, 0.5, 1.0, math.inf, -1.0, math.nan]),
       dtype=st.sampled_from([torch.int64, torch.int64, torch.int32, torch.uint8, torch.float32, torch.bool]),
       form=st.sampled_from(["tensors", "lists", "one-tensor", "rows"]), shrink=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_fuzz_skipgram_pairs(n_sent, lengths, vocab, lo, hi_extra, window, counts_kind, sample, dtype, form, shrink,
                             seed):
    gen = np.random.default_rng(seed)
    sentences = [gen.integers(lo, vocab + hi_extra, lengths[i]).tolist() for i in range(n_sent)]
    if dtype == torch.uint8:
        sentences = [[max(t, 0) for t in s] for s in sentences]
    counts = {"none": None, "exact": np.bincount([max(t, 0) for s in sentences for t in s] + [vocab + hi_extra],
                                                 minlength=vocab + hi_extra).astype(np.float64),
              "short": np.ones(max(vocab - 1, 0)), "zeros": np.zeros(vocab + hi_extra),
              "nan": np.full(vocab + hi_extra, np.nan), "2-D": np.ones((2, vocab + hi_extra)),
              "negative": -np.ones(vocab + hi_extra)}[counts_kind]
    if form == "tensors":
        tokens = [torch.tensor(s, dtype=torch.int64).to(dtype) for s in sentences]
    elif form == "lists":
        tokens = sentences
    elif form == "one-tensor":
        tokens = torch.tensor([t for s in sentences for t in s], dtype=torch.int64).to(dtype)
        sentences = [[t for s in sentences for t in s]]
    else:  # a 2-D tensor is a sequence of 1-D ones: its rows are the sentences
        sentences = [s[:lengths[0]] + [0] * (lengths[0] - len(s)) for s in sentences]
        tokens = torch.tensor(sentences, dtype=torch.int64).reshape(n_sent, lengths[0]).to(dtype)
    counts_t = None if counts is None else torch.from_numpy(counts)
    call = lambda: skipgram_pairs(tokens, window, counts=counts_t, sample=sample, seed=seed,  # noqa: E731
                                  shrink_window=shrink)
    got = _clear_or(call)
    if got is None:
        return
    assert isinstance(window, int) and not isinstance(window, bool) and window >= 1, f"window {window!r} accepted"
    assert sample >= 0, f"sample {sample} accepted"
    every = [t for s in sentences for t in s]
    assert not every or min(every) >= 0, "a negative id was accepted"
    if every and sample > 0 and counts is not None:
        assert counts.ndim == 1 and len(counts) > max(every) and np.isfinite(counts).all() and (counts >= 0).all()
    if every and dtype in (torch.float32, torch.bool) and form != "lists":
        raise AssertionError(f"{dtype} tokens accepted")
    centers, contexts = got
    assert centers.dtype == contexts.dtype == torch.int64 and centers.shape == contexts.shape
    want = _skipgram_reference(sentences, window, counts, sample, seed, shrink)
    assert centers.tolist() == want[0] and contexts.tolist() == want[1]
