"""Attention benchmark: pyfast's fused kernel vs torch SDPA (on the CPU it picks its flash kernel) vs a naive
matmul-softmax, forward and forward+backward, fp32 and bf16, causal and not, in GFLOP/s beside the GEMM peak.
With --device cuda: pyfast's CUDA kernels vs each torch SDPA backend that runs the case (flash, efficient, cudnn),
bf16, head dims 64 and 128, N = 1k..8k with B * N = 16k tokens and 16 heads, checked against SDPA first.
FLOPs counted as 4 * B * H * L * S * D for the forward (halved when causal) and 2.5x that for the backward.
Peak memory at long N is measured separately (`peak_memory`), each contender in a fresh subprocess.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
import torch.nn.functional as F

from .harness import Case, Contender

# (B, H, N, D, causal, dtype): the acceptance shapes.
SHAPES = [
    (4, 8, 512, 64, True, torch.float32),
    (4, 8, 512, 64, False, torch.float32),
    (2, 8, 2048, 64, True, torch.float32),
    (1, 12, 1024, 64, False, torch.float32),
    (8, 12, 128, 64, False, torch.float32),
    (4, 8, 512, 64, True, torch.bfloat16),
]
QUICK_SHAPES = [
    (4, 8, 512, 64, True, torch.float32),
    (8, 12, 128, 64, False, torch.float32),
    (4, 8, 512, 64, True, torch.bfloat16),
]


def _naive(q, k, v, causal):
    scores = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
    if causal:
        n = q.shape[-2]
        scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def _timed(fn, backward: bool, inputs, grad):
    """The timed call: fn() under no_grad, or fn() and its backward with the inputs' gradients cleared first."""
    if not backward:
        def run():
            with torch.no_grad():
                fn()
        return run

    def run():
        for t in inputs:
            t.grad = None
        fn().backward(grad)
    return run


def _fwd_flops(b, h, n, d, causal):
    return 4.0 * b * h * n * n * d * (0.5 if causal else 1.0)


def _case(b, h, n, d, causal, dtype, backward, repeat):
    from ..ops.attention import scaled_dot_product_attention as pyfast_sdpa
    from ..reference.attention import scaled_dot_product_attention as reference

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(b, h, n, d, generator=g).to(dtype).requires_grad_(backward) for _ in range(3))
    grad = torch.randn(b, h, n, d, generator=g).to(dtype)
    fns = {
        "pyfast": lambda: pyfast_sdpa(q, k, v, is_causal=causal),
        "torch SDPA": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
        "naive matmul-softmax": lambda: _naive(q, k, v, causal),
    }

    def timed(fn):
        return _timed(fn, backward, (q, k, v), grad)

    def check():  # outputs against the float64 reference on the first batch entry
        with torch.no_grad():
            expected = reference(q[:1], k[:1], v[:1], is_causal=causal)
            got = pyfast_sdpa(q[:1], k[:1], v[:1], is_causal=causal).double()
        tol = 2e-2 if dtype == torch.bfloat16 else 1e-4
        err = (got - expected).abs().max().item()
        if err > tol:
            raise AssertionError(f"pyfast attention differs from the reference by {err}")

    contenders = [Contender(name, timed(fn), check=check if name == "pyfast" else None) for name, fn in fns.items()]
    flops = _fwd_flops(b, h, n, d, causal) * (3.5 if backward else 1.0)
    kind = "fwd+bwd" if backward else "fwd"
    name = f"{kind} B{b} H{h} N{n} D{d} {'causal' if causal else 'full'} {str(dtype).replace('torch.', '')}"
    return Case(
        bench="attention", name=name, contenders=contenders, work=flops * 1e-9, unit="GFLOP/s",
        baseline="torch SDPA", repeat=repeat,
        params={"B": b, "H": h, "N": n, "D": d, "causal": causal, "dtype": str(dtype), "backward": backward},
        floor_note="compare with the GEMM peak of `python -m pyfast bench machine`",
    )


def _sdpa_backends() -> dict:
    from torch.nn.attention import SDPBackend

    names = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "cudnn": "CUDNN_ATTENTION"}
    return {name: getattr(SDPBackend, attr) for name, attr in names.items() if hasattr(SDPBackend, attr)}


