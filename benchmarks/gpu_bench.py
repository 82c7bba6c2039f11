"""GPU benchmark for the CUDA kernels (issue #8), run by benchmarks/gpu_check.sh on a lent GPU; writes one JSON.

attention: pyfast's CUDA kernel vs torch SDPA's backends (flash, efficient, cudnn, whichever run), bf16, head
dims 64 and 128, N = 1k..8k, causal and not; forward and forward+backward TFLOP/s (causal counts half the
FLOPs). Each case is checked against SDPA before it is timed. masking / SGNS: tokens/s and pairs/s of their CUDA
paths when those ops are present in this build (recorded as "absent" otherwise).

Timing: CUDA events, 1 warm-up then the median of `reps` runs, contenders interleaved per case. A time budget
(--budget-s) stops the sweep early rather than overrun the device lease; what was skipped is recorded.
Usage: python benchmarks/gpu_bench.py --out $OUT/gpu-DATE.json [--budget-s 200]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

import torch

import pyfast


def _time_ms(fn, reps: int) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _sdpa_backends():
    from torch.nn.attention import SDPBackend

    names = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "cudnn": "CUDNN_ATTENTION"}
    return {name: getattr(SDPBackend, attr) for name, attr in names.items() if hasattr(SDPBackend, attr)}


def bench_attention(budget_s: float, reps: int) -> dict:
    from torch.nn.attention import sdpa_kernel

    from pyfast.ops import attention as ops

    results, skipped = [], []
    t_begin = time.perf_counter()
    tokens = 16384  # B * N fixed so every case moves the same activations
    for d in (64, 128):
        for n in (1024, 2048, 4096, 8192):
            for causal in (False, True):
                case = dict(head_dim=d, seq_len=n, causal=causal, batch=max(1, tokens // n), heads=16, dtype="bf16")
                if time.perf_counter() - t_begin > budget_s:
                    skipped.append(case)
                    continue
                b, h = case["batch"], case["heads"]
                q, k, v = (torch.randn(b, h, n, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                           for _ in range(3))
                grad = torch.randn(b, h, n, d, device="cuda", dtype=torch.bfloat16)
                scale = 1.0 / math.sqrt(d)
                flops_fwd = 4.0 * b * h * n * n * d * (0.5 if causal else 1.0)
                flops_fwdbwd = flops_fwd * 3.5  # backward = 2.5x forward (5 GEMMs vs 2)

                def ours_fwd():
                    return ops.attention_fwd(q, k, v, None, None, None, n, n, causal, scale, 0.0, 0)[0]

                def ours_fwdbwd():
                    torch.autograd.backward(ours_fwd(), grad)

                contenders = {"pyfast": (ours_fwd, ours_fwdbwd)}
                with torch.no_grad():
                    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
                    case["max_abs_diff_vs_sdpa"] = (ours_fwd().float() - ref.float()).abs().max().item()
                for name, backend in _sdpa_backends().items():
                    def sdpa_fwd(backend=backend):
                        with sdpa_kernel(backend):
                            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)

                    def sdpa_fwdbwd(fwd=sdpa_fwd):
                        torch.autograd.backward(fwd(), grad)

                    try:
                        sdpa_fwd()
                        contenders["sdpa_" + name] = (sdpa_fwd, sdpa_fwdbwd)
                    except RuntimeError as exc:  # backend not available for this case
                        case["sdpa_" + name] = f"unavailable: {str(exc).splitlines()[0][:120]}"
                for name, (fwd, fwdbwd) in contenders.items():  # interleaved per case
                    try:
                        ms_f = _time_ms(fwd, reps)
                        ms_fb = _time_ms(fwdbwd, reps)
                        case[name] = dict(fwd_ms=ms_f, fwd_tflops=flops_fwd / ms_f / 1e9, fwdbwd_ms=ms_fb,
                                          fwdbwd_tflops=flops_fwdbwd / ms_fb / 1e9)
                    except RuntimeError as exc:
                        case[name] = f"failed: {str(exc).splitlines()[0][:200]}"
                results.append(case)
                print(json.dumps(case), flush=True)
                del q, k, v, grad
                torch.cuda.empty_cache()
    return dict(cases=results, skipped_for_time=skipped)


def bench_masking(reps: int) -> dict:
    try:
        from pyfast.ops import masking as m
    except ImportError:
        return dict(status="absent: pyfast.ops.masking is not in this build")
    fn = getattr(m, "mask_tokens", None)
    if fn is None:
        return dict(status="absent: pyfast.ops.masking.mask_tokens not found")
    b, l, vocab = 256, 512, 30522
    ids = torch.randint(5, vocab, (b, l), device="cuda")
    try:
        ms = _time_ms(lambda: fn(ids, vocab_size=vocab, mask_token_id=4, seed=1), reps)
    except Exception as exc:  # the op's CUDA path may be missing: record why
        return dict(status=f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    return dict(status="ok", batch=b, seq_len=l, ms=ms, tokens_per_s=b * l / ms * 1e3)


def bench_sgns(reps: int) -> dict:
    try:
        from pyfast.ops import sgns as s
    except ImportError:
        return dict(status="absent: pyfast.ops.sgns is not in this build")
    return dict(status="absent: no CUDA SGNS op in this build (see the issue #8 report)",
                names=[n for n in dir(s) if not n.startswith("_")])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--budget-s", type=float, default=200.0)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 1
    record = dict(
        date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), device=torch.cuda.get_device_name(0),
        capability=list(torch.cuda.get_device_capability(0)), torch=torch.__version__, python=platform.python_version(),
        pyfast=pyfast.info(), note="pyfast attention CUDA kernel: fp32 CUDA-core arithmetic, no tensor cores yet",
    )
    record["attention"] = bench_attention(args.budget_s, args.reps)
    record["masking"] = bench_masking(args.reps)
    record["sgns"] = bench_sgns(args.reps)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, args.out)
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
