#!/usr/bin/env python
"""Pretrain a small BERT with masked-LM on pyfast kernels (fused attention, masked-token collator, sparse prediction).

    python examples/pretrain_bert.py --steps 300
    python examples/pretrain_bert.py --steps 300 --resume      # after Ctrl-C / a kill: continue where it stopped
    torchrun --standalone --nproc_per_node 2 examples/pretrain_bert.py --steps 10     # DDP: gloo on CPU, nccl on GPU
    # two machines (run on each, NODE = 0 on the first, 1 on the second; HOST:PORT = a free port on the first):
    torchrun --nnodes 2 --node_rank NODE --nproc_per_node 1 --rdzv_backend c10d --rdzv_endpoint HOST:PORT \\
        examples/pretrain_bert.py --steps 300

Every rank trains on its own share of the blocks with its own masking stream; DDP averages the gradients, and the
script checks at the end that all ranks hold identical parameters (exit status 1 if not). Rank 0 writes the
checkpoint (atomically: a reader never sees half of one), loss.csv and loss.png under --out.

Resumable checkpoints go to OUT/checkpoints/step-N every --save-every steps, with OUT/checkpoints/latest naming
the newest (both written atomically by rank 0). They hold the model, the optimizer, the step (the LR schedule
follows it), every rank's RNG states, data position and masking stream, so `--resume` with the same settings
continues on the very loss curve the uninterrupted run would have drawn. Ctrl-C (SIGINT) or SIGTERM saves one at
the end of the step under way and exits with status 130 / 143 (under torchrun every rank stops at the same step).
On resume rank 0 reads the checkpoint and sends it to every rank: only rank 0's machine needs --out.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (add_resume_arguments, base_parser, load_paragraphs, report_interruption,  # noqa: E402
                     tokenizer_for)

from pyfast.demo import tasks  # noqa: E402
from pyfast.models.training import (StopRequest, TrainingInterrupted, cleanup_distributed,  # noqa: E402
                                    setup_distributed)


def main() -> int:
    parser = add_resume_arguments(base_parser(__doc__.split("\n\n")[0], steps=300, out="runs/pretrain_bert"))
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when available")
    args = parser.parse_args()
    dist = setup_distributed(args.device)
    try:
        train, test = load_paragraphs(args.corpus)
        tokenizer = tokenizer_for(train, args.vocab_size, args.out, dist, reuse=args.resume)
        if dist.is_main:
            print(f"{len(train)} paragraphs, vocabulary {len(tokenizer)} ({tokenizer.kind}), "
                  f"{dist.world_size} process(es) on {dist.device}", flush=True)
        try:
            result = tasks.pretrain_bert(
                tokenizer, train, test, steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len,
                hidden=args.hidden, layers=args.layers, heads=args.heads, lr=args.lr, seed=args.seed,
                out_dir=args.out, save_every=args.save_every, dist=dist, quiet=args.quiet, resume=args.resume,
                stop=StopRequest(after_steps=args.stop_after), dropout=args.dropout)
        except TrainingInterrupted as exc:
            return report_interruption(exc, dist)
        if dist.is_main:
            print(f"loss {result['first_loss']:.3f} -> {result['last_loss']:.3f}; "
                  f"held-out masked-token accuracy {result['masked_acc']:.1%}; "
                  f"{result['tokens_per_s']:.0f} tokens/s over all ranks")
            print(f"checkpoint {result['checkpoint']}; loss log {os.path.join(args.out, 'loss.csv')}, "
                  f"curve {os.path.join(args.out, 'loss.png')}")
        if dist.enabled:
            print(f"rank {dist.rank}: max |param - rank 0 param| = {result['param_diff']:.3g}", flush=True)
        if result["param_diff"] != 0.0:
            print(f"rank {dist.rank}: parameters differ across ranks", file=sys.stderr)
            return 1
        return 0
    finally:
        cleanup_distributed()


if __name__ == "__main__":
    sys.exit(main())
