"""Fused attention (pyfast.ops.attention) on every device (cpu, cuda, emu): outputs and all three gradients against
the float64 reference on awkward shapes, every mask kind, causal, GQA, varlen, dropout (keyed alike on both
devices), bf16/fp16 (flash-attention's 2x rule; on CUDA the tensor-core kernels at head dims 64 and 128), the CUDA
kernels against the CPU op, the tensor-core mma helper's fragment layouts, bad input, custom-op checks, the nn
module. The emulator runs one OS thread per CUDA thread, so its cases are the small ones."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import ATTENTION_SHAPES, assert_close

import pyfast
from pyfast import _native
from pyfast.ops import attention as ops
from pyfast.reference import attention as ref

pytestmark = pytest.mark.sanitize  # .ci/sanitize runs this file against the ASan/UBSan build

F32_OUT = dict(atol=2e-5, rtol=1e-4)
F32_GRAD = dict(atol=1e-4, rtol=1e-3)
ALL = ["cpu", "cuda", "emu"]
NOT_EMU = ["cpu", "cuda"]  # too slow emulated (seconds per fp32 call at these sizes)
CUDA_KERNELS = ["cuda", "emu"]  # the CUDA kernels, on a GPU or emulated


def _shape_id(value):
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _per_device(cases, emu_cases=()):
    """(device, case) pairs for parametrize("device,...", indirect=["device"]): every case on cpu and cuda, the
    emu_cases emulated too."""
    return [(d, c) for d in NOT_EMU for c in cases] + [("emu", c) for c in emu_cases]


def _inputs(b, hq, hkv, l, s, e, ev, dtype=torch.float32, device="cpu"):
    q = torch.randn(b, hq, l, e).to(dtype).to(device).requires_grad_()
    k = torch.randn(b, hkv, s, e).to(dtype).to(device).requires_grad_()
    v = torch.randn(b, hkv, s, ev).to(dtype).to(device).requires_grad_()
    return q, k, v


def _reference(fn, tensors, grad, **kwargs):
    """fn (a pyfast.reference function) on float64 CPU copies of tensors: (out, grads of the tensors for grad)."""
    leaves = [t.detach().cpu().double().requires_grad_() for t in tensors]
    kwargs = {key: (val.cpu() if isinstance(val, torch.Tensor) else val) for key, val in kwargs.items()}
    out = fn(*leaves, **kwargs)
    return out, torch.autograd.grad(out, leaves, grad.cpu().double())


def _assert_out_and_grads(out, inputs, fn, out_tol=F32_OUT, grad_tol=F32_GRAD, **kwargs):
    """out (computed from inputs) and its input gradients (one random upstream gradient) against fn in float64."""
    assert out.device == inputs[0].device
    grad = torch.randn(out.shape, dtype=torch.float64)
    expected, want = _reference(fn, inputs, grad, **kwargs)
    assert_close(out, expected, name="out", **out_tol)
    got = torch.autograd.grad(out, inputs, grad.to(device=out.device, dtype=out.dtype))
    for name, g, w in zip(("dq", "dk", "dv"), got, want):
        assert_close(g, w, name=name, **grad_tol)


def _make_mask(kind, b, h, l, s, device="cpu"):
    if kind is None:
        return None
    if kind == "bool_ls":
        m = torch.rand(l, s) > 0.3
        m[:, 0] = True  # no fully masked row here (tested separately)
    elif kind == "bool_key_padding":  # (B, 1, 1, S), as BERT builds it
        lengths = torch.randint(1, s + 1, (b,))
        m = (torch.arange(s)[None, :] < lengths[:, None])[:, None, None, :]
    elif kind == "float_full":
        m = torch.randn(b, h, l, s)
    elif kind == "float_row_broadcast":  # (1, H, 1, S)
        m = torch.randn(1, h, 1, s)
    elif kind == "float_query_broadcast":  # (L, 1): stride 0 over keys
        m = torch.randn(l, 1)
    else:
        raise AssertionError(kind)
    return m.to(device)


def _check_against_reference(q, k, v, mask=None, is_causal=False, scale=None, enable_gqa=False,
                             out_tol=F32_OUT, grad_tol=F32_GRAD):
    out = ops.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, scale=scale,
                                           enable_gqa=enable_gqa)
    assert out.dtype == q.dtype
    _assert_out_and_grads(out, (q, k, v), ref.scaled_dot_product_attention, out_tol, grad_tol, attn_mask=mask,
                          is_causal=is_causal, scale=scale, enable_gqa=enable_gqa)


SHAPES = ATTENTION_SHAPES + [
    (1, 1, 1, 5, 200, 96, 80),
    (1, 2, 2, 48, 64, 64, 64),     # exactly one CPU tile (48 rows, 64 keys)
    (1, 1, 1, 49, 65, 64, 64),     # one past it
    (1, 1, 1, 17, 33, 64, 64),     # one past a CUDA tile (16 rows, 32 keys)
    (1, 2, 2, 16, 32, 64, 64),     # exactly one
    (1, 1, 1, 300, 301, 80, 96),   # many
]
EMU_SHAPES = [(1, 1, 1, 1, 1, 16, 16), (2, 2, 2, 1, 7, 128, 128), (1, 1, 1, 23, 29, 256, 256),
              (1, 1, 1, 31, 17, 1, 3), (1, 1, 1, 17, 33, 64, 64)]


@pytest.mark.parametrize("device,shape", _per_device(SHAPES, EMU_SHAPES), indirect=["device"], ids=_shape_id)
@pytest.mark.parametrize("is_causal", [False, True])
def test_matches_reference_awkward_shapes(device, shape, is_causal):
    _check_against_reference(*_inputs(*shape, device=device), is_causal=is_causal)


@pytest.mark.parametrize("device", NOT_EMU, indirect=True)
@pytest.mark.parametrize("kind", ["bool_ls", "bool_key_padding", "float_full", "float_row_broadcast",
                                  "float_query_broadcast"])
@pytest.mark.parametrize("is_causal", [False, True])
def test_masks(device, kind, is_causal):
    b, h, l, s = 2, 3, 67, 83
    mask = _make_mask(kind, b, h, l, s, device)
    _check_against_reference(*_inputs(b, h, h, l, s, 40, 24, device=device), mask=mask, is_causal=is_causal)


@pytest.mark.parametrize("device", NOT_EMU, indirect=True)
@pytest.mark.parametrize("is_causal", [False, True])
def test_gqa(device, is_causal):
    q, k, v = _inputs(2, 6, 2, 71, 71, 32, 48, device=device)
    mask = _make_mask("bool_key_padding", 2, 6, 71, 71, device)
    _check_against_reference(q, k, v, mask=mask, is_causal=is_causal, enable_gqa=True)


@pytest.mark.parametrize("device", NOT_EMU, indirect=True)
def test_scale_and_multiple_kv_blocks(device):
    _check_against_reference(*_inputs(1, 2, 2, 300, 333, 64, 64, device=device), scale=0.37, is_causal=True)


@pytest.mark.parametrize("device", NOT_EMU, indirect=True)
def test_agrees_with_torch_sdpa(device):
    q, k, v = _inputs(2, 4, 4, 50, 90, 32, 32, device=device)
    mask = torch.randn(2, 1, 50, 90, device=device)
    for kwargs in ({}, {"is_causal": True}, {"attn_mask": mask}, {"attn_mask": mask > 0, "scale": 0.2}):
        ours = ops.scaled_dot_product_attention(q, k, v, **kwargs)
        theirs = F.scaled_dot_product_attention(q, k, v, **kwargs)
        assert_close(ours, theirs, atol=1e-5, rtol=1e-4, name=str(kwargs))
    q, k, v = _inputs(1, 4, 2, 20, 20, 16, 16, device=device)
    assert_close(ops.scaled_dot_product_attention(q, k, v, enable_gqa=True),
                 F.scaled_dot_product_attention(q, k, v, enable_gqa=True), atol=1e-5, rtol=1e-4, name="gqa")


@pytest.mark.parametrize("device", ALL, indirect=True)
def test_fully_masked_rows_return_zero(device):
    q, k, v = _inputs(1, 2, 2, 9, 11, 16, 16, device=device)
    mask = torch.ones(9, 11, dtype=torch.bool, device=device)
    mask[3] = False  # row 3 sees nothing
    fmask = torch.zeros(9, 11, device=device)
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
    m = torch.ones(9, 11, dtype=torch.bool, device=device)
    m[:, 0] = False
    out = ops.scaled_dot_product_attention(q, k, v, attn_mask=m, is_causal=True)
    assert torch.equal(out[:, :, 0], torch.zeros_like(out[:, :, 0]))


# The CUDA-core kernel (fp32, and head dims other than 64 / 128) treats a row whose scores are NaN as fully masked
# (out 0, lse -inf); the CPU and tensor-core kernels propagate the NaN.
@pytest.mark.parametrize("device", ALL, indirect=True)
def test_nan_propagates(device):
    q, k, v = _inputs(1, 1, 1, 10, 12, 16, 16, device=device)
    with torch.no_grad():
        q[0, 0, 4, 2] = float("nan")
        v[0, 0, 7, 1] = float("nan")
    out = ops.scaled_dot_product_attention(q, k, v)
    assert torch.isnan(out[0, 0, 4]).all()
    assert torch.isnan(out[0, 0, :, 1]).all()  # every row reads v[7]
    assert not torch.isnan(out[0, 0, 0, 0])


@pytest.mark.parametrize("device", ALL, indirect=True)
def test_non_contiguous_inputs(device):
    # (B, L, H, E) storage viewed as (B, H, L, E), as a fused qkv projection produces; v with a padded last dim
    qs = torch.randn(2, 33, 3, 24, device=device)
    ks = torch.randn(2, 41, 3, 24, device=device)
    vs = torch.randn(2, 41, 3, 40, device=device)[..., ::2]  # last-dim stride 2
    q = qs.transpose(1, 2).requires_grad_()
    k = ks.transpose(1, 2).requires_grad_()
    v = vs.transpose(1, 2).requires_grad_()
    assert not q.is_contiguous() and v.stride(-1) == 2
    _check_against_reference(q, k, v, is_causal=True)


@pytest.mark.parametrize("device", ALL, indirect=True)
@pytest.mark.parametrize("shape", [(2, 3, 2, 4, 9, 16), (3, 9, 16), (9, 16)])
def test_leading_batch_dims(device, shape):
    q = torch.randn(shape, device=device, requires_grad=True)
    k = torch.randn(shape, device=device, requires_grad=True)
    v = torch.randn(shape, device=device, requires_grad=True)
    mask = torch.rand(shape[-2], shape[-2]) > 0.2
    mask.fill_diagonal_(True)
    _check_against_reference(q, k, v, mask=mask.to(device))


@pytest.mark.parametrize("device", ALL, indirect=True)
def test_empty_inputs(device):
    q, k, v = _inputs(0, 2, 2, 5, 5, 16, 16, device=device)
    out = ops.scaled_dot_product_attention(q, k, v)
    assert out.shape == (0, 2, 5, 16)
    out.sum().backward()
    assert q.grad.shape == q.shape
    q, k, v = _inputs(1, 2, 2, 0, 5, 16, 16, device=device)
    assert ops.scaled_dot_product_attention(q, k, v).shape == (1, 2, 0, 16)
    q, k, v = _inputs(1, 2, 2, 4, 0, 16, 16, device=device)  # no keys at all: every row is empty -> zeros
    out = ops.scaled_dot_product_attention(q, k, v)
    assert torch.equal(out, torch.zeros(1, 2, 4, 16, device=device))


@pytest.mark.parametrize("device", NOT_EMU, indirect=True)
def test_backward_is_deterministic(device):
    q, k, v = _inputs(1, 2, 2, 130, 130, 32, 32, device=device)
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
    with pytest.raises(TypeError, match="query has dtype torch.int64; supported dtypes are float32, bfloat16 and "
                                        "float16"):
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
    with pytest.raises(RuntimeError, match="runs on CPU and CUDA tensors"):
        sdpa(q.to("meta"), k.to("meta"), v.to("meta"))


@pytest.mark.parametrize("device", CUDA_KERNELS, indirect=True)
def test_kernel_errors_surface_as_python_exceptions(device, device_name):
    q, k, v = _inputs(1, 1, 1, 4, 4, 300, 300, device=device)  # head dim past kMaxHeadDim: the C++ check raises
    with pytest.raises(ValueError, match="head dims must be in"):
        ops.attention_fwd(q, k, v, None, None, None, 4, 4, False, 1.0, 0.0, 0)
    if device_name == "cuda":
        q, k, v = _inputs(1, 1, 1, 4, 4, 8, 8, device=device)
        with pytest.raises(RuntimeError, match="is on cpu but q is on cuda"):
            ops.attention_fwd(q, k.detach().cpu(), v, None, None, None, 4, 4, False, 1.0, 0.0, 0)


@pytest.mark.skipif(_native.cuda_built(), reason="this build has the CUDA module")
def test_cuda_kernels_without_a_cuda_build_say_how_to_rebuild():
    q, k, v = (t.detach() for t in _inputs(1, 1, 1, 4, 4, 8, 8))
    args = (None, None, None, 4, 4, False, 1.0, 0.0, 0)
    with pytest.raises(RuntimeError, match="PYFAST_CUDA=ON"):
        ops._attention_fwd_cuda(q, k, v, *args)
    out, lse = ops.attention_fwd(q, k, v, *args)
    with pytest.raises(RuntimeError, match="PYFAST_CUDA=ON"):
        ops._attention_bwd_cuda(out, q, k, v, out, lse, *args)
    with pytest.raises(RuntimeError, match="PYFAST_CUDA=ON"):
        ops.dropout_keep_mask(1, 1, 2, 2, 0.5, 0, device="cuda")


# ---- low precision -----------------------------------------------------------------------------------------------
def _low_precision_math(q, k, v, mask, is_causal, scale, keep=None, dropout_p=0.0):
    """torch's math path in q's dtype (every op rounding to it): the yardstick of flash-attention's rule."""
    group = q.shape[-3] // k.shape[-3]
    k, v = k.repeat_interleave(group, dim=-3), v.repeat_interleave(group, dim=-3)
    scores = (q @ k.transpose(-2, -1)) * scale
    if mask is not None:
        scores = scores + mask.to(scores.dtype) if mask.dtype != torch.bool else \
            scores.masked_fill(~mask, float("-inf"))
    if is_causal:
        l, s = scores.shape[-2:]
        scores = scores.masked_fill(~torch.ones(l, s, dtype=torch.bool, device=q.device).tril(), float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    if keep is not None:
        probs = probs * keep.to(probs.dtype) / (1 - dropout_p)
    return probs @ v


def _flash_rule(ours, fn, inputs, dout, floor=1e-3, factors=(2, 3, 3, 3), **kwargs):
    """flash-attention's rule: ours = [out, dq, dk, dv] errs against fn in float64 (CPU) at most factor x as much
    as _low_precision_math in the inputs' dtype (on their device), plus a small floor."""
    def run(f, tensors):
        leaves = [t.detach().requires_grad_() for t in tensors]
        o = f(*leaves)
        return [o.double().cpu()] + [g.double().cpu() for g in torch.autograd.grad(o, leaves, dout.to(o))]

    on_cpu = {key: (val.cpu() if isinstance(val, torch.Tensor) else val) for key, val in kwargs.items()}
    exact = run(lambda q, k, v: fn(q, k, v, **on_cpu), [t.detach().cpu().double() for t in inputs])
    theirs = run(lambda q, k, v: _low_precision_math(q, k, v, kwargs.get("attn_mask"), kwargs["is_causal"],
                                                     kwargs["scale"], kwargs.get("dropout_keep"),
                                                     kwargs.get("dropout_p", 0.0)), inputs)
    for name, o, t, x, factor in zip(("out", "dq", "dk", "dv"), ours, theirs, exact, factors):
        o = o.detach().double().cpu()
        assert not torch.isnan(o).any(), f"{name}: NaN"
        err_ours, err_theirs = (o - x).abs().max().item(), (t - x).abs().max().item()
        assert err_ours <= factor * err_theirs + floor, f"{name}: error {err_ours:.3g} vs torch's {err_theirs:.3g}"


@pytest.mark.parametrize("device", NOT_EMU, indirect=True)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_flash_attention_rule(device, dtype):
    torch.manual_seed(1)
    b, h, l, s, e = 2, 3, 77, 77, 64
    q, k, v = (torch.randn(b, h, n, e).to(dtype).to(device) for n in (l, s, s))
    mask = _make_mask("bool_key_padding", b, h, l, s, device)
    grad = torch.randn(b, h, l, e, device=device)
    leaves = [t.requires_grad_() for t in (q, k, v)]
    out = ops.scaled_dot_product_attention(*leaves, attn_mask=mask, is_causal=True)
    ours = [out] + list(torch.autograd.grad(out, leaves, grad.to(dtype)))
    _flash_rule(ours, ref.scaled_dot_product_attention, (q, k, v), grad, attn_mask=mask, is_causal=True,
                scale=1 / math.sqrt(e))


@pytest.mark.parametrize("device", ["cuda"], indirect=True)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("d", [64, 128, 80])  # 64, 128: the tensor-core kernels; 80: the CUDA-core fallback
def test_low_precision_flash_rule_long_rows(device, dtype, is_causal, d):
    """The error vs float64 at most 2x that of torch's own SDPA (its flash kernels) in the same dtype."""
    q, k, v = _inputs(2, 4, 4, 200, 200, d, d, dtype, device)
    out, _ = ops.attention_fwd(q, k, v, None, None, None, 200, 200, is_causal, d ** -0.5, 0.0, 0)
    torch_lp = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    grad = torch.randn(out.shape, dtype=torch.float64)
    expected, want = _reference(ref.scaled_dot_product_attention, (q, k, v), grad, is_causal=is_causal)
    ours = [out] + list(torch.autograd.grad(out, (q, k, v), grad.to(device=device, dtype=dtype)))
    theirs = [torch_lp] + list(torch.autograd.grad(torch_lp, (q, k, v), grad.to(device=device, dtype=dtype)))
    for name, o, t, x in zip(("out", "dq", "dk", "dv"), ours, theirs, [expected, *want]):
        err = (o.cpu().double() - x).abs().max().item()
        err_torch = (t.cpu().double() - x).abs().max().item()
        assert err <= 2 * err_torch + 1e-5, f"{name}: error {err:.3g} vs torch {err_torch:.3g}"


@pytest.mark.parametrize("device", ALL, indirect=True)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_output_and_grad_dtype(device, dtype):
    q, k, v = _inputs(1, 2, 2, 10, 10, 16, 16, dtype=dtype, device=device)
    out = ops.scaled_dot_product_attention(q, k, v)
    assert out.dtype == dtype
    out.float().sum().backward()
    assert q.grad.dtype == dtype
    expected = F.scaled_dot_product_attention(*(t.detach().float() for t in (q, k, v)))
    assert_close(out, expected, atol=2e-2, rtol=2e-2, name="vs torch")


# ---- the CUDA kernels against the CPU op (fp32) --------------------------------------------------------------------
def _kernel_and_cpu_op(device, q, k, v, mask, cu_q, cu_k, max_q, max_k, is_causal, scale, dropout_p, seed, dout,
                       deterministic=False):
    """((out, lse, dq, dk, dv) of the custom ops on device, the same of the CPU kernel bodies on CPU copies).
    deterministic: which CUDA backward (the atomic-free one, or by default the single kernel with dQ atomics)."""
    cpu = [None if t is None else t.cpu() for t in (q, k, v, mask, cu_q, cu_k, dout)]
    to = [None if t is None else t.to(device) for t in (q, k, v, mask, cu_q, cu_k, dout)]
    scalars = (max_q, max_k, is_causal, scale, dropout_p, seed)
    out_d, lse_d = ops.attention_fwd(*to[:6], *scalars)
    grads_d = ops.attention_bwd(to[6], *to[:3], out_d, lse_d, *to[3:6], *scalars, deterministic)
    out_c, lse_c = ops._attention_fwd_cpu(*cpu[:6], *scalars)
    grads_c = ops._attention_bwd_cpu(cpu[6], *cpu[:3], out_c, lse_c, *cpu[3:6], *scalars)
    return (out_d, lse_d, *grads_d), (out_c, lse_c, *grads_c)


@pytest.mark.parametrize("device", CUDA_KERNELS, indirect=True)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1, 1, 16, 16), (2, 3, 3, 37, 53, 20, 24), (1, 4, 2, 33, 40, 64, 64),
                                   (1, 1, 1, 17, 33, 1, 3)], ids=_shape_id)
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("mask_kind,dropout_p", [(None, 0.0), ("float", 0.0), (None, 0.3)])
def test_kernel_equals_cpu_op(device, shape, is_causal, mask_kind, dropout_p):
    b, hq, hkv, l, s, e, ev = shape
    g = torch.Generator().manual_seed(b * 100 + l)
    q, k, v = (torch.randn(*dims, generator=g) for dims in ((b, hq, l, e), (b, hkv, s, e), (b, hkv, s, ev)))
    mask = torch.randn(b, hq, l, s, generator=g) if mask_kind == "float" else None
    dout = torch.randn(b, hq, l, ev, generator=g)
    got, want = _kernel_and_cpu_op(device, q, k, v, mask, None, None, l, s, is_causal, e ** -0.5, dropout_p, 1234,
                                   dout)
    for name, a, c in zip(("out", "lse", "dq", "dk", "dv"), got, want):
        assert a.device.type == device.type
        assert_close(a, c, name=name, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("device", CUDA_KERNELS, indirect=True)
@pytest.mark.parametrize("dropout_p", [0.0, 0.3])
def test_kernel_equals_cpu_op_varlen(device, dropout_p):
    lq, lk = [3, 1, 20, 0], [5, 9, 20, 2]
    cu_q = torch.tensor([0] + list(torch.tensor(lq).cumsum(0)), dtype=torch.int32)
    cu_k = torch.tensor([0] + list(torch.tensor(lk).cumsum(0)), dtype=torch.int32)
    q, dout = torch.randn(sum(lq), 4, 24), torch.randn(sum(lq), 4, 8)
    k, v = torch.randn(sum(lk), 2, 24), torch.randn(sum(lk), 2, 8)
    got, want = _kernel_and_cpu_op(device, q, k, v, None, cu_q, cu_k, max(lq), max(lk), True, 0.2, dropout_p, 99,
                                   dout)
    for name, a, c in zip(("out", "lse", "dq", "dk", "dv"), got, want):
        assert_close(a, c, name=name, atol=1e-4, rtol=1e-4)


# ---- tensor cores (bf16 / fp16, head dims 64 and 128) ------------------------------------------------------------
# Forward and backward (dQ, dK/dV) run their mma.sync kernels. Checked by flash-attention's rule against float64 on
# the same (rounded) inputs, and the lse (fp32 throughout) against the CPU op's tightly.
def _check_tensor_core_attention(device, b, hq, hkv, l, s, d, dtype, is_causal, mask_kind, dropout_p, seed=0,
                                 deterministic=False):
    g = torch.Generator().manual_seed(seed * 1000 + l * 7 + s)
    q, k, v = (torch.randn(b, h, n, d, generator=g).to(dtype) for h, n in ((hq, l), (hkv, s), (hkv, s)))
    dout = torch.randn(b, hq, l, d, generator=g).to(dtype)
    mask = torch.randn(b, hq, l, s, generator=g) if mask_kind == "float" else None
    scale = 1.0 / d ** 0.5
    got, want = _kernel_and_cpu_op(device, q, k, v, mask, None, None, l, s, is_causal, scale, dropout_p, 1234, dout,
                                   deterministic)
    assert_close(got[1], want[1], name="lse", atol=1e-4, rtol=1e-5)
    keep = ops.dropout_keep_mask(b, hq, l, s, dropout_p, 1234) if dropout_p > 0 else None
    _flash_rule([got[0], *got[2:]], ref.scaled_dot_product_attention, (q, k, v), dout, attn_mask=mask,
                is_causal=is_causal, scale=scale, enable_gqa=True, dropout_keep=keep, dropout_p=dropout_p)


@pytest.mark.parametrize("device", CUDA_KERNELS, indirect=True)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("l,s", [(1, 1), (17, 130), (130, 17)])
@pytest.mark.parametrize("is_causal", [False, True])
def test_tensor_core_lengths(device, dtype, d, l, s, is_causal):
    _check_tensor_core_attention(device, 1, 1, 1, l, s, d, dtype, is_causal, None, 0.0)


@pytest.mark.parametrize("device", CUDA_KERNELS, indirect=True)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("mask_kind,dropout_p,heads", [("float", 0.0, (2, 2)), (None, 0.3, (2, 2)),
                                                       (None, 0.0, (4, 2)), ("float", 0.2, (3, 1))],
                         ids=["mask", "dropout", "gqa", "gqa-mask-dropout"])
def test_tensor_core_features(device, dtype, d, is_causal, mask_kind, dropout_p, heads):
    _check_tensor_core_attention(device, 2, heads[0], heads[1], 37, 70, d, dtype, is_causal, mask_kind, dropout_p)


# The two tensor-core backwards: the single kernel in FlashAttention-2's order (dQ by fp32 atomics; the default) and
# the atomic-free two-kernel one (deterministic=True). The tests above run the default; these run both at awkward
# shapes: lengths 1 and primes, L != S causal, several 64-key blocks, GQA groups (a block loops over its group's q
# heads), masks and dropout together.
@pytest.mark.parametrize("device", CUDA_KERNELS, indirect=True)
@pytest.mark.parametrize("deterministic", [False, True], ids=["flash", "deterministic"])
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("case", [(1, 1, 1, 1, 67, False, None, 0.0), (1, 1, 1, 131, 61, True, None, 0.0),
                                  (1, 3, 1, 61, 131, True, "float", 0.0), (2, 2, 2, 67, 29, False, None, 0.25),
                                  (1, 4, 2, 97, 97, True, "float", 0.2)],
                         ids=["1x67", "131x61-causal", "gqa3-61x131-causal-mask", "67x29-dropout",
                              "gqa2-97-causal-mask-dropout"])
def test_tensor_core_backward_paths(device, deterministic, d, case):
    b, hq, hkv, l, s, is_causal, mask_kind, dropout_p = case
    _check_tensor_core_attention(device, b, hq, hkv, l, s, d, torch.bfloat16, is_causal, mask_kind, dropout_p,
                                 seed=7, deterministic=deterministic)


class _BackwardSpy:
    """The CUDA module, with a record of the dq_acc argument of each attention_bwd call (0: the deterministic path)."""

    def __init__(self, module):
        self._module, self.dq_acc = module, []

    def __getattr__(self, name):
        return getattr(self._module, name)

    def attention_bwd(self, params, delta, dq_acc, stream):
        self.dq_acc.append(dq_acc)
        return self._module.attention_bwd(params, delta, dq_acc, stream)


@pytest.mark.parametrize("device", CUDA_KERNELS, indirect=True)
def test_deterministic_backward_is_bitwise_repeatable(device, device_name, monkeypatch):
    """deterministic=True: 20 backward runs give bitwise the same dq, dk, dv (tensor cores, bf16, GQA, causal, L !=
    S). The default single-kernel backward agrees with it to bf16 rounding; torch.use_deterministic_algorithms(True)
    selects the deterministic path too. (The emulator runs blocks one after another, so its atomics add in a fixed
    order and it cannot show the default path varying; on a GPU it may.)"""
    spy = _BackwardSpy(_native.cuda())
    monkeypatch.setattr(_native, "cuda", lambda: spy)
    q, k, v = _inputs(1, 2, 1, 45, 70, 64, 64, torch.bfloat16, device)
    dout = torch.randn(1, 2, 45, 64).to(torch.bfloat16).to(device)

    def grads(**kwargs):
        out = ops.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True, **kwargs)
        return torch.autograd.grad(out, (q, k, v), dout)

    first = grads(deterministic=True)
    for run in range(19):
        again = grads(deterministic=True)
        for name, x, y in zip(("dq", "dk", "dv"), first, again):
            assert torch.equal(x, y), f"run {run + 2}: {name} differs from run 1"
    assert spy.dq_acc == [0] * 20, "deterministic=True must not take the atomic path"
    fast = grads()
    assert spy.dq_acc[-1] != 0, "the default backward should be the single kernel"
    for name, x, y in zip(("dq", "dk", "dv"), fast, first):
        assert_close(x, y, name=name, atol=2e-2 * float(y.abs().max()), rtol=0)
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)  # warn_only: other ops of the run must not raise
    try:
        again = grads()
    finally:
        torch.use_deterministic_algorithms(was)
    assert spy.dq_acc[-1] == 0, "torch.use_deterministic_algorithms(True) must select the deterministic path"
    assert all(torch.equal(x, y) for x, y in zip(first, again))


