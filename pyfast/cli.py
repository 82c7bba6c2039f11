"""Command line: python -m pyfast {info,bench,...}. Each subcommand is registered in COMMANDS."""
from __future__ import annotations

import argparse
import sys


def _cmd_info(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyfast info", description="Show how pyfast was built.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    from . import info

    data = info()
    if args.json:
        import json

        print(json.dumps(data, indent=2))
        return 0
    width = max(len(k) for k in data)
    for key, value in data.items():
        print(f"{key:<{width}}  {value}")
    try:
        import torch

        print(f"{'torch':<{width}}  {torch.__version__}")
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return 0


def _cmd_bench(argv: list[str]) -> int:
    from .bench.cli import main as bench_main

    return bench_main(argv)


def _cmd_demo(argv: list[str]) -> int:
    from .demo import main as demo_main

    return demo_main(argv)


COMMANDS = {
    "info": (_cmd_info, "show how pyfast was built (version, SIMD, OpenMP, threads, CUDA)"),
    "bench": (_cmd_bench, "benchmark pyfast kernels against their peers"),
    "demo": (_cmd_demo, "pretrain word2vec, BERT and GPT on a shipped corpus, fine-tune, compare (--quick: 1 min)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m pyfast COMMAND [ARGS]\n\ncommands:")
        for name, (_fn, help_text) in COMMANDS.items():
            print(f"  {name:<10} {help_text}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"python -m pyfast: unknown command {name!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return COMMANDS[name][0](rest)
