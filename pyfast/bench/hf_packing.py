"""Padded vs packed (padding-free) MLM training steps of HF's BertForMaskedLM on pyfast's attention
(attn_implementation="pyfast"), on batches of real demo-corpus paragraphs, so lengths spread as text does.

One timed call = collate + forward + backward + AdamW step:
- padded: pyfast's DataCollatorForLanguageModeling pads the batch to its longest row (masked fused attention);
- packed: HF's DataCollatorWithFlattening(return_flash_attn_kwargs=True) joins the rows into one (1, T) row, then
  pyfast.mask_tokens masks it; attention runs through pyfast.attention_varlen, so no padding token is computed;
- sdpa padded: the padded step on HF's own "sdpa" attention (the peer).
Work unit: thousands of real (non-padding) tokens per second; the padding share is in the case's params.
"""
from __future__ import annotations

import copy
import random

import torch

from .harness import Case, Contender


def _paragraph_ids(n_rows: int, max_len: int, vocab: int, seed: int):
    """(tokenizer, n_rows token lists): random demo paragraphs, [CLS] ... [SEP], truncated to max_len."""
    from ..demo.corpus import load_books, split_paragraphs
    from ..models.tokenization import WordPieceTokenizer

    train, _ = split_paragraphs(load_books())
    paragraphs = [p for p, _ in train]
    tokenizer = WordPieceTokenizer.train(paragraphs[:4000], vocab_size=vocab)
    chosen = random.Random(seed).sample(paragraphs, n_rows)
    rows = [ids[: max_len - 1] + [tokenizer.sep_token_id] for ids in tokenizer.encode_batch(chosen)]
    return tokenizer, rows


def _case(batch: int, max_len: int, hidden: int, layers: int, heads: int, repeat: int) -> Case:
    from transformers import BertConfig, BertForMaskedLM, DataCollatorWithFlattening

    from ..data import DataCollatorForLanguageModeling
    from ..integrations import transformers as _registers_pyfast  # noqa: F401
    from ..ops import mask_tokens

    tokenizer, rows = _paragraph_ids(batch, max_len, 4000, seed=0)
    features = [{"input_ids": r} for r in rows]
    lengths = [len(r) for r in rows]
    real, padded = sum(lengths), batch * max(lengths)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=4 * hidden, max_position_embeddings=max_len,
                        pad_token_id=tokenizer.pad_token_id, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    # One config object each: _from_config writes attn_implementation into the config it is given, so a shared
    # config would switch every model to the last implementation named.
    models = {name: BertForMaskedLM._from_config(copy.deepcopy(config), attn_implementation=impl)
              for name, impl in (("padded", "pyfast"), ("packed", "pyfast"), ("sdpa", "sdpa"))}
    impls = {k: m.config._attn_implementation for k, m in models.items()}
    if impls != {"padded": "pyfast", "packed": "pyfast", "sdpa": "sdpa"}:
        raise AssertionError(f"hf_packing bench: attention implementations {impls}")
    for m in models.values():
        m.load_state_dict(models["padded"].state_dict())
        m.train()
    optimizers = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}
    padder = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=1)
    flattener = DataCollatorWithFlattening(return_flash_attn_kwargs=True)
    specials = tokenizer.all_special_ids

    def packed_batch(seed: int) -> dict:
        b = flattener(features, return_tensors="pt")
        b["input_ids"], b["labels"] = mask_tokens(b["input_ids"], mask_token_id=tokenizer.mask_token_id,
                                                  vocab_size=len(tokenizer), special_token_ids=specials, seed=seed)
        return b

    def step(name: str, make_batch):
        model, opt = models[name], optimizers[name]
        calls = [0]

        def run():
            calls[0] += 1
            loss = model(**make_batch(calls[0])).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return run

    def check():
        """Before timing: the packed forward gives the padded forward's logits on every real token."""
        ids = torch.full((batch, max(lengths)), tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(ids)
        for b, r in enumerate(rows):  # padded without masking (the collator would mask tokens)
            ids[b, :len(r)], attention_mask[b, :len(r)] = torch.tensor(r), 1
        flat = flattener(features, return_tensors="pt")
        flat.pop("labels")
        with torch.no_grad():
            models["padded"].eval(), models["packed"].eval()
            lp = models["padded"](input_ids=ids, attention_mask=attention_mask).logits
            lk = models["packed"](**flat).logits[0]
            models["padded"].train(), models["packed"].train()
        want = lp[attention_mask.bool()]
        err = (lk - want).abs().max().item()
        if err > 1e-3:
            raise AssertionError(f"hf_packing bench: packed logits differ from padded ones by {err:.3g}")

    contenders = [
        Contender("pyfast padded", step("padded", lambda i: padder(features)), check=check),
        Contender("pyfast packed (varlen)", step("packed", packed_batch)),
        Contender("hf sdpa padded", step("sdpa", lambda i: padder(features))),
    ]
    lengths_sorted = sorted(lengths)
    return Case(
        bench="hf_packing",
        name=f"BertForMaskedLM MLM step B{batch} max_len {max_len} H{hidden} x{layers} heads {heads}",
        contenders=contenders, work=real / 1e3, unit="Ktok/s", baseline="pyfast padded", repeat=repeat,
        params=dict(batch=batch, max_len=max_len, hidden=hidden, layers=layers, heads=heads, real_tokens=real,
                    padded_tokens=padded, padding_share=round(1 - real / padded, 3),
                    length_min=lengths_sorted[0], length_median=lengths_sorted[len(lengths) // 2],
                    length_max=lengths_sorted[-1]),
        floor_note="work counts real tokens only; the padded contenders also compute padded_tokens - real_tokens",
    )


def cases(quick: bool, device: str = "cpu"):
    if device != "cpu":
        return []  # CPU is the point: flash-attn's padding-free path exists only on GPUs
    try:
        import transformers  # noqa: F401
    except ImportError:
        return []
    if quick:
        return [_case(batch=16, max_len=128, hidden=64, layers=2, heads=4, repeat=3)]
    return [_case(batch=32, max_len=128, hidden=128, layers=2, heads=4, repeat=7),
            _case(batch=32, max_len=512, hidden=128, layers=2, heads=4, repeat=5)]
