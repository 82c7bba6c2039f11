"""The counter-based RNG (Philox4x32-10) that every pyfast kernel draws from, exposed for tests and users
who want the same streams: draws are keyed by (seed, index, stream), never by thread."""
from __future__ import annotations

import secrets

import torch

from . import _native


def philox4x32_10(counter, key) -> tuple[int, int, int, int]:
    """One Philox4x32-10 block: 4 counter words and 2 key words (uint32) -> 4 output words."""
    counter = [int(c) for c in counter]
    key = [int(k) for k in key]
    if len(counter) != 4 or len(key) != 2:
        raise ValueError(f"philox4x32_10: expected 4 counter words and 2 key words, got {len(counter)} and {len(key)}")
    for w in counter + key:
        if not 0 <= w < 2**32:
            raise ValueError(f"philox4x32_10: words must be in [0, 2**32), got {w}")
    return tuple(_native.cpu().philox4x32_10(counter, key))


def new_seed() -> int:
    """A fresh 63-bit seed from the OS (for ``seed=None``)."""
    return secrets.randbits(63)


def check_seed(seed, op: str) -> int:
    """Validate a user seed (None -> fresh); returns a non-negative int below 2**64."""
    if seed is None:
        return new_seed()
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"{op}: seed must be an int or None, got {type(seed).__name__}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"{op}: seed must be in [0, 2**64), got {seed}")
    return seed


def uniform(n: int, seed: int, offset: int = 0, stream: int = 0) -> torch.Tensor:
    """n float32 uniforms in [0, 1): element i is keyed by (seed, offset + i, stream)."""
    if n < 0:
        raise ValueError(f"uniform: n must be >= 0, got {n}")
    seed = check_seed(seed, "uniform")
    if not 0 <= stream < 2**32:
        raise ValueError(f"uniform: stream must be in [0, 2**32), got {stream}")
    if not 0 <= offset < 2**64:
        raise ValueError(f"uniform: offset must be in [0, 2**64), got {offset}")
    out = torch.empty(n, dtype=torch.float32)
    _native.cpu().philox_uniform_(_native.ptr(out), n, seed, offset, stream)
    return out
