"""pyfast.ops"""
from .attention import attention_varlen, scaled_dot_product_attention

__all__ = ["scaled_dot_product_attention", "attention_varlen"]
