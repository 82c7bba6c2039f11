"""A small BERT (post-LayerNorm encoder as in the paper, or pre-LN with config.pre_norm) on pyfast attention, with
HF-shaped heads.

forward(input_ids, attention_mask=None, token_type_ids=None, labels=None) everywhere; labels of -100 are ignored.
BertForMaskedLM predicts only at labelled positions when labels are given (sparse prediction: the vocabulary
projection, the largest matmul of a small BERT, then costs ~15% of the dense one), so its logits are (M, V) there.
Limits: absolute learned positions up to config.max_position_embeddings; no cross-attention, no KV cache.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.pooling import mean_pooling
from ..nn.attention import MultiheadSelfAttention
from ..ops.masking import gather_masked
from .configuration import BertConfig
from .modeling_utils import (BaseModelOutput, MaskedLMOutput, ModelOutput, PreTrainedModel, check_input_ids,
                             mean_cross_entropy, to_key_padding_mask)


class BertEmbeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids=None):
        B, L = input_ids.shape
        positions = torch.arange(L, device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)[None]
        if token_type_ids is None:
            x = x + self.token_type_embeddings.weight[0]  # all segment 0: skip the gather
        else:
            x = x + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = MultiheadSelfAttention(config.hidden_size, config.num_attention_heads, bias=True,
                                                dropout=config.attention_probs_dropout_prob, causal=False)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.output_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.pre_norm = config.pre_norm

    def forward(self, x, key_padding_mask=None):  # x: (B, L, H)
        if self.pre_norm:  # the residual stream is never normalised: gradients reach the embeddings undamped
            x = x + self.dropout(self.attention(self.attention_norm(x), key_padding_mask=key_padding_mask))
            return x + self.dropout(self.output(F.gelu(self.intermediate(self.output_norm(x)))))
        x = self.attention_norm(x + self.dropout(self.attention(x, key_padding_mask=key_padding_mask)))
        return self.output_norm(x + self.dropout(self.output(F.gelu(self.intermediate(x)))))


class BertModel(PreTrainedModel):
    """The encoder. Output: last_hidden_state (B, L, H) (also as .hidden_states) and pooler_output (B, H)."""
    config_class = BertConfig
    base_model_prefix = "bert"  # so a head model's checkpoint ("bert.*") loads into the bare encoder

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.layers = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))
        # pre-LN leaves the last layer's output unnormalised: one LayerNorm closes the stack (as GPT-2's ln_f)
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.pre_norm else None
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, embedding: nn.Embedding) -> None:
        if embedding.embedding_dim != self.config.hidden_size:
            raise ValueError(f"set_input_embeddings: embedding dim {embedding.embedding_dim} != hidden size "
                             f"{self.config.hidden_size}")
        self.embeddings.word_embeddings = embedding

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        check_input_ids(input_ids, self.get_input_embeddings().num_embeddings,
                         self.config.max_position_embeddings, type(self).__name__)
        x = self.embeddings(input_ids, token_type_ids)
        key_padding_mask = to_key_padding_mask(attention_mask)
        for layer in self.layers:
            x = layer(x, key_padding_mask)
        if self.final_norm is not None:
            x = self.final_norm(x)
        pooled = torch.tanh(self.pooler(x[:, 0])) if self.pooler is not None else None
        return BaseModelOutput(hidden_states=x, last_hidden_state=x, pooler_output=pooled)


class BertLMHead(nn.Module):
    """transform (Linear, GELU, LayerNorm) then the vocabulary projection, whose weight is tied to the embeddings."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, h):  # h: (..., H) -> (..., V)
        return self.decoder(self.norm(F.gelu(self.dense(h))))


class BertForMaskedLM(PreTrainedModel):
    config_class = BertConfig
    base_model_prefix = "bert"
    _tied_keys = ("lm_head.decoder.weight",)

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.lm_head = BertLMHead(config)
        self.post_init()

    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings:
            self.lm_head.decoder.weight = self.bert.get_input_embeddings().weight

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        hidden = self.bert(input_ids, attention_mask, token_type_ids).last_hidden_state  # (B, L, H)
        if labels is None:
            return MaskedLMOutput(logits=self.lm_head(hidden), hidden_states=hidden)
        if labels.shape != input_ids.shape:
            raise ValueError(f"BertForMaskedLM: labels shape {tuple(labels.shape)} != input_ids shape "
                             f"{tuple(input_ids.shape)}")
        if self.config.sparse_prediction:
            hidden_at_masked, labels_at_masked = gather_masked(hidden, labels)  # (M, H), (M,)
            logits = self.lm_head(hidden_at_masked)                               # (M, V)
            loss = mean_cross_entropy(logits, labels_at_masked)
            return MaskedLMOutput(loss=loss, logits=logits, hidden_states=hidden, masked_labels=labels_at_masked)
        logits = self.lm_head(hidden)                                             # (B, L, V)
        loss = mean_cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=hidden)


def _classifier_head(config: BertConfig) -> tuple[nn.Dropout, nn.Linear]:
    """The dropout and Linear(hidden, num_labels) of HF's classification heads (classifier_dropout, else the hidden
    dropout)."""
    dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
    return nn.Dropout(dropout), nn.Linear(config.hidden_size, config.num_labels)


class BertForSequenceClassification(PreTrainedModel):
    """pooler (tanh(Linear(CLS))) -> dropout -> Linear. Loss as HF: MSE for num_labels == 1, cross-entropy for
    integer labels (-100 ignored), BCE-with-logits for float multi-label targets. With config.classifier_pooling
    "mean" the pooler reads the attention-masked mean of the tokens instead of [CLS] (as ModernBERT's option): an
    MLM-pretrained encoder never trained its [CLS] vector, its token vectors it did."""
    config_class = BertConfig
    base_model_prefix = "bert"

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=True)
        self.dropout, self.classifier = _classifier_head(config)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        out = self.bert(input_ids, attention_mask, token_type_ids)
        pooled = out.pooler_output                                  # (B, H)
        if self.config.classifier_pooling == "mean":
            pooled = torch.tanh(self.bert.pooler(mean_pooling(out.last_hidden_state, attention_mask)))
        logits = self.classifier(self.dropout(pooled))              # (B, num_labels)
        loss = None
        if labels is not None:
            loss = self._loss(logits, labels)
        return ModelOutput(loss=loss, logits=logits, hidden_states=out.last_hidden_state)

    def _loss(self, logits, labels):
        problem = self.config.problem_type
        if problem is None:
            if self.config.num_labels == 1:
                problem = "regression"
            elif labels.dtype in (torch.int64, torch.int32):
                problem = "single_label_classification"
            else:
                problem = "multi_label_classification"
        if problem == "regression":
            return F.mse_loss(logits.squeeze(-1).float(), labels.float().reshape(logits.shape[0]))
        if problem == "single_label_classification":
            return mean_cross_entropy(logits, labels.reshape(-1))
        if problem == "multi_label_classification":
            return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
        raise ValueError(f"BertForSequenceClassification: unknown problem_type {problem!r}")


class BertForTokenClassification(PreTrainedModel):
    """dropout -> Linear on every token: logits (B, L, num_labels); cross-entropy with -100 ignored."""
    config_class = BertConfig
    base_model_prefix = "bert"

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.dropout, self.classifier = _classifier_head(config)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        hidden = self.bert(input_ids, attention_mask, token_type_ids).last_hidden_state
        logits = self.classifier(self.dropout(hidden))
        loss = None
        if labels is not None:
            loss = mean_cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return ModelOutput(loss=loss, logits=logits, hidden_states=hidden)