@pytest.mark.parametrize("device", CUDA_KERNELS, indirect=True)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("is_causal", [False, True])
def test_tensor_core_varlen(device, dtype, d, is_causal):
    """Packed sequences of awkward lengths (q: 1, 70, 17; k: 17, 70, 1), GQA 4 -> 2: out, lse and gradients."""
    lq, lk, hq, hkv = [1, 70, 17], [17, 70, 1], 4, 2
    cu_q = torch.tensor([0] + list(torch.tensor(lq).cumsum(0)), dtype=torch.int32)
    cu_k = torch.tensor([0] + list(torch.tensor(lk).cumsum(0)), dtype=torch.int32)
    g = torch.Generator().manual_seed(d)
    q = torch.randn(sum(lq), hq, d, generator=g).to(dtype)
    k, v = (torch.randn(sum(lk), hkv, d, generator=g).to(dtype) for _ in range(2))
    dout = torch.randn(sum(lq), hq, d, generator=g).to(dtype)
    scale = d ** -0.5
    got, want = _kernel_and_cpu_op(device, q, k, v, None, cu_q, cu_k, max(lq), max(lk), is_causal, scale, 0.0, 0,
                                   dout)
    assert_close(got[1], want[1], name="lse", atol=1e-4, rtol=1e-5)

    def per_sequence(fn):
        def run(qq, kk, vv, **kwargs):
            outs = []
            for i in range(len(lq)):
                q0, q1, k0, k1 = int(cu_q[i]), int(cu_q[i + 1]), int(cu_k[i]), int(cu_k[i + 1])
                o = fn(qq[q0:q1].transpose(0, 1)[None], kk[k0:k1].transpose(0, 1)[None],
                       vv[k0:k1].transpose(0, 1)[None], **kwargs)
                outs.append(o[0].transpose(0, 1))
            return torch.cat(outs)
        return run

    def exact(qq, kk, vv, **kwargs):
        return ref.attention_varlen(qq, kk, vv, cu_q, cu_k, is_causal=is_causal, scale=scale)

    ours = [got[0], *got[2:]]
    # the low-precision yardstick runs per sequence (no varlen in torch): _flash_rule's math, sequence by sequence
    leaves = [t.to(got[0].device).requires_grad_() for t in (q, k, v)]
    theirs_out = per_sequence(lambda a, b_, c, **kw: _low_precision_math(a, b_, c, None, is_causal, scale))(*leaves)
    theirs = [theirs_out] + list(torch.autograd.grad(theirs_out, leaves, dout.to(theirs_out)))
    exact_leaves = [t.double().requires_grad_() for t in (q, k, v)]
    exact_out = exact(*exact_leaves)
    exact_all = [exact_out] + list(torch.autograd.grad(exact_out, exact_leaves, dout.double()))
    for name, o, t, x, factor in zip(("out", "dq", "dk", "dv"), ours, theirs, exact_all, (2, 3, 3, 3)):
        o, t, x = (y.detach().double().cpu() for y in (o, t, x))
        err_ours, err_theirs = (o - x).abs().max().item(), (t - x).abs().max().item()
        assert err_ours <= factor * err_theirs + 1e-3, f"{name}: error {err_ours:.3g} vs torch's {err_theirs:.3g}"


