"""pyfast.nn: modules built on pyfast.ops."""
from .attention import MultiheadSelfAttention
from .mlm import MLMHead, MLMOutput
from .sgns import SkipGramNS

__all__ = ["MultiheadSelfAttention", "MLMHead", "MLMOutput", "SkipGramNS"]
