"""CUDA implementations of the ``pyfast::attention_fwd`` / ``pyfast::attention_bwd`` custom ops (issue #8).

The ops, their fake kernels and their autograd are defined in ``pyfast/ops/attention.py`` (CPU); this file only
adds ``register_kernel("cuda")`` bodies, so the dispatcher routes by the tensors' device and autograd, opcheck
and torch.compile work unchanged on GPU tensors. The kernels are csrc/attention/attention_cuda.cu: forward and
backward run on tensor cores (mma.sync, fp32 accumulation) for bf16/fp16 at head dims 64 and 128, on CUDA cores
(fp32) otherwise; same semantics and the same Philox dropout keying as the CPU.

Status: compiled for sm_80 / sm_90; tests/test_cuda.py passed on an H200 (2026-11-28) except the error-message
test, whose crash was fixed afterwards (csrc/common/checks.h; that fix is unverified on a GPU).
Imported (guarded) from ``pyfast.ops``; importing never needs CUDA; calling without a CUDA build raises the
RuntimeError of ``pyfast._native.cuda()`` that says how to rebuild.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .. import _native
from .attention import _DTYPE_CODES, _geometry, _last_dim_contiguous, _strided, attention_bwd, attention_fwd

__all__ = ["dropout_keep_mask_cuda"]


def _stream(t: Tensor) -> int:
    return int(torch.cuda.current_stream(t.device).cuda_stream)


def _check_same_device(op: str, ref: Tensor, **tensors: Optional[Tensor]) -> None:
    for name, t in tensors.items():
        if t is not None and t.device != ref.device:
            raise RuntimeError(f"{op}: {name} is on {t.device} but q is on {ref.device}; move them to one device")


def _lse_strides(lse: Tensor, varlen: bool) -> list[int]:
    return [_native.ptr(lse), 0, lse.stride(0)] if varlen else [_native.ptr(lse), lse.stride(0), lse.stride(1)]


@attention_fwd.register_kernel("cuda")
def _attention_fwd_cuda(q, k, v, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, is_causal, scale,
                        dropout_p, seed):
    op = "pyfast::attention_fwd"
    _check_same_device(op, q, k=k, v=v, mask=mask, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k)
    q, k, v = (_last_dim_contiguous(t) for t in (q, k, v))
    sizes, varlen, out_shape, lse_shape = _geometry(q, k, v, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                                    max_seqlen_k)
    out = torch.empty(out_shape, dtype=q.dtype, device=q.device)
    lse = torch.empty(lse_shape, dtype=torch.float32, device=q.device)
    cu = [0, 0] if not varlen else [_native.ptr(cu_seqlens_q), _native.ptr(cu_seqlens_k)]
    with torch.cuda.device(q.device):
        _native.cuda().attention_fwd(
            _DTYPE_CODES[q.dtype], sizes, scale, is_causal, _strided(q, varlen), _strided(k, varlen),
            _strided(v, varlen), _strided(out, varlen), _strided(mask, False), _lse_strides(lse, varlen), cu,
            dropout_p, seed, _stream(q),
        )
    return out, lse


@attention_bwd.register_kernel("cuda")
def _attention_bwd_cuda(dout, q, k, v, out, lse, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                        is_causal, scale, dropout_p, seed):
    op = "pyfast::attention_bwd"
    _check_same_device(op, q, dout=dout, k=k, v=v, out=out, lse=lse, mask=mask, cu_seqlens_q=cu_seqlens_q,
                       cu_seqlens_k=cu_seqlens_k)
    dout, q, k, v, out = (_last_dim_contiguous(t) for t in (dout, q, k, v, out))
    lse = lse.contiguous()
    sizes, varlen, _, _ = _geometry(q, k, v, mask, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
    if dout.shape != out.shape or lse.shape != ((q.shape[1], q.shape[0]) if varlen else q.shape[:3]):
        raise ValueError(f"{op}: dout/out/lse shapes do not match the forward's")
    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    dk = torch.empty(k.shape, dtype=k.dtype, device=q.device)
    dv = torch.empty(v.shape, dtype=v.dtype, device=q.device)
    delta = torch.empty_like(lse)  # rowsum(dout * out), written by the dQ kernel, read by the dK/dV kernel
    cu = [0, 0] if not varlen else [_native.ptr(cu_seqlens_q), _native.ptr(cu_seqlens_k)]
    with torch.cuda.device(q.device):
        _native.cuda().attention_bwd(
            _DTYPE_CODES[q.dtype], sizes, scale, is_causal, _strided(q, varlen), _strided(k, varlen),
            _strided(v, varlen), _strided(out, varlen), _strided(mask, False), _lse_strides(lse, varlen), cu,
            dropout_p, seed, _strided(dout, varlen), _strided(dq, varlen), _strided(dk, varlen),
            _strided(dv, varlen), _native.ptr(delta), _stream(q),
        )
    return dq, dk, dv


def dropout_keep_mask_cuda(batch: int, heads: int, q_len: int, kv_len: int, dropout_p: float, seed: int,
                           device="cuda") -> Tensor:
    """The bool (B, H, L, S) keep mask the CUDA kernels draw for (dropout_p, seed); equals the CPU's."""
    keep = torch.empty((batch, heads, q_len, kv_len), dtype=torch.uint8, device=device)
    with torch.cuda.device(keep.device):
        _native.cuda().attention_dropout_mask(_native.ptr(keep), batch, heads, q_len, kv_len, float(dropout_p),
                                              int(seed), _stream(keep))
    return keep.bool()