@pytest.mark.parametrize("device", CUDA_KERNELS, indirect=True)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_tensor_core_unaligned_rows(device, dtype, monkeypatch):
    """Row strides that are not a multiple of 8 elements: the element-copy path instead of 16-byte vectors (the
    pipelined forward needs 16-byte rows, so both calls below run the earlier mma forward)."""
    monkeypatch.setenv("PYFAST_ATTENTION_FWD", "mma")
    d, l, s = 64, 33, 45
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(1, 2, n, d + 3, generator=g).to(dtype).to(device)[..., 1:d + 1] for n in (l, s, s))
    assert q.stride(2) % 8 != 0 and q.data_ptr() % 16 != 0
    args = (None, None, None, l, s, True, d ** -0.5, 0.0, 0)
    out_g, lse_g = ops.attention_fwd(q, k, v, *args)
    out_c, lse_c = ops._attention_fwd_cpu(q.cpu(), k.cpu(), v.cpu(), *args)
    out_a, lse_a = ops.attention_fwd(*(t.contiguous() for t in (q, k, v)), *args)
    assert torch.equal(out_g, out_a) and torch.equal(lse_g, lse_a), "strided and contiguous inputs differ"
    assert_close(lse_g, lse_c, name="lse", atol=1e-4, rtol=1e-5)
    dout = torch.randn(out_g.shape, generator=g).to(dtype).to(device)
    grads_g = ops.attention_bwd(dout, q, k, v, out_g, lse_g, *args)
    grads_a = ops.attention_bwd(dout, *(t.contiguous() for t in (q, k, v)), out_a, lse_a, *args)
    for name, x, y in zip(("dq", "dk", "dv"), grads_g, grads_a):
        assert torch.equal(x, y), f"{name}: strided and contiguous inputs differ"
    assert_close(out_g, out_c, name="out", atol=3e-2 if dtype == torch.bfloat16 else 4e-3, rtol=0)


