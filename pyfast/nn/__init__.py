"""pyfast.nn"""
from .attention import MultiheadSelfAttention

__all__ = ["MultiheadSelfAttention"]
