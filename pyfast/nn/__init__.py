"""pyfast.nn: modules built on pyfast.ops."""
from .mlm import MLMHead, MLMOutput

__all__ = ["MLMHead", "MLMOutput"]
