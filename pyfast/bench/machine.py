"""The machine's floors, measured: fp32 / bf16 GEMM peak (torch.mm, which calls the BLAS every peer uses) and
memory bandwidth (a large copy), on the CPU or (--device cuda) the GPU (cuBLAS, device memory). Every kernel's
RESULTS.md entry quotes its speed beside these."""
from __future__ import annotations

import torch

from .harness import Case, Contender


def _gemm_case(n: int, dtype: torch.dtype, repeat: int, device: str = "cpu") -> Case:
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    out = torch.empty(n, n, dtype=dtype, device=device)
    return Case(
        bench="machine", name=f"GEMM {n}^3 {str(dtype).replace('torch.', '')} {device}",
        contenders=[Contender("torch.mm", lambda: torch.mm(a, b, out=out))],
        work=2.0 * n ** 3 * 1e-9, unit="GFLOP/s", params={"n": n, "dtype": str(dtype)}, repeat=repeat,
        device=device,
    )


def _copy_case(nbytes: int, repeat: int, device: str = "cpu") -> Case:
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    return Case(
        bench="machine", name=f"copy {nbytes >> 20} MiB (read+write) {device}",
        contenders=[Contender("tensor.copy_", lambda: dst.copy_(src))],
        work=2.0 * nbytes * 1e-9, unit="GB/s", params={"bytes": nbytes}, repeat=repeat, device=device,
    )


def cases(quick: bool = False, device: str = "cpu") -> list[Case]:
    rep = 3 if quick else 7
    if device == "cuda":
        n = 4096 if quick else 8192
        return [_gemm_case(n, torch.bfloat16, rep, device), _gemm_case(n, torch.float32, rep, device),
                _copy_case(1 << 30, rep, device)]
    n = 512 if quick else 1024
    return [
        _gemm_case(n, torch.float32, rep),
        _gemm_case(n, torch.bfloat16, rep),
        _copy_case((64 if quick else 256) << 20, rep),
    ]
