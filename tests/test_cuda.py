"""CUDA kernels (issue #8) against float64 references and against the CPU kernels: attention forward and all three
gradients (awkward shapes, causal, masks, GQA, varlen, dropout keyed like the CPU, bf16/fp16 by flash-attention's
2x rule), and bitwise-identical masking / SGNS behaviour where those ops exist. Every test is ``cuda_only``: it
skips cleanly on a machine without a GPU (conftest) -- which is every machine these were written on, so the
CUDA kernels are compiled but unverified until this file runs on a GPU (benchmarks/gpu_check.sh does that).
"""
from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_close

import pyfast
from pyfast.ops import attention as ops
from pyfast.reference import attention as ref

pytestmark = pytest.mark.cuda_only

F32_OUT = dict(atol=2e-5, rtol=1e-4)
F32_GRAD = dict(atol=1e-4, rtol=1e-3)
DEV = "cuda"


def _attention(q, k, v, mask=None, is_causal=False, scale=None, dropout_p=0.0, seed=0):
    """The custom op on (B, H, L, D) tensors; mask bool/float broadcastable to (B, Hq, L, S)."""
    b, hq, l, e = q.shape
    s = k.shape[2]
    mask4 = None
    if mask is not None:
        m = mask if mask.dtype != torch.bool else torch.zeros(mask.shape, device=mask.device).masked_fill(
            ~mask, float("-inf"))
        mask4 = m.to(torch.float32).expand(b, hq, l, s).contiguous()
    scale = 1.0 / math.sqrt(e) if scale is None else scale
    out, _ = ops.attention_fwd(q, k, v, mask4, None, None, l, s, is_causal, scale, dropout_p, seed)
    return out


def _inputs(b, hq, hkv, l, s, e, ev, dtype=torch.float32):
    q = torch.randn(b, hq, l, e, device=DEV).to(dtype).requires_grad_()
    k = torch.randn(b, hkv, s, e, device=DEV).to(dtype).requires_grad_()
    v = torch.randn(b, hkv, s, ev, device=DEV).to(dtype).requires_grad_()
    return q, k, v


def _grads(out, inputs, grad):
    return torch.autograd.grad(out, inputs, grad.to(device=out.device, dtype=out.dtype))


def _reference(fn, tensors, grad, **kwargs):
    """fn (a pyfast.reference function, CPU-only) on float64 CPU copies: (out, grads of the tensors)."""
    leaves = [t.detach().cpu().double().requires_grad_() for t in tensors]
    kwargs = {key: (val.cpu() if isinstance(val, torch.Tensor) else val) for key, val in kwargs.items()}
    out = fn(*leaves, **kwargs)
    return out, torch.autograd.grad(out, leaves, grad.cpu().double())


def _check(q, k, v, mask=None, is_causal=False, out_tol=F32_OUT, grad_tol=F32_GRAD):
    out = _attention(q, k, v, mask, is_causal)
    gqa = k.shape[1] != q.shape[1]
    grad = torch.randn(out.shape, dtype=torch.float64)
    expected, want = _reference(ref.scaled_dot_product_attention, (q, k, v), grad, attn_mask=mask,
                                is_causal=is_causal, enable_gqa=gqa)
    assert out.device.type == "cuda" and out.dtype == q.dtype
    assert_close(out, expected, name="out", **out_tol)
    for name, g, w in zip(("dq", "dk", "dv"), _grads(out, (q, k, v), grad), want):
        assert_close(g, w, name=name, **grad_tol)


SHAPES = [  # (B, Hq, Hkv, L, S, E, Ev): sizes of 1, primes, one past a tile (16 rows, 32 keys), head dims 1..256
    (1, 1, 1, 1, 1, 16, 16),
    (2, 3, 3, 37, 53, 20, 24),
    (1, 2, 2, 97, 61, 64, 64),
    (1, 1, 1, 130, 70, 33, 17),
    (2, 2, 2, 1, 7, 128, 128),
    (1, 1, 1, 17, 33, 64, 64),
    (1, 2, 2, 16, 32, 64, 64),
    (1, 1, 1, 23, 29, 256, 256),
    (1, 1, 1, 31, 17, 1, 3),
    (1, 1, 1, 300, 301, 80, 96),
]


def test_cuda_module_is_built_and_sees_the_gpu():
    info = pyfast.info()
    assert info["cuda_built"], "pyfast was built without CUDA: PYFAST_CUDA=ON pip install --no-build-isolation ."
    assert info["cuda_device"] is not None


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("is_causal", [False, True])
def test_attention_matches_reference(shape, is_causal):
    _check(*_inputs(*shape), is_causal=is_causal)


