"""Tests for GPT incremental decoding (#19): pyfast.nn.KVCache, forward(past_key_values=, use_cache=) and
generate(use_cache=True) against the full recomputation (same logits to 1e-5 in float32, the same token ids)."""
from __future__ import annotations

import pytest
import torch

from helpers import assert_close
from pyfast.models import GPTConfig, GPTLMHeadModel
from pyfast.nn import KVCache

V = 41


def model(seed=0, **kw):
    # initializer_range 0.3 (not 0.02): logits spread by O(1), so greedy/sampled choices are not decided by
    # rounding-level near-ties between the two paths.
    cfg = dict(vocab_size=V, n_positions=48, n_embd=32, n_layer=3, n_head=4, dropout=0.0, initializer_range=0.3)
    cfg.update(kw)
    torch.manual_seed(seed)
    return GPTLMHeadModel(GPTConfig(**cfg)).eval()


def ids(batch, length, seed=1):
    return torch.randint(0, V, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kw", [{}, {"n_kv_head": 2}, {"n_kv_head": 1, "n_layer": 1}])
@pytest.mark.parametrize("chunks", [[1] * 13, [5, 1, 1, 6], [13], [1, 12]])
def test_incremental_forward_matches_full_forward(kw, chunks):
    m = model(**kw)
    x = ids(3, sum(chunks))
    with torch.no_grad():
        full = m(x).logits                                           # (B, L, V)
        cache, parts, start = None, [], 0
        for n in chunks:
            out = m(x[:, start:start + n], past_key_values=cache, use_cache=True)
            cache, start = out.past_key_values, start + n
            parts.append(out.logits)
    assert cache.get_seq_length() == sum(chunks) and len(cache) == m.config.n_layer
    assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)


