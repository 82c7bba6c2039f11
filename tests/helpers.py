"""Shared test helpers: devices to parametrise over, an assert_close that says where the worst element is, and a
target for two-process DDP tests."""
from __future__ import annotations

import os
import sys

import pytest
import torch

import pyfast


def devices() -> list:
    """cpu always; cuda when a GPU is visible and the CUDA module was built (otherwise a skipped param)."""
    out = ["cpu"]
    cuda_ok = torch.cuda.is_available() and pyfast.info()["cuda_built"]
    out.append(pytest.param("cuda", marks=pytest.mark.skipif(not cuda_ok, reason="needs a CUDA device and a CUDA build")))
    return out


def assert_close(actual: torch.Tensor, expected: torch.Tensor, *, atol: float, rtol: float, name: str = "tensor") -> None:
    """Like torch.testing.assert_close, but the message gives the count failing, the worst index and values."""
    if actual.shape != expected.shape:
        raise AssertionError(f"{name}: shape {tuple(actual.shape)} != expected {tuple(expected.shape)}")
    a = actual.detach().to(torch.float64).cpu()
    e = expected.detach().to(torch.float64).cpu()
    nan_a, nan_e = torch.isnan(a), torch.isnan(e)
    if not torch.equal(nan_a, nan_e):
        idx = torch.nonzero(nan_a != nan_e)[0].tolist()
        raise AssertionError(f"{name}: NaN pattern differs; first at {idx}: got {a[tuple(idx)]}, expected {e[tuple(idx)]}")
    a = torch.where(nan_a, torch.zeros_like(a), a)
    e = torch.where(nan_e, torch.zeros_like(e), e)
    err = (a - e).abs()
    tol = atol + rtol * e.abs()
    bad = err > tol
    if bad.any():
        n_bad = int(bad.sum())
        excess = torch.where(bad, err - tol, torch.zeros_like(err))
        flat = int(torch.argmax(excess))
        idx = list(torch.unravel_index(torch.tensor(flat), a.shape)) if a.dim() else []
        idx = [int(i) for i in idx]
        raise AssertionError(
            f"{name}: {n_bad} of {a.numel()} elements outside atol={atol} rtol={rtol}; worst at {idx}: "
            f"got {a.reshape(-1)[flat].item():.8g}, expected {e.reshape(-1)[flat].item():.8g}, "
            f"|diff|={err.reshape(-1)[flat].item():.3g}; max |diff| {err.max().item():.3g}"
        )


def spawn_target(rank: int, fn, *args) -> None:
    """torch.multiprocessing.spawn target: runs fn(rank, *args), then leaves with os._exit(0), skipping interpreter
    finalization. torch 2.13's gloo backend sometimes aborts there after destroy_process_group (SIGABRT raised in its
    pt_gloo_runloop thread while Py_FinalizeEx collects; reproduced under gdb with the plain PyTorch SGNS module too,
    ~1 run in 20-40), which would fail a test whose work and checks were complete. fn's exceptions still propagate,
    so spawn reports a failing rank as before."""
    fn(rank, *args)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
