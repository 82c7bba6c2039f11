"""Skip-gram negative-sampling loss as a fused torch op, plus the noise sampler and the pair generator that make a
word2vec loop in PyTorch a few lines (see examples/word2vec_torch.py).

Two paths, the same loss and gradients:
- Eager training of a reduced loss (``"mean"`` / ``"sum"``, grad enabled, not under torch.compile):
  ``_FusedSgnsLoss``. One native pass computes the loss *and* the gradient rows of the reduced loss, one per unique
  id, while each pair's rows are in L1 (pairs grouped by center, then items grouped by target; every row summed by
  one thread in a fixed order). The backward only multiplies by the upstream scalar (skipped when it is 1) and
  hands the rows to autograd, which takes them as ``.grad`` without a copy.
- Everything else (``reduction="none"``, torch.compile, no grad): ``pyfast::sgns_fwd`` / ``pyfast::sgns_bwd``,
  torch custom ops (fake implementations, autograd registered). The forward saves the per-pair coefficients
  sigmoid(score) - label, (N, K+1), and (when a gradient can be asked for) the gathered center rows and
  d loss_n / d u_n, 2 x (N, D); the backward accumulates from these compact buffers (see sgns_op.h). Inside a
  compiled graph the backward is instead two broadcast multiplies of those buffers (_rows_per_occurrence): a row
  count known only from the data would cost a graph break in torch.compile's default mode.

Gradients: sparse COO tensors (like nn.Embedding(sparse=True): SGD, SparseAdam, DDP work unchanged) or dense (V, D)
tensors. On the CPU, one row per *unique* id (duplicates accumulated in native code, in a fixed order, so the result
does not depend on the thread count; coalesced, a flag a hook keeps through AccumulateGrad: _restore_coalesced).
On CUDA, and inside a compiled graph, one row per occurrence, as nn.Embedding gives them (duplicates summed by the
gradient's reader).
Devices: CPU tensors run csrc/word2vec/sgns_op_cpu.cpp (both paths); CUDA tensors take the custom-op path, whose
``register_kernel("cuda")`` in pyfast/ops/sgns_cuda.py runs csrc/word2vec/sgns_op_cuda.cu (forward run on an
H200, 2026-11-28; the per-occurrence backward unverified on a GPU). A build without CUDA raises a RuntimeError
that says how to rebuild.
Limits: float32 / float64 weights; ids are int64.
"""
from __future__ import annotations

import mmap
from typing import Sequence

import torch

from .. import _native, rng

__all__ = ["sgns_loss", "sample_negatives", "NoiseSampler", "skipgram_pairs", "advise_hugepages"]

_REDUCTIONS = ("mean", "sum", "none")


# ---- validation -----------------------------------------------------------------------------------------------
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
    if device.type == "cuda" and not torch.compiler.is_compiling():
        _native.cuda()  # a build without CUDA raises here, saying how to rebuild (PYFAST_CUDA=ON)


def _row_major(w: torch.Tensor) -> torch.Tensor:
    """Rows must be contiguous (stride(1) == 1); a row stride is passed to the kernel, so a slice needs no copy."""
    return w if w.stride(1) == 1 else w.contiguous()


# glibc serves a block this large by a fresh mmap on every allocation (its dynamic threshold stops at 32 MiB on 64-bit),
# so each step's gradient rows page-fault 4 KiB at a time and are unmapped again by zero_grad: at N=65536, K=5, D=128
# (~160 MB of rows) that was ~40k faults and ~60 ms to fault + zero, and ~19 ms to free (RESULTS.md, session 7).
_HUGE_ROWS_BYTES = 32 << 20


