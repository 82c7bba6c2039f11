"""The foundation: build info, threads, the Philox RNG, the error path, the bench harness, the CLI."""
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import pyfast
from pyfast import _native, rng
from pyfast.bench import Case, Contender, run_case
from helpers import assert_close


def test_info_keys_and_types():
    info = pyfast.info()
    for key in ("version", "compiler", "simd", "openmp", "threads", "cuda_built", "cuda_device"):
        assert key in info, key
    assert isinstance(info["version"], str) and info["version"]
    assert isinstance(info["cuda_built"], bool)
    assert info["threads"] >= 1
    if not torch.cuda.is_available():
        assert info["cuda_device"] is None


@pytest.mark.cuda_only
def test_cuda_module_is_built_and_sees_the_gpu():
    info = pyfast.info()
    assert info["cuda_built"], "pyfast was built without CUDA: PYFAST_CUDA=ON pip install --no-build-isolation ."
    assert info["cuda_device"] is not None


def test_cuda_path_without_cuda_raises_runtime_error():
    if pyfast.info()["cuda_built"]:
        pytest.skip("this build has CUDA")
    with pytest.raises(RuntimeError, match="PYFAST_CUDA=ON"):
        _native.cuda()


def test_cuda_kernel_bodies_without_the_cuda_module_raise_the_rebuild_error(monkeypatch):
    """Runs on every machine: simulate a build without pyfast._C_cuda; every op's CUDA kernel body must raise the
    RuntimeError that says how to rebuild before it looks at its arguments (the one-shape rule: `_native.cuda()`
    first), so CUDA tensors meet that message whichever op they reach."""
    import inspect

    from pyfast.ops import attention, masking, sgns, sgns_step

    monkeypatch.setattr(_native, "_cuda_module", None)
    monkeypatch.setattr(_native, "_cuda_import_error", "No module named 'pyfast._C_cuda'")
    rebuild = r"built without CUDA support .*PYFAST_CUDA=ON pip install"
    with pytest.raises(RuntimeError, match=rebuild):
        _native.cuda()
    assert not _native.cuda_built()
    bodies = [cuda_body for module in (attention, masking, sgns, sgns_step) for _op, _cpu, cuda_body in module.KERNELS]
    assert len(bodies) >= 4
    for body in bodies:
        args = [None] * len(inspect.signature(body).parameters)
        with pytest.raises(RuntimeError, match=rebuild):
            body(*args)


def test_set_num_threads_roundtrip_and_validation():
    old = pyfast.get_num_threads()
    try:
        pyfast.set_num_threads(3)
        assert pyfast.get_num_threads() == 3
        assert pyfast.info()["threads"] == 3
        with pytest.raises(ValueError, match="n must be >= 1, got 0"):
            pyfast.set_num_threads(0)
        with pytest.raises(TypeError):
            pyfast.set_num_threads(2.5)
    finally:
        pyfast.set_num_threads(old)


@pytest.mark.parametrize("threads", [1, 2, 3, 7])
@pytest.mark.parametrize("n", [0, 1, 5, 1000])
def test_parallel_for_covers_every_index_once(threads, n):
    old = pyfast.get_num_threads()
    try:
        pyfast.set_num_threads(threads)
        owner, workers_used = _native.cpu()._selftest_parallel(n)
        assert len(owner) == n
        assert all(o >= 0 for o in owner)            # every index visited
        assert owner == sorted(owner)                # contiguous chunks in order
        assert workers_used <= max(1, min(threads, n))
        if n >= threads:
            assert workers_used == threads
    finally:
        pyfast.set_num_threads(old)


def test_worker_exceptions_reach_python_with_the_right_type():
    old = pyfast.get_num_threads()
    try:
        pyfast.set_num_threads(2)
        with pytest.raises(ValueError, match="selftest: bad value from a worker"):
            _native.cpu()._selftest_parallel(100, "value")
        with pytest.raises(RuntimeError, match="selftest: failure in a worker"):
            _native.cpu()._selftest_parallel(100, "runtime")
    finally:
        pyfast.set_num_threads(old)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("n,grain", [(0, 1), (1, 1), (7, 3), (100, 1), (1000, 64)])
