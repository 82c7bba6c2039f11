"""pyfast.data: what feeds the kernels: the MLM collator (collators.py) and the word2vec samplers."""
from .collators import DataCollatorForLanguageModeling, word_starts_from_continuation

__all__ = ["DataCollatorForLanguageModeling", "word_starts_from_continuation"]
