"""The NumPy backend: the specification in _spec evaluated directly.

Readable and slow (every element recomputes its Philox block). It is the
reference every other backend is tested against, and the auto choice for
small tensors, where it beats the Numba dispatch overhead.
"""
from __future__ import annotations

import numpy as np

from .. import _spec as S
from .._request import Request, is_bfloat16

NAME = "numpy"
_CHUNK = 1 << 18  # elements per pass: bounds the temporaries to a few MiB


def _standard(req: Request, g: np.ndarray) -> np.ndarray:
    k0, k1 = np.uint32(req.k0), np.uint32(req.k1)
    if req.compute == "float32":
        c = np.float32
        if req.dist == "uniform":
            return S.standard_uniform_float32_elements(g, k0, k1)
        if req.dist == "normal":
            return S.standard_normal_float32_elements(g, k0, k1)
        u = S.open_uniform_float32_elements(g, k0, k1)
        return S.truncated_standard_normal_float32(u, c(req.pa), c(req.qb), c(req.mass))
    c = np.float64
    if req.dist == "uniform":
        return S.standard_uniform_float64_elements(g, k0, k1)
    if req.dist == "normal":
        return S.standard_normal_float64_elements(g, k0, k1)
    u = S.open_uniform_float64_elements(g, k0, k1)
    return S.truncated_standard_normal_float64(u, c(req.pa), c(req.qb), c(req.mass))


def _values(req: Request, g: np.ndarray) -> np.ndarray:
    """Output values (uint16 bits for float16/bfloat16) for global indices g."""
    if req.dist == "bits":
        return S.random_bits_elements(g, np.uint32(req.k0), np.uint32(req.k1))
    c = np.float64 if req.compute == "float64" else np.float32
    y = S.affine_clamp(_standard(req, g), c(req.shift), c(req.scale), c(req.lo), c(req.hi))
    if is_bfloat16(req.dtype):
        return S.round_float32_to_bfloat16_bits(y)
    if req.dtype == np.float16:
        return S.round_float32_to_float16_bits(y)
    return y


def generate(req: Request, out_flat: np.ndarray) -> None:
    """Fill the 1-D C-contiguous ``out_flat`` (uint16 view for 16-bit floats)."""
    row_starts, row_len = req.rows()
    total = row_starts.size * row_len
    step = max(1, _CHUNK // max(row_len, 1))
    for r0 in range(0, row_starts.size, step):
        rs = row_starts[r0:r0 + step]
        if row_len <= _CHUNK:
            g = (rs[:, None] + np.arange(row_len, dtype=np.int64)[None, :]).ravel()
            out_flat[r0 * row_len: r0 * row_len + g.size] = _values(req, g)
        else:
            for c0 in range(0, row_len, _CHUNK):
                n = min(_CHUNK, row_len - c0)
                g = rs[0] + c0 + np.arange(n, dtype=np.int64)
                out_flat[r0 * row_len + c0: r0 * row_len + c0 + n] = _values(req, g)
    assert total == out_flat.size
