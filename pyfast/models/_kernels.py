"""The one place where pyfast.models, the examples and the demo reach the pyfast kernels (attention, masking,
word2vec). Imports name the defining modules (pyfast.word2vec, pyfast.nn.attention, ...), not the package roots,
so they never depend on the order of the imports in pyfast/__init__.py.
"""
from __future__ import annotations

from pyfast.data import DataCollatorForLanguageModeling
from pyfast.nn.attention import MultiheadSelfAttention
from pyfast.ops.attention import scaled_dot_product_attention
from pyfast.ops.masking import gather_masked, mask_tokens
from pyfast.word2vec import Word2Vec

__all__ = ["scaled_dot_product_attention", "MultiheadSelfAttention", "gather_masked", "mask_tokens",
           "DataCollatorForLanguageModeling", "Word2Vec"]