def test_parallel_for_elastic_covers_every_index_once(threads, n, grain):
    old = pyfast.get_num_threads()
    try:
        pyfast.set_num_threads(threads)
        for _ in range(3):  # the pool is reused across calls
            visits, workers = _native.cpu()._selftest_parallel_elastic(n, grain)
            assert visits == [1] * n
            assert workers <= max(1, min(threads, -(-n // grain)))
        if threads > 1:  # slow chunks: a helper gets to run some of them
            visits, workers = _native.cpu()._selftest_parallel_elastic(64, 1, "none", 2000)
            assert visits == [1] * 64 and workers >= 2
        with pytest.raises(ValueError, match="selftest: bad value from a worker"):
            _native.cpu()._selftest_parallel_elastic(100, 1, "value")
        with pytest.raises(RuntimeError, match="selftest: failure in a worker"):
            _native.cpu()._selftest_parallel_elastic(100, 1, "runtime")
    finally:
        pyfast.set_num_threads(old)


def test_parallel_for_elastic_after_fork():
    """A child process has none of the parent's pool threads: it must still finish (on its own threads), and the
    host buffer pool must be usable there."""
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    _native.cpu()._selftest_parallel_elastic(100, 1)  # start the parent's pool
    _native.empty((256, 512), torch.int64)  # and cache a host buffer (freed at once)
    pid = os.fork()
    if pid == 0:
        try:
            visits, _ = _native.cpu()._selftest_parallel_elastic(1000, 7, "none", 10)
            t = _native.empty((256, 512), torch.int64)  # the host pool works in the child too
            a = t.numpy()  # numpy, not torch ops: torch's own OpenMP pool is not usable in a forked child
            a.fill(5)
            ok = bool((a == 5).all())
            del a, t
            os._exit(0 if visits == [1] * 1000 and ok else 3)
        except BaseException:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_parallel_for_after_fork_does_not_hang():
    """libgomp's team does not survive fork(): a child whose parent ran an OpenMP region used to hang in its first
    parallel_for (a forked DataLoader worker calling a kernel). The child must finish, with every index visited."""
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    old = pyfast.get_num_threads()
    pyfast.set_num_threads(2)
    try:
        _native.cpu()._selftest_parallel(1000)  # the parent's OpenMP team exists now
        pid = os.fork()
        if pid == 0:
            try:
                owner, workers = _native.cpu()._selftest_parallel(1000)
                os._exit(0 if all(o >= 0 for o in owner) and workers == 2 else 3)
            except BaseException:
                os._exit(4)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("parallel_for in a forked child did not finish within 60 s")
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        owner, _ = _native.cpu()._selftest_parallel(1000)  # and the parent's team still works
        assert all(o >= 0 for o in owner)
    finally:
        pyfast.set_num_threads(old)


# Known-answer vectors for Philox4x32-10 from Random123 (kat_vectors): counter, key -> output.
PHILOX_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter,key,expected", PHILOX_KAT)
def test_philox_known_answers(counter, key, expected):
    assert rng.philox4x32_10(counter, key) == expected


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool, torch.float32, torch.float64,
                                   torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(0,), (3, 0), (1,), (7, 5), (256, 512)])
def test_pooled_empty_shape_dtype_and_writable(dtype, shape):
    t = _native.empty(shape, dtype)
    assert t.shape == shape and t.dtype == dtype and t.is_contiguous() and t.device.type == "cpu"
    t.fill_(1)
    assert bool((t == 1).all())
    assert t.untyped_storage().nbytes() == math.prod(shape) * t.element_size()


def test_pooled_buffers_are_reused_only_after_release():
    _native.cpu().host_pool_trim()
    a = _native.empty((256, 512), torch.int64)  # 1 MiB: pooled
    a.fill_(7)
    b = _native.empty((256, 512), torch.int64)  # `a` is alive: must not get its memory
    assert a.data_ptr() != b.data_ptr()
    b.fill_(9)
    assert bool((a == 7).all())
    view = a[3]  # a view keeps the storage alive after `a` is gone
    ptr = a.data_ptr()
    del a
    c = _native.empty((256, 512), torch.int64)
    assert c.data_ptr() != ptr and bool((view == 7).all())
    del view
    stats = _native.cpu().host_pool_stats()
    assert stats["cached_buffers"] >= 1
    d = _native.empty((256, 512), torch.int64)  # now the released buffer comes back
    assert d.data_ptr() == ptr
    assert _native.cpu().host_pool_stats()["reused"] >= stats["reused"] + 1
    with pytest.raises(TypeError, match="no pooled buffers"):
        _native.empty((2,), torch.complex64)
    del b, c
    assert pyfast.empty_cache()["cached_bytes"] > 0
    assert _native.cpu().host_pool_stats()["cached_bytes"] == 0


def test_philox_rejects_bad_words():
    with pytest.raises(ValueError, match="expected 4 counter words and 2 key words"):
        rng.philox4x32_10((0, 0, 0), (0, 0))
    with pytest.raises(ValueError, match=r"words must be in \[0, 2\*\*32\)"):
        rng.philox4x32_10((0, 0, 0, -1), (0, 0))


def test_uniform_is_keyed_by_index_not_threads():
    old = pyfast.get_num_threads()
    try:
        pyfast.set_num_threads(1)
        a = rng.uniform(100_003, seed=42)
        pyfast.set_num_threads(2)
        b = rng.uniform(100_003, seed=42)
        c = rng.uniform(100_003 - 17, seed=42, offset=17)
    finally:
        pyfast.set_num_threads(old)
    assert torch.equal(a, b)
    assert torch.equal(a[17:], c)
    assert not torch.equal(a, rng.uniform(100_003, seed=43))
    assert not torch.equal(a, rng.uniform(100_003, seed=42, stream=1))


def test_uniform_distribution():
    n = 200_000
    u = rng.uniform(n, seed=7).numpy().astype(np.float64)
    assert u.min() >= 0.0 and u.max() < 1.0
    # Mean and variance within 5 sigma of U(0,1).
    assert abs(u.mean() - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs(u.var() - 1 / 12) < 5 * math.sqrt(1 / 180 / n)
    # Chi-square over 100 bins: 99 dof, mean 99, sd 14; 5 sigma is 170.
    counts = np.bincount((u * 100).astype(np.int64), minlength=100)
    chi2 = ((counts - n / 100) ** 2 / (n / 100)).sum()
    assert chi2 < 170, chi2
    # Lag-1 correlation of neighbouring indices must be ~0 (counter-based streams are independent).
    corr = np.corrcoef(u[:-1], u[1:])[0, 1]
    assert abs(corr) < 5 / math.sqrt(n)


def test_uniform_validation():
    with pytest.raises(ValueError, match="n must be >= 0"):
        rng.uniform(-1, seed=0)
    with pytest.raises(TypeError, match="seed must be an int or None"):
        rng.uniform(3, seed=1.5)
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*64\)"):
        rng.uniform(3, seed=-1)
    assert rng.uniform(0, seed=None).shape == (0,)


def test_harness_interleaves_and_reports_median():
    calls = []
    case = Case(
        bench="t", name="toy",
        contenders=[Contender("a", lambda: calls.append("a")), Contender("b", lambda: calls.append("b"))],
        work=1.0, unit="ops/s", baseline="b", repeat=4, warmup=1,
    )
    res = run_case(case)
    assert calls == ["a", "b"] + ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert set(res.median_s) == {"a", "b"} and len(res.seconds["a"]) == 4
    assert res.ratio["b"] == pytest.approx(1.0)


def test_harness_gc_policies():
    import gc

    seen = []
    case = Case(bench="t", name="gc", contenders=[Contender("a", lambda: seen.append(gc.isenabled()))],
                work=1.0, unit="u", repeat=3, warmup=0)
    assert gc.isenabled()
    for policy, enabled_inside in (("auto", True), ("collect", True), ("off", False)):
        seen.clear()
        res = run_case(case, gc_policy=policy)
        assert seen == [enabled_inside] * 3 and res.gc_policy == policy
        assert gc.isenabled()  # restored afterwards
    with pytest.raises(ValueError, match="gc_policy must be one of"):
        run_case(case, gc_policy="never")


def test_harness_runs_checks_before_timing():
    def bad():
        raise AssertionError("wrong output")

    case = Case(bench="t", name="x", contenders=[Contender("a", lambda: None, check=bad)], work=1, unit="u")
    with pytest.raises(AssertionError, match="wrong output"):
        run_case(case)


def test_run_cases_budget_and_lazy_cases():
    from pyfast.bench import run_cases

    built = []

    def lazy():  # GPU benchmarks yield their cases one at a time
        for i in range(3):
            built.append(i)
            yield Case(bench="t", name=f"c{i}", contenders=[Contender("a", lambda: None)], work=1, unit="u",
                       repeat=1, warmup=0)

    seen = []
    res = run_cases(lazy(), progress=None, on_result=lambda case, r: seen.append((case.name, r.name)))
    assert [r.name for r in res] == ["c0", "c1", "c2"] and seen == [("c0", "c0"), ("c1", "c1"), ("c2", "c2")]
    skipped = []
    assert run_cases(lazy(), progress=None, budget_s=-1.0, skipped=skipped) == []
    assert skipped == ["t: c0", "t: c1", "t: c2"]


def test_every_bench_module_takes_a_device():
    import importlib
    import inspect

    from pyfast.bench import REGISTRY

    for name, path in REGISTRY.items():
        params = inspect.signature(importlib.import_module(path).cases).parameters
        assert "device" in params and params["device"].default == "cpu", name


def test_assert_close_reports_worst_element():
    a = torch.zeros(3, 4)
    b = torch.zeros(3, 4)
    b[2, 1] = 1.0
    b[0, 0] = 0.5
    with pytest.raises(AssertionError, match=r"2 of 12 elements .* worst at \[2, 1\]"):
        assert_close(a, b, atol=1e-3, rtol=0, name="x")


def _run_cli(*args):
    # cwd outside the repo so `-m pyfast` imports the package under test, not a source folder beside it.
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.path.dirname(os.path.dirname(pyfast.__file__)) if _from_source_tree() else tmp
        return subprocess.run([sys.executable, "-m", "pyfast", *args], capture_output=True, text=True, timeout=300,
                              cwd=cwd)


def _from_source_tree() -> bool:
    """True when pyfast is imported from a source checkout with an in-place build (developer mode)."""
    return os.path.exists(os.path.join(os.path.dirname(os.path.dirname(pyfast.__file__)), "CMakeLists.txt"))


def test_cli_info():
    res = _run_cli("info")
    assert res.returncode == 0, res.stderr
    assert "cuda_built" in res.stdout and "version" in res.stdout
    res = _run_cli("info", "--json")
    assert res.returncode == 0
    assert "simd" in json.loads(res.stdout)


def test_cli_unknown_command():
    res = _run_cli("frobnicate")
    assert res.returncode == 2
    assert "unknown command" in res.stderr


def test_cli_bench_machine_quick(tmp_path):
    out = tmp_path / "r.json"
    res = _run_cli("bench", "machine", "--quick", "--repeat", "1", "--json", str(out))
    assert res.returncode == 0, res.stderr
    rec = json.loads(out.read_text())
    assert rec["results"] and rec["results"][0]["unit"] == "GFLOP/s"
    assert "GEMM" in res.stdout
    res = _run_cli("bench", "nosuch")
    assert res.returncode == 2
    if not torch.cuda.is_available():
        res = _run_cli("bench", "attention", "--device", "cuda")
        assert res.returncode == 2 and "needs a CUDA device" in res.stderr
