"""pyfast.ops: functional ops on tensors."""
from .attention import attention_varlen, scaled_dot_product_attention
from .masking import gather_masked, mask_tokens
from .patch_masking import PatchMask, random_patch_mask
from .sgns import advise_hugepages, sgns_loss
from .sgns_step import sgns_sgd_step

__all__ = ["scaled_dot_product_attention", "attention_varlen", "mask_tokens", "gather_masked", "random_patch_mask",
           "PatchMask", "sgns_loss", "sgns_sgd_step", "advise_hugepages"]

_MOVED_TO_DATA = ("NoiseSampler", "sample_negatives", "skipgram_pairs")


def __getattr__(name: str):
    """pyfast.ops.NoiseSampler & co. still resolve, with a DeprecationWarning: the samplers live with the data
    utilities (pyfast.data; also pyfast.NoiseSampler). Looked up lazily, so the ops never import the data layer
    (which imports the ops): no package cycle."""
    if name in _MOVED_TO_DATA:
        import importlib
        import warnings

        warnings.warn(f"pyfast.ops.{name} moved to pyfast.data.{name} (also pyfast.{name})", DeprecationWarning,
                      stacklevel=2)
        return getattr(importlib.import_module("pyfast.data.samplers"), name)
    raise AttributeError(f"module 'pyfast.ops' has no attribute {name!r}")
