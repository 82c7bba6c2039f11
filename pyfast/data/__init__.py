"""pyfast.data: what feeds the kernels: the MLM collator (collators.py), the word2vec samplers (samplers.py) and
Fashion-MNIST read from its IDX files (images.py)."""
from .collators import DataCollatorForLanguageModeling, DataCollatorForMLMWithFlattening, \
    word_starts_from_continuation, word_starts_from_offsets
from .images import FASHION_MNIST_CLASSES, load_fashion_mnist, read_idx
from .samplers import NoiseSampler, sample_negatives, skipgram_pairs

__all__ = [
    "DataCollatorForLanguageModeling", "DataCollatorForMLMWithFlattening", "word_starts_from_continuation",
    "word_starts_from_offsets",
    "NoiseSampler", "sample_negatives", "skipgram_pairs",
    "FASHION_MNIST_CLASSES", "load_fashion_mnist", "read_idx",
]
