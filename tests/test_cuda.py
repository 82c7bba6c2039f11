"""CUDA kernels (issue #8) against float64 references and against the CPU kernels: attention forward and all three
gradients (awkward shapes, causal, masks, GQA, varlen, dropout keyed like the CPU, bf16/fp16 by flash-attention's
2x rule); masking bit for bit against the CPU kernel (every mode, several seeds, tile and power-of-two edges) and
its bad-id error; the SGNS op's loss and gradients against the float64 reference on the GPU (dense and sparse,
duplicate ids, D not a multiple of 32) and its bad-id errors. Every test is ``cuda_only``: it
skips cleanly on a machine without a GPU (conftest) -- which is every machine these were written on, so the
benchmarks/gpu_check.sh runs this file on a lent GPU (first run: an H200, 2026-11-28).
"""
from __future__ import annotations

import math

import pytest
import torch
from helpers import ATTENTION_SHAPES, assert_close, assert_masking_equal, masking_batch, masking_mode_kwargs

import pyfast
from pyfast.ops import attention as ops
from pyfast.ops import mask_tokens, sgns_loss
from pyfast.reference import attention as ref
from pyfast.reference.sgns import sgns_loss_reference

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


SHAPES = ATTENTION_SHAPES + [  # and around the CUDA tile (16 rows, 32 keys): one past it, exactly it, many
    (1, 1, 1, 17, 33, 64, 64),
    (1, 2, 2, 16, 32, 64, 64),
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
@pytest.mark.parametrize("d", [64, 128, 80])  # 64, 128: the tensor-core forward; 80: the CUDA-core fallback
def test_attention_low_precision_flash_rule(dtype, is_causal, d):
    """flash-attention's rule: error vs float64 at most ~2x that of torch's SDPA math in the same dtype."""
    q, k, v = _inputs(2, 4, 4, 200, 200, d, d, dtype)
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


@pytest.mark.parametrize("dtype,code", [(torch.bfloat16, 2), (torch.float16, 3)])
def test_mma_m16n8k16_fragment_layouts(dtype, code):
    """The PTX mma.sync path of csrc/common/mma.cuh with the documented fragment layouts: exact on integers."""
    from pyfast import _native

    n = 5
    a = torch.randint(-8, 9, (n, 16, 16), device=DEV).to(dtype)
    b = torch.randint(-8, 9, (n, 16, 8), device=DEV).to(dtype)
    c = torch.randint(-64, 65, (n, 16, 8), device=DEV).float()
    d = torch.full((n, 16, 8), float("nan"), device=DEV)
    _native.cuda().mma_m16n8k16_check(code, _native.ptr(a), _native.ptr(b), _native.ptr(c), _native.ptr(d), n,
                                      int(torch.cuda.current_stream().cuda_stream))
    torch.cuda.synchronize()
    want = a.double() @ b.double() + c.double()
    assert torch.equal(d.double(), want), f"{int((d.double() != want).sum())} of {d.numel()} entries differ"


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


# ---- masking: bit for bit the CPU kernel's output ------------------------------------------------------------------

MASK_V, MASK_ID, MASK_SPECIALS = 97, 4, [0, 1, 2, 3, 4]


def _mask_both(ids, **kw):
    """(cpu outputs, gpu outputs moved to the cpu) for the same arguments (tensors in kw are moved alike)."""
    cpu = mask_tokens(ids, **kw)
    kw_gpu = {key: (val.to(DEV) if isinstance(val, torch.Tensor) else val) for key, val in kw.items()}
    gpu = mask_tokens(ids.to(DEV), **kw_gpu)
    assert gpu[0].device.type == "cuda" and gpu[1].device.type == "cuda"
    return cpu, (gpu[0].cpu(), gpu[1].cpu())


# L: 1, a prime, one past a 256-column tile, a power of two, one past one (the exact-count sort pads to 1024).
@pytest.mark.parametrize("b,l", [(1, 1), (3, 37), (2, 257), (4, 512), (2, 513), (1, 1000)])
@pytest.mark.parametrize("mode", ["piece", "word", "exact", "exact_word", "span", "span_word", "mask_col"])
@pytest.mark.parametrize("seed", [0, 12345, 2**64 - 1])
def test_masking_gpu_bitwise_equals_cpu(b, l, mode, seed):
    ids, starts = masking_batch(b, l, seed=b * 1000 + l, vocab_size=MASK_V)
    kw = masking_mode_kwargs(mode, ids, starts, MASK_SPECIALS, mask_token_id=MASK_ID, vocab_size=MASK_V,
                             mlm_probability=0.3, seed=seed)
    assert_masking_equal(mode, *_mask_both(ids, **kw), "gpu")


@pytest.mark.parametrize("kw", [dict(mlm_probability=1.0), dict(mlm_probability=0.0), dict(max_predictions=0),
                                dict(mask_replace_prob=0.0, random_replace_prob=1.0),
                                dict(span_masking=True, span_p=1.0, max_span_words=1),
                                dict(span_masking=True, mlm_probability=0.9, max_span_words=64)])
def test_masking_gpu_edge_probabilities_equal_cpu(kw):
    ids, starts = masking_batch(5, 300, seed=3, vocab_size=MASK_V)
    (co, cl), (go, gl) = _mask_both(ids, mask_token_id=MASK_ID, vocab_size=MASK_V, special_token_ids=MASK_SPECIALS,
                                    word_starts=starts, seed=77, **kw)
    assert torch.equal(cl, gl) and torch.equal(co, go)


def test_masking_gpu_dtypes_shapes_strides():
    ids, _ = masking_batch(4, 50, seed=9, vocab_size=MASK_V)
    kw = dict(mask_token_id=MASK_ID, vocab_size=MASK_V, special_token_ids=MASK_SPECIALS, seed=5)
    for x in (ids.to(torch.int32), ids[0], ids.t().contiguous().t(), ids[:, ::2]):
        (co, cl), (go, gl) = _mask_both(x, **kw)
        assert torch.equal(cl, gl) and torch.equal(co, go)
    go, gl = mask_tokens(ids.to(torch.int32).to(DEV), **kw)
    assert go.dtype == torch.int32 and gl.dtype == torch.int64
    empty = torch.empty(3, 0, dtype=torch.int64, device=DEV)
    eo, el = mask_tokens(empty, **kw)
    assert eo.shape == (3, 0) and el.shape == (3, 0)


@pytest.mark.parametrize("extra", [dict(), dict(max_predictions=3), dict(span_masking=True), dict(word_starts=True)])
def test_masking_gpu_bad_id_raises_like_cpu(extra):
    ids, starts = masking_batch(3, 300, seed=2, vocab_size=MASK_V)
    ids[1, 260] = MASK_V
    ids[2, 5] = -7  # a later row: the first bad position (row-major) is reported, as on the CPU
    kw = dict(mask_token_id=MASK_ID, vocab_size=MASK_V, special_token_ids=MASK_SPECIALS, seed=1, **extra)
    if extra.get("word_starts"):
        kw["word_starts"] = starts.to(DEV)
    with pytest.raises(ValueError, match=r"input_ids\[1, 260\] = 97 is outside the vocabulary \[0, 97\)"):
        mask_tokens(ids.to(DEV), **kw)


# ---- SGNS op: loss and gradients against the float64 reference on the GPU ------------------------------------------
def _sgns_problem(v, d, n, k, dtype, dup=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    w_in = (torch.randn(v, d, generator=g, dtype=torch.float64) * 0.3).to(dtype)
    w_out = (torch.randn(v, d, generator=g, dtype=torch.float64) * 0.3).to(dtype)
    hi = min(v, 3) if dup else v
    ids = (torch.randint(0, hi, (n,), generator=g), torch.randint(0, hi, (n,), generator=g),
           torch.randint(0, hi, (n, k), generator=g))
    return w_in, w_out, ids


def _sgns_grads(fn, w_in, w_out, ids, device, **kw):
    a = w_in.detach().clone().to(device).requires_grad_(True)
    b = w_out.detach().clone().to(device).requires_grad_(True)
    loss = fn(a, b, *(t.to(device) for t in ids), reduction="none", **kw)
    weight = torch.linspace(0.5, 1.5, loss.numel(), dtype=loss.dtype, device=device)  # non-uniform upstream grad
    (loss * weight).sum().backward()
    ga = a.grad.to_dense() if a.grad.is_sparse else a.grad
    gb = b.grad.to_dense() if b.grad.is_sparse else b.grad
    return loss.detach().cpu(), ga.cpu(), gb.cpu(), a.grad, b.grad


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("v,d,n,k,dup", [(1, 1, 1, 1, False), (37, 13, 29, 1, False), (101, 131, 67, 20, False),
                                         (50, 8, 64, 5, True), (7, 33, 200, 20, True), (1000, 7, 3, 0, False),
                                         (5000, 300, 999, 5, False)])
@pytest.mark.parametrize("sparse", [False, True])
def test_sgns_gpu_matches_float64_reference(dtype, v, d, n, k, dup, sparse):
    w_in, w_out, ids = _sgns_problem(v, d, n, k, dtype, dup)
    loss, ga, gb, raw_a, raw_b = _sgns_grads(sgns_loss, w_in, w_out, ids, DEV, sparse=sparse)
    rl, rga, rgb, _, _ = _sgns_grads(sgns_loss_reference, w_in.double(), w_out.double(), ids, "cpu")
    assert loss.dtype == dtype and ga.dtype == dtype
    assert raw_a.device.type == "cuda" and raw_a.is_sparse == sparse and raw_b.is_sparse == sparse
    if sparse:  # one row per occurrence, as nn.Embedding(sparse=True) gives them (pyfast/ops/sgns_cuda.py)
        assert raw_a._nnz() == n and raw_b._nnz() == n * (k + 1)
    for name, got, want in (("loss", loss, rl), ("grad in_weight", ga, rga), ("grad out_weight", gb, rgb)):
        scale = max(1.0, float(want.abs().max())) if want.numel() else 1.0
        tol = dict(atol=1e-12 * scale, rtol=1e-10) if dtype == torch.float64 else dict(atol=1e-4 * scale, rtol=1e-4)
        assert_close(got, want, name=name, **tol)


def test_sgns_gpu_float32_error_within_2x_of_torch_float32():
    w_in, w_out, ids = _sgns_problem(300, 100, 500, 20, torch.float32, dup=True)
    _, ga, gb, _, _ = _sgns_grads(sgns_loss, w_in, w_out, ids, DEV, sparse=True)
    _, ta, tb, _, _ = _sgns_grads(sgns_loss_reference, w_in, w_out, ids, DEV)
    _, ra, rb, _, _ = _sgns_grads(sgns_loss_reference, w_in.double(), w_out.double(), ids, "cpu")
    for name, mine, torch32, ref64 in (("in", ga, ta, ra), ("out", gb, tb, rb)):
        e_ours = (mine.double() - ref64).abs().max().item()
        e_torch = (torch32.double() - ref64).abs().max().item()
        assert e_ours <= 2 * e_torch + 1e-7, f"grad {name}: error {e_ours:.3g} vs torch float32 {e_torch:.3g}"


def test_sgns_gpu_agrees_with_cpu_op_and_row_stride_slices():
    big = torch.randn(60, 40, dtype=torch.float64)
    w_in, w_out = big[:, :33], big[:, 7:40]  # row stride 40, D = 33 (not a multiple of 32)
    _, _, ids = _sgns_problem(60, 33, 120, 6, torch.float64, seed=4)
    cpu = sgns_loss(w_in, w_out, *ids, reduction="none")
    gpu = sgns_loss(w_in.to(DEV), w_out.to(DEV), *(t.to(DEV) for t in ids), reduction="none")
    assert_close(gpu, cpu, name="loss gpu vs cpu", atol=1e-12, rtol=1e-12)
    with torch.no_grad():
        nograd = sgns_loss(w_in.to(DEV), w_out.to(DEV), *(t.to(DEV) for t in ids))
    assert_close(nograd, cpu.mean(), name="no-grad mean loss", atol=1e-12, rtol=1e-12)


def test_sgns_gpu_empty_batch():
    w = torch.randn(10, 4, device=DEV, requires_grad=True)
    e = torch.empty(0, dtype=torch.int64, device=DEV)
    loss = sgns_loss(w, w, e, e, torch.empty(0, 3, dtype=torch.int64, device=DEV))
    assert loss.item() == 0.0
    loss.backward()
    assert w.grad is not None and torch.all(w.grad == 0)


@pytest.mark.parametrize("bad,where", [(-1, "center"), (10, "context"), (11, "negative")])
def test_sgns_gpu_out_of_range_ids_raise_value_error(bad, where):
    w_in, w_out = torch.randn(10, 4, device=DEV), torch.randn(10, 4, device=DEV)
    c, x = torch.zeros(3, dtype=torch.int64), torch.zeros(3, dtype=torch.int64)
    ng = torch.zeros(3, 2, dtype=torch.int64)
    {"center": c, "context": x, "negative": ng}[where].view(-1)[1] = bad
    with pytest.raises(ValueError, match=rf"sgns_loss: {where} id {bad} at position 1 is outside \[0, 10\)"):
        sgns_loss(w_in, w_out, c.to(DEV), x.to(DEV), ng.to(DEV))


def test_sgns_gpu_device_mismatch_and_opcheck():
    w_in, w_out, (c, x, ng) = _sgns_problem(17, 11, 13, 3, torch.float64, dup=True)
    with pytest.raises(RuntimeError, match="centers is on cpu but in_weight is on cuda"):
        sgns_loss(w_in.to(DEV), w_out.to(DEV), c, x.to(DEV), ng.to(DEV))
    w_in, w_out, c, x, ng = (t.to(DEV) for t in (w_in, w_out, c, x, ng))
    for sparse in (False, True):
        torch.library.opcheck(torch.ops.pyfast.sgns_fwd.default,
                              (w_in.requires_grad_(), w_out.requires_grad_(), c, x, ng, True, sparse, sparse))
