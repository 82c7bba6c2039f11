"""Fused scaled-dot-product attention: a drop-in for ``torch.nn.functional.scaled_dot_product_attention`` and a
packed/varlen form, forward and backward native (csrc/attention/), O(L + S) memory per head, on CPU and CUDA tensors.

Layers: ``pyfast::attention_fwd`` / ``pyfast::attention_bwd`` are torch custom ops (fake kernels + autograd, so
``torch.compile(fullgraph=True)`` traces them) with a CPU and a CUDA kernel each, chosen by the tensors' device; the
public functions validate, normalise shapes and masks, and call them. Semantics follow torch SDPA: layout
(..., L, E); a bool mask is True where attention is allowed, a float mask is added to the scores; masks broadcast to
(..., Hq, L, S); ``is_causal`` is top-left aligned (query i sees keys j <= i); GQA (``enable_gqa``) maps q head h to
kv head h // (Hq // Hkv); v's head dim may differ from q's.

A query row whose mask allows no key returns 0 (and gradients 0) -- as torch's CPU flash kernel does; torch's
math path returns NaN there. Float64 is not supported (float32, bfloat16 and float16 are; the 16-bit types
accumulate in fp32). Head dims up to 256. The mask gets no gradient. Dropout is keyed by (seed, b, h, i, j) through
Philox, identically on both devices, and regenerated in the backward. On CUDA, bf16/fp16 at head dims 64 and 128
run on tensor cores, everything else on CUDA cores (fp32); their backward sums dQ with atomics unless
``deterministic=True`` (or torch.use_deterministic_algorithms(True)) selects the bitwise repeatable one. Calling a
CUDA tensor without a CUDA build raises the RuntimeError of ``pyfast._native.cuda()``, which says how to rebuild.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from .. import _native

__all__ = ["scaled_dot_product_attention", "attention_varlen"]

_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_MAX_HEAD_DIM = 256


# ---- validation and packing ----------------------------------------------------------------------------------
def _last_dim_contiguous(*tensors: Tensor) -> tuple[Tensor, ...]:
    return tuple(t if t.stride(-1) == 1 or t.shape[-1] <= 1 else t.contiguous() for t in tensors)


def _check_same_device(op: str, q: Tensor, **tensors: Optional[Tensor]) -> None:
    for name, t in tensors.items():
        if t is not None and t.device != q.device:
            raise RuntimeError(f"{op}: {name} is on {t.device} but q is on {q.device}; move them to one device")


def _layout(op: str, q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor], cu_seqlens_q: Optional[Tensor],
            cu_seqlens_k: Optional[Tensor]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(out shape, lse shape) of a custom-op call, after checking every size the kernel will index by against the
    tensors: the last line of defence for direct calls of the custom ops."""
    if (cu_seqlens_q is None) != (cu_seqlens_k is None):
        raise ValueError(f"{op}: give both cu_seqlens_q and cu_seqlens_k or neither")
    if cu_seqlens_q is not None:
        if q.dim() != 3 or k.dim() != 3 or v.dim() != 3 or mask is not None:
            raise ValueError(f"{op}: varlen takes (total, heads, dim) q, k, v and no mask")
        if k.shape[0] != v.shape[0] or k.shape[1] != v.shape[1] or k.shape[2] != q.shape[2] or k.shape[1] < 1 \
                or q.shape[1] % k.shape[1] != 0:
            raise ValueError(f"{op}: inconsistent shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
        for cu, total in ((cu_seqlens_q, q.shape[0]), (cu_seqlens_k, k.shape[0])):
            if cu.dtype != torch.int32 or cu.dim() != 1 or cu.numel() != cu_seqlens_q.numel() or cu.numel() < 1 or \
                    int(cu[0]) != 0 or int(cu[-1]) > total or bool((cu[1:] < cu[:-1]).any()):
                raise ValueError(f"{op}: cu_seqlens must be equal-length int32 prefix sums from 0 to at most {total}")
        return (q.shape[0], q.shape[1], v.shape[2]), (q.shape[1], q.shape[0])
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"{op}: q, k, v must be (B, H, L, D)")
    b, hq, l, e = q.shape
    hkv, s = k.shape[1], k.shape[2]
    if k.shape[0] != b or v.shape[:3] != k.shape[:3] or k.shape[3] != e or hkv < 1 or hq % hkv != 0:
        raise ValueError(f"{op}: inconsistent shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if mask is not None and (tuple(mask.shape) != (b, hq, l, s) or mask.dtype != torch.float32 or
                             (mask.stride(-1) != 1 and s > 1)):
        raise ValueError(f"{op}: mask must be a float32 (B, Hq, L, S) = {(b, hq, l, s)} view with unit last stride")
    return (b, hq, l, v.shape[3]), (b, hq, l)


