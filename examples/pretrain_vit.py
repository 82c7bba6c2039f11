"""Does pretraining a small ViT transfer? MAE on Fashion-MNIST's 60k training images without labels, then a linear
probe and fine-tuning with 1% / 10% / 100% of the labels against the same ViT from scratch, on the 10k test images;
and supervised pretraining on classes 0-4 transferred to classes 5-9. Prints the table (mean ± std over seeds).

Needs the Fashion-MNIST IDX files: `apt-get install dataset-fashion-mnist`, or --root with the four files torchvision
downloads. Each part and seed can run on its own (--parts, --seeds) and the JSON files merged afterwards (--merge),
so a slow machine can split the work:
    python examples/pretrain_vit.py --parts mae --seeds 0 --out runs/vit-mae-0
    python examples/pretrain_vit.py --merge runs/vit-*/vision.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

from pyfast.demo import vision


def main(argv=None) -> int:
    defaults = vision.FULL
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", default=["mae", "supervised"], choices=["mae", "supervised"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--root", default=None, help="folder with the IDX files (default: the Debian package's)")
    parser.add_argument("--out", default="runs/pretrain_vit", help="vision.json goes here")
    parser.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                        help="only print the table of earlier runs' vision.json files")
    parser.add_argument("--quick", action="store_true", help="the demo's small setting")
    for f in dataclasses.fields(vision.VisionSettings):
        if f.name in ("extra", "fractions", "finetune_fractions"):
            continue
        default = getattr(defaults, f.name)
        kind = {bool: lambda s: s.lower() in ("1", "true", "yes")}.get(type(default), type(default))
        if default is None:
            kind = int
        parser.add_argument("--" + f.name.replace("_", "-"), type=kind, default=None, help=f"default {default}")
    parser.add_argument("--fractions", nargs="*", type=float, default=None,
                        help="label fractions of the linear probe (none: no probe)")
    parser.add_argument("--finetune-fractions", nargs="*", type=float, default=None,
                        help="label fractions of the fine-tunes (none: no fine-tune)")
    args = parser.parse_args(argv)

    if args.merge:
        results = []
        for path in args.merge:
            with open(path) as fh:
                results += json.load(fh)["results"]
        print(vision.format_rows(vision.summarize(results)))
        return 0
    base = vision.QUICK if args.quick else vision.FULL
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(vision.VisionSettings)
                 if getattr(args, f.name, None) is not None}
    for name in ("fractions", "finetune_fractions"):
        if name in overrides:
            overrides[name] = tuple(overrides[name])
    settings = dataclasses.replace(base, **overrides)
    t0 = time.time()
    report = vision.run(args.quick, args.out, seeds=tuple(args.seeds), settings=settings, root=args.root,
                        parts=tuple(args.parts), log=lambda m: print(f"[{time.time() - t0:5.0f} s] {m}", flush=True))
    if "skipped" in report:
        print(report["skipped"], file=sys.stderr)
        return 1
    print(report["markdown"])
    print(f"{report['seconds']:.0f} s; results in {args.out}/vision.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
