"""pyfast.nn"""
from .attention import MultiheadSelfAttention
from .pooling import CLSPooling, MeanPooling, cls_pooling, mean_pooling
from .transfer import TransferReport, embedding_from_word2vec

__all__ = ["MultiheadSelfAttention", "CLSPooling", "MeanPooling", "cls_pooling", "mean_pooling", "TransferReport",
           "embedding_from_word2vec"]
