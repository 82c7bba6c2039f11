#!/usr/bin/env python
"""Pretrain a small GPT (causal LM) on pyfast's fused causal attention and print a generated sample.

    python examples/pretrain_gpt.py --steps 300 --prompt "It is a truth"

Writes the checkpoint (atomically), loss.csv and loss.png under --out; reports held-out perplexity.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import base_parser, load_paragraphs, tokenizer_for  # noqa: E402

from pyfast.demo import tasks  # noqa: E402


def main() -> int:
    parser = base_parser(__doc__.split("\n\n")[0], steps=300, out="runs/pretrain_gpt")
    parser.add_argument("--prompt", default="It is a truth", help="start of the generated sample")
    parser.add_argument("--sample-tokens", type=int, default=40)
    args = parser.parse_args()
    train, test = load_paragraphs(args.corpus)
    tokenizer = tokenizer_for(train, args.vocab_size, args.out)
    print(f"{len(train)} paragraphs, vocabulary {len(tokenizer)} ({tokenizer.kind})", flush=True)
    result = tasks.pretrain_gpt(
        tokenizer, train, test, steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len,
        hidden=args.hidden, layers=args.layers, heads=args.heads, lr=args.lr, seed=args.seed, out_dir=args.out,
        quiet=args.quiet, prompt=args.prompt, sample_tokens=args.sample_tokens)
    print(f"loss {result['first_loss']:.3f} -> {result['last_loss']:.3f}; "
          f"held-out perplexity {result['perplexity']:.1f}; {result['tokens_per_s']:.0f} tokens/s")
    print(f"sample: {result['sample']}")
    print(f"checkpoint {os.path.join(args.out, 'checkpoint')}; curve {os.path.join(args.out, 'loss.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
