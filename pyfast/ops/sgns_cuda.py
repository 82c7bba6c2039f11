"""CUDA implementations of the ``pyfast::sgns_fwd`` / ``pyfast::sgns_bwd`` custom ops (issue #8).

The ops, their fake kernels and their autograd are defined in ``pyfast/ops/sgns.py`` (CPU); this file only adds
``register_kernel("cuda")`` bodies, so the dispatcher routes by the tensors' device and autograd, the sparse /
dense gradient layer, opcheck and torch.compile work unchanged. Kernels: csrc/word2vec/sgns_op_cuda.cu (one warp
per pair, any D). Unique ids and the slot of every id come from ``torch.unique`` on the device (it sorts, so the
sparse gradient is coalesced as on the CPU); the backward kernel adds into zeroed per-unique-id rows with
atomicAdd, so duplicate ids accumulate correctly but float sums are not bitwise reproducible run to run.
Ids are bounds-checked by the forward kernel, which flags a bad id instead of reading with it; the flag is read
back here (one sync) and raised as the CPU op's ValueError.
Status: compiled for sm_80 / sm_90, UNVERIFIED ON A GPU (tests/test_cuda.py checks it where one is present).
"""
from __future__ import annotations

import torch

from .. import _native
from .sgns import _backward_operands, _forward_buffers, _sgns_bwd, _sgns_fwd

__all__: list[str] = []

_NO_ERROR = torch.iinfo(torch.int64).max


def _stream(t: torch.Tensor) -> int:
    return int(torch.cuda.current_stream(t.device).cuda_stream)


def _raise_bad_id(error: torch.Tensor, centers, contexts, negatives, v: int) -> None:
    """The CPU op's message for the first bad center, else context, else negative (its check order)."""
    flags = error.tolist()  # one sync
    for where, ids, pos in (("center", centers, flags[0]), ("context", contexts, flags[1]),
                            ("negative", negatives, flags[2])):
        if pos != _NO_ERROR:
            bad = int(ids.reshape(-1)[pos])
            raise ValueError(f"sgns_loss: {where} id {bad} at position {pos} is outside [0, {v})")


@_sgns_fwd.register_kernel("cuda")
def _sgns_fwd_cuda(in_weight, out_weight, centers, contexts, negatives, need_backward, sparse_in, sparse_out):
    native = _native.cuda()  # first: a build without CUDA raises its "rebuild with PYFAST_CUDA=ON" here
    for name, t in (("out_weight", out_weight), ("centers", centers), ("contexts", contexts),
                    ("negatives", negatives)):
        if t.device != in_weight.device:
            raise RuntimeError(f"sgns_loss: {name} is on {t.device} but in_weight is on {in_weight.device}")
    in_w, out_w, centers, contexts, negatives, loss, coef, center_rows, in_grad_dir = _forward_buffers(
        in_weight, out_weight, centers, contexts, negatives, need_backward)
    n, k = negatives.shape
    v, d = in_w.shape
    error = torch.full((3,), _NO_ERROR, dtype=torch.int64, device=in_w.device)
    if n:
        with torch.cuda.device(in_w.device):
            native.sgns_forward(
                _native.ptr(in_w), _native.ptr(out_w), in_w.stride(0), out_w.stride(0), _native.ptr(centers),
                _native.ptr(contexts), _native.ptr(negatives), v, d, n, k,
                _native.dtype_code(in_w.dtype, "sgns_loss"), _native.ptr(loss), _native.ptr(coef),
                _native.ptr(center_rows) if need_backward else 0, _native.ptr(in_grad_dir) if need_backward else 0,
                _native.ptr(error), _stream(in_w))
        _raise_bad_id(error, centers, contexts, negatives, v)
    return loss, coef, center_rows, in_grad_dir


@_sgns_bwd.register_kernel("cuda")
def _sgns_bwd_cuda(coef, grad_loss, center_rows, in_grad_dir, centers, contexts, negatives, num_embeddings):
    native = _native.cuda()
    n, k = negatives.shape
    d = center_rows.shape[1]
    coef, grad_loss, center_rows, in_grad_dir, centers, targets = _backward_operands(
        coef, grad_loss, center_rows, in_grad_dir, centers, contexts, negatives)
    # Sorted unique ids (a coalesced sparse gradient) and each element's slot among them, on the device.
    in_ids, center_slot = torch.unique(centers, sorted=True, return_inverse=True)
    out_ids, target_slot = torch.unique(targets.reshape(-1), sorted=True, return_inverse=True)
    # Named (not temporaries inside the call): the buffers must stay alive until the kernel has run.
    center_slot, target_slot = center_slot.contiguous(), target_slot.contiguous()
    in_rows = torch.zeros((in_ids.numel(), d), dtype=coef.dtype, device=coef.device)  # atomicAdd targets
    out_rows = torch.zeros((out_ids.numel(), d), dtype=coef.dtype, device=coef.device)
    error = torch.full((1,), _NO_ERROR, dtype=torch.int64, device=coef.device)
    if n:
        with torch.cuda.device(coef.device):
            native.sgns_backward(
                n, k, d, _native.dtype_code(coef.dtype, "sgns_loss"), _native.ptr(coef), _native.ptr(grad_loss),
                _native.ptr(center_rows), _native.ptr(in_grad_dir), _native.ptr(center_slot),
                in_ids.numel(), _native.ptr(target_slot), out_ids.numel(), _native.ptr(in_rows),
                _native.ptr(out_rows), _native.ptr(error), _stream(coef))
        if int(error.item()) != _NO_ERROR:  # cannot happen with torch.unique's slots; the kernel skipped the row
            raise RuntimeError("sgns_loss backward: a gradient slot was out of range (internal error)")
    return in_ids, in_rows, out_ids, out_rows
