"""pyfast.ops: functional ops on tensors."""
from .attention import attention_varlen, scaled_dot_product_attention
from .masking import gather_masked, mask_tokens
from .sgns import advise_hugepages, sgns_loss

# The samplers live with the data utilities (pyfast.data.samplers); re-exported here because they feed sgns_loss.
from ..data.samplers import NoiseSampler, sample_negatives, skipgram_pairs  # noqa: E402

__all__ = [
    "scaled_dot_product_attention", "attention_varlen", "mask_tokens", "gather_masked", "sgns_loss",
    "sample_negatives", "NoiseSampler", "skipgram_pairs", "advise_hugepages",
]