def _forward_tensors(q, k, v, mask, cu_seqlens_q, cu_seqlens_k) -> tuple[Tensor, ...]:
    """(q, k, v, out, lse) for the forward kernel: the inputs with a unit last stride, and the new outputs."""
    op = "pyfast::attention_fwd"
    _check_same_device(op, q, k=k, v=v, mask=mask, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k)
    q, k, v = _last_dim_contiguous(q, k, v)
    out_shape, lse_shape = _layout(op, q, k, v, mask, cu_seqlens_q, cu_seqlens_k)
    out = torch.empty(out_shape, dtype=q.dtype, device=q.device)
    lse = torch.empty(lse_shape, dtype=torch.float32, device=q.device)
    return q, k, v, out, lse


def _backward_tensors(dout, q, k, v, out, lse, mask, cu_seqlens_q, cu_seqlens_k) -> tuple[Tensor, ...]:
    """(dout, q, k, v, out, lse, dq, dk, dv) for the backward kernel: the inputs with a unit last stride (lse
    contiguous), checked against each other, and the new gradients."""
    op = "pyfast::attention_bwd"
    _check_same_device(op, q, dout=dout, k=k, v=v, out=out, lse=lse, mask=mask, cu_seqlens_q=cu_seqlens_q,
                       cu_seqlens_k=cu_seqlens_k)
    dout, q, k, v, out = _last_dim_contiguous(dout, q, k, v, out)
    lse = lse.contiguous()
    out_shape, lse_shape = _layout(op, q, k, v, mask, cu_seqlens_q, cu_seqlens_k)
    if tuple(dout.shape) != out_shape or tuple(out.shape) != out_shape or tuple(lse.shape) != lse_shape or \
            lse.dtype != torch.float32:
        raise ValueError(f"{op}: dout/out/lse shapes do not match the forward's")
    dq, dk, dv = (torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in (q, k, v))
    return dout, q, k, v, out, lse, dq, dk, dv


def _strided(native, t: Optional[Tensor], varlen: bool):
    """native.Strided of a (B, H, L, D) tensor, of a (total, H, D) one in varlen mode, or of nothing."""
    if t is None:
        return native.Strided()
    if varlen:
        return native.Strided(_native.ptr(t), 0, t.stride(1), t.stride(0))
    return native.Strided(_native.ptr(t), t.stride(0), t.stride(1), t.stride(2))


def _pack_attention(native, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, mask: Optional[Tensor],
                    cu_seqlens_q: Optional[Tensor], cu_seqlens_k: Optional[Tensor], max_seqlen_q: int,
                    max_seqlen_k: int, is_causal: bool, scale: float, dropout_p: float, seed: int):
    """native.AttentionParams of tensors checked by _forward_tensors / _backward_tensors (the caller keeps them
    alive across the native call)."""
    varlen = cu_seqlens_q is not None
    p = native.AttentionParams()
    p.dtype = _native.dtype_code(q.dtype, "pyfast::attention")
    p.q_heads, p.kv_heads = q.shape[1], k.shape[1]  # (B, H, L, D), varlen (total, H, D)
    p.head_dim, p.value_dim = q.shape[-1], v.shape[-1]
    if varlen:
        p.batch, p.q_len, p.kv_len = cu_seqlens_q.shape[0] - 1, max_seqlen_q, max_seqlen_k
        p.cu_seqlens_q, p.cu_seqlens_k = _native.ptr(cu_seqlens_q), _native.ptr(cu_seqlens_k)
        p.lse_batch_stride, p.lse_head_stride = 0, lse.stride(0)
    else:
        p.batch, p.q_len, p.kv_len = q.shape[0], q.shape[2], k.shape[2]
        p.lse_batch_stride, p.lse_head_stride = lse.stride(0), lse.stride(1)
    p.scale = scale
    p.is_causal = is_causal
    p.q, p.k, p.v, p.out = (_strided(native, t, varlen) for t in (q, k, v, out))
    p.mask = _strided(native, mask, False)
    p.lse = _native.ptr(lse)
    p.dropout_p = dropout_p
    p.seed = seed
    return p


