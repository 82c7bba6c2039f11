"""pyfast.nn: modules built on pyfast.ops."""
from .attention import MultiheadSelfAttention
from .kv_cache import KVCache
from .mlm import MLMHead, MLMOutput
from .pooling import CLSPooling, MeanPooling, cls_pooling, mean_pooling
from .sgns import SkipGramNS
from .transfer import TransferReport, embedding_from_word2vec

__all__ = [
    "MultiheadSelfAttention", "KVCache", "MLMHead", "MLMOutput", "SkipGramNS", "CLSPooling", "MeanPooling", "cls_pooling",
    "mean_pooling", "TransferReport", "embedding_from_word2vec",
]
