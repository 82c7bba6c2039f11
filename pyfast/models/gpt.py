"""A small GPT (pre-LayerNorm decoder, GPT-2 layout) on pyfast causal attention, with generate().

GPTLMHeadModel.forward(input_ids, attention_mask=None, token_type_ids=None, labels=None): labels are shifted inside
(position t predicts token t+1), -100 ignored, as in HF. generate() re-runs the prefix each step (no KV cache): fine
for the small models and short samples this is for, quadratic in the generated length.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.attention import MultiheadSelfAttention
from .configuration import GPTConfig
from .modeling_utils import (BaseModelOutput, ModelOutput, PreTrainedModel, check_input_ids, to_key_padding_mask,
                             mean_cross_entropy)


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

    def forward(self, x, key_padding_mask=None):  # x: (B, L, E)
        x = x + self.dropout(self.attn(self.ln_1(x), key_padding_mask=key_padding_mask))
        return x + self.dropout(self.c_proj(F.gelu(self.c_fc(self.ln_2(x)))))


class GPTModel(PreTrainedModel):
    """The decoder stack. Output: last_hidden_state (B, L, E) after the final LayerNorm (also .hidden_states)."""
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

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        check_input_ids(input_ids, self.wte.num_embeddings, self.config.n_positions, type(self).__name__)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.drop(self.wte(input_ids) + self.wpe(positions)[None])
        key_padding_mask = to_key_padding_mask(attention_mask)
        for block in self.h:
            x = block(x, key_padding_mask)
        x = self.ln_f(x)
        return BaseModelOutput(hidden_states=x, last_hidden_state=x)


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

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        hidden = self.transformer(input_ids, attention_mask).last_hidden_state  # (B, L, E)
        logits = self.lm_head(hidden)                                          # (B, L, V)
        loss = None
        if labels is not None:
            if labels.shape != input_ids.shape:
                raise ValueError(f"GPTLMHeadModel: labels shape {tuple(labels.shape)} != input_ids shape "
                                 f"{tuple(input_ids.shape)}")
            # Shift the labels, not the logits: slicing logits[:, :-1] would copy the whole (B, L, V) tensor.
            shifted_labels = F.pad(labels[:, 1:], (0, 1), value=-100)  # position t is scored on token t+1
            loss = mean_cross_entropy(logits.view(-1, logits.shape[-1]), shifted_labels.reshape(-1))
        return ModelOutput(loss=loss, logits=logits, hidden_states=hidden)

    @torch.no_grad()
    def generate(self, input_ids, max_new_tokens: int = 20, do_sample: bool = False, temperature: float = 1.0,
                 top_k: int | None = None, eos_token_id: int | None = None, seed: int | None = None):
        """input_ids (B, L) -> (B, L + n): greedy, or sampled (temperature, top_k) from a generator seeded by `seed`.
        Stops early once every row has produced eos_token_id (rows already done are padded with it)."""
        if input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise ValueError(f"generate: input_ids must be (batch, length >= 1), got {tuple(input_ids.shape)}")
        if max_new_tokens < 0:
            raise ValueError(f"generate: max_new_tokens must be >= 0, got {max_new_tokens}")
        if do_sample and temperature <= 0:
            raise ValueError(f"generate: temperature must be > 0 when sampling, got {temperature}")
        eos = self.config.eos_token_id if eos_token_id is None else eos_token_id
        gen = torch.Generator(device=input_ids.device)
        if seed is not None:
            gen.manual_seed(seed)
        else:
            gen.seed()
        was_training = self.training
        self.eval()
        out = input_ids
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for _ in range(max_new_tokens):
            window = out[:, -self.config.n_positions:]  # crop to the positions the model has
            logits = self(window).logits[:, -1].float()  # (B, V)
            if do_sample:
                logits = logits / temperature
                if top_k is not None and 0 < top_k < logits.shape[-1]:
                    kth = torch.topk(logits, top_k).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                next_ids = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=gen).squeeze(1)
            else:
                next_ids = logits.argmax(dim=-1)
            if eos is not None:
                next_ids = torch.where(done, torch.full_like(next_ids, eos), next_ids)
                done |= next_ids == eos
            out = torch.cat([out, next_ids[:, None].to(out.dtype)], dim=1)
            if eos is not None and bool(done.all()):
                break
        self.train(was_training)
        return out