@pytest.mark.parametrize("kind", ["bool", "float_full", "key_padding"])
@pytest.mark.parametrize("is_causal", [False, True])
def test_attention_masks(kind, is_causal):
    b, h, l, s = 2, 3, 45, 77
    q, k, v = _inputs(b, h, h, l, s, 40, 40)
    if kind == "bool":
        mask = torch.rand(l, s, device=DEV) > 0.3
        mask[:, 0] = True
    elif kind == "float_full":
        mask = torch.randn(b, h, l, s, device=DEV)
    else:
        lengths = torch.tensor([s, 30], device=DEV)
        mask = (torch.arange(s, device=DEV)[None, :] < lengths[:, None])[:, None, None, :]
    _check(q, k, v, mask, is_causal)


def test_attention_fully_masked_rows_are_zero_with_zero_grads():
    q, k, v = _inputs(1, 1, 1, 5, 6, 8, 8)
    mask = torch.ones(5, 6, dtype=torch.bool, device=DEV)
    mask[2] = False
    out = _attention(q, k, v, mask)
    assert torch.all(out[0, 0, 2] == 0)
    dq, = torch.autograd.grad(out.sum(), (q,))
    assert torch.all(dq[0, 0, 2] == 0)


@pytest.mark.parametrize("is_causal", [False, True])
def test_attention_gqa(is_causal):
    _check(*_inputs(2, 6, 2, 41, 50, 32, 48), is_causal=is_causal)


def test_attention_agrees_with_the_cpu_kernel():
    q, k, v = _inputs(2, 4, 2, 70, 90, 64, 64)
    mask = torch.randn(2, 4, 70, 90, device=DEV)
    out_gpu = _attention(q, k, v, mask, True)
    qc, kc, vc = (t.detach().cpu().requires_grad_() for t in (q, k, v))
    out_cpu = _attention(qc, kc, vc, mask.cpu(), True)
    assert_close(out_gpu, out_cpu, name="out gpu vs cpu", atol=2e-5, rtol=1e-4)
    grad = torch.randn(out_cpu.shape)
    for name, g, c in zip(("dq", "dk", "dv"), _grads(out_gpu, (q, k, v), grad),
                          _grads(out_cpu, (qc, kc, vc), grad)):
        assert_close(g, c, name=name + " gpu vs cpu", **F32_GRAD)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("is_causal", [False, True])
def test_attention_low_precision_flash_rule(dtype, is_causal):
    """flash-attention's rule: error vs float64 at most ~2x that of torch's SDPA math in the same dtype."""
    q, k, v = _inputs(2, 4, 4, 200, 200, 64, 64, dtype)
    out = _attention(q, k, v, is_causal=is_causal)
    torch_lp = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    grad = torch.randn(out.shape, dtype=torch.float64)
    expected, want = _reference(ref.scaled_dot_product_attention, (q, k, v), grad, is_causal=is_causal)
    err = (out.cpu().double() - expected).abs().max().item()
    err_torch = (torch_lp.cpu().double() - expected).abs().max().item()
    assert err <= 2 * err_torch + 1e-5, f"out: error {err:.3g} vs torch {err_torch:.3g}"
    for name, g, t, w in zip(("dq", "dk", "dv"), _grads(out, (q, k, v), grad), _grads(torch_lp, (q, k, v), grad),
                             want):
        e_ours = (g.cpu().double() - w).abs().max().item()
        e_torch = (t.cpu().double() - w).abs().max().item()
        assert e_ours <= 2 * e_torch + 1e-5, f"{name}: error {e_ours:.3g} vs torch {e_torch:.3g}"


@pytest.mark.parametrize("is_causal", [False, True])
def test_attention_varlen(is_causal):
    lengths = [5, 1, 64, 97, 0, 33]
    cu = torch.tensor([0] + list(torch.tensor(lengths).cumsum(0)), dtype=torch.int32, device=DEV)
    total, hq, hkv, e, ev = sum(lengths), 4, 2, 40, 24
    q = torch.randn(total, hq, e, device=DEV, requires_grad=True)
    k = torch.randn(total, hkv, e, device=DEV, requires_grad=True)
    v = torch.randn(total, hkv, ev, device=DEV, requires_grad=True)
    out, _ = ops.attention_fwd(q, k, v, None, cu, cu, max(lengths), max(lengths), is_causal, 1.0 / math.sqrt(e),
                               0.0, 0)
    grad = torch.randn(out.shape, dtype=torch.float64)
    expected, want = _reference(ref.attention_varlen, (q, k, v), grad, cu_seqlens_q=cu, cu_seqlens_k=cu,
                                is_causal=is_causal)
    assert_close(out, expected, name="out", **F32_OUT)
    for name, g, w in zip(("dq", "dk", "dv"), _grads(out, (q, k, v), grad), want):
        assert_close(g, w, name=name, **F32_GRAD)