# The pipelined forward (attention_fwd_flash.cuh) splits key tiles into interior ones (no per-element test; with a
# float mask, the mask only) and boundary ones (bounds, causal, mask): shapes spanning several 64-row and 64-key
# tiles, exact multiples and not, causal with L != S, so every block meets both kinds.
@pytest.mark.parametrize("device", CUDA_KERNELS, indirect=True)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("l,s", [(64, 128), (130, 197), (71, 190), (190, 71), (128, 128)])
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("mask_kind", [None, "float"])
def test_tensor_core_interior_and_boundary_tiles(device, dtype, l, s, is_causal, mask_kind):
    _check_tensor_core_attention(device, 1, 1, 1, l, s, 64, dtype, is_causal, mask_kind, 0.0, seed=3)


# The pipelined forward runs a persistent grid (as many blocks as the GPU holds; the emulator says 2) whose blocks
# walk the (q block, head, batch) items, causal ones heaviest (last q block) first: several q blocks (128 rows at
# D = 64, 64 at D = 128) of several heads and batches, so each emulated block takes many items in that order.
@pytest.mark.parametrize("device", CUDA_KERNELS, indirect=True)
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("is_causal", [False, True])
def test_tensor_core_forward_covers_every_work_item(device, d, is_causal):
    _check_tensor_core_attention(device, 1, 3, 1, 200, 90, d, torch.bfloat16, is_causal, None, 0.0, seed=9)