def _cuda_case(b, h, n, d, causal, backward, repeat):
    """pyfast's CUDA kernels against every SDPA backend that accepts the case (one that raises is left out and
    named in params["unavailable"]); bf16; pyfast's output checked against SDPA's default choice first."""
    from torch.nn.attention import sdpa_kernel

    from ..ops.attention import scaled_dot_product_attention as pyfast_sdpa

    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(b, h, n, d, device="cuda", dtype=torch.bfloat16, generator=g).requires_grad_(backward)
               for _ in range(3))
    grad = torch.randn(b, h, n, d, device="cuda", dtype=torch.bfloat16, generator=g)

    def sdpa_with(backend):
        def run():
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return run

    def timed(fn):
        return _timed(fn, backward, (q, k, v), grad)

    params = {"B": b, "H": h, "N": n, "D": d, "causal": causal, "dtype": "bfloat16", "backward": backward}

    def check():
        with torch.no_grad():
            err = (pyfast_sdpa(q, k, v, is_causal=causal).float() -
                   F.scaled_dot_product_attention(q, k, v, is_causal=causal).float()).abs().max().item()
        params["max_abs_diff_vs_sdpa"] = err
        if not err < 3e-2:
            raise AssertionError(f"pyfast CUDA attention differs from torch SDPA by {err}")

    def earlier_mma_forward():  # PYFAST_ATTENTION_FWD=mma: the tensor-core forward before #17's pipelined one
        before = os.environ.get("PYFAST_ATTENTION_FWD")
        os.environ["PYFAST_ATTENTION_FWD"] = "mma"
        try:
            return pyfast_sdpa(q, k, v, is_causal=causal)
        finally:
            if before is None:
                os.environ.pop("PYFAST_ATTENTION_FWD")
            else:
                os.environ["PYFAST_ATTENTION_FWD"] = before

    fns = {"pyfast": lambda: pyfast_sdpa(q, k, v, is_causal=causal), "pyfast mma fwd (pre-#17)": earlier_mma_forward}
    if backward and d == 64 and n == 4096 and not causal:
        # Once, for the record: the atomic-free two-kernel backward (deterministic=True) beside the default single
        # kernel (#17 stage 3), which sums dQ with atomics. One case only, so the sweep's time cap holds.
        fns["pyfast deterministic bwd"] = lambda: pyfast_sdpa(q, k, v, is_causal=causal, deterministic=True)
    for name, backend in _sdpa_backends().items():
        try:
            with torch.no_grad():
                sdpa_with(backend)()
            fns["sdpa " + name] = sdpa_with(backend)
        except RuntimeError as exc:  # this backend does not take the case (arch, dtype, head dim)
            params.setdefault("unavailable", {})["sdpa " + name] = str(exc).splitlines()[0][:120]
    contenders = [Contender(name, timed(fn), check=check if name == "pyfast" else None) for name, fn in fns.items()]
    flops = _fwd_flops(b, h, n, d, causal) * (3.5 if backward else 1.0)
    kind = "fwd+bwd" if backward else "fwd"
    baseline = "sdpa flash" if "sdpa flash" in fns else next(iter(fns))
    return Case(
        bench="attention", name=f"cuda {kind} B{b} H{h} N{n} D{d} {'causal' if causal else 'full'} bf16",
        contenders=contenders, work=flops * 1e-12, unit="TFLOP/s", baseline=baseline, repeat=repeat, params=params,
        device="cuda", floor_note="compare with the bf16 GEMM peak of `python -m pyfast bench machine --device cuda`",
    )


def _cuda_cases(quick: bool):
    """Built one at a time (a generator): each case's tensors are freed before the next, larger one."""
    tokens = 16384  # B * N fixed, so every case moves the same activations
    for d in (64, 128):
        for n in ((1024, 4096) if quick else (1024, 2048, 4096, 8192)):
            for causal in (False, True):
                for backward in (False, True):
                    yield _cuda_case(max(1, tokens // n), 16, n, d, causal, backward, repeat=3 if quick else 5)
                    torch.cuda.empty_cache()


def cases(quick: bool = False, device: str = "cpu"):
    if device == "cuda":
        return _cuda_cases(quick)
    shapes = QUICK_SHAPES if quick else SHAPES
    repeat = 3 if quick else 7
    out = []
    for backward in (False, True):
        for shape in shapes:
            out.append(_case(*shape, backward=backward, repeat=repeat))
    return out


_MEMORY_SCRIPT = r"""
import sys, torch, json
import torch.nn.functional as F
impl, n, h, d = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def status_kib(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])

q, k, v = (torch.randn(1, h, n, d, requires_grad=True) for _ in range(3))
grad = torch.randn(1, h, n, d)
if impl == "pyfast":
    from pyfast.ops.attention import scaled_dot_product_attention as fn
elif impl == "torch SDPA":
    fn = F.scaled_dot_product_attention
else:
    from pyfast.bench.attention import _naive
    fn = lambda q, k, v, is_causal: _naive(q, k, v, is_causal)
fn(q[:, :, :8], k[:, :, :8], v[:, :, :8], is_causal=True).sum().backward()  # load code paths first
q.grad = k.grad = v.grad = None
with open("/proc/self/clear_refs", "w") as fh:  # reset VmHWM (peak RSS) to the current RSS
    fh.write("5")
before = status_kib("VmRSS")
fn(q, k, v, is_causal=True).backward(grad)
peak = status_kib("VmHWM")
print(json.dumps({"added_mib": (peak - before) / 1024.0}))
"""


def peak_memory(n: int = 8192, heads: int = 2, head_dim: int = 64,
                contenders=("pyfast", "torch SDPA", "naive matmul-softmax")) -> dict:
    """MiB that one causal fwd+bwd at (1, heads, n, head_dim) fp32 adds to the process's peak RSS: VmHWM is reset
    through /proc/self/clear_refs just before the call (Linux), each contender in a fresh interpreter. Includes
    the output and the three gradients (4 x n x heads x head_dim x 4 bytes = 16 MiB at the defaults)."""
    result = {}
    for impl in contenders:
        proc = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, impl, str(n), str(heads), str(head_dim)],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            result[impl] = f"failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"
            continue
        result[impl] = json.loads(proc.stdout.strip().splitlines()[-1])["added_mib"]
    return result
