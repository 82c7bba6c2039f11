"""GPT generate(): tokens/s with the KV cache (prompt once, then one token per step) against recomputing the prefix
every step (use_cache=False), greedy, same model and prompt.

One timed call = one generate() of `new` tokens per row. Work unit: generated tokens per second (batch * new). The
check runs both once and requires identical token ids. Without the cache step t re-runs t tokens through every
layer, so the whole generation costs ~new^2 / 2 token-passes against ~new with the cache: the ratio grows with the
length; at small sizes the per-step Python and op-dispatch overhead bounds the cached path.
"""
from __future__ import annotations

import torch

from .harness import Case, Contender


def _case(batch, prompt_len, new, hidden, layers, heads, vocab, repeat):
    from pyfast.models import GPTConfig, GPTLMHeadModel

    torch.manual_seed(0)
    model = GPTLMHeadModel(GPTConfig(vocab_size=vocab, n_positions=prompt_len + new, n_embd=hidden, n_layer=layers,
                                     n_head=heads, dropout=0.0, initializer_range=0.3)).eval()
    prompt = torch.randint(0, vocab, (batch, prompt_len), generator=torch.Generator().manual_seed(1))

    def run(use_cache):
        return lambda: model.generate(prompt, max_new_tokens=new, use_cache=use_cache)

    def check():
        a, b = run(True)(), run(False)()
        if a.shape != (batch, prompt_len + new) or not torch.equal(a, b):
            raise AssertionError(f"generate bench: cached and recomputed tokens differ (shapes {tuple(a.shape)}, "
                                 f"{tuple(b.shape)})")

    contenders = [Contender("generate, KV cache", run(True), check=check),
                  Contender("generate, no cache", run(False))]
    return Case(bench="generate", name=f"GPT greedy B{batch} prompt{prompt_len} +{new} H{hidden} x{layers} V{vocab}",
                contenders=contenders, work=batch * new, unit="tok/s", baseline="generate, no cache",
                params=dict(batch=batch, prompt=prompt_len, new_tokens=new, hidden=hidden, layers=layers, heads=heads,
                            vocab=vocab), repeat=repeat, warmup=1)


def cases(quick: bool = False, device: str = "cpu") -> list[Case]:
    if device != "cpu":  # generation is measured on the CPU (GPU: not measured yet)
        return []
    if quick:
        return [_case(1, 8, 50, 64, 2, 4, 2000, 3)]
    return [_case(1, 16, 200, 128, 2, 4, 4000, 5), _case(8, 16, 200, 128, 2, 4, 4000, 5),
            _case(1, 16, 200, 256, 4, 4, 8000, 5)]
