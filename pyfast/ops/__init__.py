"""pyfast.ops: functional ops on tensors."""
from .attention import attention_varlen, scaled_dot_product_attention
from .masking import gather_masked, mask_tokens
from .sgns import NoiseSampler, advise_hugepages, sample_negatives, sgns_loss, skipgram_pairs

__all__ = [
    "scaled_dot_product_attention", "attention_varlen", "mask_tokens", "gather_masked", "sgns_loss",
    "sample_negatives", "NoiseSampler", "skipgram_pairs", "advise_hugepages",
]

# CUDA kernels of the custom ops above (issue #8): registered per device, so GPU tensors route to them. Guarded:
# importing pyfast never fails because of the CUDA side (the kernels raise at call time when not built).
try:
    from . import sgns_cuda as _sgns_cuda  # noqa: F401
except Exception:  # pragma: no cover
    pass
