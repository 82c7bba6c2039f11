"""python -m pyfast bench [NAME ...] [--quick] [--json PATH] [--plot PATH] [--repeat N] [--gc auto|off|collect]"""
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
    results = []
    reports = []  # extra tables some benchmarks print under the timing table (word2vec: quality)
    for name in names:
        module = importlib.import_module(REGISTRY[name])
        cases = module.cases(quick=args.quick)
        # Each case keeps its own warm-up count (word2vec's is 0: one training run per seed, all of them scored).
        mod_results = run_cases(cases, repeat=args.repeat if args.repeat else (3 if args.quick else None),
                                gc_policy=args.gc)
        for case, res in zip(cases, mod_results):
            finalize = getattr(case, "finalize", None)  # cases that score their runs (quality columns)
            if finalize is not None:
                finalize()
                res.extra = {c.name: c.extra for c in case.contenders if c.extra}
        results.extend(mod_results)
        report = getattr(module, "report", None)
        if report is not None and cases:
            reports.append(report(mod_results, cases))
    print(format_table(results))
    for text in reports:
        print(text)
    if args.json:
        record = {"machine": machine_info(), "command": "python -m pyfast bench " + " ".join(argv or sys.argv[1:]),
                  "results": [r.to_json() for r in results]}
        write_record(args.json, record)
        print(f"wrote {args.json}")
    if args.plot:
        print(f"wrote {args.plot}" if plot(results, args.plot) else "matplotlib not installed: no plot written")
    return 0