@pytest.mark.parametrize("device", CUDA_KERNELS, indirect=True)
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("is_causal", [False, True])
def test_pipelined_forward_agrees_with_the_earlier_mma_forward(device, d, is_causal, monkeypatch):
    """PYFAST_ATTENTION_FWD=mma selects the earlier tensor-core forward: both compute the same function (their only
    difference is fp32 rounding order, exp2 against exp, so out agrees to bf16 rounding and lse to fp32's)."""
    q, k, v = _inputs(1, 2, 2, 97, 150, d, d, torch.bfloat16, device)
    args = (None, None, None, 97, 150, is_causal, d ** -0.5, 0.0, 0)
    out_f, lse_f = ops.attention_fwd(q, k, v, *args)
    monkeypatch.setenv("PYFAST_ATTENTION_FWD", "mma")
    out_m, lse_m = ops.attention_fwd(q, k, v, *args)
    assert not torch.equal(lse_f, lse_m), "the two forwards should be different kernels"
    assert_close(lse_f, lse_m, name="lse", atol=1e-5, rtol=1e-5)
    assert_close(out_f, out_m, name="out", atol=1e-2, rtol=0)


@pytest.mark.parametrize("device", CUDA_KERNELS, indirect=True)
@pytest.mark.parametrize("is_causal", [False, True])
def test_tensor_core_fully_masked_rows(device, is_causal):
    """-inf mask entries, two rows with no visible key: those rows' out and dq are 0 and their lse -inf (the CPU
    kernel's convention); everything else agrees with the CPU op (bf16, D = 64)."""
    b, h, l, s, d, dtype = 1, 2, 20, 40, 64, torch.bfloat16
    g = torch.Generator().manual_seed(11)
    q, k, v = (torch.randn(b, h, n, d, generator=g).to(dtype) for n in (l, s, s))
    mask = torch.zeros(b, h, l, s).masked_fill(torch.rand(b, h, l, s, generator=g) < 0.4, float("-inf"))
    mask[:, 0, 3] = float("-inf")
    mask[:, 1, 17] = float("-inf")
    dout = torch.randn(b, h, l, d, generator=g).to(dtype)
    got, want = _kernel_and_cpu_op(device, q, k, v, mask, None, None, l, s, is_causal, d ** -0.5, 0.0, 0, dout)
    out_g, lse_g, dq_g = got[0].cpu(), got[1].cpu(), got[2].cpu()
    assert torch.isneginf(lse_g[0, 0, 3]) and torch.isneginf(lse_g[0, 1, 17])
    assert (out_g[0, 0, 3] == 0).all() and (out_g[0, 1, 17] == 0).all() and (dq_g[0, 0, 3] == 0).all()
    assert_close(got[1], want[1], name="lse", atol=1e-4, rtol=1e-5)
    assert_close(got[0], want[0], name="out", atol=3e-2, rtol=0)
    for name, x, y in zip(("dq", "dk", "dv"), got[2:], want[2:]):
        assert not torch.isnan(x).any(), f"{name}: NaN"
        assert_close(x, y, name=name, atol=0.05 * float(y.abs().max()), rtol=0)


