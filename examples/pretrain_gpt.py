#!/usr/bin/env python
"""Pretrain a small GPT (causal LM) on pyfast's fused causal attention and print a generated sample.

    python examples/pretrain_gpt.py --steps 300 --prompt "It is a truth"
    python examples/pretrain_gpt.py --steps 300 --resume       # after Ctrl-C / a kill: continue where it stopped

Writes the checkpoint (atomically), loss.csv and loss.png under --out; reports held-out perplexity. Resumable
checkpoints (model, optimizer, step, RNG states, data position) go to OUT/checkpoints/step-N every --save-every
steps, OUT/checkpoints/latest naming the newest; `--resume` with the same settings continues on the loss curve the
uninterrupted run would have drawn. Ctrl-C (SIGINT) or SIGTERM saves one at the end of the step under way and
exits with status 130 / 143.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (add_resume_arguments, base_parser, load_paragraphs, report_interruption,  # noqa: E402
                     tokenizer_for)

from pyfast.demo import tasks  # noqa: E402
from pyfast.models.training import StopRequest, TrainingInterrupted  # noqa: E402


def main() -> int:
    parser = add_resume_arguments(base_parser(__doc__.split("\n\n")[0], steps=300, out="runs/pretrain_gpt"))
    parser.add_argument("--prompt", default="It is a truth", help="start of the generated sample")
    parser.add_argument("--sample-tokens", type=int, default=40)
    args = parser.parse_args()
    train, test = load_paragraphs(args.corpus)
    tokenizer = tokenizer_for(train, args.vocab_size, args.out, reuse=args.resume)
    print(f"{len(train)} paragraphs, vocabulary {len(tokenizer)} ({tokenizer.kind})", flush=True)
    try:
        result = tasks.pretrain_gpt(
            tokenizer, train, test, steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len,
            hidden=args.hidden, layers=args.layers, heads=args.heads, lr=args.lr, seed=args.seed, out_dir=args.out,
            quiet=args.quiet, prompt=args.prompt, sample_tokens=args.sample_tokens, save_every=args.save_every,
            resume=args.resume, stop=StopRequest(after_steps=args.stop_after), dropout=args.dropout)
    except TrainingInterrupted as exc:
        return report_interruption(exc)
    print(f"loss {result['first_loss']:.3f} -> {result['last_loss']:.3f}; "
          f"held-out perplexity {result['perplexity']:.1f}; {result['tokens_per_s']:.0f} tokens/s")
    print(f"sample: {result['sample']}")
    print(f"checkpoint {os.path.join(args.out, 'checkpoint')}; curve {os.path.join(args.out, 'loss.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
