"""Loading the native modules and passing tensors to them.

The CPU module ``pyfast._C`` is always built; ``pyfast._C_cuda`` only where nvcc was found. Kernels take raw
pointers and sizes (no libtorch link), so this file also holds the small helpers every op uses to hand a
tensor over: validated, contiguous, and kept alive by the caller for the duration of the call.
"""
from __future__ import annotations

import importlib

import torch

from . import _C  # noqa: F401  (an ImportError here means the package was not built: pip install .)

_cuda_module = None
_cuda_import_error: str | None = None


def cpu():
    """The CPU extension module."""
    return _C


def cuda():
    """The CUDA extension module, or a RuntimeError that says how to get one."""
    global _cuda_module, _cuda_import_error
    if _cuda_module is None and _cuda_import_error is None:
        try:
            _cuda_module = importlib.import_module("pyfast._C_cuda")
        except ImportError as exc:  # not built, or the CUDA runtime cannot load
            _cuda_import_error = str(exc)
    if _cuda_module is None:
        raise RuntimeError(
            "pyfast was built without CUDA support (" + str(_cuda_import_error) + "). Rebuild with nvcc on "
            "PATH: PYFAST_CUDA=ON pip install --no-build-isolation --force-reinstall ."
        )
    return _cuda_module


def cuda_built() -> bool:
    try:
        cuda()
        return True
    except RuntimeError:
        return False


def empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised contiguous CPU tensor for a kernel's output, from pyfast's host buffer pool.

    Like torch.empty, except that large buffers (>= 256 KiB) are recycled: when torch frees the last tensor on
    one, it returns to a bounded per-size cache (csrc/common/host_pool.h) instead of to the OS, so a kernel
    called every step with the same shapes writes into warm, already-mapped memory instead of page-faulting a
    fresh mmap (~2 us per 4 KiB page on the VMs measured: ~1 ms for a 256 x 512 int64 pair). Fresh buffers of
    2 MiB and more are advised for transparent huge pages.
    """
    if dtype not in DTYPES:
        raise TypeError(f"pyfast: no pooled buffers for dtype {dtype}")
    return torch.from_dlpack(_C.empty_pooled(shape, DTYPES[dtype]))


def ptr(t: torch.Tensor) -> int:
    """The data pointer of a tensor as an int (0 for an empty tensor is fine: kernels never read it)."""
    return int(t.data_ptr())


def fill(params, **fields):
    """Sets each field of a native params struct (csrc/<op>/<op>_pack.h) by name and returns it: a misspelt field
    is an AttributeError, never a silently shifted argument."""
    for name, value in fields.items():
        setattr(params, name, value)
    return params


def stream(t: torch.Tensor) -> int:
    """The current CUDA stream of t's device, as the integer handle the CUDA entry points take."""
    return int(torch.cuda.current_stream(t.device).cuda_stream)


# torch dtype -> pyfast::DType code (csrc/common/dispatch.h): the one dtype table of the native interface.
DTYPES = {
    torch.float32: 0, torch.float64: 1, torch.bfloat16: 2, torch.float16: 3, torch.int32: 4, torch.int64: 5,
    torch.int16: 6, torch.int8: 7, torch.uint8: 8, torch.bool: 9,
}


def dtype_code(dtype: torch.dtype, op: str) -> int:
    """The DType code of a torch dtype; a TypeError naming `op` for a dtype the native code has no code for."""
    try:
        return DTYPES[dtype]
    except KeyError:
        raise TypeError(f"{op}: unsupported dtype {dtype}") from None
