"""pyfast.data: what feeds the kernels: the MLM collator (collators.py) and the word2vec samplers (samplers.py)."""
from .collators import DataCollatorForLanguageModeling, word_starts_from_continuation
from .samplers import NoiseSampler, sample_negatives, skipgram_pairs

__all__ = [
    "DataCollatorForLanguageModeling", "word_starts_from_continuation",
    "NoiseSampler", "sample_negatives", "skipgram_pairs",
]
