"""pyfast: native kernels for pre-training (word2vec, fused attention, masked-token sampling).

Public names only; see README.md for what works today.
"""
import os as _os


def _use_installed_native_modules() -> None:
    """Let `python -m pyfast` and `python -m pytest` work from the repository root after `pip install .`.

    Run from a checkout, Python imports this source folder, which has no compiled `_C` (unless built in place
    with .ci/dev-build). Then the compiled modules of the installed distribution are added to this package's
    search path, so `pyfast._C` resolves to site-packages while the Python files come from the checkout.
    """
    here = _os.path.dirname(_os.path.abspath(__file__))
    if any(name.startswith("_C.") for name in _os.listdir(here)):
        return
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        dist = distribution("pyfast")
    except (ImportError, PackageNotFoundError):
        return
    for f in dist.files or []:
        if len(f.parts) == 2 and f.parts[0] == "pyfast" and f.name.startswith("_C."):
            installed = _os.path.dirname(_os.path.abspath(str(dist.locate_file(f))))
            if installed != here and installed not in __path__:
                __path__.append(installed)
            return


_use_installed_native_modules()

from ._info import empty_cache, get_num_threads, info, set_num_threads  # noqa: E402
from .data import (  # noqa: E402
    DataCollatorForLanguageModeling,
    DataCollatorForMLMWithFlattening,
    NoiseSampler,
    sample_negatives,
    skipgram_pairs,
)
from .nn import KVCache, MLMHead, MultiheadSelfAttention, SkipGramNS  # noqa: E402
from .ops import (  # noqa: E402
    attention_varlen,
    gather_masked,
    mask_tokens,
    scaled_dot_product_attention,
    sgns_loss,
    sgns_sgd_step,
)
from .word2vec import KeyedVectors, Word2Vec  # noqa: E402

try:
    from importlib.metadata import version as _version

    __version__ = _version("pyfast")
except Exception:  # running from a source tree without an installed distribution
    __version__ = info()["version"]

from . import models, nn, ops  # noqa: E402  (pyfast.models.BertForMaskedLM, pyfast.nn.MeanPooling, ...)
from .features import FeatureExtractor, extract_features  # noqa: E402

__all__ = [
    "__version__", "info", "set_num_threads", "get_num_threads", "empty_cache",
    # attention
    "scaled_dot_product_attention", "attention_varlen", "MultiheadSelfAttention",
    # word2vec
    "Word2Vec", "KeyedVectors",
    # masking
    "mask_tokens", "gather_masked", "MLMHead", "DataCollatorForLanguageModeling",
    "DataCollatorForMLMWithFlattening",
    # SGNS op
    "sgns_loss", "sgns_sgd_step", "sample_negatives", "NoiseSampler", "skipgram_pairs", "SkipGramNS",
    # generation and feature extraction (#19)
    "KVCache", "extract_features", "FeatureExtractor",
    # subpackages
    "models", "nn", "ops",
]