def test_incremental_forward_with_padding_mask_over_cached_and_new_tokens():
    m = model()
    x = ids(2, 10)
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[0, 2] = mask[1, 6] = 0  # a padded key among the cached ones and one among the new ones
    with torch.no_grad():
        full = m(x, attention_mask=mask).logits
        first = m(x[:, :4], attention_mask=mask[:, :4], use_cache=True)
        rest = m(x[:, 4:], attention_mask=mask, past_key_values=first.past_key_values)
    assert_close(torch.cat([first.logits, rest.logits], dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("batch,prompt_len", [(1, 1), (3, 1), (4, 7), (2, 20)])
def test_greedy_generation_same_tokens_with_and_without_cache(batch, prompt_len):
    m = model()
    prompt = ids(batch, prompt_len, seed=prompt_len)
    cached = m.generate(prompt, max_new_tokens=25, use_cache=True)
    recomputed = m.generate(prompt, max_new_tokens=25, use_cache=False)
    assert cached.shape == (batch, prompt_len + 25)
    assert torch.equal(cached[:, :prompt_len], prompt)
    assert torch.equal(cached, recomputed), f"first difference at {(cached != recomputed).nonzero()[:1].tolist()}"


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("top_k", [None, 5])
def test_sampled_generation_same_tokens_with_and_without_cache(seed, top_k):
    m = model()
    prompt = ids(3, 4)
    kw = dict(max_new_tokens=30, do_sample=True, temperature=0.9, top_k=top_k, seed=seed)
    cached = m.generate(prompt, use_cache=True, **kw)
    assert torch.equal(cached, m.generate(prompt, use_cache=False, **kw))
    assert torch.equal(cached, m.generate(prompt, **kw))  # the seed alone fixes the draws
    assert not torch.equal(cached, m.generate(prompt, **{**kw, "seed": seed + 100}))  # and it does matter


def test_generation_up_to_the_last_position_and_zero_new_tokens():
    m = model()
    prompt = ids(2, 40)
    out = m.generate(prompt, max_new_tokens=9, use_cache=True)  # feeds 40 + 9 - 1 = 48 = n_positions tokens
    assert torch.equal(out, m.generate(prompt, max_new_tokens=9, use_cache=False))
    for use_cache in (True, False):
        assert torch.equal(m.generate(prompt, max_new_tokens=0, use_cache=use_cache), prompt)


def test_default_uses_the_cache_when_it_fits():
    m = model()
    widths = []
    m.transformer.register_forward_pre_hook(lambda module, args: widths.append(args[0].shape[1]))
    m.generate(ids(2, 6), max_new_tokens=5)
    assert widths == [6, 1, 1, 1, 1]  # prompt once, then one token a step
    widths.clear()
    m.generate(ids(2, 6), max_new_tokens=3, use_cache=False)
    assert widths == [6, 7, 8]


def test_generate_stops_at_eos_with_the_cache():
    m = model(eos_token_id=3, tie_word_embeddings=False)
    with torch.no_grad():
        m.lm_head.weight.zero_()
        m.lm_head.weight[3] = 1.0  # logit_3 = sum(hidden) = n_embd * ln_f.bias (LN output sums to 0)
        m.transformer.ln_f.bias.fill_(1.0)
    assert m.generate(torch.tensor([[5, 6], [7, 8]]), max_new_tokens=10).tolist() == [[5, 6, 3], [7, 8, 3]]


def test_cache_buffers_are_preallocated_and_written_in_place():
    m = model()
    cache = KVCache(20)
    x = ids(2, 20)
    pointers = set()
    with torch.no_grad():
        for t in range(20):
            m(x[:, t:t + 1], past_key_values=cache)
            pointers.add(cache._keys[0].data_ptr())
    assert len(pointers) == 1 and cache._keys[0].shape == (2, 4, 20, 8)
    cache.reset()
    assert cache.get_seq_length() == 0


def test_position_limit_and_bad_cache_errors():
    m = model()
    with pytest.raises(ValueError, match=r"generate: with use_cache=True the prompt \(40 tokens\) \+ max_new_tokens "
                                         r"\(10\) - 1 must fit the model's 48 positions"):
        m.generate(ids(1, 40), max_new_tokens=10, use_cache=True)
    slid = m.generate(ids(1, 40), max_new_tokens=10, use_cache=False)  # the window slides over the last 48
    assert slid.shape == (1, 50)
    assert torch.equal(m.generate(ids(1, 40), max_new_tokens=10), slid)  # the default falls back to the window
    with torch.no_grad():
        cache = m(ids(1, 45), use_cache=True).past_key_values
        with pytest.raises(ValueError, match=r"GPTModel: 45 cached \+ 4 new tokens exceed the 48 positions"):
            m(ids(1, 4), past_key_values=cache)
        with pytest.raises(TypeError, match=r"past_key_values must be a pyfast.nn.KVCache"):
            m(ids(1, 4), past_key_values=((torch.zeros(1), torch.zeros(1)),))
        with pytest.raises(ValueError, match=r"KVCache.update: layer 0 holds 3 tokens and cannot take 2 more"):
            m(ids(1, 2), past_key_values=m(ids(1, 3), past_key_values=KVCache(4)).past_key_values)
        with pytest.raises(ValueError, match=r"KVCache.update: layer 0 caches \(batch, heads, dim\) = \(1, 4, 8\)"):
            m(ids(2, 1), past_key_values=m(ids(1, 3), use_cache=True).past_key_values)
        with pytest.raises(ValueError, match=r"key_padding_mask must be \(batch, length\) = \(1, 5\) \(cached \+ new"):
            m(ids(1, 2), attention_mask=torch.tensor([[1, 0]]),
              past_key_values=m(ids(1, 3), use_cache=True).past_key_values)
    with pytest.raises(ValueError, match=r"KVCache: max_length must be an int >= 1, got 0"):
        KVCache(0)


def test_float64_is_refused_by_pyfast_attention():
    """The fused kernel has no float64 path (see pyfast.ops.attention), so float64 parity cannot be checked here."""
    with pytest.raises(TypeError, match="supported dtypes are float32, bfloat16 and float16"):
        model().double()(ids(1, 3), use_cache=True)


def test_bench_case_checks_and_runs():
    from pyfast.bench.generate import cases
    from pyfast.bench.harness import run_case

    (case,) = cases(quick=True)
    result = run_case(case, repeat=1, warmup=0)  # runs the identical-tokens check first
    assert set(result.median_s) == {"generate, KV cache", "generate, no cache"}
