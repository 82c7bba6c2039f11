"""Fused attention (pyfast.ops.attention) against the float64 reference: outputs and all three gradients on awkward
shapes, every mask kind, causal, GQA, varlen, dropout, bf16/fp16 (flash-attention's 2x rule), bad input, custom-op checks."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import ATTENTION_SHAPES, assert_close

import pyfast
from pyfast.ops import attention as ops
from pyfast.reference import attention as ref

F32_OUT = dict(atol=2e-5, rtol=1e-4)
F32_GRAD = dict(atol=1e-4, rtol=1e-3)


def _inputs(b, hq, hkv, l, s, e, ev, dtype=torch.float32):
    q = torch.randn(b, hq, l, e).to(dtype).requires_grad_()
    k = torch.randn(b, hkv, s, e).to(dtype).requires_grad_()
    v = torch.randn(b, hkv, s, ev).to(dtype).requires_grad_()
    return q, k, v


def _assert_out_and_grads(out, expected, inputs):
    """A float32 output and its q/k/v gradients (one random upstream gradient) against a float64 reference."""
    assert_close(out, expected, name="out", **F32_OUT)
    grad = torch.randn(out.shape, dtype=torch.float64)
    got = torch.autograd.grad(out, inputs, grad.float())
    want = torch.autograd.grad(expected, inputs, grad)
    for name, g, w in zip(("dq", "dk", "dv"), got, want):
        assert_close(g, w, name=name, **F32_GRAD)


def _make_mask(kind, b, h, l, s):
    if kind is None:
        return None
    if kind == "bool_ls":
        m = torch.rand(l, s) > 0.3
        m[:, 0] = True  # no fully masked row here (tested separately)
        return m
    if kind == "bool_key_padding":  # (B, 1, 1, S), as BERT builds it
        lengths = torch.randint(1, s + 1, (b,))
        return (torch.arange(s)[None, :] < lengths[:, None])[:, None, None, :]
    if kind == "float_full":
        return torch.randn(b, h, l, s)
    if kind == "float_row_broadcast":  # (1, H, 1, S)
        return torch.randn(1, h, 1, s)
    if kind == "float_query_broadcast":  # (L, 1): stride 0 over keys
        return torch.randn(l, 1)
    raise AssertionError(kind)


def _check_against_reference(q, k, v, mask=None, is_causal=False, scale=None, enable_gqa=False,
                             out_tol=F32_OUT, grad_tol=F32_GRAD):
    out = ops.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, scale=scale,
                                           enable_gqa=enable_gqa)
    expected = ref.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, scale=scale,
                                                enable_gqa=enable_gqa)
    assert out.dtype == q.dtype and out.shape == expected.shape
    assert_close(out, expected, name="out", **out_tol)
    grad = torch.randn(out.shape, dtype=torch.float64)
    got = torch.autograd.grad(out, (q, k, v), grad.to(out.dtype))
    want = torch.autograd.grad(expected, (q, k, v), grad)
    for name, g, w in zip(("dq", "dk", "dv"), got, want):
        assert_close(g, w, name=name, **grad_tol)


SHAPES = ATTENTION_SHAPES + [  # and around the CPU tile (48 rows, 64 keys)
    (1, 1, 1, 5, 200, 96, 80),
    (1, 2, 2, 48, 64, 64, 64),   # exactly one tile
    (1, 1, 1, 49, 65, 64, 64),   # one past a tile
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("is_causal", [False, True])
def test_matches_reference_awkward_shapes(shape, is_causal):
    b, hq, hkv, l, s, e, ev = shape
    _check_against_reference(*_inputs(b, hq, hkv, l, s, e, ev), is_causal=is_causal)


@pytest.mark.parametrize("kind", ["bool_ls", "bool_key_padding", "float_full", "float_row_broadcast",
                                  "float_query_broadcast"])
@pytest.mark.parametrize("is_causal", [False, True])
def test_masks(kind, is_causal):
    b, h, l, s = 2, 3, 67, 83
    mask = _make_mask(kind, b, h, l, s)
    _check_against_reference(*_inputs(b, h, h, l, s, 40, 24), mask=mask, is_causal=is_causal)


@pytest.mark.parametrize("is_causal", [False, True])
def test_gqa(is_causal):
    q, k, v = _inputs(2, 6, 2, 71, 71, 32, 48)
    mask = _make_mask("bool_key_padding", 2, 6, 71, 71)
    _check_against_reference(q, k, v, mask=mask, is_causal=is_causal, enable_gqa=True)


def test_scale_and_multiple_kv_blocks():
    _check_against_reference(*_inputs(1, 2, 2, 300, 333, 64, 64), scale=0.37, is_causal=True)


def test_agrees_with_torch_sdpa():
    q, k, v = _inputs(2, 4, 4, 50, 90, 32, 32)
    mask = torch.randn(2, 1, 50, 90)
    for kwargs in ({}, {"is_causal": True}, {"attn_mask": mask}, {"attn_mask": mask > 0, "scale": 0.2}):
        ours = ops.scaled_dot_product_attention(q, k, v, **kwargs)
        theirs = F.scaled_dot_product_attention(q, k, v, **kwargs)
        assert_close(ours, theirs, atol=1e-5, rtol=1e-4, name=str(kwargs))
    q, k, v = _inputs(1, 4, 2, 20, 20, 16, 16)
    assert_close(ops.scaled_dot_product_attention(q, k, v, enable_gqa=True),
                 F.scaled_dot_product_attention(q, k, v, enable_gqa=True), atol=1e-5, rtol=1e-4, name="gqa")


def test_fully_masked_rows_return_zero():
    q, k, v = _inputs(1, 2, 2, 9, 11, 16, 16)
    mask = torch.ones(9, 11, dtype=torch.bool)
    mask[3] = False  # row 3 sees nothing
    fmask = torch.zeros(9, 11)
    fmask[5] = float("-inf")
    for m in (mask, fmask):
        out = ops.scaled_dot_product_attention(q, k, v, attn_mask=m)
        row = 3 if m.dtype == torch.bool else 5
        assert torch.equal(out[:, :, row], torch.zeros_like(out[:, :, row]))
        assert not torch.isnan(out).any()
        dq, dk, dv = torch.autograd.grad(out.sum(), (q, k, v))
        assert torch.equal(dq[:, :, row], torch.zeros_like(dq[:, :, row]))
        assert all(not torch.isnan(g).any() for g in (dq, dk, dv))
        _check_against_reference(q, k, v, mask=m)
    # causal with more queries than keys and a mask that removes key 0: row 0 sees nothing
    m = torch.ones(9, 11, dtype=torch.bool)
    m[:, 0] = False
    out = ops.scaled_dot_product_attention(q, k, v, attn_mask=m, is_causal=True)
    assert torch.equal(out[:, :, 0], torch.zeros_like(out[:, :, 0]))


def test_nan_propagates():
    q, k, v = _inputs(1, 1, 1, 10, 12, 16, 16)
    with torch.no_grad():
        q[0, 0, 4, 2] = float("nan")
        v[0, 0, 7, 1] = float("nan")
    out = ops.scaled_dot_product_attention(q, k, v)
    assert torch.isnan(out[0, 0, 4]).all()
    assert torch.isnan(out[0, 0, :, 1]).all()  # every row reads v[7]
    assert not torch.isnan(out[0, 0, 0, 0])


def test_non_contiguous_inputs():
    # (B, L, H, E) storage viewed as (B, H, L, E), as a fused qkv projection produces; v with a padded last dim
    qs = torch.randn(2, 33, 3, 24)
    ks = torch.randn(2, 41, 3, 24)
    vs = torch.randn(2, 41, 3, 40)[..., ::2]  # last-dim stride 2
    q = qs.transpose(1, 2).requires_grad_()
    k = ks.transpose(1, 2).requires_grad_()
    v = vs.transpose(1, 2).requires_grad_()
    assert not q.is_contiguous() and v.stride(-1) == 2
    _check_against_reference(q, k, v, is_causal=True)


@pytest.mark.parametrize("shape", [(2, 3, 2, 4, 9, 16), (3, 9, 16), (9, 16)])
def test_leading_batch_dims(shape):
    q = torch.randn(shape, requires_grad=True)
    k = torch.randn(shape, requires_grad=True)
    v = torch.randn(shape, requires_grad=True)
    mask = torch.rand(shape[-2], shape[-2]) > 0.2
    mask.fill_diagonal_(True)
    _check_against_reference(q, k, v, mask=mask)


def test_empty_inputs():
    q, k, v = _inputs(0, 2, 2, 5, 5, 16, 16)
    out = ops.scaled_dot_product_attention(q, k, v)
    assert out.shape == (0, 2, 5, 16)
    out.sum().backward()
    assert q.grad.shape == q.shape
    q, k, v = _inputs(1, 2, 2, 0, 5, 16, 16)
    assert ops.scaled_dot_product_attention(q, k, v).shape == (1, 2, 0, 16)
    q, k, v = _inputs(1, 2, 2, 4, 0, 16, 16)  # no keys at all: every row is empty -> zeros
    out = ops.scaled_dot_product_attention(q, k, v)
    assert torch.equal(out, torch.zeros(1, 2, 4, 16))


def test_backward_is_deterministic():
    q, k, v = _inputs(1, 2, 2, 130, 130, 32, 32)
    first = None
    for _ in range(5):
        out = ops.scaled_dot_product_attention(q, k, v, is_causal=True)
        grads = torch.autograd.grad(out.square().sum(), (q, k, v))
        if first is None:
            first = grads
        else:
            assert all(torch.equal(a, b) for a, b in zip(first, grads))


def test_bad_input_messages():
    sdpa = ops.scaled_dot_product_attention
    q, k, v = (torch.randn(2, 4, 8, 16) for _ in range(3))
    with pytest.raises(ValueError, match="key head dim 8 != query head dim 16"):
        sdpa(q, torch.randn(2, 4, 8, 8), v)
    with pytest.raises(ValueError, match="batch dims differ"):
        sdpa(q, torch.randn(3, 4, 8, 16), torch.randn(3, 4, 8, 16))
    with pytest.raises(ValueError, match=r"key/value heads \(2\) != query heads \(4\); pass enable_gqa=True"):
        sdpa(q, torch.randn(2, 2, 8, 16), torch.randn(2, 2, 8, 16))
    with pytest.raises(ValueError, match=r"query heads \(4\) must be a multiple of key/value heads \(3\)"):
        sdpa(q, torch.randn(2, 3, 8, 16), torch.randn(2, 3, 8, 16), enable_gqa=True)
    with pytest.raises(ValueError, match="value length 9 != key length 8"):
        sdpa(q, k, torch.randn(2, 4, 9, 16))
    with pytest.raises(TypeError, match="key has dtype torch.bfloat16 but query has torch.float32"):
        sdpa(q, k.bfloat16(), v)
    with pytest.raises(TypeError, match="query has dtype torch.int64; supported dtypes are float32, bfloat16 and float16"):
        sdpa(q.long(), k.long(), v.long())
    with pytest.raises(ValueError, match=r"attn_mask of shape \(3, 8\) does not broadcast to \(2, 4, 8, 8\)"):
        sdpa(q, k, v, attn_mask=torch.ones(3, 8, dtype=torch.bool))
    with pytest.raises(TypeError, match="attn_mask must be bool or floating point"):
        sdpa(q, k, v, attn_mask=torch.ones(8, 8, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"dropout_p must be in \[0, 1\)"):
        sdpa(q, k, v, dropout_p=1.0)
    with pytest.raises(ValueError, match=r"head dims must be in \[1, 256\]"):
        big = torch.randn(1, 1, 4, 300)
        sdpa(big, big, big)
    with pytest.raises(ValueError, match="same number of dims"):
        sdpa(q, k[0], v)
    with pytest.raises(RuntimeError, match="runs on CPU and CUDA tensors"):  # CUDA routes to issue #8's kernels
        sdpa(q.to("meta"), k.to("meta"), v.to("meta"))


def _low_precision_rule(dtype, out_tol_floor=1e-3):
    """flash-attention's rule: the error vs fp64 at most 2x (3x for grads) that of torch's math in the same dtype."""
    torch.manual_seed(1)
    b, h, l, s, e = 2, 3, 77, 77, 64
    q32, k32, v32 = (torch.randn(b, h, n, e) for n in (l, s, s))
    mask = _make_mask("bool_key_padding", b, h, l, s)
    grad = torch.randn(b, h, l, e)

    def run(fn, dtype):
        q, k, v = (t.to(dtype).requires_grad_() for t in (q32, k32, v32))
        out = fn(q, k, v)
        gs = torch.autograd.grad(out, (q, k, v), grad.to(out.dtype))
        return [out.double()] + [g.double() for g in gs]

    exact = run(lambda q, k, v: ref.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=True),
                torch.float64)
    ours = run(lambda q, k, v: ops.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=True),
               dtype)
    # torch's math path in the low precision: the same textbook formula, every op rounding to that dtype
    def torch_low_precision(q, k, v):
        scores = (q @ k.transpose(-2, -1)) * (1 / math.sqrt(e))
        allowed = torch.ones(l, s, dtype=torch.bool).tril() & mask
        return torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1) @ v
    theirs = run(torch_low_precision, dtype)
    for name, o, t, x, factor in zip(("out", "dq", "dk", "dv"), ours, theirs, exact, (2, 3, 3, 3)):
        err_ours = (o - x).abs().max().item()
        err_theirs = (t - x).abs().max().item()
        assert err_ours <= factor * err_theirs + out_tol_floor, (name, err_ours, err_theirs)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_flash_attention_rule(dtype):
    _low_precision_rule(dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_output_and_grad_dtype(dtype):
    q, k, v = _inputs(1, 2, 2, 10, 10, 16, 16, dtype=dtype)
    out = ops.scaled_dot_product_attention(q, k, v)
    assert out.dtype == dtype
    out.float().sum().backward()
    assert q.grad.dtype == dtype
    assert_close(out, F.scaled_dot_product_attention(q, k, v), atol=2e-2, rtol=2e-2, name="vs torch")


# ---- dropout -----------------------------------------------------------------------------------------------------
def test_dropout_matches_reference_with_the_same_keep_mask():
    b, h, l, s, e = 2, 2, 45, 70, 32
    q, k, v = _inputs(b, h, h, l, s, e, e)
    p = 0.3
    torch.manual_seed(123)
    out = ops.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
    torch.manual_seed(123)
    seed = ops._dropout_seed(p)  # the seed the call above drew from torch's generator
    keep = ops.dropout_keep_mask(b, h, l, s, p, seed)
    expected = ref.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_keep=keep, dropout_p=p)
    _assert_out_and_grads(out, expected, (q, k, v))


def test_dropout_rate_and_reproducibility():
    keep = ops.dropout_keep_mask(2, 3, 64, 301, 0.25, seed=7)
    assert abs(keep.float().mean().item() - 0.75) < 0.01
    assert torch.equal(keep, ops.dropout_keep_mask(2, 3, 64, 301, 0.25, seed=7))
    assert not torch.equal(keep, ops.dropout_keep_mask(2, 3, 64, 301, 0.25, seed=8))
    q, k, v = _inputs(1, 2, 2, 20, 20, 16, 16)
    torch.manual_seed(5)
    a = ops.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    torch.manual_seed(5)
    b = ops.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    c = ops.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # the expectation over masks is the undropped output
    with torch.no_grad():
        mean = sum(ops.scaled_dot_product_attention(q, k, v, dropout_p=0.2) for _ in range(400)) / 400
        assert_close(mean, ops.scaled_dot_product_attention(q, k, v), atol=0.12, rtol=0, name="E[dropout out]")


# ---- varlen ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("is_causal", [False, True])
def test_varlen_matches_reference(is_causal):
    lengths = [5, 1, 64, 97, 0, 33]
    cu = torch.tensor([0] + list(torch.tensor(lengths).cumsum(0)), dtype=torch.int32)
    total, hq, hkv, e, ev = sum(lengths), 4, 2, 40, 24
    q = torch.randn(total, hq, e, requires_grad=True)
    k = torch.randn(total, hkv, e, requires_grad=True)
    v = torch.randn(total, hkv, ev, requires_grad=True)
    out = ops.attention_varlen(q, k, v, cu, cu, max(lengths), max(lengths), is_causal=is_causal)
    expected = ref.attention_varlen(q, k, v, cu, cu, is_causal=is_causal)
    _assert_out_and_grads(out, expected, (q, k, v))


def test_varlen_equals_padded_with_key_padding_mask():
    lengths = [7, 19, 12]
    cu = torch.tensor([0, 7, 26, 38], dtype=torch.int32)
    h, e = 2, 16
    q, k, v = (torch.randn(38, h, e) for _ in range(3))
    packed = ops.attention_varlen(q, k, v, cu, cu, 19, 19)
    for b, n in enumerate(lengths):
        sl = slice(int(cu[b]), int(cu[b + 1]))
        single = ops.scaled_dot_product_attention(q[sl].transpose(0, 1), k[sl].transpose(0, 1), v[sl].transpose(0, 1))
        assert_close(packed[sl], single.transpose(0, 1), atol=1e-6, rtol=1e-5, name=f"seq {b}")


def test_varlen_bad_input():
    q = torch.randn(10, 2, 16)
    with pytest.raises(ValueError, match="cu_seqlens_q must be a 1-D int32 tensor"):
        ops.attention_varlen(q, q, q, torch.tensor([0, 10]), torch.tensor([0, 10], dtype=torch.int32), 10, 10)
    cu = torch.tensor([0, 4, 10], dtype=torch.int32)
    with pytest.raises(ValueError, match=r"longer than its max_seqlen \(5\)"):
        ops.attention_varlen(q, q, q, cu, cu, 5, 10)
    with pytest.raises(ValueError, match=r"must rise from 0 to 10"):
        ops.attention_varlen(q, q, q, torch.tensor([0, 4, 9], dtype=torch.int32), cu, 10, 10)


# ---- custom op machinery -----------------------------------------------------------------------------------------
def test_opcheck():
    q, k, v = _inputs(2, 4, 2, 13, 17, 16, 8)
    mask = torch.randn(2, 4, 13, 17)
    args = (q, k, v, mask, None, None, 13, 17, True, 0.25, 0.0, 0)
    torch.library.opcheck(torch.ops.pyfast.attention_fwd.default, args)
    out, lse = torch.ops.pyfast.attention_fwd(*args)
    bwd_args = (torch.randn_like(out), q.detach(), k.detach(), v.detach(), out.detach(), lse, mask, None, None, 13, 17,
                True, 0.25, 0.0, 0)
    torch.library.opcheck(torch.ops.pyfast.attention_bwd.default, bwd_args)


def test_torch_compile_fullgraph():
    q, k, v = _inputs(1, 2, 2, 24, 24, 16, 16)

    def fn(q, k, v):
        return ops.scaled_dot_product_attention(q, k, v, is_causal=True) * 2.0

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    out = compiled(q, k, v)
    assert_close(out, fn(q, k, v), atol=0, rtol=0, name="compiled")
    out.sum().backward()
    assert q.grad is not None and q.grad.shape == q.shape


def test_exported_names():
    assert pyfast.scaled_dot_product_attention is ops.scaled_dot_product_attention
    assert pyfast.attention_varlen is ops.attention_varlen
    assert "scaled_dot_product_attention" in pyfast.__all__


# ---- property test -----------------------------------------------------------------------------------------------
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402


@given(
    b=st.integers(1, 2), hkv=st.integers(1, 2), group=st.integers(1, 3), l=st.integers(1, 70), s=st.integers(1, 70),
    e=st.integers(1, 72), ev=st.integers(1, 40), is_causal=st.booleans(),
    mask_kind=st.sampled_from([None, "bool_ls", "bool_key_padding", "float_full", "float_row_broadcast"]),
    seed=st.integers(0, 2**16),
)
def test_property_random_shapes_and_masks(b, hkv, group, l, s, e, ev, is_causal, mask_kind, seed):
    torch.manual_seed(seed)
    hq = hkv * group
    mask = _make_mask(mask_kind, b, hq, l, s)
    _check_against_reference(*_inputs(b, hq, hkv, l, s, e, ev), mask=mask, is_causal=is_causal,
                             enable_gqa=group > 1)


# ---- nn module ---------------------------------------------------------------------------------------------------
def _module_reference(m, x, key_padding_mask=None):
    """The same layer written with the float64 reference attention."""
    b, l, _ = x.shape
    kv = m.num_kv_heads * m.head_dim
    q, k, v = m.qkv_proj(x).split([m.embed_dim, kv, kv], dim=-1)
    q = q.reshape(b, l, m.num_heads, m.head_dim).transpose(1, 2)
    k = k.reshape(b, l, m.num_kv_heads, m.head_dim).transpose(1, 2)
    v = v.reshape(b, l, m.num_kv_heads, m.head_dim).transpose(1, 2)
    mask = None if key_padding_mask is None else (~key_padding_mask)[:, None, None, :]
    out = ref.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=m.causal, enable_gqa=True)
    return m.out_proj(out.float().transpose(1, 2).reshape(b, l, m.embed_dim))


@pytest.mark.parametrize("num_kv_heads,causal", [(None, False), (2, True), (1, False)])
def test_multihead_self_attention(num_kv_heads, causal):
    m = pyfast.nn.MultiheadSelfAttention(48, 6, num_kv_heads=num_kv_heads, causal=causal)
    x = torch.randn(3, 19, 48, requires_grad=True)
    pad = torch.zeros(3, 19, dtype=torch.bool)
    pad[1, 12:] = True
    pad[2, 5:] = True
    out = m(x, key_padding_mask=pad)
    expected = _module_reference(m, x, pad)
    assert_close(out, expected, atol=1e-5, rtol=1e-4, name="out")
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, (x, m.qkv_proj.weight), g)
    want = torch.autograd.grad(expected, (x, m.qkv_proj.weight), g)
    assert_close(got[0], want[0], atol=1e-4, rtol=1e-3, name="dx")
    assert_close(got[1], want[1], atol=1e-4, rtol=1e-3, name="dW_qkv")


def test_multihead_self_attention_matches_torch_mha():
    torch.manual_seed(3)
    ours = pyfast.nn.MultiheadSelfAttention(32, 4)
    theirs = torch.nn.MultiheadAttention(32, 4, batch_first=True)
    with torch.no_grad():
        theirs.in_proj_weight.copy_(ours.qkv_proj.weight)
        theirs.in_proj_bias.copy_(ours.qkv_proj.bias)
        theirs.out_proj.weight.copy_(ours.out_proj.weight)
        theirs.out_proj.bias.copy_(ours.out_proj.bias)
    x = torch.randn(2, 11, 32)
    pad = torch.zeros(2, 11, dtype=torch.bool)
    pad[0, 7:] = True
    expected, _ = theirs(x, x, x, key_padding_mask=pad, need_weights=False)
    assert_close(ours(x, key_padding_mask=pad), expected, atol=1e-5, rtol=1e-4, name="vs nn.MultiheadAttention")


def test_multihead_self_attention_dropout_and_errors():
    m = pyfast.nn.MultiheadSelfAttention(16, 2, dropout=0.5)
    x = torch.randn(2, 8, 16)
    m.eval()
    assert torch.equal(m(x), m(x))
    m.train()
    assert not torch.equal(m(x), m(x))
    with pytest.raises(ValueError, match=r"embed_dim \(10\) must be divisible by num_heads \(3\)"):
        pyfast.nn.MultiheadSelfAttention(10, 3)
    with pytest.raises(ValueError, match=r"num_heads \(4\) must be a multiple of num_kv_heads \(3\)"):
        pyfast.nn.MultiheadSelfAttention(16, 4, num_kv_heads=3)
    with pytest.raises(ValueError, match=r"key_padding_mask must be \(batch, length\)"):
        m(x, key_padding_mask=torch.zeros(2, 9, dtype=torch.bool))


def test_custom_op_rejects_inconsistent_direct_calls():
    q, k, v = _inputs(1, 2, 2, 8, 8, 16, 16)
    with pytest.raises(ValueError, match=r"mask must be a float32 \(B, Hq, L, S\)"):
        torch.ops.pyfast.attention_fwd(q, k, v, torch.zeros(1, 2, 8, 4), None, None, 8, 8, False, 0.25, 0.0, 0)
    flat = torch.randn(8, 2, 16)
    cu = torch.tensor([0, 4, 12], dtype=torch.int32)  # ends past the 8 tokens
    with pytest.raises(ValueError, match="cu_seqlens must be equal-length int32 prefix sums"):
        torch.ops.pyfast.attention_fwd(flat, flat, flat, None, cu, cu, 8, 8, False, 0.25, 0.0, 0)
    bad = torch.tensor([0, 4, 8], dtype=torch.int32)  # a sequence of 4 > max_seqlen 3: the kernel refuses
    with pytest.raises(ValueError, match="outside"):
        torch.ops.pyfast.attention_fwd(flat, flat, flat, None, bad, bad, 3, 3, False, 0.25, 0.0, 0)


def test_varlen_dropout_backward_regenerates_the_forward_mask():
    # With a fixed seed the op is a deterministic function; its gradient must match a central finite difference,
    # which only holds if the backward redraws exactly the forward's keep mask.
    cu = torch.tensor([0, 9, 30, 37], dtype=torch.int32)
    q, k, v = (torch.randn(37, 2, 16, dtype=torch.float32) for _ in range(3))
    g = torch.randn(37, 2, 16)
    direction = [torch.randn_like(t) for t in (q, k, v)]

    def objective(q, k, v):
        out, _ = torch.ops.pyfast.attention_fwd(q, k, v, None, cu, cu, 21, 21, True, 0.25, 0.4, 1234)
        return (out.double() * g.double()).sum()

    qs, ks, vs = (t.clone().requires_grad_() for t in (q, k, v))
    grads = torch.autograd.grad(objective(qs, ks, vs), (qs, ks, vs))
    analytic = sum((gr.double() * d.double()).sum() for gr, d in zip(grads, direction)).item()
    eps = 1e-2
    plus = objective(*(t + eps * d for t, d in zip((q, k, v), direction))).item()
    minus = objective(*(t - eps * d for t, d in zip((q, k, v), direction))).item()
    numeric = (plus - minus) / (2 * eps)
    assert abs(analytic - numeric) <= 2e-3 * max(1.0, abs(numeric)), (analytic, numeric)