def _pack_attention_bwd(native, dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
                        dq: Tensor, dk: Tensor, dv: Tensor, mask: Optional[Tensor], cu_seqlens_q: Optional[Tensor],
                        cu_seqlens_k: Optional[Tensor], max_seqlen_q: int, max_seqlen_k: int, is_causal: bool,
                        scale: float, dropout_p: float, seed: int):
    """native.AttentionBackwardParams: the forward's params (_pack_attention) and dout, dq, dk, dv."""
    varlen = cu_seqlens_q is not None
    p = native.AttentionBackwardParams()
    p.fwd = _pack_attention(native, q, k, v, out, lse, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                            is_causal, scale, dropout_p, seed)
    p.dout, p.dq, p.dk, p.dv = (_strided(native, t, varlen) for t in (dout, dq, dk, dv))
    return p


# ---- custom ops ----------------------------------------------------------------------------------------------
# Padded layout: q (B, Hq, L, E), k (B, Hkv, S, E), v (B, Hkv, S, Ev), mask float32 broadcastable view of
# (B, Hq, L, S) or None. Varlen layout (cu_seqlens given): q (total_q, Hq, E), k/v (total_k, Hkv, E/Ev).
# Returns out (like q with Ev) and lse float32 ((B, Hq, L), varlen (Hq, total_q)).
@torch.library.custom_op("pyfast::attention_fwd", mutates_args=())
def attention_fwd(
    q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor], cu_seqlens_q: Optional[Tensor],
    cu_seqlens_k: Optional[Tensor], max_seqlen_q: int, max_seqlen_k: int, is_causal: bool, scale: float,
    dropout_p: float, seed: int, deterministic: bool = False,
) -> tuple[Tensor, Tensor]:
    raise NotImplementedError(f"pyfast::attention_fwd: no kernel for device {q.device.type}")


@attention_fwd.register_fake
def _(q, k, v, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, is_causal, scale, dropout_p, seed,
      deterministic=False):
    if cu_seqlens_q is not None:
        return (q.new_empty((q.shape[0], q.shape[1], v.shape[2])),
                q.new_empty((q.shape[1], q.shape[0]), dtype=torch.float32))
    return q.new_empty((*q.shape[:3], v.shape[3])), q.new_empty(q.shape[:3], dtype=torch.float32)


@torch.library.custom_op("pyfast::attention_bwd", mutates_args=())
def attention_bwd(
    dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, mask: Optional[Tensor],
    cu_seqlens_q: Optional[Tensor], cu_seqlens_k: Optional[Tensor], max_seqlen_q: int, max_seqlen_k: int,
    is_causal: bool, scale: float, dropout_p: float, seed: int, deterministic: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    raise NotImplementedError(f"pyfast::attention_bwd: no kernel for device {q.device.type}")


@attention_bwd.register_fake
def _(dout, q, k, v, out, lse, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, is_causal, scale,
      dropout_p, seed, deterministic=False):
    return tuple(torch.empty_like(t, memory_format=torch.contiguous_format) for t in (q, k, v))


def _setup_context(ctx, inputs, output):
    q, k, v, mask, cu_q, cu_k, max_q, max_k, is_causal, scale, dropout_p, seed, *rest = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, mask, cu_q, cu_k)
    ctx.args = (max_q, max_k, is_causal, scale, dropout_p, seed)
    ctx.deterministic = bool(rest[0]) if rest else False
    ctx.mark_non_differentiable(lse)


