"""Benchmark harness shared by every kernel, installed with the package so `python -m pyfast bench` works
after `pip install`. One module per kernel registers its cases in REGISTRY; see harness.py."""
from .harness import Case, CaseResult, Contender, machine_info, run_case, run_cases

# name -> module path; each module defines `cases(quick: bool) -> list[Case]`.
REGISTRY = {
    "machine": "pyfast.bench.machine",
    "attention": "pyfast.bench.attention",
    "models": "pyfast.bench.models",
    "generate": "pyfast.bench.generate",
    "word2vec": "pyfast.bench.word2vec",
    "masking": "pyfast.bench.masking",
    "sgns": "pyfast.bench.sgns",
    "hf_packing": "pyfast.bench.hf_packing",
}

__all__ = ["Case", "CaseResult", "Contender", "REGISTRY", "machine_info", "run_case", "run_cases"]
