"""python -m pyfast bench [NAME ...] [--device cpu|cuda] [--quick] [--json PATH] [--plot PATH] [--repeat N]
[--budget-s S] [--gc auto|off|collect]"""
from __future__ import annotations

import argparse
import importlib
import sys

from . import REGISTRY
from .harness import GC_POLICIES, format_table, machine_info, plot, run_cases, write_record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyfast bench", description="Benchmark pyfast kernels against their peers.")
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all): {', '.join(REGISTRY)}")
    parser.add_argument("--quick", action="store_true", help="small shapes and few repeats (a smoke run)")
    parser.add_argument("--repeat", type=int, default=None, help="timed repeats per contender (median is reported)")
    parser.add_argument("--json", metavar="PATH", help="write results and machine facts as JSON")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG chart (needs matplotlib)")
    parser.add_argument("--list", action="store_true", help="list benchmark names and exit")
    parser.add_argument("--gc", choices=GC_POLICIES, default="auto",
                        help="Python's garbage collector during timed calls: auto (runs on its own, as in a training "
                             "loop; default), off (as timeit), collect (a full collection before every call)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cpu (default): the CPU kernels against their CPU peers; cuda: the CUDA kernels against "
                             "the GPU peers (torch SDPA backends, HF / torch masking on the GPU, nn.Embedding)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="stop starting new cases after this many seconds; the skipped ones are listed")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(REGISTRY))
        return 0
    names = args.names or list(REGISTRY)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        print(f"python -m pyfast bench: unknown benchmark(s) {unknown}; choose from {list(REGISTRY)}", file=sys.stderr)
        return 2
    if args.repeat is not None and args.repeat < 1:
        print("python -m pyfast bench: --repeat must be >= 1", file=sys.stderr)
        return 2
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("python -m pyfast bench: --device cuda needs a CUDA device", file=sys.stderr)
            return 2
    results = []
    reports = []  # extra tables some benchmarks print under the timing table (word2vec: quality)
    skipped: list[str] = []
    deadline_s = args.budget_s
    for name in names:
        module = importlib.import_module(REGISTRY[name])
        report = getattr(module, "report", None)
        ran_cases = []

        def finish(case, res):
            finalize = getattr(case, "finalize", None)  # cases that score their runs (quality columns)
            if finalize is not None:
                finalize()
                res.extra = {c.name: c.extra for c in case.contenders if c.extra}
            if report is not None:
                ran_cases.append(case)

        # Each case keeps its own warm-up count (word2vec's is 0: one training run per seed, all of them scored).
        mod_results = run_cases(module.cases(quick=args.quick, device=args.device),
                                repeat=args.repeat if args.repeat else (3 if args.quick else None), gc_policy=args.gc,
                                budget_s=deadline_s, skipped=skipped, on_result=finish)
        results.extend(mod_results)
        if report is not None and ran_cases:
            reports.append(report(mod_results, ran_cases))
    print(format_table(results))
    if skipped:
        print(f"skipped for the time budget ({args.budget_s} s): " + "; ".join(skipped))
    for text in reports:
        print(text)
    if args.json:
        record = {"machine": machine_info(), "command": "python -m pyfast bench " + " ".join(argv or sys.argv[1:]),
                  "device": args.device, "results": [r.to_json() for r in results], "skipped_for_time": skipped}
        write_record(args.json, record)
        print(f"wrote {args.json}")
    if args.plot:
        print(f"wrote {args.plot}" if plot(results, args.plot) else "matplotlib not installed: no plot written")
    return 0