@pytest.mark.parametrize("device", CUDA_KERNELS, indirect=True)
@pytest.mark.parametrize("dtype,code", [(torch.bfloat16, 2), (torch.float16, 3)])
@pytest.mark.parametrize("values", ["integers", "normal"])
def test_mma_m16n8k16_layouts(device, device_name, dtype, code, values):
    """The tensor-core helper (csrc/common/mma.cuh) with its documented fragment layouts, against a matrix product."""
    g = torch.Generator().manual_seed(code)
    n = 3  # one full block of two warps and a block with one: the warps' scratch must stay apart
    if values == "integers":  # every product and sum exact: any misplaced element changes the result exactly
        a = torch.randint(-8, 9, (n, 16, 16), generator=g).to(dtype)
        b = torch.randint(-8, 9, (n, 16, 8), generator=g).to(dtype)
        c = torch.randint(-64, 65, (n, 16, 8), generator=g).float()
    else:
        a, b = torch.randn(n, 16, 16, generator=g).to(dtype), torch.randn(n, 16, 8, generator=g).to(dtype)
        c = torch.randn(n, 16, 8, generator=g)
    a, b, c = (t.to(device) for t in (a, b, c))
    d = torch.full((n, 16, 8), float("nan"), device=device)
    _native.cuda().mma_m16n8k16_check(code, _native.ptr(a), _native.ptr(b), _native.ptr(c), _native.ptr(d), n,
                                      _native.stream(d))
    if device_name == "cuda":
        torch.cuda.synchronize()
    want = a.double() @ b.double() + c.double()
    if values == "integers":
        assert torch.equal(d.double(), want), f"{int((d.double() != want).sum())} of {d.numel()} entries differ"
    else:
        assert_close(d, want, name="d", atol=1e-5, rtol=1e-5)


