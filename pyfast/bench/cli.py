"""python -m pyfast bench [NAME ...] [--quick] [--json PATH] [--plot PATH] [--repeat N]"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from . import REGISTRY
from .harness import format_table, machine_info, plot, run_cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyfast bench", description="Benchmark pyfast kernels against their peers.")
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all): {', '.join(REGISTRY)}")
    parser.add_argument("--quick", action="store_true", help="small shapes and few repeats (a smoke run)")
    parser.add_argument("--repeat", type=int, default=None, help="timed repeats per contender (median is reported)")
    parser.add_argument("--json", metavar="PATH", help="write results and machine facts as JSON")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG chart (needs matplotlib)")
    parser.add_argument("--list", action="store_true", help="list benchmark names and exit")
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
    for name in names:
        module = importlib.import_module(REGISTRY[name])
        cases = module.cases(quick=args.quick)
        results.extend(run_cases(cases, repeat=args.repeat if args.repeat else (3 if args.quick else None),
                                 warmup=1))
    print(format_table(results))
    if args.json:
        record = {"machine": machine_info(), "command": "python -m pyfast bench " + " ".join(argv or sys.argv[1:]),
                  "results": [r.to_json() for r in results]}
        tmp = args.json + ".tmp"
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(tmp, "w") as fh:
            json.dump(record, fh, indent=1)
        os.replace(tmp, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        print(f"wrote {args.plot}" if plot(results, args.plot) else "matplotlib not installed: no plot written")
    return 0
