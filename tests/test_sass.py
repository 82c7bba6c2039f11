"""The pipelined attention forward's and the single-kernel backward's SASS (benchmarks/check_sass.py): in the built
CUDA module, every attention_fwd_flash_kernel and attention_bwd_flash_kernel uses LDSM (ldmatrix) and LDGSTS
(cp.async) on every architecture built; the backward adds dQ with fp32 atomics (RED/REDG), the deterministic backward's
kernels have no atomics. Needs no GPU;
skipped without a CUDA build (_C_cuda*.so beside the imported pyfast) or without cuobjdump (PATH or $CUOBJDUMP)."""
import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_flash_kernels_sass_has_ldmatrix_and_cp_async():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        import check_sass
    finally:
        sys.path.pop(0)
    if not check_sass.cuobjdump():
        pytest.skip("cuobjdump not found (PATH or $CUOBJDUMP)")
    import pyfast

    # The package under test (CI: the installed one; a dev build: ./pyfast), not a path guessed from the repo.
    package_dir = os.path.dirname(os.path.abspath(pyfast.__file__))
    built = sorted(glob.glob(os.path.join(package_dir, "_C_cuda*.so")))
    if not built:
        pytest.skip(f"no CUDA build in {package_dir} (PYFAST_CUDA=ON .ci/dev-build)")
    run = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "check_sass.py"), built[0]],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "sm_80" in run.stdout and "sm_90" in run.stdout, run.stdout
    assert "attention_bwd_flash_kernel" in run.stdout, run.stdout