# ---- dropout -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", NOT_EMU, indirect=True)
@pytest.mark.parametrize("is_causal", [False, True])
def test_dropout_matches_reference_with_the_same_keep_mask(device, is_causal):
    b, h, l, s, e = 2, 2, 45, 70, 32
    q, k, v = _inputs(b, h, h, l, s, e, e, device=device)
    p = 0.3
    torch.manual_seed(123)
    out = ops.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=is_causal)
    torch.manual_seed(123)
    seed = ops._dropout_seed(p)  # the seed the call above drew from torch's generator
    keep = ops.dropout_keep_mask(b, h, l, s, p, seed)  # the CPU's: both devices drop the same pairs
    _assert_out_and_grads(out, (q, k, v), ref.scaled_dot_product_attention, is_causal=is_causal, dropout_keep=keep,
                          dropout_p=p)


@pytest.mark.parametrize("device", NOT_EMU, indirect=True)
def test_dropout_rate_and_reproducibility(device):
    keep = ops.dropout_keep_mask(2, 3, 64, 301, 0.25, seed=7, device=device)
    assert keep.device.type == device.type and keep.dtype == torch.bool
    assert abs(keep.float().mean().item() - 0.75) < 0.01
    assert torch.equal(keep, ops.dropout_keep_mask(2, 3, 64, 301, 0.25, seed=7, device=device))
    assert not torch.equal(keep, ops.dropout_keep_mask(2, 3, 64, 301, 0.25, seed=8, device=device))
    q, k, v = _inputs(1, 2, 2, 20, 20, 16, 16, device=device)
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


@pytest.mark.parametrize("device", CUDA_KERNELS, indirect=True)
def test_dropout_keep_mask_is_bitwise_the_cpus(device, device_name):
    for shape, p, seed in (((2, 3, 33, 301), 0.25, 7), ((1, 1, 1, 5), 0.9, 2**61 + 3), ((3, 2, 17, 64), 0.1, 0)):
        if device_name == "emu":  # the public function draws CPU tensors' masks on the CPU: call the emulated kernel
            keep = torch.empty(shape, dtype=torch.uint8)
            _native.cuda().attention_dropout_mask(_native.ptr(keep), *shape, p, seed, 0)
            got = keep.bool()
        else:
            got = ops.dropout_keep_mask(*shape, p, seed, device=device)
        assert got.device.type == device.type
        assert torch.equal(got.cpu(), ops.dropout_keep_mask(*shape, p, seed)), \
            f"keep mask differs for {shape}, p={p}, seed={seed}"


@pytest.mark.parametrize("device", ALL, indirect=True)
def test_varlen_dropout_backward_regenerates_the_forward_mask(device):
    # With a fixed seed the op is a deterministic function; its gradient must match a central finite difference,
    # which only holds if the backward redraws exactly the forward's keep mask.
    cu = torch.tensor([0, 9, 30, 37], dtype=torch.int32, device=device)
    q, k, v = (torch.randn(37, 2, 16, dtype=torch.float32, device=device) for _ in range(3))
    g = torch.randn(37, 2, 16, device=device)
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


# ---- varlen ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", NOT_EMU, indirect=True)
@pytest.mark.parametrize("is_causal", [False, True])
def test_varlen_matches_reference(device, is_causal):
    lengths = [5, 1, 64, 97, 0, 33]
    cu = torch.tensor([0] + list(torch.tensor(lengths).cumsum(0)), dtype=torch.int32, device=device)
    total, hq, hkv, e, ev = sum(lengths), 4, 2, 40, 24
    q = torch.randn(total, hq, e, device=device, requires_grad=True)
    k = torch.randn(total, hkv, e, device=device, requires_grad=True)
    v = torch.randn(total, hkv, ev, device=device, requires_grad=True)
    out = ops.attention_varlen(q, k, v, cu, cu, max(lengths), max(lengths), is_causal=is_causal)
    _assert_out_and_grads(out, (q, k, v), ref.attention_varlen, cu_seqlens_q=cu, cu_seqlens_k=cu,
                          is_causal=is_causal)


