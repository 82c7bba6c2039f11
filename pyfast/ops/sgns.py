"""Skip-gram negative-sampling loss as a fused torch op: ``sgns_loss`` (and ``sgns_loss_per_table``, a sparse flag per
table, for pyfast.nn.SkipGramNS). The samplers that feed it live with the data utilities (pyfast/data/samplers.py),
its gradient plumbing (huge-page rows, sparse / dense gradients, the coalesced flag) in pyfast/ops/sgns_grad.py.

Two paths, the same loss and gradients:
- Eager training of a reduced loss on the CPU (``"mean"`` / ``"sum"``, grad enabled, not under torch.compile):
  ``_FusedSgnsLoss``, the one fast path beside the custom ops. One native pass computes the loss *and* the
  gradient rows of the reduced loss, one per unique id, while each pair's rows are in L1 (pairs grouped by center,
  then items grouped by target; every row summed by one thread in a fixed order). The backward only multiplies by
  the upstream scalar (skipped when it is 1) and hands the rows to autograd, which takes them as ``.grad`` without
  a copy.
- Everything else (``reduction="none"``, CUDA tensors, torch.compile, no grad): the custom op ``pyfast::sgns_fwd``
  (fake implementation, autograd registered). It returns the per-pair loss and saves the per-pair coefficients
  sigmoid(score) - label, (N, K+1), and (when a gradient can be asked for) the gathered center rows and
  d loss_n / d u_n, 2 x (N, D); its backward builds the gradient rows from these compact buffers (see sgns_op.h).

Gradients: sparse COO tensors (like nn.Embedding(sparse=True): SGD, SparseAdam, DDP work unchanged) or dense (V, D)
tensors. On the CPU, one row per *unique* id (``pyfast::sgns_bwd``: duplicates accumulated in native code, in a
fixed order, so the result does not depend on the thread count; coalesced, a flag a hook keeps through
AccumulateGrad). On CUDA, and inside a compiled graph, one row per occurrence, as nn.Embedding gives them
(``pyfast::sgns_bwd_rows``: one kernel on CUDA, the same products as plain torch ops on the CPU; duplicates summed
by the gradient's reader).
Kernels: csrc/word2vec/sgns_op_cpu.cpp (CPU, every entry), csrc/word2vec/sgns_op_cuda.cu (the CUDA forward and
backward rows, and the SGD step of pyfast/ops/sgns_step.py). A build without CUDA raises, for CUDA tensors, a
RuntimeError that says how to rebuild.
For plain SGD, ``pyfast.ops.sgns_sgd_step`` (SkipGramNS.sgd_step) does forward + backward + update in one call
without autograd: on a GPU the autograd step is bound by its launches, not its bytes (benchmarks/RESULTS.md).
Limits: float32 / float64 weights; ids are int64.
"""
from __future__ import annotations

import torch

from .. import _native
from . import sgns_grad

__all__ = ["sgns_loss", "sgns_loss_per_table", "advise_hugepages"]

_REDUCTIONS = ("mean", "sum", "none")
_NO_ERROR = -1  # the CUDA kernels' "no bad id" position (the entry presets the flags to all bits set)


