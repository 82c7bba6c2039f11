"""pyfast.models: small BERT, GPT and ViT (HF-shaped forward/outputs/save-load) built on pyfast kernels."""
from .bert import (BertForMaskedLM, BertForSequenceClassification, BertForTokenClassification, BertModel)
from .configuration import BertConfig, GPTConfig
from .gpt import GPTLMHeadModel, GPTModel
from .modeling_utils import (BaseModelOutput, BaseModelOutputWithPast, CausalLMOutputWithPast, MaskedLMOutput,
                             ModelOutput, PreTrainedModel)
from .tokenization import WordPieceTokenizer
from .vit import MAEOutput, ViT, ViTConfig, ViTForImageClassification, ViTForMaskedImageModeling, ViTModel

__all__ = ["BertConfig", "BertModel", "BertForMaskedLM", "BertForSequenceClassification", "BertForTokenClassification",
           "GPTConfig", "GPTModel", "GPTLMHeadModel", "ModelOutput", "BaseModelOutput", "BaseModelOutputWithPast",
           "CausalLMOutputWithPast", "MaskedLMOutput",
           "PreTrainedModel", "WordPieceTokenizer", "ViT", "ViTConfig", "ViTModel", "ViTForImageClassification",
           "ViTForMaskedImageModeling", "MAEOutput"]
