#!/usr/bin/env python
"""Training-step throughput of pyfast's BERT / GPT beside HF transformers (same size). Writes
benchmarks/results/models-<date>.json and prints the table. Usage: python benchmarks/bench_models.py [--quick]"""
import datetime
import os
import sys

from pyfast.bench.cli import main

if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(here, "results", f"models-{datetime.date.today().isoformat()}.json")
    sys.exit(main(["models", "--json", out, *sys.argv[1:]]))
