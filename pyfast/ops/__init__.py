"""pyfast.ops: functional ops on tensors."""
from .masking import gather_masked, mask_tokens

__all__ = ["mask_tokens", "gather_masked"]
