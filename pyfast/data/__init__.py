"""pyfast.data: what feeds the kernels: the MLM collator (collators.py) and the word2vec samplers (samplers.py)."""
from .collators import DataCollatorForLanguageModeling, DataCollatorForMLMWithFlattening, \
    word_starts_from_continuation, word_starts_from_offsets
from .samplers import NoiseSampler, sample_negatives, skipgram_pairs

__all__ = [
    "DataCollatorForLanguageModeling", "DataCollatorForMLMWithFlattening", "word_starts_from_continuation",
    "word_starts_from_offsets",
    "NoiseSampler", "sample_negatives", "skipgram_pairs",
]
