#!/usr/bin/env python
"""GPT generate() with the KV cache vs recomputing the prefix, 200 new tokens, greedy (tokens/s).
Usage: python benchmarks/bench_generate.py [--quick]   (writes benchmarks/results/generate.json)"""
import os
import sys

from pyfast.bench.cli import main

if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    args = ["generate", "--json", os.path.join(here, "results", "generate.json")] + sys.argv[1:]
    sys.exit(main(args))
