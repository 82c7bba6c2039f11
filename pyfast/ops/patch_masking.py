"""MAE's per-image random patch choice as a native op: for B images of n patches each, exactly round(n * mask_ratio)
patches are masked per image, uniformly at random, keyed by (seed, image id) with counter-based Philox (see
csrc/masking/patch_masking.h), so an image's mask does not depend on the batch it sits in, the thread count or the
device. Returns MAE's three tensors: ids_keep (B, n_keep), ids_restore (B, n) and mask (B, n) (1.0 = masked).

The kernel is the custom op ``pyfast::random_patch_mask`` on the (B,) int64 image ids, routed by their device: CPU
tensors run csrc/masking/patch_masking_cpu.cpp, CUDA tensors csrc/masking/patch_masking_cuda.cu, bit-identical for
the same seed; a build without CUDA raises a RuntimeError that says how to rebuild. Integer outputs and a 0/1 mask
that depends on no tensor value: there is no gradient to register.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from .. import _native
from ..rng import check_seed

__all__ = ["random_patch_mask", "PatchMask", "num_masked_patches"]

_OP = "random_patch_mask"


class PatchMask(NamedTuple):
    ids_keep: Tensor     # (B, n_keep) int64: the visible patches, in shuffle order (gather the encoder's input)
    ids_restore: Tensor  # (B, n) int64: position of each patch in [visible..., masked...] (un-shuffles the decoder)
    mask: Tensor         # (B, n) float32: 1.0 where masked, 0.0 where visible


def num_masked_patches(n_patches: int, mask_ratio: float) -> int:
    """round(n_patches * mask_ratio), halves rounded up (floor(x + 0.5), in double): the count masked per image."""
    return int(math.floor(n_patches * mask_ratio + 0.5))


def _pack(native, image_ids: Tensor, n_patches: int, n_keep: int, seed: int, ids_keep: Tensor, ids_restore: Tensor,
          mask: Tensor):
    """native.PatchMaskParams filled by name; the caller keeps the tensors alive until the kernel returns."""
    return _native.fill(
        native.PatchMaskParams(), batch=image_ids.shape[0], n_patches=n_patches, n_keep=n_keep,
        image_ids=_native.ptr(image_ids), image_ids_stride=image_ids.stride(0) if image_ids.numel() else 1,
        seed=seed & 0xFFFF_FFFF_FFFF_FFFF,  # the op's int64 back to the kernel's uint64
        ids_keep=_native.ptr(ids_keep), ids_restore=_native.ptr(ids_restore), mask=_native.ptr(mask))


def _outputs(image_ids: Tensor, n_patches: int, n_keep: int):
    b, dev = image_ids.shape[0], image_ids.device
    return (torch.empty((b, n_keep), dtype=torch.int64, device=dev),
            torch.empty((b, n_patches), dtype=torch.int64, device=dev),
            torch.empty((b, n_patches), dtype=torch.float32, device=dev))


# ---- the custom op ---------------------------------------------------------------------------------------------------

@torch.library.custom_op("pyfast::random_patch_mask", mutates_args=())
def random_patch_mask_op(image_ids: Tensor, n_patches: int, n_keep: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """(ids_keep, ids_restore, mask) for validated arguments: image_ids (B,) int64, 1 <= n_patches < 2**31,
    0 <= n_keep <= n_patches, seed a uint64 reinterpreted as int64. random_patch_mask validates; call that."""
    raise NotImplementedError(f"pyfast::random_patch_mask: no kernel for device {image_ids.device.type}")


@random_patch_mask_op.register_fake
def _(image_ids, n_patches, n_keep, seed):
    return _outputs(image_ids, n_patches, n_keep)


@random_patch_mask_op.register_kernel("cpu")
def _random_patch_mask_cpu(image_ids, n_patches, n_keep, seed):
    native = _native.cpu()
    ids_keep, ids_restore, mask = _outputs(image_ids, n_patches, n_keep)
    native.random_patch_mask(_pack(native, image_ids, n_patches, n_keep, seed, ids_keep, ids_restore, mask))
    return ids_keep, ids_restore, mask


@random_patch_mask_op.register_kernel("cuda")
def _random_patch_mask_cuda(image_ids, n_patches, n_keep, seed):
    native = _native.cuda()  # first: a build without CUDA raises its "rebuild with PYFAST_CUDA=ON" here
    ids_keep, ids_restore, mask = _outputs(image_ids, n_patches, n_keep)
    keys = torch.empty((image_ids.shape[0], n_patches), dtype=torch.int64, device=image_ids.device)  # uint64 scratch
    if image_ids.numel():
        with torch.cuda.device(image_ids.device):
            native.random_patch_mask(_pack(native, image_ids, n_patches, n_keep, seed, ids_keep, ids_restore, mask),
                                     _native.ptr(keys), _native.stream(image_ids))
    return ids_keep, ids_restore, mask


KERNELS = ((random_patch_mask_op, _random_patch_mask_cpu, _random_patch_mask_cuda),)


# ---- public function -------------------------------------------------------------------------------------------------

def random_patch_mask(image_ids: Tensor | int, n_patches: int, mask_ratio: float = 0.75, *, seed: int | None = None,
                      device: torch.device | str | None = None) -> PatchMask:
    """MAE's random masking (He et al. 2021, ``random_masking``) without the noise tensor and the argsorts.

    image_ids: (B,) integer tensor of the images' keys (dataset indices: the same image gets the same mask for a
    given seed, whatever the batch), or an int B for ids 0..B-1 on ``device``. Exactly
    ``num_masked_patches(n_patches, mask_ratio)`` patches are masked per image; mask_ratio in [0, 1) and at least
    one patch must stay visible. Same seed, same output on CPU and CUDA; ``seed=None`` draws a fresh one.
    Returns PatchMask(ids_keep (B, n_keep), ids_restore (B, n), mask (B, n)) on the ids' device.
    """
    if isinstance(image_ids, bool):
        raise TypeError(f"{_OP}: image_ids must be a (B,) integer tensor or an int, got bool")
    if isinstance(image_ids, int):
        if image_ids < 0:
            raise ValueError(f"{_OP}: the batch size must be >= 0, got {image_ids}")
        image_ids = torch.arange(image_ids, dtype=torch.int64, device=device)
    elif not isinstance(image_ids, torch.Tensor):
        raise TypeError(f"{_OP}: image_ids must be a (B,) integer tensor or an int, got {type(image_ids).__name__}")
    elif device is not None and torch.device(device) != image_ids.device:
        image_ids = image_ids.to(device)
    if image_ids.is_floating_point() or image_ids.is_complex() or image_ids.dtype == torch.bool:
        raise TypeError(f"{_OP}: image_ids must be an integer tensor, got {image_ids.dtype}")
    if image_ids.dim() != 1:
        raise ValueError(f"{_OP}: image_ids must be (B,), got shape {tuple(image_ids.shape)}")
    if isinstance(n_patches, bool) or not isinstance(n_patches, int):
        raise TypeError(f"{_OP}: n_patches must be an int, got {type(n_patches).__name__}")
    if not 1 <= n_patches < 2**31:
        raise ValueError(f"{_OP}: n_patches must be in [1, 2**31), got {n_patches}")
    if isinstance(mask_ratio, bool) or not isinstance(mask_ratio, (int, float)):
        raise TypeError(f"{_OP}: mask_ratio must be a float in [0, 1), got {type(mask_ratio).__name__}")
    mask_ratio = float(mask_ratio)
    if not 0.0 <= mask_ratio < 1.0:  # also rejects NaN
        raise ValueError(f"{_OP}: mask_ratio must be in [0, 1), got {mask_ratio}")
    n_keep = n_patches - num_masked_patches(n_patches, mask_ratio)
    if n_keep < 1:
        raise ValueError(f"{_OP}: mask_ratio {mask_ratio} masks all {n_patches} patches; at least one must stay "
                         "visible")
    seed = check_seed(seed, _OP)
    run_on = image_ids.device if image_ids.device.type in ("cpu", "cuda") else torch.device("cpu")
    ids = image_ids.to(run_on, torch.int64)
    out = random_patch_mask_op(ids, n_patches, n_keep, seed - 2**64 if seed >= 2**63 else seed)
    if run_on != image_ids.device:
        out = tuple(t.to(image_ids.device) for t in out)
    return PatchMask(*out)