def _backward(ctx, dout, dlse):
    # lse is an auxiliary output (marked non-differentiable): dlse is ignored. Deterministic if the forward asked for
    # it or torch's deterministic algorithms are on now (torch.use_deterministic_algorithms governs the backward
    # kernels it runs, as it does torch's own).
    q, k, v, out, lse, mask, cu_q, cu_k = ctx.saved_tensors
    max_q, max_k, is_causal, scale, dropout_p, seed = ctx.args
    deterministic = ctx.deterministic or torch.are_deterministic_algorithms_enabled()
    dq, dk, dv = attention_bwd(dout, q, k, v, out, lse, mask, cu_q, cu_k, max_q, max_k, is_causal, scale,
                               dropout_p, seed, deterministic)
    return dq, dk, dv, None, None, None, None, None, None, None, None, None, None


attention_fwd.register_autograd(_backward, setup_context=_setup_context)


# ---- kernels ---------------------------------------------------------------------------------------------------
@attention_fwd.register_kernel("cpu")
def _attention_fwd_cpu(q, k, v, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, is_causal, scale,
                       dropout_p, seed, deterministic=False):
    # deterministic only travels to the backward (the forwards have no atomics).
    native = _native.cpu()
    q, k, v, out, lse = _forward_tensors(q, k, v, mask, cu_seqlens_q, cu_seqlens_k)
    native.attention_fwd(_pack_attention(native, q, k, v, out, lse, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                         max_seqlen_k, is_causal, scale, dropout_p, seed))
    return out, lse


@attention_fwd.register_kernel("cuda")
def _attention_fwd_cuda(q, k, v, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, is_causal, scale,
                        dropout_p, seed, deterministic=False):
    native = _native.cuda()
    q, k, v, out, lse = _forward_tensors(q, k, v, mask, cu_seqlens_q, cu_seqlens_k)
    params = _pack_attention(native, q, k, v, out, lse, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                             max_seqlen_k, is_causal, scale, dropout_p, seed)
    with torch.cuda.device(q.device):
        native.attention_fwd(params, _native.stream(q))
    return out, lse


@attention_bwd.register_kernel("cpu")
def _attention_bwd_cpu(dout, q, k, v, out, lse, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                       is_causal, scale, dropout_p, seed, deterministic=False):
    # The CPU backward has no atomics: deterministic either way.
    native = _native.cpu()
    dout, q, k, v, out, lse, dq, dk, dv = _backward_tensors(dout, q, k, v, out, lse, mask, cu_seqlens_q,
                                                            cu_seqlens_k)
    native.attention_bwd(_pack_attention_bwd(native, dout, q, k, v, out, lse, dq, dk, dv, mask, cu_seqlens_q,
                                             cu_seqlens_k, max_seqlen_q, max_seqlen_k, is_causal, scale, dropout_p,
                                             seed))
    return dq, dk, dv


@attention_bwd.register_kernel("cuda")
def _attention_bwd_cuda(dout, q, k, v, out, lse, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                        is_causal, scale, dropout_p, seed, deterministic=False):
    native = _native.cuda()
    dout, q, k, v, out, lse, dq, dk, dv = _backward_tensors(dout, q, k, v, out, lse, mask, cu_seqlens_q,
                                                            cu_seqlens_k)
    params = _pack_attention_bwd(native, dout, q, k, v, out, lse, dq, dk, dv, mask, cu_seqlens_q, cu_seqlens_k,
                                 max_seqlen_q, max_seqlen_k, is_causal, scale, dropout_p, seed)
    delta = torch.empty_like(lse)  # rowsum(dout * out): written by the first kernel, read by the dK/dV one
    # The single-kernel backward sums dQ over key blocks by fp32 atomics into dq_acc (laid out like dq, zeroed by the
    # kernel): fast, not bitwise repeatable. Without dq_acc the native side runs the atomic-free two-kernel path.
    dq_acc = None
    if not deterministic and native.attention_bwd_takes_dq_scratch(params):
        dq_acc = torch.empty(dq.shape, dtype=torch.float32, device=dq.device)
        assert dq_acc.stride() == dq.stride()
    with torch.cuda.device(q.device):
        native.attention_bwd(params, _native.ptr(delta), 0 if dq_acc is None else _native.ptr(dq_acc),
                             _native.stream(q))
    return dq, dk, dv


KERNELS = (
    (attention_fwd, _attention_fwd_cpu, _attention_fwd_cuda),
    (attention_bwd, _attention_bwd_cpu, _attention_bwd_cuda),
)


