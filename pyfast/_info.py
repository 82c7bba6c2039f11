"""pyfast.info(): what was built and what this process will use."""
from __future__ import annotations

from . import _native


def info() -> dict:
    """Return a dict describing the build and runtime.

    Keys: ``version``, ``compiler``, ``simd`` (the instruction set the CPU kernels were compiled for),
    ``openmp`` (bool), ``threads`` (the thread count kernels use now), ``cuda_built`` (bool) and
    ``cuda_device`` (name of GPU 0, or None when no usable GPU or no CUDA build).
    """
    C = _native.cpu()
    out = dict(C.build_info())
    out["threads"] = C.get_num_threads()
    out["cuda_built"] = _native.cuda_built()
    out["cuda_device"] = None
    if out["cuda_built"]:
        name, _err = _native.cuda().device_name()
        out["cuda_device"] = name
    return out


def set_num_threads(n: int) -> None:
    """Set the number of threads native kernels use (default: the cores this process may run on)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"set_num_threads: n must be >= 1, got {n}")
    _native.cpu().set_num_threads(n)


def get_num_threads() -> int:
    """The number of threads native kernels use."""
    return _native.cpu().get_num_threads()


def empty_cache() -> dict:
    """Free the host memory pyfast keeps for reuse and return the pool's counters from before.

    Kernel outputs of 256 KiB and more (masking's ids and labels, ...) come from a pool: when torch frees one,
    its buffer is cached (at most 128 MiB in all) so the next call with the same shapes needs no fresh page
    faults. Like ``torch.cuda.empty_cache()``, this hands the cached buffers back; tensors in use are untouched.
    """
    from . import _native

    stats = dict(_native.cpu().host_pool_stats())
    _native.cpu().host_pool_trim()
    return stats
