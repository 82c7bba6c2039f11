#!/usr/bin/env python
"""Masked-LM training of an HF BertForMaskedLM with HF's Trainer, on pyfast's attention and pyfast's collator.

    python examples/hf_trainer_mlm.py --max-steps 200 --output-dir runs/hf_trainer_mlm

Two lines switch an HF training script to pyfast: `import pyfast.integrations.transformers` (registers
attn_implementation="pyfast") and `data_collator=pyfast.DataCollatorForLanguageModeling(tokenizer)`. The model is
built from a config (random weights, small) and the WordPiece vocabulary is trained on the fly on the Austen novels
shipped with pyfast, so nothing is downloaded. Needs transformers and accelerate (Trainer requires it).
"""
from __future__ import annotations

import argparse
import math

import torch

import pyfast
import pyfast.integrations.transformers  # noqa: F401  (registers attn_implementation="pyfast")
from pyfast.demo.corpus import load_books, split_paragraphs
from pyfast.models.tokenization import WordPieceTokenizer


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-steps", type=int, default=200, help="optimizer steps (default 200)")
    p.add_argument("--output-dir", default="runs/hf_trainer_mlm", help="Trainer output; the model is saved here")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=64, help="paragraphs are truncated to this many tokens")
    p.add_argument("--paragraphs", type=int, default=3000, help="training paragraphs taken from the corpus")
    p.add_argument("--vocab-size", type=int, default=2000)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    """-> dict(losses: the logged training losses, output_dir)."""
    from transformers import BertConfig, BertForMaskedLM, Trainer, TrainingArguments

    args = parse_args(argv)
    torch.manual_seed(args.seed)
    train, _ = split_paragraphs(load_books())
    paragraphs = [p for p, _ in train][: args.paragraphs]
    tokenizer = WordPieceTokenizer.train(paragraphs, vocab_size=args.vocab_size)
    # Variable-length examples, no padding yet: the collator pads each batch to its longest row.
    examples = [{"input_ids": ids[: args.max_length - 1] + [tokenizer.sep_token_id]}
                for ids in tokenizer.encode_batch(paragraphs)]

    config = BertConfig(vocab_size=len(tokenizer), hidden_size=args.hidden, num_hidden_layers=args.layers,
                        num_attention_heads=args.heads, intermediate_size=4 * args.hidden,
                        max_position_embeddings=args.max_length, pad_token_id=tokenizer.pad_token_id,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertForMaskedLM._from_config(config, attn_implementation="pyfast")
    # The HF form of the tokenizer: Trainer.save_model saves the collator's tokenizer next to the model.
    collator = pyfast.DataCollatorForLanguageModeling(tokenizer.to_hf(), mlm_probability=0.15, seed=args.seed)

    training_args = TrainingArguments(
        output_dir=args.output_dir, max_steps=args.max_steps, per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr, warmup_steps=max(1, args.max_steps // 10), logging_steps=max(1, args.max_steps // 10),
        save_strategy="no", report_to=[], seed=args.seed, disable_tqdm=True,
        remove_unused_columns=False,  # the examples are plain dicts, not a datasets.Dataset
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=examples, data_collator=collator)
    trainer.train()
    trainer.save_model(args.output_dir)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    if not losses or not all(math.isfinite(x) for x in losses):
        raise RuntimeError(f"training loss is not finite: {losses}")
    print(f"attn_implementation={model.config._attn_implementation}; {len(examples)} paragraphs, vocabulary "
          f"{len(tokenizer)}; loss {losses[0]:.3f} -> {losses[-1]:.3f} over {args.max_steps} steps; "
          f"model saved to {args.output_dir}")
    return {"losses": losses, "output_dir": args.output_dir}


if __name__ == "__main__":
    main()
