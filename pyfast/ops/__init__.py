"""pyfast.ops"""
from .sgns import NoiseSampler, advise_hugepages, sample_negatives, sgns_loss, skipgram_pairs

__all__ = ["NoiseSampler", "advise_hugepages", "sample_negatives", "sgns_loss", "skipgram_pairs"]
