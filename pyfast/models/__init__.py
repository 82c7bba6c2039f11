"""pyfast.models: small BERT and GPT (HF-shaped forward/outputs/save-load) built on pyfast kernels."""
from .bert import (BertForMaskedLM, BertForSequenceClassification, BertForTokenClassification, BertModel)
from .configuration import BertConfig, GPTConfig
from .gpt import GPTLMHeadModel, GPTModel
from .modeling_utils import (BaseModelOutput, BaseModelOutputWithPast, CausalLMOutputWithPast, MaskedLMOutput,
                             ModelOutput, PreTrainedModel)
from .tokenization import WordPieceTokenizer

__all__ = ["BertConfig", "BertModel", "BertForMaskedLM", "BertForSequenceClassification", "BertForTokenClassification",
           "GPTConfig", "GPTModel", "GPTLMHeadModel", "ModelOutput", "BaseModelOutput", "BaseModelOutputWithPast",
           "CausalLMOutputWithPast", "MaskedLMOutput",
           "PreTrainedModel", "WordPieceTokenizer"]
