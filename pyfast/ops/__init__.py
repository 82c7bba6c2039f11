"""pyfast.ops: functional ops on tensors."""
from .attention import attention_varlen, scaled_dot_product_attention
from .masking import gather_masked, mask_tokens
from ..data.samplers import NoiseSampler, sample_negatives, skipgram_pairs  # re-exported: they feed sgns_loss
from .sgns import advise_hugepages, sgns_loss

__all__ = [
    "scaled_dot_product_attention", "attention_varlen", "mask_tokens", "gather_masked", "sgns_loss",
    "sample_negatives", "NoiseSampler", "skipgram_pairs", "advise_hugepages",
]

# CUDA kernels of the custom ops above (issue #8): registered per device, so GPU tensors route to them. Guarded:
# importing pyfast never fails because of the CUDA side (the kernels raise at call time when not built).
try:
    from . import attention_cuda as _attention_cuda  # noqa: F401
except Exception:  # pragma: no cover
    pass
