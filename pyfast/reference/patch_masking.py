"""Plain reference for pyfast.ops.random_patch_mask: csrc/masking/patch_masking.h's keying written out in numpy
(Philox from reference/masking.py), then MAE's own recipe on those keys: argsort, keep the first n_keep, argsort
again for ids_restore. Tests require the kernels to match it exactly."""
from __future__ import annotations

import numpy as np

from .masking import MASK32, philox4x32_10

STREAM_PATCH = 0x50410001


def patch_keys(seed: int, image_id: int, n: int) -> np.ndarray:
    """(n,) uint64 keys of one image: (Philox word << 32) | j."""
    j = np.arange(n, dtype=np.uint64)
    g = int(image_id) & 0xFFFF_FFFF_FFFF_FFFF
    words = philox4x32_10(j >> np.uint64(2), STREAM_PATCH, g & MASK32, g >> 32, seed & MASK32, seed >> 32)
    word = np.choose((j & np.uint64(3)).astype(np.int64), words)
    return (word << np.uint64(32)) | j


def random_patch_mask_reference(image_ids, n_patches: int, n_keep: int, seed: int):
    """(ids_keep (B, n_keep), ids_restore (B, n), mask (B, n) float32) as numpy arrays."""
    rows = [patch_keys(seed, g, n_patches) for g in np.asarray(image_ids, dtype=np.int64).tolist()]
    keys = np.stack(rows) if rows else np.zeros((0, n_patches), dtype=np.uint64)
    ids_shuffle = np.argsort(keys, axis=1, kind="stable")   # MAE: argsort(noise)
    ids_restore = np.argsort(ids_shuffle, axis=1, kind="stable")
    mask = (ids_restore >= n_keep).astype(np.float32)
    return ids_shuffle[:, :n_keep].astype(np.int64), ids_restore.astype(np.int64), mask