# ---- validation helpers of the public functions ----------------------------------------------------------------
def _check_tensors(op: str, **tensors: Tensor) -> None:
    first_name, first = next(iter(tensors.items()))
    for name, t in tensors.items():
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in _DTYPES:
            raise TypeError(f"{op}: {name} has dtype {t.dtype}; supported dtypes are float32, bfloat16 and float16")
        if t.device.type not in ("cpu", "cuda"):
            raise RuntimeError(f"{op}: {name} is on {t.device}; pyfast attention runs on CPU and CUDA tensors")
    for name, t in tensors.items():
        if t.dtype != first.dtype:
            raise TypeError(f"{op}: {name} has dtype {t.dtype} but {first_name} has {first.dtype}")


def _check_dropout_scale(op: str, dropout_p: float, scale: Optional[float], head_dim: int) -> float:
    if not 0.0 <= float(dropout_p) < 1.0:
        raise ValueError(f"{op}: dropout_p must be in [0, 1), got {dropout_p}")
    if scale is None:
        return 1.0 / math.sqrt(head_dim) if head_dim > 0 else 1.0
    if not math.isfinite(float(scale)):
        raise ValueError(f"{op}: scale must be finite, got {scale}")
    return float(scale)


def _dropout_seed(dropout_p: float) -> int:
    # Drawn from torch's default generator, so torch.manual_seed makes dropout reproducible.
    return int(torch.randint(0, 2**62, (1,)).item()) if dropout_p > 0.0 else 0


def _float_mask(attn_mask: Tensor, s: int) -> Tensor:
    """A float32 additive version of attn_mask (its own shape) whose last dim is contiguous with size S."""
    if attn_mask.dtype == torch.bool:
        m = torch.zeros(attn_mask.shape, dtype=torch.float32, device=attn_mask.device)
        m = m.masked_fill_(~attn_mask, float("-inf"))
    else:
        m = attn_mask.detach().to(torch.float32)
    if m.dim() == 0:
        m = m.reshape(1)
    if m.shape[-1] != s or (m.stride(-1) != 1 and s > 1):
        m = m.expand(*m.shape[:-1], s).contiguous()
    return m