def test_dropout_keep_mask_is_bitwise_the_cpus():
    from pyfast.ops.attention_cuda import dropout_keep_mask_cuda

    for shape, p, seed in (((2, 3, 33, 301), 0.25, 7), ((1, 1, 1, 5), 0.9, 2**61 + 3), ((3, 2, 17, 64), 0.1, 0)):
        gpu = dropout_keep_mask_cuda(*shape, p, seed)
        cpu = ops.dropout_keep_mask(*shape, p, seed)
        assert torch.equal(gpu.cpu(), cpu), f"keep mask differs for {shape}, p={p}, seed={seed}"


@pytest.mark.parametrize("is_causal", [False, True])
def test_attention_dropout_matches_reference_and_cpu(is_causal):
    b, h, l, s, e, p, seed = 2, 2, 45, 70, 32, 0.3, 1234
    q, k, v = _inputs(b, h, h, l, s, e, e)
    out = _attention(q, k, v, is_causal=is_causal, dropout_p=p, seed=seed)
    keep = ops.dropout_keep_mask(b, h, l, s, p, seed)
    grad = torch.randn(out.shape, dtype=torch.float64)
    expected, want = _reference(ref.scaled_dot_product_attention, (q, k, v), grad, is_causal=is_causal,
                                dropout_keep=keep, dropout_p=p)
    assert_close(out, expected, name="out", **F32_OUT)
    for name, g, w in zip(("dq", "dk", "dv"), _grads(out, (q, k, v), grad), want):
        assert_close(g, w, name=name, **F32_GRAD)


def test_attention_errors_surface_as_python_exceptions():
    q, k, v = _inputs(1, 1, 1, 4, 4, 300, 300)  # head dim past kMaxHeadDim: the C++ check raises ValueError
    with pytest.raises(ValueError, match="head dims must be in"):
        ops.attention_fwd(q, k, v, None, None, None, 4, 4, False, 1.0, 0.0, 0)
    q, k, v = _inputs(1, 1, 1, 4, 4, 8, 8)
    with pytest.raises(RuntimeError, match="is on cpu but q is on cuda"):
        ops.attention_fwd(q, k.detach().cpu(), v, None, None, None, 4, 4, False, 1.0, 0.0, 0)


def test_attention_opcheck():
    q, k, v = _inputs(1, 2, 2, 9, 11, 16, 16)
    torch.library.opcheck(ops.attention_fwd, (q, k, v, None, None, None, 9, 11, True, 0.25, 0.0, 0))


# ---- the public entry points route by device ---------------------------------------------------------------------
def test_public_sdpa_on_cuda_tensors():
    b, hq, hkv, l, s, e = 2, 6, 3, 33, 47, 32
    q, k, v = _inputs(b, hq, hkv, l, s, e, e)
    mask = torch.rand(b, 1, l, s, device=DEV) > 0.2
    mask[..., 0] = True
    out = pyfast.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=False, enable_gqa=True)
    assert out.device.type == "cuda"
    grad = torch.randn(out.shape, dtype=torch.float64)
    expected, want = _reference(ref.scaled_dot_product_attention, (q, k, v), grad, attn_mask=mask, enable_gqa=True)
    assert_close(out, expected, name="out", **F32_OUT)
    for name, g, w in zip(("dq", "dk", "dv"), _grads(out, (q, k, v), grad), want):
        assert_close(g, w, name=name, **F32_GRAD)
    with pytest.raises(RuntimeError, match="attn_mask is on cpu but query is on cuda"):
        pyfast.scaled_dot_product_attention(q, k, v, attn_mask=mask.cpu(), enable_gqa=True)


def test_public_varlen_on_cuda_tensors():
    lengths = [7, 40, 1]
    cu = torch.tensor([0, 7, 47, 48], dtype=torch.int32, device=DEV)
    q = torch.randn(48, 4, 16, device=DEV)
    k = torch.randn(48, 2, 16, device=DEV)
    v = torch.randn(48, 2, 16, device=DEV)
    out = pyfast.attention_varlen(q, k, v, cu, cu, max(lengths), max(lengths), is_causal=True)
    expected = ref.attention_varlen(q.cpu(), k.cpu(), v.cpu(), cu.cpu(), cu.cpu(), is_causal=True)
    assert_close(out, expected, name="out", **F32_OUT)


def test_multihead_self_attention_module_on_cuda_matches_cpu():
    torch.manual_seed(0)
    layer = pyfast.MultiheadSelfAttention(64, 4)
    x = torch.randn(2, 37, 64)
    out_cpu = layer(x)
    out_gpu = layer.cuda()(x.cuda())
    assert_close(out_gpu, out_cpu, name="MultiheadSelfAttention gpu vs cpu", atol=1e-4, rtol=1e-4)
