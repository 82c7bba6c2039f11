"""Benchmark pyfast's fused attention against torch SDPA and a naive matmul-softmax (see pyfast/bench/attention.py),
plus the GEMM peak beside it and (not in --quick) the peak memory of a causal fwd+bwd at N=8192; writes benchmarks/results/attention.json.

    python benchmarks/bench_attention.py [--quick] [--no-memory] [--json PATH]
"""
from __future__ import annotations

import argparse
import math
import os
import sys

from pyfast.bench import attention, machine
from pyfast.bench.harness import format_table, machine_info, run_cases, write_record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three shapes, three repeats (well under a minute)")
    parser.add_argument("--no-memory", action="store_true", help="skip the N=8192 peak-memory measurement")
    parser.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                       "attention.json"))
    args = parser.parse_args(argv)

    floors = run_cases([c for c in machine.cases(quick=args.quick) if "GEMM" in c.name], progress=None)
    results = run_cases(attention.cases(quick=args.quick), repeat=3 if args.quick else None)
    print(format_table(floors + results))
    summary = {}
    for kind in ("fwd", "fwd+bwd"):
        ratios = [r.ratio["pyfast"] for r in results if r.name.split()[0] == kind]
        if ratios:
            summary[kind] = {"geomean_vs_torch": math.exp(sum(map(math.log, ratios)) / len(ratios)),
                             "min_vs_torch": min(ratios)}
            print(f"{kind}: pyfast / torch SDPA geomean {summary[kind]['geomean_vs_torch']:.2f}x, "
                  f"min {summary[kind]['min_vs_torch']:.2f}x")
    memory = None
    if not args.no_memory and not args.quick:  # quick mode skips it: small N hides under the allocator's slack
        memory = attention.peak_memory(n=8192, heads=2, head_dim=64)
        print(f"peak memory added by one causal fwd+bwd (1, 2, 8192, 64) fp32, MiB: {memory}")
    record = {"machine": machine_info(), "command": "python benchmarks/bench_attention.py " + " ".join(argv or sys.argv[1:]),
              "floors": [r.to_json() for r in floors], "results": [r.to_json() for r in results],
              "summary": summary, "peak_memory_mib": memory}
    write_record(args.json, record)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