# ---- public functions ------------------------------------------------------------------------------------------
def scaled_dot_product_attention(
    query: Tensor, key: Tensor, value: Tensor, attn_mask: Optional[Tensor] = None, dropout_p: float = 0.0,
    is_causal: bool = False, scale: Optional[float] = None, enable_gqa: bool = False, *,
    deterministic: Optional[bool] = None,
) -> Tensor:
    """torch.nn.functional.scaled_dot_product_attention, fused, on CPU or CUDA tensors.

    query (..., Hq, L, E), key (..., Hkv, S, E), value (..., Hkv, S, Ev) -> (..., Hq, L, Ev). The leading batch
    dims of the three must be equal (no broadcasting between them); Hkv == Hq unless ``enable_gqa``. A row whose
    mask allows no key returns 0. Dropout draws its seed from torch's generator (``torch.manual_seed`` governs it;
    under torch.compile that draw is a graph break, so compile with dropout_p=0). Unlike torch, ``attn_mask`` and
    ``is_causal`` may be given together (both apply).

    ``deterministic`` (keyword only, beyond torch's signature; flash-attn's name): True makes the backward bitwise
    repeatable. On CUDA the fastest backward (bf16 / fp16, head dims 64 and 128) sums dQ with atomics, whose order
    varies from run to run; True selects an atomic-free backward instead (slower). None (default) and False take
    the fast backward unless ``torch.use_deterministic_algorithms`` is on at backward time: torch's switch wins, as
    it does for torch's own ops. Every other backward is deterministic anyway.
    """
    op = "scaled_dot_product_attention"
    _check_tensors(op, query=query, key=key, value=value)
    if query.dim() < 2 or key.dim() != query.dim() or value.dim() != query.dim():
        raise ValueError(f"{op}: query, key and value must have the same number of dims (>= 2), got "
                         f"{query.dim()}, {key.dim()} and {value.dim()}")
    squeeze_head = query.dim() == 2
    if squeeze_head:  # (L, E): one batch-less head
        query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
    batch = tuple(query.shape[:-3])
    hq, l, e = query.shape[-3:]
    hkv, s, ek = key.shape[-3:]
    hv, sv, ev = value.shape[-3:]
    if tuple(key.shape[:-3]) != batch or tuple(value.shape[:-3]) != batch:
        raise ValueError(f"{op}: batch dims differ: query {batch}, key {tuple(key.shape[:-3])}, "
                         f"value {tuple(value.shape[:-3])}")
    if ek != e:
        raise ValueError(f"{op}: key head dim {ek} != query head dim {e}")
    if sv != s:
        raise ValueError(f"{op}: value length {sv} != key length {s}")
    if hv != hkv:
        raise ValueError(f"{op}: value heads {hv} != key heads {hkv}")
    if enable_gqa:
        if hkv < 1 or hq % hkv != 0:
            raise ValueError(f"{op}: with enable_gqa, query heads ({hq}) must be a multiple of key/value heads ({hkv})")
    elif hkv != hq:
        raise ValueError(f"{op}: key/value heads ({hkv}) != query heads ({hq}); pass enable_gqa=True for GQA")
    if not 1 <= e <= _MAX_HEAD_DIM or not 1 <= ev <= _MAX_HEAD_DIM:
        raise ValueError(f"{op}: head dims must be in [1, {_MAX_HEAD_DIM}], got query/key {e} and value {ev}")
    scale = _check_dropout_scale(op, dropout_p, scale, e)

    full = (*batch, hq, l, s)
    mask4 = None
    if attn_mask is not None:
        if not isinstance(attn_mask, Tensor):
            raise TypeError(f"{op}: attn_mask must be a torch.Tensor or None, got {type(attn_mask).__name__}")
        if attn_mask.device != query.device:
            raise RuntimeError(f"{op}: attn_mask is on {attn_mask.device} but query is on {query.device}")
        if attn_mask.dtype != torch.bool and not attn_mask.is_floating_point():
            raise TypeError(f"{op}: attn_mask must be bool or floating point, got {attn_mask.dtype}")
        if squeeze_head and attn_mask.dim() > 2:
            raise ValueError(f"{op}: attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to "
                             f"{(l, s)}")
        try:
            if torch.broadcast_shapes(attn_mask.shape, full) != torch.Size(full):
                raise RuntimeError
        except RuntimeError:
            raise ValueError(f"{op}: attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to "
                             f"{full[-2:] if squeeze_head else full}") from None
        # An explicit batch size, not -1: with 0 elements (an empty batch, L or S = 0) -1 is ambiguous to torch.
        mask4 = _float_mask(attn_mask, s).expand(full).reshape(math.prod(batch), hq, l, s)

    bflat = math.prod(batch)
    q4 = query.reshape(bflat, hq, l, e)
    k4 = key.reshape(bflat, hkv, s, e)
    v4 = value.reshape(bflat, hkv, s, ev)
    out, _ = attention_fwd(q4, k4, v4, mask4, None, None, l, s, bool(is_causal), scale, float(dropout_p),
                           _dropout_seed(dropout_p), bool(deterministic))
    out = out.reshape(*batch, hq, l, ev)
    return out.squeeze(0) if squeeze_head else out


