"""symbreak_fast: counter-based, bit-reproducible neural-network weight initialization.

Importing this package imports NumPy only; Numba kernels compile (or load from
the on-disk cache) on first use.
"""
from ._key import Key
from .random import available_backends, normal, random_bits, truncated_normal, uniform, which_backend

__version__ = "0.1.0"

__all__ = ["Key", "random_bits", "uniform", "normal", "truncated_normal", "available_backends",
           "which_backend", "__version__"]
