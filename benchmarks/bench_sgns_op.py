"""SGNS op: forward + backward + SGD step against plain PyTorch (issue #6). Writes benchmarks/results/sgns_op.json.

Usage: python benchmarks/bench_sgns_op.py [--quick]      (the same as: python -m pyfast bench sgns --json ...)
"""
import os
import sys

from pyfast.bench.cli import main

if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(here, "results", "sgns_op.json")
    sys.exit(main(["sgns", "--json", out] + sys.argv[1:]))