# ---- validation and packing --------------------------------------------------------------------------------------
def _check_inputs(op: str, in_weight, out_weight, centers, contexts, negatives) -> None:
    for name, t in (("in_weight", in_weight), ("out_weight", out_weight), ("centers", centers),
                    ("contexts", contexts), ("negatives", negatives)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if in_weight.dim() != 2 or out_weight.dim() != 2:
        raise ValueError(f"{op}: in_weight and out_weight must be 2-D (V, D), got shapes "
                         f"{tuple(in_weight.shape)} and {tuple(out_weight.shape)}")
    if in_weight.shape != out_weight.shape:
        raise ValueError(f"{op}: in_weight and out_weight must have the same shape (V, D), got "
                         f"{tuple(in_weight.shape)} and {tuple(out_weight.shape)}")
    if in_weight.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{op}: weights must be float32 or float64, got {in_weight.dtype}")
    if out_weight.dtype != in_weight.dtype:
        raise TypeError(f"{op}: in_weight and out_weight must have the same dtype, got {in_weight.dtype} and "
                        f"{out_weight.dtype}")
    if in_weight.shape[0] < 1 or in_weight.shape[1] < 1:
        raise ValueError(f"{op}: weights must have V >= 1 rows and D >= 1 columns, got {tuple(in_weight.shape)}")
    for name, t in (("centers", centers), ("contexts", contexts), ("negatives", negatives)):
        if t.dtype != torch.int64:
            raise TypeError(f"{op}: {name} must be int64 (torch.long), got {t.dtype}")
    if centers.dim() != 1:
        raise ValueError(f"{op}: centers must be 1-D (N,), got shape {tuple(centers.shape)}")
    if contexts.shape != centers.shape:
        raise ValueError(f"{op}: contexts must have the shape of centers {tuple(centers.shape)}, got "
                         f"{tuple(contexts.shape)}")
    if negatives.dim() != 2 or negatives.shape[0] != centers.shape[0]:
        raise ValueError(f"{op}: negatives must be 2-D (N, K) with N = {centers.shape[0]}, got shape "
                         f"{tuple(negatives.shape)}")
    device = in_weight.device
    if device.type not in ("cpu", "cuda"):
        raise RuntimeError(f"{op}: only CPU and CUDA tensors are supported, got in_weight on {device}")
    for name, t in (("out_weight", out_weight), ("centers", centers), ("contexts", contexts),
                    ("negatives", negatives)):
        if t.device != device:
            raise RuntimeError(f"{op}: {name} is on {t.device} but in_weight is on {device}; move them to one device")


def _row_major(w: torch.Tensor) -> torch.Tensor:
    """Rows must be contiguous (stride(1) == 1); a row stride is passed to the kernel, so a slice needs no copy."""
    return w if w.stride(1) == 1 else w.contiguous()


def _pack_sgns(native, in_w, out_w, centers, contexts, negatives):
    """native.SgnsParams of one batch: row-major weights (any row stride), contiguous ids, on one device."""
    ptr = _native.ptr
    return _native.fill(native.SgnsParams(), in_weight=ptr(in_w), out_weight=ptr(out_w), in_stride=in_w.stride(0),
                 out_stride=out_w.stride(0), centers=ptr(centers), contexts=ptr(contexts), negatives=ptr(negatives),
                 num_embeddings=in_w.shape[0], dim=in_w.shape[1], num_pairs=negatives.shape[0],
                 num_negatives=negatives.shape[1], dtype=_native.dtype_code(in_w.dtype, "sgns_loss"))


def _forward_operands(in_weight, out_weight, centers, contexts, negatives, need_backward: bool):
    """The forward kernels' operands in the layout they take (row-major tables, contiguous ids) and their outputs
    (loss (N,), coef (N, K+1), center rows and d loss / d u (N, D) when need_backward, else (0, D)); on the
    weights' device."""
    in_w, out_w = _row_major(in_weight), _row_major(out_weight)
    centers, contexts, negatives = centers.contiguous(), contexts.contiguous(), negatives.contiguous()
    n, k = negatives.shape
    d = in_w.shape[1]
    rows = n if need_backward else 0
    return (in_w, out_w, centers, contexts, negatives, in_w.new_empty(n), in_w.new_empty(n, k + 1),
            in_w.new_empty(rows, d), in_w.new_empty(rows, d))


def _pack_sgns_fwd(native, in_w, out_w, centers, contexts, negatives, loss, coef, center_rows, in_grad_dir):
    """native.SgnsForwardParams (the CPU and the CUDA forward): the batch and the output buffers; center_rows /
    in_grad_dir absent (0) when they have no rows (no backward to follow)."""
    ptr = _native.ptr
    saved = center_rows.shape[0] > 0
    return _native.fill(native.SgnsForwardParams(), batch=_pack_sgns(native, in_w, out_w, centers, contexts, negatives),
                 loss=ptr(loss), coef=ptr(coef), center_rows=ptr(center_rows) if saved else 0,
                 in_grad_dir=ptr(in_grad_dir) if saved else 0)


def _unique_slots(native, centers, contexts, negatives, num_embeddings: int):
    """Sorted unique centers (U_in,) and targets (U_out,) of a CPU batch and each occurrence's slot among them:
    (in_ids, center_slot (N,), out_ids, target_slot (N (K+1),)), target j of pair n at n (K+1) + j. The ids are
    views of scratch buffers."""
    n, k = negatives.shape
    in_ids, center_slot = torch.empty(n, dtype=torch.int64), torch.empty(n, dtype=torch.int64)
    out_ids, target_slot = torch.empty(n * (k + 1), dtype=torch.int64), torch.empty(n * (k + 1), dtype=torch.int64)
    counts = torch.zeros(2, dtype=torch.int64)
    ptr = _native.ptr
    native.sgns_unique(_native.fill(native.SgnsUniqueParams(), centers=ptr(centers), contexts=ptr(contexts),
                             negatives=ptr(negatives), num_embeddings=num_embeddings, num_pairs=n, num_negatives=k,
                             unique_centers=ptr(in_ids), center_slot=ptr(center_slot), unique_targets=ptr(out_ids),
                             target_slot=ptr(target_slot), counts=ptr(counts)))
    u_in, u_out = counts.tolist()
    return in_ids[:u_in], center_slot, out_ids[:u_out], target_slot


def _backward_operands(coef, grad_loss, center_rows, in_grad_dir, negatives):
    """The backward's float operands, contiguous, grad_loss in coef's dtype; raises if the forward saved no buffers."""
    n = negatives.shape[0]
    if center_rows.shape[0] != n or in_grad_dir.shape != center_rows.shape:
        raise RuntimeError("sgns_loss backward: the forward ran without saving its buffers (need_backward=False)")
    return coef.contiguous(), grad_loss.to(coef.dtype).contiguous(), center_rows.contiguous(), in_grad_dir.contiguous()


# ---- custom ops ---------------------------------------------------------------------------------------------------
@torch.library.custom_op("pyfast::sgns_fwd", mutates_args=())
def _sgns_fwd(in_weight: torch.Tensor, out_weight: torch.Tensor, centers: torch.Tensor, contexts: torch.Tensor,
              negatives: torch.Tensor, need_backward: bool, sparse_in: bool, sparse_out: bool
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair loss (N,), coefficients sigmoid(score) - label (N, K+1) and, when need_backward, the gathered center
    rows (N, D) and d loss_n / d u_n (N, D) for the backward (else (0, D)). sparse_* only shape the gradients."""
    raise NotImplementedError(f"pyfast::sgns_fwd: no kernel for device {in_weight.device.type}")


@_sgns_fwd.register_fake
def _sgns_fwd_fake(in_weight, out_weight, centers, contexts, negatives, need_backward, sparse_in, sparse_out):
    n, k = negatives.shape
    rows = n if need_backward else 0
    d = in_weight.shape[1]
    return (in_weight.new_empty(n), in_weight.new_empty(n, k + 1), in_weight.new_empty(rows, d),
            in_weight.new_empty(rows, d))


def _rows_per_occurrence(coef, grad_loss, center_rows, in_grad_dir, centers, contexts, negatives):
    """Gradient rows per occurrence of an id, as nn.Embedding(sparse=True) gives them: (centers (N,), in rows
    (N, D), targets (N (K+1),), out rows (N (K+1), D)), pair n's targets in the kernel's order (context, then
    negatives). Two broadcast multiplies of the forward's buffers: no sort, no atomics, and sizes known from the
    shapes alone. Duplicates are summed by whatever reads the gradient (SGD's add_, coalesce(), to_dense(),
    index_add_ into a dense one). pyfast::sgns_bwd_rows's CPU body; its CUDA body is one kernel doing the same."""
    coef, grad_loss, center_rows, in_grad_dir = _backward_operands(coef, grad_loss, center_rows, in_grad_dir,
                                                                   negatives)
    targets = torch.cat([contexts.contiguous().unsqueeze(1), negatives.contiguous()], dim=1)
    g = grad_loss.unsqueeze(1)                                                    # (N, 1)
    in_rows = in_grad_dir * g                                                     # (N, D)
    out_rows = ((coef * g).unsqueeze(2) * center_rows.unsqueeze(1)).reshape(-1, center_rows.shape[1])
    # clone: the gradient's indices must not share storage with the caller's id tensors (reused batch buffers)
    return centers.contiguous().clone(), in_rows, targets.reshape(-1), out_rows


def _setup_context(ctx, inputs, output):
    in_weight, out_weight, centers, contexts, negatives, need_backward, sparse_in, sparse_out = inputs
    _loss, coef, center_rows, in_grad_dir = output
    # The weights themselves are not saved: the backward needs only these per-pair buffers.
    ctx.save_for_backward(centers, contexts, negatives, coef, center_rows, in_grad_dir)
    ctx.sparse_in, ctx.sparse_out = sparse_in, sparse_out
    ctx.weight_shape = tuple(in_weight.shape)


def _backward(ctx, grad_loss, _grad_coef, _grad_center_rows, _grad_in_grad_dir):
    # Only the per-pair loss is differentiable; the other outputs are internal buffers, their gradients ignored.
    centers, contexts, negatives, coef, center_rows, in_grad_dir = ctx.saved_tensors
    grad_in = grad_out = None
    if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
        # The op's one remaining choice, made here so that pyfast::sgns_bwd keeps one output contract (one row per
        # unique id): that row count is known only from the data. Inside a compiled graph it would cost a graph break
        # (eager fallback and a recompile per batch in torch.compile's default mode); on CUDA a sorted unique costs
        # a sort and a sync (2 x 70 us of a 2.2 ms step on an H200). Both take one row per occurrence instead:
        # pyfast::sgns_bwd_rows, static sizes (on CUDA one kernel, on the CPU the same products as torch ops).
        if coef.device.type == "cuda" or torch.compiler.is_compiling():
            in_ids, in_rows, out_ids, out_rows = torch.ops.pyfast.sgns_bwd_rows(
                coef, grad_loss, center_rows, in_grad_dir, centers, contexts, negatives)
            coalesced = False
        else:
            in_ids, in_rows, out_ids, out_rows = torch.ops.pyfast.sgns_bwd(
                coef, grad_loss, center_rows, in_grad_dir, centers, contexts, negatives, ctx.weight_shape[0])
            coalesced = True
        if ctx.needs_input_grad[0]:
            grad_in = sgns_grad.rows_to_grad(in_ids, in_rows, ctx.weight_shape, ctx.sparse_in, coalesced)
        if ctx.needs_input_grad[1]:
            grad_out = sgns_grad.rows_to_grad(out_ids, out_rows, ctx.weight_shape, ctx.sparse_out, coalesced)
    return grad_in, grad_out, None, None, None, None, None, None


_sgns_fwd.register_autograd(_backward, setup_context=_setup_context)


@torch.library.custom_op("pyfast::sgns_bwd_rows", mutates_args=())
def _sgns_bwd_rows(coef: torch.Tensor, grad_loss: torch.Tensor, center_rows: torch.Tensor, in_grad_dir: torch.Tensor,
                   centers: torch.Tensor, contexts: torch.Tensor, negatives: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradient rows per occurrence of an id (see _rows_per_occurrence): (centers (N,), in rows (N, D), targets
    (N (K+1),), out rows (N (K+1), D)). The backward of CUDA tensors and of compiled graphs: sizes known from the
    shapes, so it traces without a graph break; on CUDA one kernel (sgns_backward_rows) instead of six torch ops."""
    raise NotImplementedError(f"pyfast::sgns_bwd_rows: no kernel for device {coef.device.type}")


@_sgns_bwd_rows.register_fake
def _sgns_bwd_rows_fake(coef, grad_loss, center_rows, in_grad_dir, centers, contexts, negatives):
    n, k = negatives.shape
    d = center_rows.shape[1]
    return (centers.new_empty(n), coef.new_empty(n, d), centers.new_empty(n * (k + 1)), coef.new_empty(n * (k + 1), d))


@torch.library.custom_op("pyfast::sgns_bwd", mutates_args=())
def _sgns_bwd(coef: torch.Tensor, grad_loss: torch.Tensor, center_rows: torch.Tensor, in_grad_dir: torch.Tensor,
              centers: torch.Tensor, contexts: torch.Tensor, negatives: torch.Tensor, num_embeddings: int
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradient rows per unique id, ids sorted: (in_ids (U_in,), in_rows (U_in, D), out_ids (U_out,), out_rows
    (U_out, D)). Reads only the forward's (N, D) buffers, never the weights. CPU only: CUDA tensors and compiled
    graphs take _rows_per_occurrence (see _backward)."""
    raise NotImplementedError(f"pyfast::sgns_bwd: no kernel for device {coef.device.type}")


@_sgns_bwd.register_fake
def _sgns_bwd_fake(coef, grad_loss, center_rows, in_grad_dir, centers, contexts, negatives, num_embeddings):
    # One row per distinct id: how many a batch touches is known only from the data.
    d = center_rows.shape[1]
    ctx = torch.library.get_ctx()
    u_in, u_out = ctx.new_dynamic_size(), ctx.new_dynamic_size()
    return (centers.new_empty(u_in), coef.new_empty(u_in, d), centers.new_empty(u_out), coef.new_empty(u_out, d))


# ---- kernels ------------------------------------------------------------------------------------------------------
@_sgns_fwd.register_kernel("cpu")
def _sgns_fwd_cpu(in_weight, out_weight, centers, contexts, negatives, need_backward, sparse_in, sparse_out):
    native = _native.cpu()
    operands = _forward_operands(in_weight, out_weight, centers, contexts, negatives, need_backward)
    native.sgns_forward(_pack_sgns_fwd(native, *operands))  # ids checked before any read: ValueError
    return operands[5:]


def _raise_bad_id(error: torch.Tensor, centers, contexts, negatives, v: int) -> None:
    """The CPU kernel's message for the first bad center, else context, else negative (its check order)."""
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
    operands = _forward_operands(in_weight, out_weight, centers, contexts, negatives, need_backward)
    in_w, _, centers, contexts, negatives = operands[:5]
    # The ids live on the device: the kernel flags a bad one (skipping its pair) and the flag is read back here
    # (the entry presets it with a memset: no fill kernel).
    error = torch.empty(3, dtype=torch.int64, device=in_w.device)
    if negatives.shape[0]:
        with torch.cuda.device(in_w.device):
            params = _pack_sgns_fwd(native, *operands)
            params.error = _native.ptr(error)
            native.sgns_forward(params, _native.stream(in_w))
        _raise_bad_id(error, centers, contexts, negatives, in_w.shape[0])
    return operands[5:]


_sgns_bwd_rows.register_kernel("cpu")(_rows_per_occurrence)


@_sgns_bwd_rows.register_kernel("cuda")
def _sgns_bwd_rows_cuda(coef, grad_loss, center_rows, in_grad_dir, centers, contexts, negatives):
    native = _native.cuda()
    coef, center_rows, in_grad_dir = coef.contiguous(), center_rows.contiguous(), in_grad_dir.contiguous()
    n, k = negatives.shape
    if center_rows.shape[0] != n or in_grad_dir.shape != center_rows.shape:
        raise RuntimeError("sgns_loss backward: the forward ran without saving its buffers (need_backward=False)")
    # The upstream gradient of a mean / sum is one value broadcast (stride 0): the kernel reads it in place.
    grad_loss = grad_loss.to(coef.dtype)
    if grad_loss.dim() != 1 or grad_loss.shape[0] != n:
        raise RuntimeError(f"sgns_loss backward: expected an upstream gradient of shape ({n},), got "
                           f"{tuple(grad_loss.shape)}")
    centers, contexts, negatives = centers.contiguous(), contexts.contiguous(), negatives.contiguous()
    d = center_rows.shape[1]
    in_ids, out_ids = centers.new_empty(n), centers.new_empty(n * (k + 1))
    in_rows, out_rows = coef.new_empty(n, d), coef.new_empty(n * (k + 1), d)
    if n:
        ptr = _native.ptr
        with torch.cuda.device(coef.device):
            native.sgns_backward_rows(_native.fill(
                native.SgnsRowsParams(), num_pairs=n, num_negatives=k, dim=d,
                dtype=_native.dtype_code(coef.dtype, "sgns_loss"), coef=ptr(coef), grad_loss=ptr(grad_loss),
                grad_loss_stride=grad_loss.stride(0), center_rows=ptr(center_rows), in_grad_dir=ptr(in_grad_dir),
                centers=ptr(centers), contexts=ptr(contexts), negatives=ptr(negatives), in_ids=ptr(in_ids),
                in_rows=ptr(in_rows), out_ids=ptr(out_ids), out_rows=ptr(out_rows)), _native.stream(coef))
    return in_ids, in_rows, out_ids, out_rows


@_sgns_bwd.register_kernel("cpu")
def _sgns_bwd_cpu(coef, grad_loss, center_rows, in_grad_dir, centers, contexts, negatives, num_embeddings):
    native = _native.cpu()
    coef, grad_loss, center_rows, in_grad_dir = _backward_operands(coef, grad_loss, center_rows, in_grad_dir,
                                                                   negatives)
    centers, contexts, negatives = centers.contiguous(), contexts.contiguous(), negatives.contiguous()
    n, k = negatives.shape
    d = center_rows.shape[1]
    in_ids, center_slot, out_ids, target_slot = _unique_slots(native, centers, contexts, negatives, num_embeddings)
    in_rows = sgns_grad.new_rows(coef, in_ids.numel(), d)
    out_rows = sgns_grad.new_rows(coef, out_ids.numel(), d)
    ptr = _native.ptr
    native.sgns_backward(_native.fill(
        native.SgnsBackwardParams(), num_pairs=n, num_negatives=k, dim=d,
        dtype=_native.dtype_code(coef.dtype, "sgns_loss"), coef=ptr(coef), grad_loss=ptr(grad_loss),
        center_rows=ptr(center_rows), in_grad_dir=ptr(in_grad_dir), center_slot=ptr(center_slot),
        num_unique_centers=in_ids.numel(), target_slot=ptr(target_slot), num_unique_targets=out_ids.numel(),
        grad_in_rows=ptr(in_rows), grad_out_rows=ptr(out_rows)))
    # clone: the op's outputs must not be views of a scratch buffer
    return in_ids.clone(), in_rows, out_ids.clone(), out_rows


# Every custom op with its CPU and CUDA body (tests/conftest.py's emu device runs the CUDA bodies on CPU tensors).
# pyfast::sgns_bwd has no CUDA body: CUDA tensors never reach it (see _backward), so under emu it keeps its CPU one.
KERNELS = ((_sgns_fwd, _sgns_fwd_cpu, _sgns_fwd_cuda), (_sgns_bwd_rows, _rows_per_occurrence, _sgns_bwd_rows_cuda))


# ---- the eager fused training path (CPU, mean / sum) -------------------------------------------------------------
def _fused_forward(in_weight, out_weight, centers, contexts, negatives, scale: float, need_in: bool, need_out: bool):
    """Reduced loss and, in the same native pass, the gradient rows of that loss for an upstream gradient of 1:
    (loss (), in_ids (U_in,), in_rows (U_in, D), out_ids (U_out,), out_rows (U_out, D)); rows (0, D) if not needed.
    Ids are sorted and unique (coalesced sparse gradients). See SgnsFusedParams in sgns_op.h."""
    native = _native.cpu()
    in_w, out_w = _row_major(in_weight), _row_major(out_weight)
    centers, contexts, negatives = centers.contiguous(), contexts.contiguous(), negatives.contiguous()
    d = in_w.shape[1]
    in_ids, center_slot, out_ids, target_slot = _unique_slots(native, centers, contexts, negatives, in_w.shape[0])
    in_rows = sgns_grad.new_rows(in_w, in_ids.numel() if need_in else 0, d)
    out_rows = sgns_grad.new_rows(in_w, out_ids.numel() if need_out else 0, d)
    loss = in_w.new_empty(())
    ptr = _native.ptr
    native.sgns_forward_fused(_native.fill(
        native.SgnsFusedParams(), batch=_pack_sgns(native, in_w, out_w, centers, contexts, negatives), scale=scale,
        center_slot=ptr(center_slot), num_unique_centers=in_ids.numel(), target_slot=ptr(target_slot),
        num_unique_targets=out_ids.numel(), loss=ptr(loss), grad_in_rows=ptr(in_rows) if need_in else 0,
        grad_out_rows=ptr(out_rows) if need_out else 0))
    return loss, in_ids, in_rows, out_ids, out_rows


class _FusedSgnsLoss(torch.autograd.Function):
    """Eager training path of a mean / sum loss: the forward computes the gradient rows too (the rows it needs are
    in L1 then), the backward only scales them by the upstream gradient and wraps them; ~2x less memory traffic
    than forward + separate backward. The cost: with grad enabled, a forward never followed by a backward still
    pays for the gradient (use torch.no_grad() for evaluation).

    Ownership: the rows are handed to autograd on the first backward and dropped from ctx, so AccumulateGrad can
    take them as .grad without a copy, and nothing here can see a later in-place change to .grad (clipping,
    optimizers). A second backward through the same graph (retain_graph=True) recomputes them from the saved
    weights (autograd's version check rejects weights changed in place since the forward).
    """

    @staticmethod
    def forward(ctx, in_weight, out_weight, centers, contexts, negatives, scale, sparse_in, sparse_out):
        need_in, need_out = in_weight.requires_grad, out_weight.requires_grad
        loss, *grads = _fused_forward(in_weight, out_weight, centers, contexts, negatives, scale, need_in, need_out)
        ctx.grads = grads
        ctx.save_for_backward(in_weight, out_weight, centers, contexts, negatives)
        ctx.scale, ctx.sparse_in, ctx.sparse_out = scale, sparse_in, sparse_out
        ctx.need, ctx.shape = (need_in, need_out), tuple(in_weight.shape)
        # Weights whose .grad gets the coalesced flag back after accumulation (see sgns_grad.track_coalesced).
        ctx.tracked = (id(in_weight) if sparse_in and sgns_grad.track_coalesced(in_weight) else None,
                       id(out_weight) if sparse_out and sgns_grad.track_coalesced(out_weight) else None)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable  # the rows carry no graph: a double backward must raise
    def backward(ctx, grad_loss):
        grads, ctx.grads = ctx.grads, None
        if grads is None:  # a second backward (retain_graph=True): the first one gave its rows away
            _, *grads = _fused_forward(*ctx.saved_tensors, ctx.scale, *ctx.need)
        in_ids, in_rows, out_ids, out_rows = grads
        g = float(grad_loss)
        if g != 1.0:  # the rows are ours alone until returned: scale in place
            in_rows.mul_(g)
            out_rows.mul_(g)
        shape = ctx.shape  # (not ctx.saved_tensors: that would version-check weights the first pass never reads)
        need_in, need_out = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_in = sgns_grad.rows_to_grad(in_ids, in_rows, shape, ctx.sparse_in, True) if need_in else None
        grad_out = sgns_grad.rows_to_grad(out_ids, out_rows, shape, ctx.sparse_out, True) if need_out else None
        for weight_id, grad in zip(ctx.tracked, (grad_in, grad_out)):
            if weight_id is not None and grad is not None:
                sgns_grad.hand_over(weight_id, grad)
        return grad_in, grad_out, None, None, None, None, None, None


# ---- public API ---------------------------------------------------------------------------------------------------
def sgns_loss_per_table(in_weight: torch.Tensor, out_weight: torch.Tensor, centers: torch.Tensor,
                        contexts: torch.Tensor, negatives: torch.Tensor, reduction: str = "mean",
                        sparse_in: bool = False, sparse_out: bool = False) -> torch.Tensor:
    """``sgns_loss`` with a sparse flag per table (pyfast.nn.SkipGramNS: each nn.Embedding keeps its own)."""
    _check_inputs("sgns_loss", in_weight, out_weight, centers, contexts, negatives)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"sgns_loss: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    # The backward's buffers cost 2 N D floats: only build them when a gradient can be asked for.
    need_backward = torch.is_grad_enabled() and (in_weight.requires_grad or out_weight.requires_grad)
    if (need_backward and reduction != "none" and in_weight.device.type == "cpu"
            and not torch.compiler.is_compiling()):
        # Eager training of a reduced loss on the CPU: one fused native pass (see _FusedSgnsLoss). torch.compile,
        # reduction="none" (a per-pair upstream gradient) and CUDA tensors take the custom op.
        scale = 1.0 / max(centers.shape[0], 1) if reduction == "mean" else 1.0
        return _FusedSgnsLoss.apply(in_weight, out_weight, centers, contexts, negatives, scale, bool(sparse_in),
                                    bool(sparse_out))
    loss = torch.ops.pyfast.sgns_fwd(in_weight, out_weight, centers, contexts, negatives, need_backward,
                                     bool(sparse_in), bool(sparse_out))[0]
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    return total / max(centers.shape[0], 1)  # an empty batch gives a zero loss, not NaN


def advise_hugepages(weight: torch.Tensor) -> int:
    """Ask Linux to back a large CPU tensor with transparent huge pages (madvise MADV_HUGEPAGE + MADV_COLLAPSE).

    Embedding tables are read a random row at a time; with 4 KiB pages nearly every row misses the TLB (a page
    walk, twice as deep in a VM). SkipGramNS does this for its tables. Returns the bytes advised (0 where the OS
    does not support it or the tensor is smaller than a huge page). The data is not changed.
    """
    if not isinstance(weight, torch.Tensor) or weight.device.type != "cpu":
        return 0
    nbytes = weight.untyped_storage().nbytes()
    return int(_native.cpu().sgns_advise_hugepages(weight.untyped_storage().data_ptr(), nbytes))


def sgns_loss(in_weight: torch.Tensor, out_weight: torch.Tensor, centers: torch.Tensor, contexts: torch.Tensor,
              negatives: torch.Tensor, reduction: str = "mean", sparse: bool = False) -> torch.Tensor:
    """Skip-gram negative-sampling loss, fused forward and backward in native code.

    loss_n = -[log s(u_c . v_ctx) + sum_k log s(-u_c . v_neg_k)] with u = in_weight[centers[n]],
    v = out_weight[...]; reduced like torch losses (``"mean"`` over pairs, ``"sum"``, ``"none"`` -> (N,)).

    Args:
        in_weight, out_weight: (V, D) float32 or float64, CPU or CUDA (all tensors on one device). Usually
            ``nn.Embedding.weight``.
        centers, contexts: (N,) int64 ids in [0, V).  negatives: (N, K) int64 ids in [0, V).
        sparse: gradients as sparse COO tensors (like nn.Embedding(sparse=True)) instead of dense: on the CPU one
            row per distinct id, on CUDA one row per occurrence.

    Ids outside [0, V) raise ValueError (checked in native code before anything is read; on the GPU the kernel
    flags them and the op raises after one sync). An empty batch gives
    a zero loss (``"mean"`` too) and empty gradients.

    Training with plain SGD: ``pyfast.ops.sgns_sgd_step`` is this loss + backward + ``torch.optim.SGD`` step fused
    (weights updated in place, no autograd); it is the fast path on CUDA, where the autograd step is bound by its
    kernel launches.
    """
    return sgns_loss_per_table(in_weight, out_weight, centers, contexts, negatives, reduction, sparse, sparse)
