"""Masked-token sampling benchmark: pyfast vs HF's collator (step and whole call) and numpy, 256 x 512, V=30k.
Usage: python benchmarks/bench_masking.py [--quick]   (writes benchmarks/results/masking.json)"""
import os
import sys

from pyfast.bench.cli import main

if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    args = ["masking", "--json", os.path.join(here, "results", "masking.json")] + sys.argv[1:]
    sys.exit(main(args))
