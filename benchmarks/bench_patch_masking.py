"""MAE's per-image patch choice: pyfast.ops.random_patch_mask (native, Philox keyed by (seed, image)) against the
torch recipe of MAE's reference code (torch.rand noise, two argsorts, a gather for the mask), on CPU, for a batch of
B images of n patches (n = 49: 28 x 28 images in 4 x 4 patches; n = 196: 224 x 224 in 16 x 16). Output checked
(exact count per image, a permutation) before timing; medians of interleaved repeats; Mpatches/s.
Usage: python benchmarks/bench_patch_masking.py [--repeat N]"""
import argparse
import sys

import torch

from pyfast.bench.harness import Case, Contender, format_table, run_case
from pyfast.ops import random_patch_mask


def mae_torch(b: int, n: int, ratio: float):
    """MAE's random_masking without the gather of x: what a user of the paper's code runs."""
    n_keep = int(n * (1 - ratio))
    noise = torch.rand(b, n)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :n_keep]
    mask = torch.ones(b, n)
    mask[:, :n_keep] = 0
    return ids_keep, ids_restore, torch.gather(mask, 1, ids_restore)


def check(out, b, n, n_keep):
    keep, restore, mask = out
    assert keep.shape == (b, n_keep) and torch.equal(mask.sum(1), torch.full((b,), float(n - n_keep)))
    assert torch.equal(torch.sort(restore, 1).values, torch.arange(n).expand(b, n))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args(argv)
    results = []
    for b, n in ((256, 49), (256, 196), (4096, 49)):
        ids = torch.arange(b)
        n_keep = n - round(n * 0.75)
        state = {"seed": 0}

        def pyfast_call():
            state["seed"] += 1
            return random_patch_mask(ids, n, 0.75, seed=state["seed"])

        case = Case("patch_masking", f"B{b} n{n} ratio 0.75", [
            Contender("pyfast", pyfast_call, check=lambda: check(pyfast_call(), b, n, n_keep)),
            Contender("torch (MAE recipe)", lambda: mae_torch(b, n, 0.75),
                      check=lambda: check(mae_torch(b, n, 0.75), b, n, n_keep)),
        ], work=b * n / 1e6, unit="Mpatches/s", baseline="torch (MAE recipe)", repeat=args.repeat, warmup=2)
        results.append(run_case(case))
    print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
