"""Seeded test session (every test starts from the same torch / numpy / random state) and the ``device`` fixture
that every op test takes: ``cpu``; ``cuda`` (a GPU and a CUDA build, else skipped); ``emu``: CPU tensors
dispatched to the ops' CUDA kernel bodies, which call the CUDA sources compiled by g++ against the host emulator
of tests/cuda_emu (``bash tests/cuda_emu/build.sh``; skipped when not built). ``emu`` checks the kernels' logic
and the Python <-> binding calls without a GPU; it says nothing of the GPU's memory model or speed.
"""
import contextlib
import glob
import importlib.util
import os
import random
import types

import numpy as np
import pytest
import torch

try:
    from hypothesis import settings

    # CI machines are 2 noisy cores: no deadlines, a fixed example budget, reproducible derandomized runs in CI.
    settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
    settings.register_profile("dev", max_examples=25, deadline=None)
    # .ci/sanitize: the same properties on fewer examples (ASan/UBSan code runs 2-5x slower, the emulator more).
    settings.register_profile("sanitize", max_examples=8, deadline=None, derandomize=True)
    settings.load_profile("sanitize" if os.environ.get("PYFAST_EXPECT_SANITIZED") else
                          "ci" if os.environ.get("CI") else "dev")
except ImportError:  # pragma: no cover
    pass

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# PYFAST_CUDA_EMU_DIR: another emulator build (.ci/sanitize points it at its sanitized one).
_EMU_DIR = os.environ.get("PYFAST_CUDA_EMU_DIR") or os.path.join(_ROOT, "build", "cuda-emu")
_EMU_BUILD = sorted(glob.glob(os.path.join(_EMU_DIR, "_C_cuda*.so")))


def pytest_configure(config):
    # Under .ci/sanitize a silently unsanitized run (the in-tree module shadowing the ASan one) would pass for the
    # wrong reason: check that the loaded _C links the ASan runtime.
    if os.environ.get("PYFAST_EXPECT_SANITIZED"):
        import pyfast._C as native

        with open(native.__file__, "rb") as fh:
            if b"__asan_init" not in fh.read():
                raise pytest.UsageError(f"PYFAST_EXPECT_SANITIZED: {native.__file__} is not an ASan build")


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda_only" in item.keywords:
            item.add_marker(skip)


def _cuda_ready() -> bool:
    import pyfast

    return torch.cuda.is_available() and pyfast.info()["cuda_built"]


@pytest.fixture(scope="session")
def _emu_module():
    spec = importlib.util.spec_from_file_location("_C_cuda", _EMU_BUILD[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert "emulator" in mod.device_name()[0]
    return mod


def _op_modules():
    """Every pyfast.ops module that registers kernels: each lists (custom op, cpu body, cuda body) in KERNELS."""
    import pyfast.ops as ops

    return [m for m in vars(ops).values() if isinstance(m, types.ModuleType) and hasattr(m, "KERNELS")]


@contextlib.contextmanager
def emulated_cuda(monkeypatch, emu_module):
    """CPU tensors run every op's CUDA kernel body, whose native calls go to the emulated CUDA module."""
    from pyfast import _native

    monkeypatch.setattr(_native, "_cuda_module", emu_module)
    monkeypatch.setattr(torch.cuda, "device", lambda d: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda d=None: types.SimpleNamespace(cuda_stream=0))
    kernels = [k for m in _op_modules() for k in m.KERNELS]
    try:
        for op, _cpu_body, cuda_body in kernels:
            op.register_kernel("cpu")(cuda_body)
        yield emu_module
    finally:
        for op, cpu_body, _cuda_body in kernels:
            op.register_kernel("cpu")(cpu_body)


@pytest.fixture(params=["cpu", "cuda", "emu"])
def device(request, monkeypatch):
    """The torch device an op test puts its tensors on ("cpu" for emu, whose kernels are the CUDA bodies).
    A test limits the set with ``@pytest.mark.parametrize("device", [...], indirect=True)``; it can tell emu from
    cpu by ``request.node.callspec.params["device"]`` or the ``device_name`` fixture."""
    name = request.param
    if name == "cuda":
        if not _cuda_ready():
            pytest.skip("needs a CUDA device and a CUDA build")
        yield torch.device("cuda")
    elif name == "emu":
        if not _EMU_BUILD:
            pytest.skip("host CUDA emulator not built: bash tests/cuda_emu/build.sh")
        with emulated_cuda(monkeypatch, request.getfixturevalue("_emu_module")):
            yield torch.device("cpu")
    else:
        yield torch.device("cpu")


@pytest.fixture
def device_name(request, device) -> str:
    """"cpu", "cuda" or "emu": which kernels the ``device`` fixture selected."""
    return request.node.callspec.params["device"]


@pytest.fixture
def emu(request, monkeypatch):
    """The emulated CUDA module, for tests that only make sense emulated (e.g. helpers of the CUDA module with no
    op around them)."""
    if not _EMU_BUILD:
        pytest.skip("host CUDA emulator not built: bash tests/cuda_emu/build.sh")
    with emulated_cuda(monkeypatch, request.getfixturevalue("_emu_module")) as module:
        yield module
