"""The one place where pyfast.models reaches the pyfast kernels (attention, masking, word2vec).

Every model, example and the demo import kernels from here and nowhere else. Each name is the pyfast kernel when
it is present; the blocks marked FALLBACK stand in with the plain torch / gensim equivalent (same signature, same
semantics) while the kernel's issue has not landed on main, and are deleted at merge.
Imports name the defining modules (pyfast.word2vec, pyfast.nn.attention, ...), not the package roots, so they
never depend on the order of the imports in pyfast/__init__.py.
"""
from __future__ import annotations

import importlib

import torch

from pyfast.nn.attention import MultiheadSelfAttention
from pyfast.ops.attention import scaled_dot_product_attention
from pyfast.word2vec import Word2Vec


def _landed(module: str, name: str):  # FALLBACK until #5 lands: remove at merge (use plain imports)
    """The kernel's public object, or None while its issue has not landed (module or name absent). An error raised
    inside a module that does exist propagates: a broken kernel must fail loudly, not fall back silently."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise
    return getattr(mod, name, None)


# ---- masked-token sampling (#5) ---------------------------------------------------------------------------------
gather_masked = _landed("pyfast.ops", "gather_masked")
if gather_masked is None:  # FALLBACK until #5 lands: remove at merge

    def gather_masked(hidden, labels):
        """hidden (B, L, H), labels (B, L) -> hidden at labels != -100 (M, H), those labels (M,)."""
        chosen = labels != -100
        return hidden[chosen], labels[chosen]

mask_tokens = _landed("pyfast.ops", "mask_tokens")
if mask_tokens is None:  # FALLBACK until #5 lands: remove at merge

    def mask_tokens(input_ids, *, mask_token_id, vocab_size, special_tokens_mask=None, special_token_ids=None,
                    mlm_probability=0.15, mask_replace_prob=0.8, random_replace_prob=0.1, seed=None,
                    word_starts=None, max_predictions=None):
        """BERT's 80/10/10 masking in plain torch; random replacements avoid special ids (as pyfast's kernel)."""
        gen = torch.Generator().manual_seed(int(torch.randint(0, 2**62, ()).item()) if seed is None else seed)
        special = torch.zeros_like(input_ids, dtype=torch.bool)
        if special_tokens_mask is not None:
            special |= special_tokens_mask.bool()
        ids_excluded = torch.tensor(sorted(set(special_token_ids or [])), dtype=input_ids.dtype)
        if ids_excluded.numel():
            special |= torch.isin(input_ids, ids_excluded)
        chosen = (torch.rand(input_ids.shape, generator=gen) < mlm_probability) & ~special
        labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
        draw = torch.rand(input_ids.shape, generator=gen)
        to_mask = chosen & (draw < mask_replace_prob)
        to_random = chosen & (draw >= mask_replace_prob) & (draw < mask_replace_prob + random_replace_prob)
        allowed = torch.ones(vocab_size, dtype=torch.bool)
        allowed[ids_excluded[(ids_excluded >= 0) & (ids_excluded < vocab_size)].long()] = False
        pool = torch.nonzero(allowed).flatten()
        random_ids = pool[torch.randint(0, pool.numel(), input_ids.shape, generator=gen)].to(input_ids.dtype)
        out = torch.where(to_mask, torch.full_like(input_ids, mask_token_id), input_ids)
        out = torch.where(to_random, random_ids, out)
        return out, labels

DataCollatorForLanguageModeling = _landed("pyfast.data", "DataCollatorForLanguageModeling")
if DataCollatorForLanguageModeling is None:  # FALLBACK until #5 lands: remove at merge

    class DataCollatorForLanguageModeling:
        """HF-shaped collator over equal-or-ragged lists of ids (or dicts with input_ids), plain torch masking."""

        def __init__(self, tokenizer, mlm=True, mlm_probability=0.15, mask_replace_prob=0.8, random_replace_prob=0.1,
                     pad_to_multiple_of=None, return_tensors="pt", seed=None, whole_word_mask=False):
            self.tokenizer, self.mlm, self.mlm_probability = tokenizer, mlm, mlm_probability
            self.mask_replace_prob, self.random_replace_prob = mask_replace_prob, random_replace_prob
            self.pad_to_multiple_of = pad_to_multiple_of
            self.generator = torch.Generator().manual_seed(0 if seed is None else seed)

        def __call__(self, examples):
            rows = [torch.as_tensor(e["input_ids"] if isinstance(e, dict) else e, dtype=torch.long) for e in examples]
            width = max((len(r) for r in rows), default=0)
            if self.pad_to_multiple_of:
                width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
            pad_id = self.tokenizer.pad_token_id
            input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
            for i, r in enumerate(rows):
                input_ids[i, :len(r)] = r
                attention_mask[i, :len(r)] = 1
            if not self.mlm:
                return {"input_ids": input_ids, "attention_mask": attention_mask,
                        "labels": input_ids.masked_fill(attention_mask == 0, -100)}
            seed = int(torch.randint(0, 2**62, (), generator=self.generator))
            masked, labels = mask_tokens(
                input_ids, mask_token_id=self.tokenizer.mask_token_id, vocab_size=len(self.tokenizer),
                special_tokens_mask=attention_mask == 0, special_token_ids=self.tokenizer.all_special_ids,
                mlm_probability=self.mlm_probability, mask_replace_prob=self.mask_replace_prob,
                random_replace_prob=self.random_replace_prob, seed=seed)
            return {"input_ids": masked, "attention_mask": attention_mask, "labels": labels}


__all__ = ["scaled_dot_product_attention", "MultiheadSelfAttention", "gather_masked", "mask_tokens",
           "DataCollatorForLanguageModeling", "Word2Vec"]
