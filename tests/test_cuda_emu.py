"""The CUDA kernels' logic without a GPU: csrc/*/*.cu compiled by g++ against the host emulator in tests/cuda_emu
(one OS thread per CUDA thread, real barriers and warp exchanges), with the real csrc/bindings_cuda.cpp, driven
through the real Python CUDA layer (pyfast/ops/*_cuda.py, its torch.cuda stream/device calls stubbed). Checks the
masking kernel bit for bit against the CPU kernel in every mode, the SGNS kernels against the CPU op, the
bad-id flags, (fp32) the attention kernels of the earlier #8 session against the CPU op, the tensor-core mma helper's
fragment layouts against a plain matrix product, and the bf16/fp16 tensor-core attention forward and backward by
flash-attention's low-precision rule. It cannot check the GPU's memory model or speed: passing here is still "unverified on a GPU".
Skipped unless the emulated module was built: ``bash tests/cuda_emu/build.sh`` (about a minute of g++).
"""
from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import types

import pytest
import torch
from helpers import assert_close, assert_masking_equal, masking_batch, masking_mode_kwargs

from pyfast import _native
from pyfast.ops import mask_tokens
from pyfast.ops import sgns as S

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_EMU = sorted(glob.glob(os.path.join(_ROOT, "build", "cuda-emu", "_C_cuda*.so")))
pytestmark = pytest.mark.skipif(not _EMU, reason="host CUDA emulator not built: bash tests/cuda_emu/build.sh")


