"""The SGNS op's optimizer step: ``sgns_sgd_step`` does ``loss = sgns_loss(...); loss.backward();
torch.optim.SGD(lr).step()`` (sparse gradients) as one call, with no autograd: the weights are updated in place, like
an optimizer's step under torch.no_grad, and no ``.grad`` is read or written.

Why it exists: at word2vec batch sizes on a GPU the autograd step is bound by launches and syncs, not bytes (V=50k,
D=128, N=4096, K=5 moves ~24-77 MB, ~5-16 us of an H200's HBM, against 1.6 ms for plain PyTorch's step; see
benchmarks/RESULTS.md, SGNS op -> GPU). The autograd path cannot drop below its own op count (forward, reduction,
the backward's nodes, sparse gradient tensors, AccumulateGrad, SGD's two index_add_); the step is two memsets, two
kernels and the one sync that turns a flagged id into the exception.
- CUDA: forward kernel (reads the weights only, writes coefficients and per-pair rows to scratch) + apply kernel
  (atomicAdd of -lr * gradient rows into the weights: duplicates sum like SGD's index_add_), csrc/word2vec/sgns_op.h.
- CPU: the fused training pass of sgns_loss (gradient rows per unique id, computed from the weights before any
  write) + two index_add_ into the weights.
Both equal the autograd composition up to float rounding (the CUDA adds run in no fixed order), tied tables
(in_weight is out_weight) included.
"""
from __future__ import annotations

import math

import torch

from .. import _native
from . import sgns

__all__ = ["sgns_sgd_step"]


# ---- custom op (mutating; no autograd: an optimizer step) ---------------------------------------------------------
@torch.library.custom_op("pyfast::sgns_sgd_step", mutates_args=("in_weight", "out_weight"))
def _sgns_sgd_step(in_weight: torch.Tensor, out_weight: torch.Tensor, centers: torch.Tensor, contexts: torch.Tensor,
                   negatives: torch.Tensor, lr: float, scale: float) -> torch.Tensor:
    """Reduced loss scale * sum_n loss_n (0-d, the weights' dtype) of the weights before the update; the weights get
    w -= lr * d(reduced loss) / dw. N >= 1 (the public function returns before an empty batch)."""
    raise NotImplementedError(f"pyfast::sgns_sgd_step: no kernel for device {in_weight.device.type}")


@_sgns_sgd_step.register_fake
def _sgns_sgd_step_fake(in_weight, out_weight, centers, contexts, negatives, lr, scale):
    return in_weight.new_empty(())


@_sgns_sgd_step.register_kernel("cpu")
def _sgns_sgd_step_cpu(in_weight, out_weight, centers, contexts, negatives, lr, scale):
    # Every row from the weights before the update (ids checked first: a bad one raises before anything is written),
    # one row per unique id, then the same add SGD makes of a sparse gradient (w + (-lr) * row).
    loss, in_ids, in_rows, out_ids, out_rows = sgns._fused_forward(in_weight, out_weight, centers, contexts, negatives,
                                                                   scale, True, True)
    in_weight.index_add_(0, in_ids, in_rows, alpha=-lr)
    out_weight.index_add_(0, out_ids, out_rows, alpha=-lr)
    return loss


@_sgns_sgd_step.register_kernel("cuda")
def _sgns_sgd_step_cuda(in_weight, out_weight, centers, contexts, negatives, lr, scale):
    native = _native.cuda()  # first: a build without CUDA raises its "rebuild with PYFAST_CUDA=ON" here
    # The kernels take row-major tables (any row stride); another layout is updated in a copy and written back.
    in_w = sgns._row_major(in_weight)
    out_w = in_w if out_weight is in_weight else sgns._row_major(out_weight)
    centers, contexts, negatives = centers.contiguous(), contexts.contiguous(), negatives.contiguous()
    n, k = negatives.shape
    d = in_w.shape[1]
    loss = in_w.new_empty(())  # its own allocation: a view would keep the scratch alive with the loss
    # Scratch in two allocations, not five (the step is bound by host-side work per call, not bytes): the float rows
    # coef (N, K+1) | center_rows (N, D) | in_grad_dir (N, D) back to back in the weights' dtype, and int64
    # error (3,) | loss_total (one float64 slot). Both are preset on the stream by the entry (memsets).
    rows = in_w.new_empty(n * (k + 1) + 2 * n * d)
    flags = torch.empty(4, dtype=torch.int64, device=in_w.device)
    base, item = _native.ptr(rows), rows.element_size()
    with torch.cuda.device(in_w.device):
        native.sgns_sgd_step(_native.fill(
            native.SgnsSgdStepParams(), batch=sgns._pack_sgns(native, in_w, out_w, centers, contexts, negatives),
            lr=lr, scale=scale, loss=_native.ptr(loss), coef=base, center_rows=base + n * (k + 1) * item,
            in_grad_dir=base + (n * (k + 1) + n * d) * item, error=_native.ptr(flags),
            loss_total=_native.ptr(flags) + 3 * flags.element_size()), _native.stream(in_w))
    # One sync: a flagged id raises sgns_loss's ValueError; the apply kernel then wrote nothing.
    sgns._raise_bad_id(flags[:3], centers, contexts, negatives, in_w.shape[0])
    if in_w is not in_weight:
        in_weight.copy_(in_w)
    if out_w is not out_weight:
        out_weight.copy_(out_w)
    return loss


