"""symbreak_fast: counter-based, bit-reproducible neural-network weight initialization.

Importing this package imports NumPy only; Numba kernels compile (or load from
the on-disk cache) and CuPy is imported on first use.
"""
from ._key import Key
from .init import (calculate_gain, constant, dirac, eye, fan_in_fan_out, glorot_normal, glorot_uniform,
                   he_normal, he_uniform, identity, init_params, kaiming_normal, kaiming_uniform, lecun_normal,
                   lecun_uniform, ones, orthogonal, register_initializer, sparse, variance_scaling,
                   xavier_normal, xavier_uniform, zeros)
from . import lab
from .checkpoint import save_init
from .mlp import MLP, DivergenceError
from .presets import PRESETS, preset, preset_names
from .random import (available_backends, normal, random_bits, truncated_normal, uniform, use_backend,
                     which_backend)

__version__ = "0.1.0"

__all__ = ["Key", "random_bits", "uniform", "normal", "truncated_normal", "available_backends",
           "which_backend", "use_backend", "__version__",
           "variance_scaling", "xavier_uniform", "glorot_uniform", "xavier_normal", "glorot_normal",
           "he_uniform", "kaiming_uniform", "he_normal", "kaiming_normal", "lecun_uniform", "lecun_normal",
           "zeros", "ones", "constant", "orthogonal", "identity", "eye", "dirac", "sparse",
           "calculate_gain", "fan_in_fan_out", "init_params", "register_initializer",
           "preset", "preset_names", "PRESETS", "save_init", "MLP", "DivergenceError", "lab"]