def _new_rows(like: torch.Tensor, rows: int, d: int) -> torch.Tensor:
    """An uninitialised (rows, d) CPU tensor of like's dtype for gradient rows the kernel fully writes. Blocks of
    at least _HUGE_ROWS_BYTES get their own private mapping advised for transparent huge pages (2 MiB faults,
    freed by one munmap when the tensor dies); smaller ones come from torch's allocator (glibc reuses its heap)."""
    nbytes = rows * d * like.element_size()
    if nbytes == 0 or nbytes < _HUGE_ROWS_BYTES or not hasattr(mmap, "MADV_HUGEPAGE"):
        return like.new_empty(rows, d)
    buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        buf.madvise(mmap.MADV_HUGEPAGE)
    except OSError:  # THP off in this kernel: plain pages, still one mapping
        pass
    # The storage keeps the mapping alive; set_ gives a tensor of its own (not a view) on it.
    storage = torch.frombuffer(buf, dtype=like.dtype).untyped_storage()
    return torch.empty(0, dtype=like.dtype).set_(storage, 0, (rows, d))


def _forward_buffers(in_weight, out_weight, centers, contexts, negatives, need_backward: bool):
    """The forward kernels' operands in the layout they take (row-major tables, contiguous ids) and their outputs
    (loss (N,), coef (N, K+1), center rows and d loss / d u (N, D) when need_backward, else (0, D)); on the
    weights' device. Shared by the CPU and CUDA forwards."""
    in_w, out_w = _row_major(in_weight), _row_major(out_weight)
    centers, contexts, negatives = centers.contiguous(), contexts.contiguous(), negatives.contiguous()
    n, k = negatives.shape
    d = in_w.shape[1]
    rows = n if need_backward else 0
    return (in_w, out_w, centers, contexts, negatives, in_w.new_empty(n), in_w.new_empty(n, k + 1),
            in_w.new_empty(rows, d), in_w.new_empty(rows, d))


