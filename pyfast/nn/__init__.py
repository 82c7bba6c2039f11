"""pyfast.nn"""
from .sgns import SkipGramNS

__all__ = ["SkipGramNS"]