# Every custom op with its CPU and CUDA body (tests/conftest.py's emu device runs the CUDA body on CPU tensors).
KERNELS = ((_sgns_sgd_step, _sgns_sgd_step_cpu, _sgns_sgd_step_cuda),)


# ---- public API ---------------------------------------------------------------------------------------------------
def sgns_sgd_step(in_weight: torch.Tensor, out_weight: torch.Tensor, centers: torch.Tensor, contexts: torch.Tensor,
                  negatives: torch.Tensor, lr: float, reduction: str = "mean") -> torch.Tensor:
    """One SGD step of the skip-gram negative-sampling loss, fused: the weights are updated in place and the loss
    (of the weights before the update) is returned.

    The same as ``loss = sgns_loss(in_weight, out_weight, ..., reduction=reduction, sparse=True); loss.backward();
    torch.optim.SGD([in_weight, out_weight], lr=lr).step()`` up to float rounding, without autograd: it runs under
    torch.no_grad, records no graph, and neither reads nor writes ``.grad`` (no zero_grad needed; a ``.grad``
    already there is left as it is). Plain SGD only (no momentum, dampening or weight decay). Each table gets
    ``w[id] -= lr * (sum of that id's gradient rows)``; ids repeated in a batch sum, as in a sparse SGD step.

    Args:
        in_weight, out_weight: (V, D) float32 / float64 tables on one device (CPU or CUDA), e.g.
            ``nn.Embedding.weight`` (leaf parameters; a non-leaf tensor that requires grad is refused, since
            changing it in place would corrupt the graph it belongs to). May be the same tensor (tied tables).
        centers, contexts: (N,) int64 ids in [0, V).  negatives: (N, K) int64 ids in [0, V).
        lr: learning rate (finite, >= 0).
        reduction: ``"mean"`` (over pairs, sgns_loss's default) or ``"sum"``: the loss the step descends, and the
            one returned. ``"none"`` has no step (a per-pair loss has no single gradient).

    Returns: the reduced loss, a 0-d tensor on the weights' device in their dtype (an empty batch: 0, no update).

    Ids outside [0, V) raise the ValueError sgns_loss raises, before any weight is written (on CUDA the kernel
    flags them, the update kernel then writes nothing, and the call raises after one sync).
    CUDA: "compiled, unverified on a GPU" (checked in the host emulator; see benchmarks/RESULTS.md).
    """
    op = "sgns_sgd_step"
    sgns._check_inputs(op, in_weight, out_weight, centers, contexts, negatives)
    if reduction not in ("mean", "sum"):
        raise ValueError(f"{op}: reduction must be 'mean' or 'sum' (a step descends one scalar loss), got "
                         f"{reduction!r}")
    try:
        lr = float(lr)
    except (TypeError, ValueError):
        raise TypeError(f"{op}: lr must be a number, got {type(lr).__name__}") from None
    if not math.isfinite(lr) or lr < 0:
        raise ValueError(f"{op}: lr must be finite and >= 0, got {lr}")
    for name, w in (("in_weight", in_weight), ("out_weight", out_weight)):
        if w.requires_grad and not w.is_leaf:
            raise RuntimeError(f"{op}: {name} is a non-leaf tensor that requires grad; the step updates leaf "
                               f"parameters in place (pass the nn.Parameter, or a detached tensor)")
    n = centers.shape[0]
    if n == 0:  # sgns_loss's empty batch: a zero loss, and zero gradients: nothing to update
        return in_weight.new_zeros(())
    scale = 1.0 / n if reduction == "mean" else 1.0
    with torch.no_grad():
        return torch.ops.pyfast.sgns_sgd_step(in_weight, out_weight, centers, contexts, negatives, lr, scale)
