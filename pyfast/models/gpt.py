"""A small GPT (pre-LayerNorm decoder, GPT-2 layout) on pyfast causal attention, with a KV cache and generate().

GPTLMHeadModel.forward(input_ids, attention_mask=None, token_type_ids=None, labels=None, past_key_values=None,
use_cache=None): labels are shifted inside (position t predicts token t+1), -100 ignored, as in HF. With
use_cache=True the output's past_key_values is a pyfast.nn.KVCache (created for n_positions tokens when none is
passed); feed it back with only the new tokens, whose positions continue after the cached ones (attention_mask, if
given, then covers cached + new tokens, as in HF). generate() uses the cache by default: the prompt is run once, then
one token per step. Absolute positions cap prompt + generated at n_positions with the cache (use_cache=True beyond
that is a clear error); past it the default falls back to a window sliding over the last n_positions tokens,
recomputed each step.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.attention import MultiheadSelfAttention
from ..nn.kv_cache import KVCache
from .configuration import GPTConfig
from .modeling_utils import (BaseModelOutputWithPast, CausalLMOutputWithPast, PreTrainedModel, check_input_ids,
                             mean_cross_entropy, to_key_padding_mask)


class GPTBlock(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        inner = config.n_inner or 4 * config.n_embd
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = MultiheadSelfAttention(config.n_embd, config.n_head, num_kv_heads=config.n_kv_head, bias=True,
                                           dropout=config.dropout, causal=True)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.c_fc = nn.Linear(config.n_embd, inner)
        self.c_proj = nn.Linear(inner, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x, key_padding_mask=None, kv_cache=None, layer_idx=0):  # x: (B, L, E)
        x = x + self.dropout(self.attn(self.ln_1(x), key_padding_mask=key_padding_mask, kv_cache=kv_cache,
                                       layer_idx=layer_idx))
        return x + self.dropout(self.c_proj(F.gelu(self.c_fc(self.ln_2(x)))))


class GPTModel(PreTrainedModel):
    """The decoder stack. Output: last_hidden_state (B, L, E) after the final LayerNorm (also .hidden_states), and
    past_key_values (the KVCache) when use_cache."""
    config_class = GPTConfig
    base_model_prefix = "transformer"  # so a GPTLMHeadModel checkpoint loads into the bare decoder

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(GPTBlock(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.post_init()

    def _init_weights(self, module):
        super()._init_weights(module)
        # GPT-2: residual projections scaled by 1/sqrt(2 * n_layer) so the residual stream's variance stays O(1).
        for block in getattr(module, "h", []):
            nn.init.normal_(block.c_proj.weight, std=self.config.initializer_range / math.sqrt(2 * self.config.n_layer))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.wte

    def set_input_embeddings(self, embedding: nn.Embedding) -> None:
        if embedding.embedding_dim != self.config.n_embd:
            raise ValueError(f"set_input_embeddings: embedding dim {embedding.embedding_dim} != n_embd "
                             f"{self.config.n_embd}")
        self.wte = embedding

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, past_key_values=None,
                use_cache=None):
        who = type(self).__name__
        check_input_ids(input_ids, self.wte.num_embeddings, self.config.n_positions, who)
        cache = past_key_values
        if cache is not None and not isinstance(cache, KVCache):
            raise TypeError(f"{who}: past_key_values must be a pyfast.nn.KVCache (from a forward with use_cache=True), "
                            f"got {type(cache).__name__}")
        if cache is None and use_cache:
            cache = KVCache(self.config.n_positions)
        past = cache.get_seq_length() if cache is not None else 0
        if past + input_ids.shape[1] > self.config.n_positions:
            raise ValueError(f"{who}: {past} cached + {input_ids.shape[1]} new tokens exceed the "
                             f"{self.config.n_positions} positions of the model")
        positions = torch.arange(past, past + input_ids.shape[1], device=input_ids.device)
        x = self.drop(self.wte(input_ids) + self.wpe(positions)[None])
        key_padding_mask = to_key_padding_mask(attention_mask)
        for i, block in enumerate(self.h):
            x = block(x, key_padding_mask, cache, i)
        x = self.ln_f(x)
        return BaseModelOutputWithPast(hidden_states=x, last_hidden_state=x,
                                       past_key_values=cache if use_cache or past_key_values is not None else None)


class GPTLMHeadModel(PreTrainedModel):
    config_class = GPTConfig
    base_model_prefix = "transformer"
    _tied_keys = ("lm_head.weight",)

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        self.transformer = GPTModel(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module):
        if module is self.transformer:
            return  # GPTModel initialised itself (with its scaled residual init); do not overwrite it
        super()._init_weights(module)

    def post_init(self):
        nn.init.normal_(self.lm_head.weight, std=self.config.initializer_range)
        self.tie_weights()

    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.transformer.get_input_embeddings().weight

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, past_key_values=None,
                use_cache=None):
        out = self.transformer(input_ids, attention_mask, past_key_values=past_key_values, use_cache=use_cache)
        hidden = out.last_hidden_state  # (B, L, E)
        logits = self.lm_head(hidden)   # (B, L, V)
        loss = None
        if labels is not None:
            if labels.shape != input_ids.shape:
                raise ValueError(f"GPTLMHeadModel: labels shape {tuple(labels.shape)} != input_ids shape "
                                 f"{tuple(input_ids.shape)}")
            # Shift the labels, not the logits: slicing logits[:, :-1] would copy the whole (B, L, V) tensor.
            shifted_labels = F.pad(labels[:, 1:], (0, 1), value=-100)  # position t is scored on token t+1
            loss = mean_cross_entropy(logits.view(-1, logits.shape[-1]), shifted_labels.reshape(-1))
        return CausalLMOutputWithPast(loss=loss, logits=logits, hidden_states=hidden,
                                      past_key_values=out.past_key_values)

    @torch.no_grad()
    def generate(self, input_ids, max_new_tokens: int = 20, do_sample: bool = False, temperature: float = 1.0,
                 top_k: int | None = None, eos_token_id: int | None = None, seed: int | None = None,
                 use_cache: bool | None = None):
        """input_ids (B, L) -> (B, L + n): greedy, or sampled (temperature, top_k) from a generator seeded by `seed`.
        Stops early once every row has produced eos_token_id (rows already done are padded with it).

        use_cache=True: the prompt runs once, then each step feeds only the new token against a KVCache sized to
        the L + max_new_tokens - 1 tokens fed, so a step costs O(length) instead of re-running the prefix; that
        needs L + max_new_tokens - 1 <= n_positions (else a ValueError). use_cache=False recomputes the prefix each
        step, cropped to the last n_positions tokens (a sliding window). None (default): the cache whenever it
        fits, else the window, so asking for more tokens than the model has positions still works as before.
        Both give the same tokens (up to float rounding of near-ties)."""
        if input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise ValueError(f"generate: input_ids must be (batch, length >= 1), got {tuple(input_ids.shape)}")
        if max_new_tokens < 0:
            raise ValueError(f"generate: max_new_tokens must be >= 0, got {max_new_tokens}")
        if do_sample and temperature <= 0:
            raise ValueError(f"generate: temperature must be > 0 when sampling, got {temperature}")
        batch, prompt_len = input_ids.shape
        n_positions = self.config.n_positions
        fed = prompt_len + max_new_tokens - 1  # the last generated token is never fed back
        if use_cache is None:
            use_cache = fed <= n_positions
        if use_cache and max_new_tokens > 0 and fed > n_positions:
            raise ValueError(f"generate: with use_cache=True the prompt ({prompt_len} tokens) + max_new_tokens "
                             f"({max_new_tokens}) - 1 must fit the model's {n_positions} positions; shorten them, or "
                             f"pass use_cache=False to slide a window over the last {n_positions} tokens")
        eos = self.config.eos_token_id if eos_token_id is None else eos_token_id
        gen = torch.Generator(device=input_ids.device)
        if seed is not None:
            gen.manual_seed(seed)
        else:
            gen.seed()
        if max_new_tokens == 0:
            return input_ids
        was_training = self.training
        self.eval()
        # One preallocated output, filled a column per step (torch.cat per step would copy the whole prefix).
        out = input_ids.new_empty(batch, prompt_len + max_new_tokens)  # (B, L + n)
        out[:, :prompt_len] = input_ids
        done = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
        cache = KVCache(fed) if use_cache else None
        length = prompt_len
        step_ids = input_ids
        for step in range(max_new_tokens):
            if cache is None:
                step_ids = out[:, max(0, length - n_positions):length]  # crop to the positions the model has
            hidden = self.transformer(step_ids, past_key_values=cache).last_hidden_state[:, -1]  # (B, E)
            logits = self.lm_head(hidden).float()                                                # (B, V)
            next_ids = self._pick(logits, do_sample, temperature, top_k, gen)
            if eos is not None:
                next_ids = torch.where(done, torch.full_like(next_ids, eos), next_ids)
                done |= next_ids == eos
            out[:, length] = next_ids.to(out.dtype)
            length += 1
            step_ids = out[:, length - 1:length]  # (B, 1): the only new token the cache has not seen
            if eos is not None and bool(done.all()):
                break
        self.train(was_training)
        return out[:, :length]

    @staticmethod
    def _pick(logits, do_sample, temperature, top_k, gen):
        """logits (B, V) float32 -> next token ids (B,): argmax, or a draw from softmax(logits / T) over the top_k."""
        if not do_sample:
            return logits.argmax(dim=-1)
        logits = logits / temperature
        if top_k is not None and 0 < top_k < logits.shape[-1]:
            kth = torch.topk(logits, top_k).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=gen).squeeze(1)
