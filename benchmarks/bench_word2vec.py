"""Benchmark pyfast's word2vec against gensim (corpus_file mode) and a numba loop; see pyfast/bench/word2vec.py.

    python benchmarks/bench_word2vec.py [--quick] [--copies N] [--corpus PATH] [--repeat N]

Prints words/s (median of the repeats, interleaved) and quality (mean over the repeats' seeds) and writes
benchmarks/results/word2vec.json.
"""
import argparse
import os
import sys

from pyfast.bench import harness
from pyfast.bench import word2vec as w2v_bench


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--copies", type=int, default=None, help="repeat the built corpus this many times")
    parser.add_argument("--corpus", default=None, help="use this corpus file instead of building one")
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--only", choices=["sg", "cbow"], default=None)
    parser.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                       "word2vec.json"))
    args = parser.parse_args()
    cases = w2v_bench.cases(quick=args.quick, corpus_path=args.corpus, copies=args.copies)
    if args.only:
        cases = [c for c in cases if c.params["sg"] == (args.only == "sg")]
    results = []
    for case in cases:
        print(f"running {case.name} ...", flush=True)
        results.append(harness.run_case(case, repeat=args.repeat))
        case.finalize()
        results[-1].extra = {c.name: c.extra for c in case.contenders if c.extra}
        print(w2v_bench.quality_table(results[-1:], [case]), flush=True)
    print(harness.format_table(results))
    print(w2v_bench.quality_table(results, cases))
    record = {"machine": harness.machine_info(), "command": "python benchmarks/bench_word2vec.py " + " ".join(sys.argv[1:]),
              "results": [r.to_json() for r in results]}
    harness.write_record(args.json, record)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
