"""pyfast: native kernels for pre-training (word2vec, fused attention, masked-token sampling).

Public names only; see README.md for what works today.
"""
from ._info import get_num_threads, info, set_num_threads
from .nn.sgns import SkipGramNS
from .ops.sgns import NoiseSampler, sample_negatives, sgns_loss, skipgram_pairs

try:
    from importlib.metadata import version as _version

    __version__ = _version("pyfast")
except Exception:  # running from a source tree without an installed distribution
    __version__ = info()["version"]

__all__ = ["__version__", "info", "set_num_threads", "get_num_threads",
           "sgns_loss", "sample_negatives", "NoiseSampler", "skipgram_pairs", "SkipGramNS"]