def attention_varlen(
    q: Tensor, k: Tensor, v: Tensor, cu_seqlens_q: Tensor, cu_seqlens_k: Tensor, max_seqlen_q: int,
    max_seqlen_k: int, is_causal: bool = False, scale: Optional[float] = None, dropout_p: float = 0.0,
    deterministic: Optional[bool] = None,
) -> Tensor:
    """Attention over packed sequences (flash-attn's varlen layout), no padding anywhere.

    q (total_q, Hq, E), k (total_k, Hkv, E), v (total_k, Hkv, Ev); cu_seqlens_q / cu_seqlens_k int32 (B + 1,)
    prefix sums of the lengths (starting at 0); sequence b attends only within itself. Hq may be a multiple of
    Hkv (GQA). ``is_causal`` is top-left aligned per sequence, as in torch SDPA (flash-attn aligns bottom-right
    when lengths differ; for self-attention they agree). Returns (total_q, Hq, Ev). ``deterministic``: as in
    scaled_dot_product_attention (a bitwise repeatable backward; None follows torch.use_deterministic_algorithms).
    """
    op = "attention_varlen"
    _check_tensors(op, q=q, k=k, v=v)
    if q.dim() != 3 or k.dim() != 3 or v.dim() != 3:
        raise ValueError(f"{op}: q, k, v must be (total, heads, head_dim), got dims {q.dim()}, {k.dim()}, {v.dim()}")
    for name, cu in (("cu_seqlens_q", cu_seqlens_q), ("cu_seqlens_k", cu_seqlens_k)):
        if not isinstance(cu, Tensor) or cu.dtype != torch.int32 or cu.dim() != 1 or cu.numel() < 1:
            raise ValueError(f"{op}: {name} must be a 1-D int32 tensor of B + 1 prefix sums")
        if cu.device != q.device:
            raise RuntimeError(f"{op}: {name} is on {cu.device} but q is on {q.device}")
    if cu_seqlens_q.numel() != cu_seqlens_k.numel():
        raise ValueError(f"{op}: cu_seqlens_q has {cu_seqlens_q.numel()} entries, cu_seqlens_k {cu_seqlens_k.numel()}")
    if k.shape[0] != v.shape[0] or k.shape[1] != v.shape[1]:
        raise ValueError(f"{op}: k {tuple(k.shape)} and v {tuple(v.shape)} differ in tokens or heads")
    if k.shape[2] != q.shape[2]:
        raise ValueError(f"{op}: k head dim {k.shape[2]} != q head dim {q.shape[2]}")
    if k.shape[1] < 1 or q.shape[1] % k.shape[1] != 0:
        raise ValueError(f"{op}: q heads ({q.shape[1]}) must be a multiple of k/v heads ({k.shape[1]})")
    if not 1 <= q.shape[2] <= _MAX_HEAD_DIM or not 1 <= v.shape[2] <= _MAX_HEAD_DIM:
        raise ValueError(f"{op}: head dims must be in [1, {_MAX_HEAD_DIM}]")
    for name, cu, total, mx in (("cu_seqlens_q", cu_seqlens_q, q.shape[0], max_seqlen_q),
                                ("cu_seqlens_k", cu_seqlens_k, k.shape[0], max_seqlen_k)):
        lengths = cu[1:] - cu[:-1]
        if int(cu[0]) != 0 or int(cu[-1]) != total or bool((lengths < 0).any()):
            raise ValueError(f"{op}: {name} must rise from 0 to {total} (the token count)")
        if lengths.numel() and int(lengths.max()) > mx:
            raise ValueError(f"{op}: a sequence in {name} is longer than its max_seqlen ({mx})")
    scale = _check_dropout_scale(op, dropout_p, scale, q.shape[2])
    out, _ = attention_fwd(q, k, v, None, cu_seqlens_q.contiguous(), cu_seqlens_k.contiguous(), int(max_seqlen_q),
                           int(max_seqlen_k), bool(is_causal), scale, float(dropout_p), _dropout_seed(dropout_p),
                           bool(deterministic))
    return out


def dropout_keep_mask(batch: int, heads: int, q_len: int, kv_len: int, dropout_p: float, seed: int,
                      device: torch.device | str = "cpu") -> Tensor:
    """The bool (B, H, L, S) keep mask the kernels draw for (dropout_p, seed), drawn on ``device`` (CPU or CUDA: the
    same mask bit for bit): for tests and references."""
    device = torch.device(device)
    shape = (batch, heads, q_len, kv_len)
    if device.type == "cuda":
        native = _native.cuda()
        keep = torch.empty(shape, dtype=torch.uint8, device=device)
        with torch.cuda.device(keep.device):
            native.attention_dropout_mask(_native.ptr(keep), batch, heads, q_len, kv_len, float(dropout_p), int(seed),
                                          _native.stream(keep))
    elif device.type == "cpu":
        keep = torch.empty(shape, dtype=torch.uint8)
        _native.cpu().attention_dropout_mask(_native.ptr(keep), batch, heads, q_len, kv_len, float(dropout_p),
                                             int(seed))
    else:
        raise RuntimeError(f"dropout_keep_mask: no kernel for device {device.type}")
    return keep.bool()
