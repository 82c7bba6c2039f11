"""pyfast.ops"""
from .attention import attention_varlen, scaled_dot_product_attention

__all__ = ["scaled_dot_product_attention", "attention_varlen"]

# CUDA kernels of the custom ops above (issue #8): registered per device, so GPU tensors route to them. Guarded:
# importing pyfast never fails because of the CUDA side (the kernels raise at call time when not built).
try:
    from . import attention_cuda as _attention_cuda  # noqa: F401
except Exception:  # pragma: no cover
    pass