# ---- custom ops -------------------------------------------------------------------------------------------------
@torch.library.custom_op("pyfast::sgns_fwd", mutates_args=(), device_types="cpu")
def _sgns_fwd(in_weight: torch.Tensor, out_weight: torch.Tensor, centers: torch.Tensor, contexts: torch.Tensor,
              negatives: torch.Tensor, need_backward: bool, sparse_in: bool, sparse_out: bool
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair loss (N,), coefficients sigmoid(score) - label (N, K+1) and, when need_backward, the gathered center
    rows (N, D) and d loss_n / d u_n (N, D) for the backward (else (0, D)). sparse_* only shape the gradients."""
    in_w, out_w, centers, contexts, negatives, loss, coef, center_rows, in_grad_dir = _forward_buffers(
        in_weight, out_weight, centers, contexts, negatives, need_backward)
    n, k = negatives.shape
    v, d = in_w.shape
    _native.cpu().sgns_forward(
        _native.ptr(in_w), _native.ptr(out_w), in_w.stride(0), out_w.stride(0), _native.ptr(centers),
        _native.ptr(contexts), _native.ptr(negatives), v, d, n, k, _native.dtype_code(in_w.dtype, "sgns_loss"),
        _native.ptr(loss), _native.ptr(coef), _native.ptr(center_rows) if need_backward else 0,
        _native.ptr(in_grad_dir) if need_backward else 0)
    return loss, coef, center_rows, in_grad_dir


@_sgns_fwd.register_fake
def _sgns_fwd_fake(in_weight, out_weight, centers, contexts, negatives, need_backward, sparse_in, sparse_out):
    n, k = negatives.shape
    rows = n if need_backward else 0
    d = in_weight.shape[1]
    return (in_weight.new_empty(n), in_weight.new_empty(n, k + 1), in_weight.new_empty(rows, d),
            in_weight.new_empty(rows, d))


def _unique(ids: torch.Tensor, num_embeddings: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted unique ids and, per element, its index among them (O(n) in native code)."""
    flat = ids.reshape(-1)
    unique = torch.empty(flat.numel(), dtype=torch.int64)
    inverse = torch.empty(flat.numel(), dtype=torch.int64)
    count = _native.cpu().sgns_unique(_native.ptr(flat), flat.numel(), num_embeddings, _native.ptr(unique),
                                      _native.ptr(inverse))
    return unique[:count].clone(), inverse  # clone: the op's outputs must not be views of a scratch buffer


def _backward_operands(coef, grad_loss, center_rows, in_grad_dir, centers, contexts, negatives):
    """The backward kernels' operands, contiguous, with grad_loss in coef's dtype and the targets of pair n in the
    kernel's order (the context, then its K negatives -> (N, K+1)); raises if the forward saved no buffers.
    Shared by the CPU and CUDA backwards."""
    n = negatives.shape[0]
    if center_rows.shape[0] != n or in_grad_dir.shape != center_rows.shape:
        raise RuntimeError("sgns_loss backward: the forward ran without saving its buffers (need_backward=False)")
    targets = torch.cat([contexts.contiguous().unsqueeze(1), negatives.contiguous()], dim=1)
    return (coef.contiguous(), grad_loss.to(coef.dtype).contiguous(), center_rows.contiguous(),
            in_grad_dir.contiguous(), centers.contiguous(), targets)


def _rows_per_occurrence(coef, grad_loss, center_rows, in_grad_dir, centers, contexts, negatives):
    """Gradient rows per occurrence of an id, as nn.Embedding(sparse=True) gives them: (centers (N,), in rows
    (N, D), targets (N (K+1),), out rows (N (K+1), D)), pair n's targets in the kernel's order (context, then
    negatives). Two broadcast multiplies of the forward's buffers: no sort, no atomics, and sizes known from the
    shapes alone. Used on CUDA tensors (sgns_cuda.py) and inside a compiled graph on any device. Duplicates are
    summed by whatever reads the gradient (SGD's add_, coalesce(), to_dense(), index_add_ into a dense one)."""
    coef, grad_loss, center_rows, in_grad_dir, centers, targets = _backward_operands(
        coef, grad_loss, center_rows, in_grad_dir, centers, contexts, negatives)
    g = grad_loss.unsqueeze(1)                                                    # (N, 1)
    in_rows = in_grad_dir * g                                                     # (N, D)
    out_rows = ((coef * g).unsqueeze(2) * center_rows.unsqueeze(1)).reshape(-1, center_rows.shape[1])
    # clone: the gradient's indices must not share storage with the caller's id tensors (reused batch buffers)
    return centers.clone(), in_rows, targets.reshape(-1), out_rows


@torch.library.custom_op("pyfast::sgns_bwd", mutates_args=(), device_types="cpu")
def _sgns_bwd(coef: torch.Tensor, grad_loss: torch.Tensor, center_rows: torch.Tensor, in_grad_dir: torch.Tensor,
              centers: torch.Tensor, contexts: torch.Tensor, negatives: torch.Tensor, num_embeddings: int
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradient rows per unique id: (in_ids (U_in,), in_rows (U_in, D), out_ids (U_out,), out_rows (U_out, D)).
    Reads only the forward's (N, D) buffers, never the weights."""
    n, k = negatives.shape
    d = center_rows.shape[1]
    coef, grad_loss, center_rows, in_grad_dir, centers, targets = _backward_operands(
        coef, grad_loss, center_rows, in_grad_dir, centers, contexts, negatives)
    in_ids, center_slot = _unique(centers, num_embeddings)
    out_ids, target_slot = _unique(targets, num_embeddings)
    in_rows = _new_rows(coef, in_ids.numel(), d)
    out_rows = _new_rows(coef, out_ids.numel(), d)
    _native.cpu().sgns_backward(
        n, k, d, _native.dtype_code(coef.dtype, "sgns_loss"), _native.ptr(coef), _native.ptr(grad_loss),
        _native.ptr(center_rows), _native.ptr(in_grad_dir), _native.ptr(center_slot), in_ids.numel(),
        _native.ptr(target_slot), out_ids.numel(), _native.ptr(in_rows), _native.ptr(out_rows))
    return in_ids, in_rows, out_ids, out_rows


@_sgns_bwd.register_fake
def _sgns_bwd_fake(coef, grad_loss, center_rows, in_grad_dir, centers, contexts, negatives, num_embeddings):
    d = center_rows.shape[1]
    if coef.device.type == "cuda":  # one row per occurrence (pyfast/ops/sgns_cuda.py)
        n, kp1 = coef.shape
        return (centers.new_empty(n), coef.new_empty(n, d), centers.new_empty(n * kp1), coef.new_empty(n * kp1, d))
    # On the CPU, one row per distinct id: how many a batch touches is known only from the data.
    ctx = torch.library.get_ctx()
    u_in, u_out = ctx.new_dynamic_size(), ctx.new_dynamic_size()
    return (centers.new_empty(u_in), coef.new_empty(u_in, d), centers.new_empty(u_out), coef.new_empty(u_out, d))


def _rows_to_grad(ids: torch.Tensor, rows: torch.Tensor, shape: tuple, sparse: bool, coalesced: bool) -> torch.Tensor:
    """A sparse COO gradient from rows (coalesced: the ids are sorted and unique), or a dense one."""
    if sparse:
        return torch.sparse_coo_tensor(ids.unsqueeze(0), rows, shape, is_coalesced=coalesced, check_invariants=False)
    return torch.zeros(shape, dtype=rows.dtype, device=rows.device).index_add_(0, ids, rows)


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
        if torch.compiler.is_compiling():
            # A compiled graph cannot hold the CPU op's one row per distinct id without a data-dependent size
            # (a graph break and eager fallback under torch.compile's default, non-fullgraph mode): one row per
            # occurrence instead, from traceable torch ops.
            in_ids, in_rows, out_ids, out_rows = _rows_per_occurrence(
                coef, grad_loss, center_rows, in_grad_dir, centers, contexts, negatives)
            coalesced = False
        else:  # CPU: one row per distinct id, sorted; CUDA (sgns_cuda.py): one row per occurrence
            in_ids, in_rows, out_ids, out_rows = torch.ops.pyfast.sgns_bwd(
                coef, grad_loss, center_rows, in_grad_dir, centers, contexts, negatives, ctx.weight_shape[0])
            coalesced = coef.device.type == "cpu"
        if ctx.needs_input_grad[0]:
            grad_in = _rows_to_grad(in_ids, in_rows, ctx.weight_shape, ctx.sparse_in, coalesced)
        if ctx.needs_input_grad[1]:
            grad_out = _rows_to_grad(out_ids, out_rows, ctx.weight_shape, ctx.sparse_out, coalesced)
    return grad_in, grad_out, None, None, None, None, None, None


_sgns_fwd.register_autograd(_backward, setup_context=_setup_context)


# ---- the coalesced flag through AccumulateGrad --------------------------------------------------------------------
# The fused path's sparse gradients are coalesced (sorted unique ids), but torch's AccumulateGrad re-wraps a sparse
# gradient it takes over as .grad without that flag (torch 2.13, accumulate_grad.h, case 1.2). Its readers then
# redo work: SparseAdam and DDP sort the rows again (2-4 ms a step at N=4096, K=5), SGD's add_ takes the path for
# unsorted rows. A hook after accumulation puts the flag back only while .grad is exactly what the backward handed
# over (the same indices and values storage, the same nnz); an accumulated, replaced or cloned .grad is left alone.
_handed_over: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id(weight) -> aliases of the indices and values


def _restore_coalesced(weight: torch.Tensor) -> None:
    handed = _handed_over.pop(id(weight), None)
    grad = weight.grad
    if handed is None or grad is None or not grad.is_sparse or grad.is_coalesced():
        return
    indices, values = handed  # held, so their storage cannot be reused by another tensor while recorded
    if (grad._nnz() == values.shape[0] and grad._values().data_ptr() == values.data_ptr()
            and grad._indices().data_ptr() == indices.data_ptr()):
        grad._coalesced_(True)


def _track_coalesced(weight: torch.Tensor) -> bool:
    """Registers _restore_coalesced on a leaf weight (once); True when its sparse gradients can be tracked."""
    if not (weight.is_leaf and weight.requires_grad):
        return False
    hooks = weight._post_accumulate_grad_hooks
    if hooks is None or _restore_coalesced not in hooks.values():
        weight.register_post_accumulate_grad_hook(_restore_coalesced)
    _handed_over.pop(id(weight), None)  # a record no accumulation consumed (torch.autograd.grad) ends here
    return True


def _hand_over(weight_id: int, grad: torch.Tensor) -> None:
    # Aliases (new tensor objects on the same storage), not the tensors inside grad: holding those would raise
    # their use count and make AccumulateGrad copy the gradient instead of taking it.
    _handed_over[weight_id] = (grad._indices(), grad._values())


# ---- fused training path (eager, mean / sum) ----------------------------------------------------------------------
def _fused_forward(in_weight, out_weight, centers, contexts, negatives, scale: float, need_in: bool, need_out: bool):
    """Reduced loss and, in the same native pass, the gradient rows of that loss for an upstream gradient of 1:
    (loss (), in_ids (U_in,), in_rows (U_in, D), out_ids (U_out,), out_rows (U_out, D)); rows (0, D) if not needed.
    Ids are sorted and unique (coalesced sparse gradients). See sgns_forward_fused_cpu in sgns_op.h."""
    in_w, out_w = _row_major(in_weight), _row_major(out_weight)
    centers, contexts, negatives = centers.contiguous(), contexts.contiguous(), negatives.contiguous()
    n, k = negatives.shape
    v, d = in_w.shape
    in_ids = torch.empty(n, dtype=torch.int64)
    center_slot = torch.empty(n, dtype=torch.int64)
    out_ids = torch.empty(n * (k + 1), dtype=torch.int64)
    target_slot = torch.empty(n * (k + 1), dtype=torch.int64)
    ptr, cpu = _native.ptr, _native.cpu()
    args = (ptr(in_w), ptr(out_w), in_w.stride(0), out_w.stride(0), ptr(centers), ptr(contexts), ptr(negatives),
            v, d, n, k, _native.dtype_code(in_w.dtype, "sgns_loss"))
    u_in, u_out = cpu.sgns_fused_prepare(*args, ptr(in_ids), ptr(center_slot), ptr(out_ids), ptr(target_slot))
    in_rows = _new_rows(in_w, u_in if need_in else 0, d)
    out_rows = _new_rows(in_w, u_out if need_out else 0, d)
    loss = in_w.new_empty(())
    cpu.sgns_forward_fused(*args, scale, ptr(center_slot), u_in, ptr(target_slot), u_out, ptr(loss),
                           ptr(in_rows) if need_in else 0, ptr(out_rows) if need_out else 0)
    return loss, in_ids[:u_in], in_rows, out_ids[:u_out], out_rows


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
        # Weights whose .grad gets the coalesced flag back after accumulation (see _restore_coalesced).
        ctx.tracked = (id(in_weight) if sparse_in and _track_coalesced(in_weight) else None,
                       id(out_weight) if sparse_out and _track_coalesced(out_weight) else None)
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
        grad_in = _rows_to_grad(in_ids, in_rows, shape, ctx.sparse_in, True) if ctx.needs_input_grad[0] else None
        grad_out = _rows_to_grad(out_ids, out_rows, shape, ctx.sparse_out, True) if ctx.needs_input_grad[1] else None
        for weight_id, grad in zip(ctx.tracked, (grad_in, grad_out)):
            if weight_id is not None and grad is not None:
                _hand_over(weight_id, grad)
        return grad_in, grad_out, None, None, None, None, None, None


# ---- public API ---------------------------------------------------------------------------------------------------
def _sgns_loss(in_weight, out_weight, centers, contexts, negatives, reduction, sparse_in, sparse_out):
    _check_inputs("sgns_loss", in_weight, out_weight, centers, contexts, negatives)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"sgns_loss: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    # The backward's buffers cost 2 N D floats: only build them when a gradient can be asked for.
    need_backward = torch.is_grad_enabled() and (in_weight.requires_grad or out_weight.requires_grad)
    if (need_backward and reduction != "none" and in_weight.device.type == "cpu"
            and not torch.compiler.is_compiling()):
        # Eager training of a reduced loss on the CPU: one fused native pass (see _FusedSgnsLoss). torch.compile,
        # reduction="none" (a per-pair upstream gradient) and CUDA tensors take the custom ops below.
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
    """
    return _sgns_loss(in_weight, out_weight, centers, contexts, negatives, reduction, sparse, sparse)


class NoiseSampler:
    """Draws negatives from the word2vec noise distribution count^exponent with an alias table (O(V) to build,
    O(1) per draw) — the same table type as pyfast's word2vec trainer (csrc/common/alias_table.h).

    Row r of a sample is keyed by (seed, r) through Philox: the same seed gives the same negatives whatever the
    thread count. Build once and reuse; ``sample_negatives`` builds a fresh table per call.
    """

    def __init__(self, counts, exponent: float = 0.75):
        counts = torch.as_tensor(counts)
        if counts.dim() != 1 or counts.numel() == 0:
            raise ValueError(f"sample_negatives: counts must be a non-empty 1-D sequence, got shape "
                             f"{tuple(counts.shape)}")
        if counts.is_complex() or counts.dtype == torch.bool:
            raise TypeError(f"sample_negatives: counts must be real numbers, got {counts.dtype}")
        counts = counts.detach().to("cpu", torch.float64).contiguous()
        if not bool(torch.isfinite(counts).all()) or bool((counts < 0).any()):
            raise ValueError("sample_negatives: counts must be finite and >= 0")
        if not float(counts.sum()) > 0:
            raise ValueError("sample_negatives: counts must have a positive entry")
        exponent = float(exponent)
        if not (exponent == exponent and abs(exponent) != float("inf")):
            raise ValueError(f"sample_negatives: exponent must be finite, got {exponent}")
        self.num_embeddings = counts.numel()
        self.exponent = exponent
        self._table = _native.cpu().SgnsNoiseSampler(_native.ptr(counts), counts.numel(), exponent)

    def sample(self, num_rows: int, k: int, seed: int | None = None) -> torch.Tensor:
        """(num_rows, k) int64 ids, each drawn independently with probability proportional to count^exponent."""
        for name, val in (("num_rows", num_rows), ("k", k)):
            if isinstance(val, bool) or not isinstance(val, int):
                raise TypeError(f"sample_negatives: {name} must be an int, got {type(val).__name__}")
            if val < 0:
                raise ValueError(f"sample_negatives: {name} must be >= 0, got {val}")
        seed = rng.check_seed(seed, "sample_negatives")
        out = torch.empty(num_rows, k, dtype=torch.int64)
        self._table.sample(_native.ptr(out), num_rows, k, seed)
        return out


def sample_negatives(counts, num_rows: int, k: int, exponent: float = 0.75, seed: int | None = None) -> torch.Tensor:
    """(num_rows, k) int64 negatives drawn from counts^exponent (see NoiseSampler; O(V) table build per call)."""
    return NoiseSampler(counts, exponent).sample(num_rows, k, seed)


_KEEP_STREAM, _WINDOW_STREAM = 0x5B5A, 0x5B5B  # Philox streams of skipgram_pairs' two kinds of draws


def skipgram_pairs(tokens, window: int, counts=None, sample: float = 1e-3, seed: int | None = None,
                   shrink_window: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(centers, contexts) int64 pairs from a token stream, the way word2vec forms them.

    Args:
        tokens: a 1-D int tensor of ids, or a sequence of them (sentences; pairs never cross a boundary).
        window: the largest distance between a center and its context (>= 1).
        counts: (V,) id counts for subsampling; default: counted from ``tokens``.
        sample: subsampling threshold s (word2vec's -sample); 0 keeps every token. A token of count c out of a
            total T is kept with probability (sqrt(c / (s T)) + 1) s T / c, drawn per occurrence before windowing.
        seed: keys every draw (Philox): the same seed gives the same pairs.
        shrink_window: draw each center's window uniformly from [1, window] (word2vec's reduced window).

    Pairs come out ordered by center position, then by offset (-window .. -1, 1 .. window). Memory is about
    16 * 2 * window bytes per token (the candidate grid), so feed a large corpus in slices.
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"skipgram_pairs: window must be an int >= 1, got {window!r}")
    sample = float(sample)
    if not sample >= 0:
        raise ValueError(f"skipgram_pairs: sample must be >= 0, got {sample}")
    seed = rng.check_seed(seed, "skipgram_pairs")
    if isinstance(tokens, torch.Tensor) and tokens.dim() == 1:
        sentences: Sequence = [tokens]
    else:
        sentences = [torch.as_tensor(s) for s in tokens]
    for s in sentences:
        if s.dim() != 1 or (s.numel() and (s.is_floating_point() or s.is_complex() or s.dtype == torch.bool)):
            raise ValueError("skipgram_pairs: tokens must be a 1-D integer tensor or a sequence of them")
    lengths = torch.tensor([s.numel() for s in sentences], dtype=torch.int64)
    tok = (torch.cat([s.reshape(-1).to("cpu", torch.int64) for s in sentences]) if sentences
           else torch.empty(0, dtype=torch.int64))
    seg = torch.repeat_interleave(torch.arange(len(sentences)), lengths)
    if tok.numel() and int(tok.min()) < 0:
        raise ValueError(f"skipgram_pairs: token ids must be >= 0, got {int(tok.min())}")
    empty = torch.empty(0, dtype=torch.int64)
    if tok.numel() == 0:
        return empty, empty.clone()
    if sample > 0:
        if counts is None:
            counts = torch.bincount(tok).to(torch.float64)
        counts = torch.as_tensor(counts).to(torch.float64)
        if counts.dim() != 1 or counts.numel() <= int(tok.max()):
            raise ValueError(f"skipgram_pairs: counts must be 1-D with an entry for every token id (max id "
                             f"{int(tok.max())}), got shape {tuple(counts.shape)}")
        if bool((counts < 0).any()):
            raise ValueError("skipgram_pairs: counts must be >= 0")
        threshold = sample * float(counts.sum())
        c = counts[tok].clamp_min(1e-300)  # a token that occurs has count >= 1; guards a user's zero
        keep_prob = ((c / threshold).sqrt() + 1) * threshold / c
        keep = rng.uniform(tok.numel(), seed, stream=_KEEP_STREAM).to(torch.float64) < keep_prob
        tok, seg = tok[keep], seg[keep]
    n = tok.numel()
    if n == 0:
        return empty, empty.clone()
    if shrink_window:
        reach = 1 + (rng.uniform(n, seed, stream=_WINDOW_STREAM) * window).long().clamp_max(window - 1)
    else:
        reach = torch.full((n,), window, dtype=torch.int64)
    offsets = torch.cat([torch.arange(-window, 0), torch.arange(1, window + 1)])        # (2W,)
    pos = torch.arange(n).unsqueeze(1) + offsets                                          # (n, 2W)
    inside = (pos >= 0) & (pos < n) & (offsets.abs() <= reach.unsqueeze(1))
    pos = pos.clamp(0, n - 1)
    valid = inside & (seg[pos] == seg.unsqueeze(1))
    centers = tok.unsqueeze(1).expand(n, offsets.numel())[valid]
    contexts = tok[pos][valid]
    return centers.contiguous(), contexts.contiguous()
