"""Shapes, ``index=`` slices and the row plan every backend fills.

A request is a global ``shape`` and a box inside it (``index``). The box is
cut into *rows*: runs of consecutive global flat indices that are also
consecutive in the (C-contiguous) output. Backends only ever see
``(row_starts, row_len)``; element ``o`` of row ``r`` is global element
``row_starts[r] + o`` and output element ``r * row_len + o``.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import numpy as np

# Global flat indices are int64 everywhere (NumPy's own limit for one array).
# The counter itself addresses 2**64 Philox blocks (2**66 32-bit words).
MAX_ELEMENTS = 2 ** 63 - 1
MAX_NDIM = 64           # numpy.ndarray's limit


class IndexOutOfRange(IndexError, ValueError):
    """An ``index=`` entry outside the tensor (both an IndexError and a ValueError)."""


def _as_int(v):
    """v as a Python int if it is an integer scalar (not bool), else None."""
    if type(v) is int:
        return v
    if isinstance(v, (bool, np.bool_)) or isinstance(v, np.ndarray) and v.ndim:
        return None
    try:
        return operator.index(v)
    except TypeError:
        return None


def normalize_shape(shape) -> tuple[int, ...]:
    if type(shape) is tuple and all(type(d) is int and 0 <= d for d in shape) and len(shape) < 8 \
            and math.prod(shape) <= MAX_ELEMENTS:
        return shape  # fast path: already normalized
    if isinstance(shape, (bool, np.bool_, str, bytes, set, frozenset, dict)) or \
            not (hasattr(shape, "__index__") or hasattr(shape, "__iter__")):
        # str/bytes iterate as characters, sets and dicts in no guaranteed shape order
        raise TypeError(f"shape must be an int or a sequence of ints such as (3, 4), got "
                        f"{type(shape).__name__} {shape!r}")
    if hasattr(shape, "__index__") and not (isinstance(shape, np.ndarray) and shape.ndim):
        shape = (shape,)
    shape = tuple(shape)
    if len(shape) > MAX_NDIM:
        raise ValueError(f"shape has {len(shape)} dims; NumPy arrays have at most {MAX_NDIM}")
    dims = []
    for d in shape:
        if _as_int(d) is None:
            raise TypeError(f"shape entries must be ints, got {type(d).__name__} {d!r} in {shape!r}")
        d = _as_int(d)
        if d < 0:
            raise ValueError(f"shape entries must be >= 0, got {d} in {shape!r}")
        dims.append(d)
    dims = tuple(dims)
    n = math.prod(dims)
    if n > MAX_ELEMENTS:
        raise ValueError(
            f"shape {dims} has {n} elements, more than the 2**63 - 1 that one counter stream "
            "addresses here; split the tensor into several named tensors (key.child(name))")
    return dims


@dataclass(frozen=True)
class Box:
    shape: tuple[int, ...]        # global shape
    starts: tuple[int, ...]       # per dim start of the box
    sizes: tuple[int, ...]        # per dim extent of the box
    out_shape: tuple[int, ...]    # shape of full[index] (int-indexed dims dropped)

    @property
    def size(self) -> int:
        return math.prod(self.sizes)

    @property
    def slices(self) -> tuple[slice, ...]:
        """The NumPy index selecting the box, every dim kept (reshape to out_shape to drop
        the int-indexed ones)."""
        return tuple(slice(st, st + sz) for st, sz in zip(self.starts, self.sizes))


def normalize_index(index, shape: tuple[int, ...]) -> Box:
    """The box that ``full[index]`` selects. ints and step-1 slices only."""
    if index is None:
        return Box(shape, (0,) * len(shape), shape, shape)
    if not isinstance(index, tuple):
        index = (index,)
    if len(index) > len(shape):
        raise IndexOutOfRange(f"index {index!r} has {len(index)} entries but the shape {shape} has "
                              f"{len(shape)} dims")
    starts, sizes, out_shape = [], [], []
    for ax, dim in enumerate(shape):
        it = index[ax] if ax < len(index) else slice(None)
        if isinstance(it, slice):
            if it.step is not None and _as_int(it.step) != 1:
                raise ValueError(f"index slices must have step 1 (got {it!r} on axis {ax}); "
                                 "generate the step-1 box and slice the result with [::step]")
            bounds = []
            for name, v in (("start", it.start), ("stop", it.stop)):
                if v is None:
                    bounds.append(None)
                    continue
                if isinstance(v, (bool, np.bool_)) or not hasattr(v, "__index__"):
                    raise TypeError(f"slice {name} must be an int, got {v!r} on axis {ax}")
                v = operator.index(v)
                if not -dim <= v <= dim:
                    raise IndexOutOfRange(f"slice {name} {v} is out of range for axis {ax} of size {dim}")
                bounds.append(v)
            lo, hi, _ = slice(bounds[0], bounds[1]).indices(dim)
            size = max(0, hi - lo)
            starts.append(lo if size else 0)
            sizes.append(size)
            out_shape.append(size)
        elif _as_int(it) is not None:
            i = _as_int(it)
            if not -dim <= i < dim:
                raise IndexOutOfRange(f"index {i} is out of range for axis {ax} of size {dim}")
            starts.append(i % dim)
            sizes.append(1)
        else:
            raise TypeError(f"index entries must be ints or step-1 slices, got {type(it).__name__} "
                            f"{it!r} on axis {ax} (Ellipsis, None and arrays are not supported)")
    return Box(shape, tuple(starts), tuple(sizes), tuple(out_shape))


def row_plan(box: Box) -> tuple[np.ndarray, int]:
    """(row_starts int64[n_rows], row_len) covering ``box`` in C order."""
    shape, starts, sizes = box.shape, box.starts, box.sizes
    nd = len(shape)
    if sizes == shape and box.size:      # whole tensor: one row
        return np.zeros(1, dtype=np.int64), box.size
    if nd == 0:
        return np.zeros(1, dtype=np.int64), 1
    if box.size == 0:
        return np.zeros(0, dtype=np.int64), 0
    # merge trailing dims that the box covers completely into one long row
    d = nd - 1
    while d > 0 and sizes[d] == shape[d]:
        d -= 1
    inner = math.prod(shape[d + 1:])
    row_len = sizes[d] * inner
    strides = [math.prod(shape[i + 1:]) for i in range(nd)]
    base = sum(starts[i] * strides[i] for i in range(nd))
    row_starts = np.full(1, base, dtype=np.int64)
    for i in range(d - 1, -1, -1):
        if sizes[i] > 1:
            offs = np.arange(sizes[i], dtype=np.int64) * np.int64(strides[i])
            row_starts = (offs[:, None] + row_starts[None, :]).ravel()
    return row_starts, row_len
