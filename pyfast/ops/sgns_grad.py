"""The gradient plumbing of the SGNS op (pyfast/ops/sgns.py), apart from the op itself: where its CPU gradient rows
live (``new_rows``: large blocks in private huge-page mappings), how rows become a weight's gradient
(``rows_to_grad``: sparse COO or dense), and how a coalesced sparse gradient keeps its flag through torch's
AccumulateGrad (``track_coalesced`` / ``hand_over``, a post-accumulate-grad hook on the weights).
"""
from __future__ import annotations

import mmap

import torch

__all__ = ["HUGE_ROWS_BYTES", "new_rows", "rows_to_grad", "track_coalesced", "hand_over"]

# glibc serves a block this large by a fresh mmap on every allocation (its dynamic threshold stops at 32 MiB on 64-bit),
# so each step's gradient rows page-fault 4 KiB at a time and are unmapped again by zero_grad: at N=65536, K=5, D=128
# (~160 MB of rows) that was ~40k faults and ~60 ms to fault + zero, and ~19 ms to free (benchmarks/RESULTS.md).
HUGE_ROWS_BYTES = 32 << 20


def new_rows(like: torch.Tensor, rows: int, d: int) -> torch.Tensor:
    """An uninitialised (rows, d) CPU tensor of like's dtype for gradient rows the kernel fully writes. Blocks of
    at least HUGE_ROWS_BYTES get their own private mapping advised for transparent huge pages (2 MiB faults,
    freed by one munmap when the tensor dies); smaller ones come from torch's allocator (glibc reuses its heap)."""
    nbytes = rows * d * like.element_size()
    if nbytes == 0 or nbytes < HUGE_ROWS_BYTES or not hasattr(mmap, "MADV_HUGEPAGE"):
        return like.new_empty(rows, d)
    buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        buf.madvise(mmap.MADV_HUGEPAGE)
    except OSError:  # THP off in this kernel: plain pages, still one mapping
        pass
    # The storage keeps the mapping alive; set_ gives a tensor of its own (not a view) on it.
    storage = torch.frombuffer(buf, dtype=like.dtype).untyped_storage()
    return torch.empty(0, dtype=like.dtype).set_(storage, 0, (rows, d))


def rows_to_grad(ids: torch.Tensor, rows: torch.Tensor, shape: tuple, sparse: bool, coalesced: bool) -> torch.Tensor:
    """A sparse COO gradient from rows (coalesced: the ids are sorted and unique), or a dense one."""
    if sparse:
        return torch.sparse_coo_tensor(ids.unsqueeze(0), rows, shape, is_coalesced=coalesced, check_invariants=False)
    return torch.zeros(shape, dtype=rows.dtype, device=rows.device).index_add_(0, ids, rows)


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


def track_coalesced(weight: torch.Tensor) -> bool:
    """Registers the flag-restoring hook on a leaf weight (once); True when its sparse gradients can be tracked."""
    if not (weight.is_leaf and weight.requires_grad):
        return False
    hooks = weight._post_accumulate_grad_hooks
    if hooks is None or _restore_coalesced not in hooks.values():
        weight.register_post_accumulate_grad_hook(_restore_coalesced)
    _handed_over.pop(id(weight), None)  # a record no accumulation consumed (torch.autograd.grad) ends here
    return True


def hand_over(weight_id: int, grad: torch.Tensor) -> None:
    """Records the coalesced gradient a backward returns for the weight with id weight_id (see track_coalesced)."""
    # Aliases (new tensor objects on the same storage), not the tensors inside grad: holding those would raise
    # their use count and make AccumulateGrad copy the gradient instead of taking it.
    _handed_over[weight_id] = (grad._indices(), grad._values())
