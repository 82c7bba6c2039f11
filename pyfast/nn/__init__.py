"""pyfast.nn: modules built on pyfast.ops."""
from .attention import MultiheadSelfAttention
from .mlm import MLMHead, MLMOutput

__all__ = ["MultiheadSelfAttention", "MLMHead", "MLMOutput"]