@pytest.fixture(scope="module")
def emu_module():
    spec = importlib.util.spec_from_file_location("_C_cuda", _EMU[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def emu(monkeypatch, emu_module):
    """The emulated module stands in for pyfast._C_cuda; host tensors stand in for device tensors."""
    monkeypatch.setattr(_native, "_cuda_module", emu_module)
    monkeypatch.setattr(torch.cuda, "device", lambda d: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda d=None: types.SimpleNamespace(cuda_stream=0))
    assert "emulator" in emu_module.device_name()[0]
    return emu_module


V, MASK, SPECIALS = 97, 4, (0, 1, 2, 3, 4)


def _emulated_mask_tokens(ids, *, special_tokens_mask=None, special_token_ids=None, word_starts=None,
                          max_predictions=None, span_masking=False, mlm_probability=0.15, seed=0, **extra):
    """mask_tokens' CUDA branch (pyfast.ops.masking_cuda) on host tensors, with mask_tokens' defaults."""
    from pyfast.ops.masking_cuda import mask_tokens_cuda

    kw = dict(mask_replace_prob=0.8, random_replace_prob=0.1, span_p=0.2, max_span_words=10)
    kw.update(extra)
    return mask_tokens_cuda(
        ids, special_tokens_mask=special_tokens_mask, word_starts=word_starts, vocab_size=V, mask_token_id=MASK,
        special_ids=None if special_token_ids is None else tuple(sorted(set(special_token_ids))),
        mlm_probability=mlm_probability, max_predictions=max_predictions, span_masking=span_masking, seed=seed, **kw)


@pytest.mark.parametrize("b,l", [(1, 1), (3, 37), (2, 257), (2, 513)])
@pytest.mark.parametrize("mode", ["piece", "word", "exact", "exact_word", "span", "span_word", "mask_col"])
@pytest.mark.parametrize("seed", [0, 2**64 - 1])
def test_emulated_masking_bitwise_equals_cpu(emu, b, l, mode, seed):
    ids, starts = masking_batch(b, l, seed=b * 1000 + l, vocab_size=V)
    kw = masking_mode_kwargs(mode, ids, starts, SPECIALS, mlm_probability=0.3, seed=seed)
    co, cl = mask_tokens(ids, mask_token_id=MASK, vocab_size=V, **kw)
    assert_masking_equal(mode, (co, cl), _emulated_mask_tokens(ids, **kw), "emulated gpu")
    assert (cl != -100).any() or l < 4  # the comparison is not vacuous


@pytest.mark.parametrize("extra", [dict(mlm_probability=1.0), dict(max_predictions=0),
                                   dict(mask_replace_prob=0.0, random_replace_prob=1.0),
                                   dict(span_masking=True, mlm_probability=0.9, max_span_words=64)])
def test_emulated_masking_edges_equal_cpu(emu, extra):
    ids, starts = masking_batch(3, 70, seed=3, vocab_size=V)
    kw = dict(special_token_ids=SPECIALS, word_starts=starts, seed=77, **extra)
    co, cl = mask_tokens(ids, mask_token_id=MASK, vocab_size=V, **kw)
    go, gl = _emulated_mask_tokens(ids, **kw)
    assert torch.equal(cl, gl) and torch.equal(co, go)


@pytest.mark.parametrize("extra", [dict(), dict(max_predictions=3), dict(span_masking=True)])
def test_emulated_masking_bad_id_flag(emu, extra):
    ids, _ = masking_batch(3, 300, seed=2, vocab_size=V)
    ids[1, 260] = V
    ids[2, 5] = -7
    with pytest.raises(ValueError, match=r"input_ids\[1, 260\] = 97 is outside the vocabulary \[0, 97\)"):
        _emulated_mask_tokens(ids, special_token_ids=SPECIALS, seed=1, **extra)


def _sgns_problem(v, d, n, k, dtype, dup, seed=0):
    g = torch.Generator().manual_seed(seed)
    w_in = (torch.randn(v, d, generator=g, dtype=torch.float64) * 0.3).to(dtype)
    w_out = (torch.randn(v, d, generator=g, dtype=torch.float64) * 0.3).to(dtype)
    hi = min(v, 3) if dup else v
    return (w_in, w_out, torch.randint(0, hi, (n,), generator=g), torch.randint(0, hi, (n,), generator=g),
            torch.randint(0, hi, (n, k), generator=g))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("v,d,n,k,dup", [(1, 1, 1, 1, False), (37, 13, 29, 1, False), (101, 70, 40, 20, False),
                                         (7, 33, 50, 6, True), (1000, 7, 3, 0, False)])
def test_emulated_sgns_forward_backward_equal_cpu_op(emu, dtype, v, d, n, k, dup):
    from pyfast.ops import sgns_cuda

    w_in, w_out, c, x, ng = _sgns_problem(v, d, n, k, dtype, dup)
    tol = dict(atol=1e-12, rtol=1e-12) if dtype == torch.float64 else dict(atol=1e-5, rtol=1e-5)
    cpu = S._sgns_fwd(w_in, w_out, c, x, ng, True, False, False)
    gpu = sgns_cuda._sgns_fwd_cuda(w_in, w_out, c, x, ng, True, False, False)
    for name, a, b in zip(("loss", "coef", "center_rows", "in_grad_dir"), gpu, cpu):
        assert_close(a, b, name=name, **tol)
    grad_loss = torch.linspace(0.5, 1.5, n, dtype=dtype)
    bc = S._sgns_bwd(cpu[1], grad_loss, cpu[2], cpu[3], c, x, ng, v)
    bg = sgns_cuda._sgns_bwd_cuda(gpu[1], grad_loss, gpu[2], gpu[3], c, x, ng, v)
    # CPU: one row per distinct id; CUDA: one row per occurrence (n, then its context and negatives).
    assert torch.equal(bg[0], c) and torch.equal(bg[2], torch.cat([x.unsqueeze(1), ng], 1).reshape(-1))

    def dense(ids, rows):
        return torch.zeros(v, d, dtype=dtype).index_add_(0, ids, rows)

    scale = max(1.0, float(bc[3].abs().max())) if bc[3].numel() else 1.0
    for name, got, want in (("in", dense(bg[0], bg[1]), dense(bc[0], bc[1])),
                            ("out", dense(bg[2], bg[3]), dense(bc[2], bc[3]))):
        assert_close(got, want, name=f"grad {name}", atol=tol["atol"] * scale * 10, rtol=tol["rtol"] * 10)
    no_backward = sgns_cuda._sgns_fwd_cuda(w_in, w_out, c, x, ng, False, False, False)
    assert no_backward[2].shape == (0, d)
    assert_close(no_backward[0], cpu[0], name="loss without backward buffers", **tol)


def test_emulated_sgns_row_stride_slices(emu):
    from pyfast.ops import sgns_cuda

    big = torch.randn(30, 40, dtype=torch.float64)
    w_in, w_out = big[:, :33], big[:, 7:40]  # row stride 40, D = 33
    _, _, c, x, ng = _sgns_problem(30, 33, 20, 4, torch.float64, False, seed=4)
    cpu = S._sgns_fwd(w_in, w_out, c, x, ng, True, False, False)
    gpu = sgns_cuda._sgns_fwd_cuda(w_in, w_out, c, x, ng, True, False, False)
    for name, a, b in zip(("loss", "coef", "center_rows", "in_grad_dir"), gpu, cpu):
        assert_close(a, b, name=name, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("bad,where", [(-1, "center"), (10, "context"), (11, "negative")])
def test_emulated_sgns_bad_id_flag(emu, bad, where):
    from pyfast.ops import sgns_cuda

    w_in, w_out = torch.randn(10, 4), torch.randn(10, 4)
    c, x, ng = torch.zeros(40, dtype=torch.int64), torch.zeros(40, dtype=torch.int64), torch.zeros(40, 2, dtype=torch.int64)
    target = {"center": c, "context": x, "negative": ng}[where].view(-1)
    target[33] = bad  # a later pair too: the first bad position is reported
    target[1] = bad
    with pytest.raises(ValueError, match=rf"sgns_loss: {where} id {bad} at position 1 is outside \[0, 10\)"):
        sgns_cuda._sgns_fwd_cuda(w_in, w_out, c, x, ng, True, False, False)


# ---- tensor-core helper (csrc/common/mma.cuh): the fragment layouts against a plain matrix product ------------
@pytest.mark.parametrize("dtype,code", [(torch.bfloat16, 2), (torch.float16, 3)])
@pytest.mark.parametrize("values", ["integers", "normal"])
def test_emulated_mma_m16n8k16_layouts(emu, dtype, code, values):
    g = torch.Generator().manual_seed(code)
    n = 3  # one full block of two warps and a block with one: the warps' scratch must stay apart
    if values == "integers":  # every product and sum exact: any misplaced element changes the result exactly
        a = torch.randint(-8, 9, (n, 16, 16), generator=g).to(dtype)
        b = torch.randint(-8, 9, (n, 16, 8), generator=g).to(dtype)
        c = torch.randint(-64, 65, (n, 16, 8), generator=g).float()
    else:
        a, b = torch.randn(n, 16, 16, generator=g).to(dtype), torch.randn(n, 16, 8, generator=g).to(dtype)
        c = torch.randn(n, 16, 8, generator=g)
    d = torch.full((n, 16, 8), float("nan"))
    emu.mma_m16n8k16_check(code, _native.ptr(a), _native.ptr(b), _native.ptr(c), _native.ptr(d), n, 0)
    want = a.double() @ b.double() + c.double()
    if values == "integers":
        assert torch.equal(d.double(), want), f"{int((d.double() != want).sum())} of {d.numel()} entries differ"
    else:
        assert_close(d, want, name="d", atol=1e-5, rtol=1e-5)


# ---- attention (written in an earlier session; run here too, since the emulator can) -----------------------------
def _attention_pair(emu, b, hq, hkv, l, s, e, ev, is_causal, mask_kind=None, dropout_p=0.0, dtype=torch.float32):
    """(emulated CUDA fwd+bwd, CPU op fwd+bwd) on the same inputs: ((out, lse), (dq, dk, dv)) each."""
    from pyfast.ops import attention as A
    from pyfast.ops import attention_cuda as AC

    g = torch.Generator().manual_seed(b * 100 + l)
    q = torch.randn(b, hq, l, e, generator=g).to(dtype)
    k = torch.randn(b, hkv, s, e, generator=g).to(dtype)
    v = torch.randn(b, hkv, s, ev, generator=g).to(dtype)
    mask = None
    if mask_kind == "float":
        mask = torch.randn(b, hq, l, s, generator=g)
    scale = 1.0 / e ** 0.5
    args = (mask, None, None, l, s, is_causal, scale, dropout_p, 1234)
    out_c, lse_c = A.attention_fwd(q, k, v, *args)
    out_g, lse_g = AC._attention_fwd_cuda(q, k, v, *args)
    dout = torch.randn(out_c.shape, generator=g).to(dtype)
    grads_c = A.attention_bwd(dout, q, k, v, out_c, lse_c, *args)
    grads_g = AC._attention_bwd_cuda(dout, q, k, v, out_g, lse_g, *args)
    return (out_g, lse_g, *grads_g), (out_c, lse_c, *grads_c)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1, 1, 16, 16), (2, 3, 3, 37, 53, 20, 24), (1, 4, 2, 33, 40, 64, 64),
                                   (1, 1, 1, 17, 33, 1, 3)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("mask_kind,dropout_p", [(None, 0.0), ("float", 0.0), (None, 0.3)])
def test_emulated_attention_equals_cpu_op(emu, shape, is_causal, mask_kind, dropout_p):
    got, want = _attention_pair(emu, *shape, is_causal, mask_kind, dropout_p)
    for name, a, b in zip(("out", "lse", "dq", "dk", "dv"), got, want):
        assert_close(a, b, name=name, atol=1e-4, rtol=1e-4)


# ---- attention on tensor cores (bf16 / fp16, head dims 64 and 128; csrc/attention/attention_cuda.cu) ------------
# Forward and backward (dQ, dK/dV) both run their mma.sync kernels here (emulated). Checked by
# flash-attention's rule against a float64 reference on the same (rounded) inputs: error at most 2x (out) / 3x
# (grads) that of torch's math in the same low precision, plus a small floor; and the lse (fp32 throughout, no
# rounded operand but the inputs) against the CPU op's tightly.
def _low_precision_math(q, k, v, mask, is_causal, scale, keep, dropout_p):
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = (q @ k.transpose(-2, -1)) * scale
    if mask is not None:
        scores = scores + mask.to(scores.dtype)
    if is_causal:
        l, s = scores.shape[-2:]
        scores = scores.masked_fill(~torch.ones(l, s, dtype=torch.bool).tril(), float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    if keep is not None:
        probs = probs * keep.to(probs.dtype) / (1 - dropout_p)
    return probs @ v


def _check_tensor_core_attention(emu, b, hq, hkv, l, s, d, dtype, is_causal, mask_kind, dropout_p, seed=0):
    from pyfast.ops import attention as A
    from pyfast.ops import attention_cuda as AC
    from pyfast.reference import attention as ref

    g = torch.Generator().manual_seed(seed * 1000 + l * 7 + s)
    q, k, v = (torch.randn(b, h, n, d, generator=g).to(dtype) for h, n in ((hq, l), (hkv, s), (hkv, s)))
    dout = torch.randn(b, hq, l, d, generator=g).to(dtype)
    mask = torch.randn(b, hq, l, s, generator=g) if mask_kind == "float" else None
    scale = 1.0 / d ** 0.5
    args = (mask, None, None, l, s, is_causal, scale, dropout_p, 1234)
    out_g, lse_g = AC._attention_fwd_cuda(q, k, v, *args)
    grads_g = AC._attention_bwd_cuda(dout, q, k, v, out_g, lse_g, *args)
    _, lse_c = A.attention_fwd(q, k, v, *args)
    assert_close(lse_g, lse_c, name="lse", atol=1e-4, rtol=1e-5)
    keep = A.dropout_keep_mask(b, hq, l, s, dropout_p, 1234) if dropout_p > 0 else None

    def run(fn, dt):
        qq, kk, vv = (t.to(dt).requires_grad_() for t in (q, k, v))
        o = fn(qq, kk, vv)
        return [o.double()] + [x.double() for x in torch.autograd.grad(o, (qq, kk, vv), dout.to(o.dtype))]

    exact = run(lambda qq, kk, vv: ref.scaled_dot_product_attention(
        qq, kk, vv, attn_mask=mask, is_causal=is_causal, scale=scale, enable_gqa=True, dropout_keep=keep,
        dropout_p=dropout_p), torch.float64)
    theirs = run(lambda qq, kk, vv: _low_precision_math(qq, kk, vv, mask, is_causal, scale, keep, dropout_p), dtype)
    ours = [out_g.double()] + [x.double() for x in grads_g]
    for name, o, t, x, factor in zip(("out", "dq", "dk", "dv"), ours, theirs, exact, (2, 3, 3, 3)):
        assert not torch.isnan(o).any(), f"{name}: NaN"
        err_ours, err_theirs = (o - x).abs().max().item(), (t - x).abs().max().item()
        assert err_ours <= factor * err_theirs + 1e-3, f"{name}: error {err_ours:.3g} vs torch's {err_theirs:.3g}"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("l,s", [(1, 1), (17, 130), (130, 17)])
@pytest.mark.parametrize("is_causal", [False, True])
def test_emulated_attention_tensor_core_lengths(emu, dtype, d, l, s, is_causal):
    _check_tensor_core_attention(emu, 1, 1, 1, l, s, d, dtype, is_causal, None, 0.0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("mask_kind,dropout_p,heads", [("float", 0.0, (2, 2)), (None, 0.3, (2, 2)),
                                                       (None, 0.0, (4, 2)), ("float", 0.2, (3, 1))],
                         ids=["mask", "dropout", "gqa", "gqa-mask-dropout"])
def test_emulated_attention_tensor_core_features(emu, dtype, d, is_causal, mask_kind, dropout_p, heads):
    _check_tensor_core_attention(emu, 2, heads[0], heads[1], 37, 70, d, dtype, is_causal, mask_kind, dropout_p)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("is_causal", [False, True])
def test_emulated_attention_tensor_core_varlen(emu, dtype, d, is_causal):
    """Packed sequences of awkward lengths (q: 1, 70, 17; k: 17, 70, 1), GQA 4 -> 2: out, lse and gradients."""
    from pyfast.ops import attention as A
    from pyfast.ops import attention_cuda as AC
    from pyfast.reference import attention as ref

    lq, lk, hq, hkv = [1, 70, 17], [17, 70, 1], 4, 2
    cu_q = torch.tensor([0] + list(torch.tensor(lq).cumsum(0)), dtype=torch.int32)
    cu_k = torch.tensor([0] + list(torch.tensor(lk).cumsum(0)), dtype=torch.int32)
    g = torch.Generator().manual_seed(d)
    q = torch.randn(sum(lq), hq, d, generator=g).to(dtype)
    k, v = (torch.randn(sum(lk), hkv, d, generator=g).to(dtype) for _ in range(2))
    dout = torch.randn(sum(lq), hq, d, generator=g).to(dtype)
    scale = d ** -0.5
    args = (None, cu_q, cu_k, max(lq), max(lk), is_causal, scale, 0.0, 0)
    out_g, lse_g = AC._attention_fwd_cuda(q, k, v, *args)
    grads_g = AC._attention_bwd_cuda(dout, q, k, v, out_g, lse_g, *args)
    _, lse_c = A.attention_fwd(q, k, v, *args)
    assert_close(lse_g, lse_c, name="lse", atol=1e-4, rtol=1e-5)

    def low_precision_varlen(qq, kk, vv):
        outs = []
        for i in range(len(lq)):
            q0, q1, k0, k1 = int(cu_q[i]), int(cu_q[i + 1]), int(cu_k[i]), int(cu_k[i + 1])
            o = _low_precision_math(qq[q0:q1].transpose(0, 1)[None], kk[k0:k1].transpose(0, 1)[None],
                                    vv[k0:k1].transpose(0, 1)[None], None, is_causal, scale, None, 0.0)
            outs.append(o[0].transpose(0, 1))
        return torch.cat(outs)

    def run(fn, dt):
        qq, kk, vv = (t.to(dt).requires_grad_() for t in (q, k, v))
        o = fn(qq, kk, vv)
        return [o.double()] + [x.double() for x in torch.autograd.grad(o, (qq, kk, vv), dout.to(o.dtype))]

    exact = run(lambda qq, kk, vv: ref.attention_varlen(qq, kk, vv, cu_q, cu_k, is_causal=is_causal, scale=scale),
                torch.float64)
    theirs = run(low_precision_varlen, dtype)
    ours = [out_g.double()] + [x.double() for x in grads_g]
    for name, o, t, x, factor in zip(("out", "dq", "dk", "dv"), ours, theirs, exact, (2, 3, 3, 3)):
        err_ours, err_theirs = (o - x).abs().max().item(), (t - x).abs().max().item()
        assert err_ours <= factor * err_theirs + 1e-3, f"{name}: error {err_ours:.3g} vs torch's {err_theirs:.3g}"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_emulated_attention_tensor_core_unaligned_rows(emu, dtype):
    """Row strides that are not a multiple of 8 elements: the element-copy path instead of 16-byte vectors."""
    from pyfast.ops import attention as A
    from pyfast.ops import attention_cuda as AC

    d, l, s = 64, 33, 45
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(1, 2, n, d + 3, generator=g).to(dtype)[..., 1:d + 1] for n in (l, s, s))
    assert q.stride(2) % 8 != 0 and q.data_ptr() % 16 != 0
    args = (None, None, None, l, s, True, d ** -0.5, 0.0, 0)
    out_g, lse_g = AC._attention_fwd_cuda(q, k, v, *args)
    out_c, lse_c = A.attention_fwd(q, k, v, *args)
    out_a, lse_a = AC._attention_fwd_cuda(*(t.contiguous() for t in (q, k, v)), *args)
    assert torch.equal(out_g, out_a) and torch.equal(lse_g, lse_a), "strided and contiguous inputs differ"
    assert_close(lse_g, lse_c, name="lse", atol=1e-4, rtol=1e-5)
    dout = torch.randn(out_g.shape, generator=g).to(dtype)
    grads_g = AC._attention_bwd_cuda(dout, q, k, v, out_g, lse_g, *args)
    grads_a = AC._attention_bwd_cuda(dout, *(t.contiguous() for t in (q, k, v)), out_a, lse_a, *args)
    for name, x, y in zip(("dq", "dk", "dv"), grads_g, grads_a):
        assert torch.equal(x, y), f"{name}: strided and contiguous inputs differ"
    assert_close(out_g, out_c, name="out", atol=3e-2 if dtype == torch.bfloat16 else 4e-3, rtol=0)


@pytest.mark.parametrize("is_causal", [False, True])
def test_emulated_attention_tensor_core_fully_masked_rows(emu, is_causal):
    """-inf mask entries, two rows with no visible key: those rows' out and dq are 0 and their lse -inf (the CPU
    kernel's convention); everything else agrees with the CPU op (bf16, D = 64)."""
    from pyfast.ops import attention as A
    from pyfast.ops import attention_cuda as AC

    b, h, l, s, d, dtype = 1, 2, 20, 40, 64, torch.bfloat16
    g = torch.Generator().manual_seed(11)
    q, k, v = (torch.randn(b, h, n, d, generator=g).to(dtype) for n in (l, s, s))
    mask = torch.zeros(b, h, l, s).masked_fill(torch.rand(b, h, l, s, generator=g) < 0.4, float("-inf"))
    mask[:, 0, 3] = float("-inf")
    mask[:, 1, 17] = float("-inf")
    dout = torch.randn(b, h, l, d, generator=g).to(dtype)
    args = (mask, None, None, l, s, is_causal, d ** -0.5, 0.0, 0)
    out_g, lse_g = AC._attention_fwd_cuda(q, k, v, *args)
    grads_g = AC._attention_bwd_cuda(dout, q, k, v, out_g, lse_g, *args)
    out_c, lse_c = A.attention_fwd(q, k, v, *args)
    grads_c = A.attention_bwd(dout, q, k, v, out_c, lse_c, *args)
    assert torch.isneginf(lse_g[0, 0, 3]) and torch.isneginf(lse_g[0, 1, 17])
    assert (out_g[0, 0, 3] == 0).all() and (out_g[0, 1, 17] == 0).all() and (grads_g[0][0, 0, 3] == 0).all()
    assert_close(lse_g, lse_c, name="lse", atol=1e-4, rtol=1e-5)
    assert_close(out_g, out_c, name="out", atol=3e-2, rtol=0)
    for name, x, y in zip(("dq", "dk", "dv"), grads_g, grads_c):
        assert not torch.isnan(x).any(), f"{name}: NaN"
        assert_close(x, y, name=name, atol=0.05 * float(y.abs().max()), rtol=0)