@pytest.mark.parametrize("device", ALL, indirect=True)
def test_varlen_equals_padded_with_key_padding_mask(device):
    lengths = [7, 19, 12]
    cu = torch.tensor([0, 7, 26, 38], dtype=torch.int32, device=device)
    h, e = 2, 16
    q, k, v = (torch.randn(38, h, e, device=device) for _ in range(3))
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


# ---- the public entry points on a device -------------------------------------------------------------------------
@pytest.mark.parametrize("device", CUDA_KERNELS, indirect=True)
def test_public_sdpa_on_device(device, device_name):
    b, hq, hkv, l, s, e = 2, 6, 3, 33, 47, 32
    if device_name == "emu":
        b, hq, hkv, l, s = 1, 4, 2, 13, 19
    q, k, v = _inputs(b, hq, hkv, l, s, e, e, device=device)
    mask = torch.rand(b, 1, l, s, device=device) > 0.2
    mask[..., 0] = True
    out = pyfast.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=False, enable_gqa=True)
    assert out.device.type == device.type
    _assert_out_and_grads(out, (q, k, v), ref.scaled_dot_product_attention, attn_mask=mask, enable_gqa=True)
    if device_name == "cuda":
        with pytest.raises(RuntimeError, match="attn_mask is on cpu but query is on cuda"):
            pyfast.scaled_dot_product_attention(q, k, v, attn_mask=mask.cpu(), enable_gqa=True)


@pytest.mark.parametrize("device", CUDA_KERNELS, indirect=True)
def test_public_varlen_on_device(device):
    lengths = [7, 40, 1]
    cu = torch.tensor([0, 7, 47, 48], dtype=torch.int32, device=device)
    q = torch.randn(48, 4, 16, device=device)
    k = torch.randn(48, 2, 16, device=device)
    v = torch.randn(48, 2, 16, device=device)
    out = pyfast.attention_varlen(q, k, v, cu, cu, max(lengths), max(lengths), is_causal=True)
    assert out.device.type == device.type
    expected = ref.attention_varlen(q.cpu(), k.cpu(), v.cpu(), cu.cpu(), cu.cpu(), is_causal=True)
    assert_close(out, expected, name="out", **F32_OUT)


# ---- custom op machinery -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", ALL, indirect=True)
def test_opcheck(device, device_name):
    b, hq, hkv, l, s = (2, 4, 2, 13, 17) if device_name != "emu" else (1, 2, 1, 5, 7)
    q, k, v = _inputs(b, hq, hkv, l, s, 16, 8, device=device)
    mask = torch.randn(b, hq, l, s, device=device)
    args = (q, k, v, mask, None, None, l, s, True, 0.25, 0.0, 0)
    torch.library.opcheck(torch.ops.pyfast.attention_fwd.default, args)
    out, lse = torch.ops.pyfast.attention_fwd(*args)
    bwd_args = (torch.randn_like(out), q.detach(), k.detach(), v.detach(), out.detach(), lse, mask, None, None, l, s,
                True, 0.25, 0.0, 0)
    torch.library.opcheck(torch.ops.pyfast.attention_bwd.default, bwd_args)
    cu = torch.tensor([0, 5, 12], dtype=torch.int32, device=device)
    flat = [torch.randn(12, 2, 8, device=device, requires_grad=True) for _ in range(3)]
    torch.library.opcheck(torch.ops.pyfast.attention_fwd.default, (*flat, None, cu, cu, 7, 7, False, 0.3, 0.2, 5))


@pytest.mark.parametrize("device", NOT_EMU, indirect=True)
def test_torch_compile_fullgraph(device):
    q, k, v = _inputs(1, 2, 2, 24, 24, 16, 16, device=device)

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
    assert [op for op, _, _ in ops.KERNELS] == [ops.attention_fwd, ops.attention_bwd]


@pytest.mark.parametrize("device", ALL, indirect=True)
def test_custom_op_rejects_inconsistent_direct_calls(device, device_name):
    q, k, v = _inputs(1, 2, 2, 8, 8, 16, 16, device=device)
    with pytest.raises(ValueError, match=r"mask must be a float32 \(B, Hq, L, S\)"):
        torch.ops.pyfast.attention_fwd(q, k, v, torch.zeros(1, 2, 8, 4, device=device), None, None, 8, 8, False, 0.25,
                                       0.0, 0)
    flat = torch.randn(8, 2, 16, device=device)
    cu = torch.tensor([0, 4, 12], dtype=torch.int32, device=device)  # ends past the 8 tokens
    with pytest.raises(ValueError, match="cu_seqlens must be equal-length int32 prefix sums"):
        torch.ops.pyfast.attention_fwd(flat, flat, flat, None, cu, cu, 8, 8, False, 0.25, 0.0, 0)
    q, k, v = (t.detach() for t in (q, k, v))
    out, lse = torch.ops.pyfast.attention_fwd(q, k, v, None, None, None, 8, 8, False, 0.25, 0.0, 0)
    with pytest.raises(ValueError, match="dout/out/lse shapes do not match"):
        torch.ops.pyfast.attention_bwd(out, q, k, v, out, lse[:, :1], None, None, None, 8, 8, False, 0.25, 0.0, 0)
    if device_name == "cpu":  # the CPU kernel reads cu_seqlens (host memory) itself; the CUDA kernels cannot
        bad = torch.tensor([0, 4, 8], dtype=torch.int32)  # a sequence of 4 > max_seqlen 3: the kernel refuses
        with pytest.raises(ValueError, match="outside"):
            torch.ops.pyfast.attention_fwd(flat, flat, flat, None, bad, bad, 3, 3, False, 0.25, 0.0, 0)


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
    # CPU only: hypothesis draws shapes per example, and the device fixture is per test
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


@pytest.mark.parametrize("device", CUDA_KERNELS, indirect=True)
def test_multihead_self_attention_on_device(device, device_name):
    torch.manual_seed(0)
    layer = pyfast.nn.MultiheadSelfAttention(64, 4)
    x = torch.randn(2, 37 if device_name == "cuda" else 11, 64)
    with torch.no_grad():
        expected = _module_reference(layer, x)
        out = layer.to(device)(x.to(device))
    assert out.device.type == device.type
    assert_close(out, expected, name="MultiheadSelfAttention vs the float64 reference", atol=1e-4, rtol=1e-4)


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
