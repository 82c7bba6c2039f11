"""Padded vs packed (padding-free, attention_varlen) BERT MLM training steps through attn_implementation="pyfast".
Usage: python benchmarks/bench_hf_packing.py [--quick]   (writes benchmarks/results/hf_packing.json)"""
import os
import sys

from pyfast.bench.cli import main

if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    args = ["hf_packing", "--json", os.path.join(here, "results", "hf_packing.json")] + sys.argv[1:]
    sys.exit(main(args))
