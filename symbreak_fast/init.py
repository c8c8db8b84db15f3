"""Weight initializers: one ``variance_scaling`` plus one-line presets, the classic
schemes, and ``init_params`` for whole models.

Every initializer is ``f(shape, key, ..., *, dtype="float32", index=None,
backend=None, device=None, out=None)`` and, like the generators, a pure function of
(key, shape, parameters): same bits on every backend, ``index=`` returns exactly
``full[index]``. ``device=`` is as for the generators (a cupy ``out=`` selects its
GPU); ``orthogonal`` on a GPU matches the CPU only to rounding (see its docstring).

Fan conventions (``fan_in_fan_out``):

* ``layout="io"`` (default; JAX/Keras and ``np.random.randn(n_in, n_out)``):
  shape ``(..., fan_in, fan_out)``; conv kernels ``(*kernel, in, out)``.
* ``layout="oi"`` (PyTorch): shape ``(out, in, *kernel)``.
* ``in_axis=`` / ``out_axis=`` (ints or tuples of ints) override the layout, as in
  ``jax.nn.initializers.variance_scaling``.

In both layouts the receptive field (product of the remaining dims) multiplies
both fans, as torch and JAX do.
"""
from __future__ import annotations

import contextlib
import math
import numbers
import operator
from collections.abc import Mapping
from typing import Callable

import numpy as np

from ._indexing import normalize_index, normalize_shape
from ._key import as_key
from . import _dispatch
from ._request import is_bfloat16, normalize_dtype
from .random import normal as _normal
from .random import check_host_alloc
from .random import place as _place
from .random import random_bits as _random_bits
from .random import truncated_normal as _truncated_normal
from .random import uniform as _uniform

# std of a standard normal truncated to (-2, 2): dividing by it makes the truncated
# normal's variance the requested one (as jax.nn.initializers / Keras do)
TRUNCATED_NORMAL_STD_2 = 0.87962566103423978

_MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
_DISTRIBUTIONS = ("truncated_normal", "normal", "untruncated_normal", "uniform")


# ---------------------------------------------------------------------------
# fans and gains
# ---------------------------------------------------------------------------
def _axes(ax, ndim, name):
    if isinstance(ax, numbers.Integral) and not isinstance(ax, bool):
        axes = (ax,)
    elif isinstance(ax, (tuple, list)):
        axes = tuple(ax)
    else:
        raise ValueError(f"{name}={ax!r} is not a valid axis for a {ndim}-D shape (use an int or a tuple of ints)")
    out = []
    for a in axes:
        if isinstance(a, bool) or not isinstance(a, numbers.Integral) or not -ndim <= a < ndim:
            raise ValueError(f"{name}={ax!r} is not a valid axis for a {ndim}-D shape")
        out.append(operator.index(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{name}={ax!r} names an axis twice")
    return tuple(out)


def fan_in_fan_out(shape, layout: str = "io", in_axis=None, out_axis=None) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of ``shape``; see the module docstring."""
    shape = normalize_shape(shape)
    nd = len(shape)
    if layout not in ("io", "oi"):
        raise ValueError(f"layout must be 'io' (JAX/Keras: (..., in, out)) or 'oi' (PyTorch: (out, in, *kernel)), "
                         f"got {layout!r}")
    if nd < 2:
        raise ValueError(f"fan-based initializers need a tensor with at least 2 dims, got shape {shape}; "
                         "use normal/uniform with an explicit std or bound for biases and vectors")
    if in_axis is not None or out_axis is not None:
        ia = _axes(-2 if in_axis is None else in_axis, nd, "in_axis")
        oa = _axes(-1 if out_axis is None else out_axis, nd, "out_axis")
        if set(ia) & set(oa):
            raise ValueError(f"in_axis {in_axis} and out_axis {out_axis} overlap")
        rf = math.prod(d for i, d in enumerate(shape) if i not in ia and i not in oa)
        return math.prod(shape[i] for i in ia) * rf, math.prod(shape[i] for i in oa) * rf
    if layout == "io":
        rf = math.prod(shape[:-2])
        return shape[-2] * rf, shape[-1] * rf
    if layout == "oi":
        rf = math.prod(shape[2:])
        return shape[1] * rf, shape[0] * rf
    raise ValueError(f"layout must be 'io' (JAX/Keras: (..., in, out)) or 'oi' (PyTorch: (out, in, *kernel)), "
                     f"got {layout!r}")


_GAIN_ONE = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
             "conv_transpose3d", "sigmoid")


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The recommended gain for ``nonlinearity`` (PyTorch's table and errors)."""
    if nonlinearity in _GAIN_ONE:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif not isinstance(param, bool) and isinstance(param, (int, float)) and math.isfinite(param) \
                and abs(param) < 1e150:        # slope ** 2 stays finite
            slope = param
        else:
            raise ValueError(f"negative_slope {param} not a valid number (pass a finite number such as 0.01)")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _fan(fan_in, fan_out, mode):
    if mode == "fan_in":
        return fan_in
    if mode == "fan_out":
        return fan_out
    if mode == "fan_avg":
        return (fan_in + fan_out) / 2.0
    if mode == "fan_geo_avg":
        return math.sqrt(fan_in * fan_out)
    raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")


def variance_scaling_params(shape, scale=1.0, mode="fan_in", distribution="truncated_normal", *,
                            layout="io", in_axis=None, out_axis=None) -> tuple[str, float]:
    """("uniform", bound) or ("normal" | "truncated_normal", std) that ``variance_scaling`` draws with.

    variance = scale / max(1, fan); uniform bound = sqrt(3 variance); truncated
    normal std = sqrt(variance) / 0.87962566103423978 (truncated to [-2, 2] std).
    """
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not scale > 0 \
            or not math.isfinite(scale):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    if distribution not in _DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {_DISTRIBUTIONS}, got {distribution!r}")
    fan_in, fan_out = fan_in_fan_out(shape, layout, in_axis, out_axis)
    variance = scale / max(1.0, _fan(fan_in, fan_out, mode))
    if distribution == "uniform":
        return "uniform", math.sqrt(3.0 * variance)
    if distribution == "truncated_normal":
        return "truncated_normal", math.sqrt(variance) / TRUNCATED_NORMAL_STD_2
    return "normal", math.sqrt(variance)


def _draw(kind, value, shape, key, dtype, index, backend, device, out):
    kw = dict(dtype=dtype, index=index, backend=backend, device=device, out=out)
    if kind == "uniform":
        return _uniform(shape, key, -value, value, **kw)
    if kind == "truncated_normal":
        return _truncated_normal(shape, key, 0.0, value, -2.0, 2.0, **kw)
    return _normal(shape, key, 0.0, value, **kw)


# ---------------------------------------------------------------------------
# the single implementation and its presets
# ---------------------------------------------------------------------------
def variance_scaling(shape, key, scale=1.0, mode="fan_in", distribution="truncated_normal", *,
                     layout="io", in_axis=None, out_axis=None, dtype="float32", index=None, backend=None,
                     device=None, out=None):
    """Zero-mean draw with variance ``scale / fan`` (jax.nn.initializers.variance_scaling).

    ``mode``: fan_in | fan_out | fan_avg | fan_geo_avg. ``distribution``:
    truncated_normal (to [-2, 2] std, std corrected by 0.8796... so the variance is as
    requested) | normal (alias untruncated_normal) | uniform (bound sqrt(3 var)).
    """
    kind, value = variance_scaling_params(shape, scale, mode, distribution, layout=layout, in_axis=in_axis,
                                          out_axis=out_axis)
    return _draw(kind, value, shape, key, dtype, index, backend, device, out)


def _fan_kwargs(layout, in_axis, out_axis, dtype, index, backend, device, out):
    return dict(layout=layout, in_axis=in_axis, out_axis=out_axis, dtype=dtype, index=index, backend=backend,
                device=device, out=out)


def _check_gain(gain):
    if isinstance(gain, bool) or not isinstance(gain, numbers.Real) or not math.isfinite(gain) \
            or not gain > 0 or not 0 < float(gain) * float(gain) < math.inf:
        raise ValueError(f"gain must be a positive finite number (with 0 < gain**2 < inf), got {gain!r}")
    return float(gain)


def xavier_uniform(shape, key, gain=1.0, *, layout="io", in_axis=None, out_axis=None, dtype="float32",
                   index=None, backend=None, device=None, out=None):
    """U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)) (torch.nn.init.xavier_uniform_, glorot_uniform)."""
    return variance_scaling(shape, key, _check_gain(gain) ** 2, "fan_avg", "uniform",
                            **_fan_kwargs(layout, in_axis, out_axis, dtype, index, backend, device, out))


def _normal_kind(distribution):
    if distribution not in ("normal", "untruncated_normal", "truncated_normal"):
        raise ValueError(f"the *_normal presets take distribution='normal' or 'truncated_normal', got "
                         f"{distribution!r}; use the *_uniform preset for a uniform draw")
    return distribution


def xavier_normal(shape, key, gain=1.0, *, distribution="normal", layout="io", in_axis=None, out_axis=None,
                  dtype="float32", index=None, backend=None, device=None, out=None):
    """N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)); plain normal like torch.

    ``distribution="truncated_normal"`` gives jax/Keras glorot_normal (same variance)."""
    return variance_scaling(shape, key, _check_gain(gain) ** 2, "fan_avg", _normal_kind(distribution),
                            **_fan_kwargs(layout, in_axis, out_axis, dtype, index, backend, device, out))


def _kaiming_scale(a, mode, nonlinearity):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out' for He/Kaiming init, got {mode!r}")
    return calculate_gain(nonlinearity, a) ** 2


def he_uniform(shape, key, a=0.0, mode="fan_in", nonlinearity="leaky_relu", *, layout="io", in_axis=None,
               out_axis=None, dtype="float32", index=None, backend=None, device=None, out=None):
    """U(-b, b), b = gain * sqrt(3 / fan) with gain = calculate_gain(nonlinearity, a)
    (torch.nn.init.kaiming_uniform_; defaults give gain sqrt(2), fan_in)."""
    return variance_scaling(shape, key, _kaiming_scale(a, mode, nonlinearity), mode, "uniform",
                            **_fan_kwargs(layout, in_axis, out_axis, dtype, index, backend, device, out))


def he_normal(shape, key, a=0.0, mode="fan_in", nonlinearity="leaky_relu", *, distribution="normal",
              layout="io", in_axis=None, out_axis=None, dtype="float32", index=None, backend=None, device=None,
              out=None):
    """N(0, std^2), std = gain / sqrt(fan) (torch.nn.init.kaiming_normal_: plain normal).

    ``distribution="truncated_normal"`` gives jax/Keras he_normal (same variance)."""
    return variance_scaling(shape, key, _kaiming_scale(a, mode, nonlinearity), mode, _normal_kind(distribution),
                            **_fan_kwargs(layout, in_axis, out_axis, dtype, index, backend, device, out))


def lecun_uniform(shape, key, *, layout="io", in_axis=None, out_axis=None, dtype="float32", index=None,
                  backend=None, device=None, out=None):
    """U(-b, b), b = sqrt(3 / fan_in)."""
    return variance_scaling(shape, key, 1.0, "fan_in", "uniform",
                            **_fan_kwargs(layout, in_axis, out_axis, dtype, index, backend, device, out))


def lecun_normal(shape, key, *, distribution="normal", layout="io", in_axis=None, out_axis=None,
                 dtype="float32", index=None, backend=None, device=None, out=None):
    """N(0, 1 / fan_in); ``distribution="truncated_normal"`` for jax's lecun_normal."""
    return variance_scaling(shape, key, 1.0, "fan_in", _normal_kind(distribution),
                            **_fan_kwargs(layout, in_axis, out_axis, dtype, index, backend, device, out))


glorot_uniform = xavier_uniform
glorot_normal = xavier_normal
kaiming_uniform = he_uniform
kaiming_normal = he_normal


# ---------------------------------------------------------------------------
# symmetric (constant) initializers
# ---------------------------------------------------------------------------
def constant(shape, key=None, value=0.0, *, dtype="float32", index=None, backend=None, device=None, out=None):
    """Every element equal to ``value``.

    Symmetric on purpose (the lab uses it): a hidden layer whose neurons start equal
    computes the same function in every neuron and receives the same gradient, so the
    neurons stay copies and the layer acts like one neuron. Use it for biases and
    norm scales, not hidden weights. ``key`` is accepted for a uniform signature and ignored.
    """
    try:
        ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(float(value))
    except OverflowError:
        ok = False
    if not ok:
        raise ValueError(f"value must be a finite number, got {value!r}")
    _check_unused_key(key)
    box = normalize_index(index, normalize_shape(shape))
    dt = normalize_dtype(dtype)
    v = _round_checked(np.asarray([float(value)]), dt, "value")
    res, _, _, dev = _place(out, box.out_shape, dt, backend, device)
    if dev is None:
        res[...] = v[0]
    else:               # the same correctly rounded value; bfloat16 as its uint16 bits
        res.fill(int(v.view(np.uint16)[0]) if is_bfloat16(dt) else float(v[0]))
    return res


def _check_unused_key(key) -> None:
    """The key-less initializers ignore ``key`` but still reject one that is not a key."""
    if key is not None:
        as_key(key)


def _round_checked(x: np.ndarray, dt: np.dtype, what: str) -> np.ndarray:
    """float64 ``x`` correctly rounded to ``dt``; a ValueError if anything overflows."""
    with np.errstate(over="ignore"):
        r = x.astype(dt)
    if not np.isfinite(r.astype(np.float64)).all():
        raise ValueError(f"{what} overflows {dt.name if dt.name != 'void16' else dt}: the largest "
                         f"magnitude is {np.abs(x).max():.4g}; use a wider dtype or a smaller {what}")
    return r


def _round_checked_xp(xp, x, dt: np.dtype, what: str):
    """``_round_checked`` for a float64 array of namespace ``xp`` (cupy): the storage array
    (uint16 bits for bfloat16), each element correctly rounded from float64."""
    if is_bfloat16(dt):
        # round to odd into float32 (exact below float32's last bit), then to nearest even
        # into bfloat16's 8 bits: the pair is one correct rounding from float64
        with np.errstate(over="ignore"):
            f = x.astype(np.float32)
        back = f.astype(np.float64)
        b = f.view(np.uint32)
        b = xp.where(xp.abs(back) > xp.abs(x), b - np.uint32(1), b)      # toward zero
        b = b | (back != x).astype(np.uint32)                              # sticky bit
        r = ((b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)
        ok = (r & np.uint16(0x7F80)) != np.uint16(0x7F80)
    else:
        r = x.astype(dt)
        ok = xp.isfinite(r)
    if not bool(ok.all()):
        raise ValueError(f"{what} overflows {dt.name if dt.name != 'void16' else dt}: the largest "
                         f"magnitude is {float(xp.abs(x).max()):.4g}; use a wider dtype or a smaller {what}")
    return r


def _upload(res, host: np.ndarray, impl, dev) -> None:
    """Copy the host array ``host`` (dtype of the result) into the device result ``res``."""
    if is_bfloat16(host.dtype):
        host = host.view(np.uint16)
    with _dispatch.device_scope(impl, dev):
        res[...] = _dispatch.array_module(impl).asarray(np.ascontiguousarray(host))


def zeros(shape, key=None, *, dtype="float32", index=None, backend=None, device=None, out=None):
    """All zeros (see ``constant`` for why this is bad for hidden weights)."""
    return constant(shape, key, 0.0, dtype=dtype, index=index, backend=backend, device=device, out=out)


def ones(shape, key=None, *, dtype="float32", index=None, backend=None, device=None, out=None):
    """All ones (see ``constant``)."""
    return constant(shape, key, 1.0, dtype=dtype, index=index, backend=backend, device=device, out=out)


# ---------------------------------------------------------------------------
# structured initializers
# ---------------------------------------------------------------------------
def _matrix_shape(shape, layout):
    if layout == "oi":      # torch.nn.init.orthogonal_: (rows, cols) = (shape[0], prod(rest))
        return shape[0], math.prod(shape[1:])
    if layout == "io":      # jax.nn.initializers.orthogonal(column_axis=-1)
        return math.prod(shape[:-1]), shape[-1]
    raise ValueError(f"layout must be 'io' or 'oi', got {layout!r}")


def orthogonal(shape, key, gain=1.0, *, layout="io", dtype="float32", index=None, backend=None, device=None,
               out=None):
    """A (semi-)orthogonal matrix times ``gain``: QR of a counter-based float64 normal
    matrix with the sign correction Q *= sign(diag(R)) (Saxe et al.; torch/JAX).

    Shapes with more than 2 dims are flattened to (shape[0], rest) for ``layout="oi"``
    (like torch) or (prod(shape[:-1]), shape[-1]) for ``"io"`` (like JAX). The random
    draw is identical on every backend, and the QR is the same NumPy/LAPACK call, so
    every CPU backend gives the same bits on a given machine. Across BLAS builds or CPU
    types the float64 QR may differ in its last bits, which can flip the rounding of an
    occasional float32 element. ``index=`` computes the whole matrix (orthogonality is a
    global property) and returns the slice. On a CUDA device the float64 draw is
    generated there (bit-identical to the CPU's) and factored by cupy.linalg.qr
    (cuSOLVER): the result is orthogonal to float tolerance and matches the CPU result
    only to rounding (~1e-6 relative for float32), not bit for bit.
    """
    shape = normalize_shape(shape)
    if len(shape) < 2:
        raise ValueError(f"orthogonal needs at least 2 dims, got shape {shape}")
    gain = _check_gain(gain)
    box = normalize_index(index, shape)
    dt = normalize_dtype(dtype)
    rows, cols = _matrix_shape(shape, layout)
    res, name, impl, dev = _place(out, box.out_shape, dt, backend, device)
    if rows * cols == 0 or box.size == 0:     # an empty box computes nothing (init_params' probe)
        return res
    if dev is None:
        check_host_alloc(rows * cols, np.dtype(np.float64), "orthogonal's float64 matrix (computed whole, "
                         "also for index=)", "use a smaller shape or another initializer for this tensor")
    mat = (rows, cols) if rows >= cols else (cols, rows)
    if dev is None:
        xp = np
        flat = _normal(mat, key, dtype="float64", backend=backend, device="cpu")
    else:
        xp = _dispatch.array_module(impl)
        flat = _normal(mat, key, dtype="float64", backend=name, device=f"cuda:{dev}")
    with (_dispatch.device_scope(impl, dev) if dev is not None else contextlib.nullcontext()):
        q, r = xp.linalg.qr(flat)
        d = xp.sign(xp.diagonal(r))
        d[d == 0] = 1.0
        q = q * d
        if rows < cols:
            q = q.T
        full = (gain * q).reshape(shape)
        part = full[box.slices].reshape(box.out_shape)
        if dev is None:
            res[...] = _round_checked(part, dt, "gain")
        else:
            res[...] = _round_checked_xp(xp, part, dt, "gain")
    return res


def identity(shape, key=None, gain=1.0, *, dtype="float32", index=None, backend=None, device=None, out=None):
    """``gain`` on the diagonal, 0 elsewhere, for a 2-D matrix (torch.nn.init.eye_).

    On a CUDA device it is built on the host and copied over (same bits)."""
    shape = normalize_shape(shape)
    if len(shape) != 2:
        raise ValueError(f"identity/eye needs a 2-D shape, got {shape}; use dirac for conv kernels")
    gain = _check_gain(gain)
    _check_unused_key(key)
    box = normalize_index(index, shape)
    dt = normalize_dtype(dtype)
    g = _round_checked(np.asarray([gain]), dt, "gain")[0]
    res, _, impl, dev = _place(out, box.out_shape, dt, backend, device)
    host = res if dev is None else np.empty(box.out_shape, dtype=dt)
    full_view = host.reshape(box.sizes)
    full_view[...] = 0
    (r0, c0), (nr, nc) = box.starts, box.sizes
    k = np.arange(max(r0, c0), min(r0 + nr, c0 + nc))
    full_view[k - r0, k - c0] = g
    if dev is not None:
        _upload(res, host, impl, dev)
    return res


eye = identity


def dirac(shape, key=None, groups=1, *, layout="oi", dtype="float32", index=None, backend=None, device=None,
          out=None):
    """Dirac delta conv kernel (torch.nn.init.dirac_): identity from input to output channels.

    3-, 4- or 5-D; ``layout="oi"``: (out, in, *kernel) as torch, ``"io"``: (*kernel, in, out).
    With ``groups``, the output channels split into groups that each pass through
    min(out // groups, in) input channels. On a CUDA device it is built on the host and
    copied over (same bits)."""
    shape = normalize_shape(shape)
    if len(shape) not in (3, 4, 5):
        raise ValueError(f"dirac needs a 3-, 4- or 5-D conv kernel shape, got {shape}")
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    _check_unused_key(key)
    if layout == "oi":
        n_out, n_in, kernel = shape[0], shape[1], shape[2:]
    elif layout == "io":
        n_out, n_in, kernel = shape[-1], shape[-2], shape[:-2]
    else:
        raise ValueError(f"layout must be 'io' or 'oi', got {layout!r}")
    if n_out % groups:
        raise ValueError(f"the out channels ({n_out}, dim {0 if layout == 'oi' else len(shape) - 1} in layout "
                         f"{layout!r}) must be divisible by groups={groups}")
    box = normalize_index(index, shape)
    dt = normalize_dtype(dtype)
    res, _, impl, dev = _place(out, box.out_shape, dt, backend, device)
    if box.size == 0:       # nothing to fill (also the cheap validation probe of init_params)
        return res
    full = np.zeros(shape, dtype=np.float32)
    per = n_out // groups
    centre = tuple(k // 2 for k in kernel)
    for g in range(groups):
        for d in range(min(per, n_in)):
            if layout == "oi":
                full[(g * per + d, d) + centre] = 1.0
            else:
                full[centre + (d, g * per + d)] = 1.0
    host = full[box.slices].reshape(box.out_shape).astype(dt)
    if dev is None:
        res[...] = host
    else:
        _upload(res, host, impl, dev)
    return res


def sparse(shape, key, sparsity, std=0.01, *, layout="oi", dtype="float32", index=None, backend=None, device=None,
           out=None):
    """torch.nn.init.sparse_ semantics with counter-based randomness.

    2-D only. Values are N(0, std^2) from ``key``; in each column of the (rows, cols)
    matrix (layout "oi": (out, in) as torch; "io": the transpose) ceil(sparsity * rows)
    entries are zero, chosen as the rows with the smallest random_bits(key / "sparse.mask")
    values in that column (ties broken by row index) - no global RNG is touched. On a
    CUDA device the values are drawn there and the mask, computed on the host, is
    copied over (same bits).
    """
    shape = normalize_shape(shape)
    if len(shape) != 2:
        raise ValueError(f"sparse needs a 2-D shape, got {shape}")
    if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real) or not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    if isinstance(std, bool) or not isinstance(std, numbers.Real) or not std >= 0 or not math.isfinite(std):
        raise ValueError(f"std must be a finite number >= 0, got {std!r}")
    key = as_key(key)
    box = normalize_index(index, shape)
    dt = normalize_dtype(dtype)
    if layout not in ("oi", "io"):
        raise ValueError(f"layout must be 'io' or 'oi', got {layout!r}")
    name, impl, dev = _dispatch.select(backend, box.size, device, out)      # every check before any write
    res = _normal(shape, key, 0.0, float(std), dtype=dt, index=index, backend=name,
                  device="cpu" if dev is None else f"cuda:{dev}", out=out)
    mat_shape = shape if layout == "oi" else shape[::-1]
    rows, cols = mat_shape
    n_zero = math.ceil(sparsity * rows)
    if n_zero and rows and cols and box.size:
        ranks = _random_bits(mat_shape, key / "sparse.mask", device="cpu",
                             backend=name if dev is None else _dispatch.auto_cpu_backend(rows * cols))
        order = np.argsort(ranks, axis=0, kind="stable")       # stable: ties by row index
        mask = np.zeros(mat_shape, dtype=bool)
        np.put_along_axis(mask, order[:n_zero], True, axis=0)  # the n_zero smallest per column
        if layout == "io":
            mask = mask.T
        part = mask[box.slices].reshape(box.out_shape)
        if dev is None:
            res[part] = 0
        else:
            with _dispatch.device_scope(impl, dev):
                res[_dispatch.array_module(impl).asarray(part)] = 0
    return res


# ---------------------------------------------------------------------------
# registry and whole models
# ---------------------------------------------------------------------------
INITIALIZERS: dict[str, Callable] = {}


def register_initializer(name: str, fn: Callable) -> None:
    """Make ``fn(shape, key, **kwargs)`` available to init_params under ``name``."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"initializer names are non-empty str, got {type(name).__name__} {name!r}")
    if not callable(fn):
        raise TypeError(f"register_initializer({name!r}, fn): fn must be callable f(shape, key, **kwargs), got "
                        f"{type(fn).__name__} {fn!r}")
    if name in INITIALIZERS:
        raise ValueError(f"initializer {name!r} is already registered")
    INITIALIZERS[name] = fn


for _name, _fn in [("zeros", zeros), ("ones", ones), ("constant", constant), ("uniform", _uniform),
                   ("normal", _normal), ("truncated_normal", _truncated_normal),
                   ("variance_scaling", variance_scaling), ("xavier_uniform", xavier_uniform),
                   ("glorot_uniform", glorot_uniform), ("xavier_normal", xavier_normal),
                   ("glorot_normal", glorot_normal), ("he_uniform", he_uniform),
                   ("kaiming_uniform", kaiming_uniform), ("he_normal", he_normal),
                   ("kaiming_normal", kaiming_normal), ("lecun_uniform", lecun_uniform),
                   ("lecun_normal", lecun_normal), ("orthogonal", orthogonal), ("identity", identity),
                   ("eye", eye), ("dirac", dirac), ("sparse", sparse)]:
    register_initializer(_name, _fn)
# the initializers defined here: they all take index= (init_params probes them with an empty box)
_BUILTIN_INITIALIZERS = frozenset(INITIALIZERS.values())
_BUILTIN_NAMES = tuple(INITIALIZERS)


def _entry(name, entry):
    if isinstance(entry, dict):
        entry = dict(entry)
        try:
            shape, init = entry.pop("shape"), entry.pop("init")
        except KeyError as e:
            raise ValueError(f"parameter {name!r}: a dict entry needs 'shape' and 'init' keys, got "
                             f"{sorted(entry)}") from e
        return shape, init, entry
    if isinstance(entry, (tuple, list)) and len(entry) in (2, 3):
        shape, init = entry[0], entry[1]
        if len(entry) == 3 and not isinstance(entry[2], Mapping):
            raise ValueError(f"parameter {name!r}: the third item of (shape, init, kwargs) must be a dict of "
                             f"initializer keyword arguments, got {type(entry[2]).__name__} {entry[2]!r}")
        kwargs = dict(entry[2]) if len(entry) == 3 else {}
        return shape, init, kwargs
    raise ValueError(f"parameter {name!r}: expected (shape, init[, kwargs]) or {{'shape': ..., 'init': ...}}, "
                     f"got {entry!r}")


def _resolve(name, init):
    if callable(init):
        return init
    if isinstance(init, str) and init in INITIALIZERS:
        return INITIALIZERS[init]
    raise ValueError(f"parameter {name!r}: unknown initializer {init!r}; known: {sorted(INITIALIZERS)}")


def init_params(spec, key, *, dtype="float32", backend=None, device=None, flat=False, engine=None,
                chunks="auto"):
    """Initialize every parameter of ``spec`` from ``key / name``.

    ``spec`` maps names to ``(shape, init[, kwargs])`` or ``{"shape": [...], "init": "he_normal",
    **kwargs}``; ``init`` is a registered name or a callable ``f(shape, key, *, dtype, backend,
    out=None, **kwargs)`` that returns the array (it is passed ``out=`` with ``flat=True``;
    one that ignores it is copied in after a shape/dtype check; it is passed ``device=``
    only when ``device=`` is given and ``flat=False``).
    Each tensor depends only on (key, its name, its entry): adding, removing or
    reordering parameters never changes the others. Returns ``{name: array}``; with
    ``flat=True`` returns ``(buffer, {name: view})`` where ``buffer`` is one contiguous
    1-D array holding every parameter in spec order and each view is a reshaped
    slice of it (filled in place, no copies). On a CUDA device (``device="cuda"``, or
    a "cupy" backend) the arrays are cupy arrays and ``flat=True`` allocates one
    device buffer.

    ``engine="dask"`` returns ``{name: dask.array.Array}`` (needs the ``dask`` extra):
    each chunk is generated on its own with ``index=`` and the computed arrays equal the
    in-memory ones bit for bit (``symbreak_fast.dask``; callables must accept ``index=``).
    ``chunks`` ("auto", anything dask accepts, or a dict ``{param_name: chunks}``) sets
    the chunking; ``flat=True`` and ``device=`` are not supported with it.

    Every entry is checked before any tensor is generated (the built-in initializers on an
    empty ``index=`` box, which computes nothing); errors name the parameter.
    """
    if engine is not None:
        if engine != "dask":
            raise ValueError(f"engine must be None (in memory) or 'dask', got {engine!r}")
        if flat:
            raise ValueError("flat=True is not supported with engine='dask' (one flat buffer is an in-memory "
                             "layout); use init_params(spec, key, flat=True) per process, or slice the dask arrays")
        if device is not None:
            raise ValueError(f"device={device!r} is not supported with engine='dask': chunks are NumPy arrays "
                             "generated on each worker's CPU")
    if not isinstance(flat, (bool, np.bool_)):
        raise TypeError(f"flat must be True or False, got {type(flat).__name__} {flat!r}")
    key = as_key(key)
    if not hasattr(spec, "items"):
        raise TypeError(f"spec must be a mapping name -> entry, got {type(spec).__name__}")
    entries = []
    for name, entry in spec.items():
        if not isinstance(name, str):
            raise TypeError(f"parameter names must be str, got {name!r}")
        shape, init, kwargs = _entry(name, entry)
        reserved = {"key", "out", "backend", "device", "index"} & set(kwargs)
        if reserved:
            raise ValueError(f"parameter {name!r}: {sorted(reserved)} are set by init_params, not per parameter "
                             "(pass backend= / device= to init_params itself)")
        fn = _resolve(name, init)
        kwargs.setdefault("dtype", dtype)
        shape = _named(name, init, normalize_shape, shape)
        entries.append((name, shape, fn, kwargs))
    # every registered initializer's arguments checked on an empty box (computes nothing)
    # before any tensor is generated, so a bad entry fails fast, naming the parameter
    for name, shape, fn, kwargs in entries:
        if fn in _BUILTIN_INITIALIZERS:
            _named(name, fn, fn, shape, key / name, index=tuple(slice(0, 0) for _ in shape), backend="numpy",
                   **kwargs)
    if engine is not None:
        from .dask import _init_params
        return _init_params(entries, key, backend=backend, chunks=chunks)
    # where the arrays live: decided once, every check done before anything is written
    _, impl, dev = _dispatch.select(backend, 0, device, None)
    if backend is None and dev is None and \
            _dispatch.planned_cpu_backend(sum(math.prod(s) for _, s, _, _ in entries)) == "numba":
        backend = "numba"   # the whole spec's size decides the auto rule once, not each tensor's
    if flat:
        dts = {normalize_dtype(kw["dtype"]) for _, _, _, kw in entries}
        if len(dts) > 1:
            raise ValueError(f"flat=True needs one dtype for every parameter, got {sorted(map(str, dts))}")
        dt = dts.pop() if dts else normalize_dtype(dtype)
        total = sum(math.prod(s) for _, s, _, _ in entries)
        if dev is None:
            check_host_alloc(total, dt, "the flat buffer of every parameter",
                             "use flat=False, save_init (streams to disk) or engine='dask'")
        buffer = np.empty(total, dtype=dt) if dev is None else impl.empty((total,), dt, dev)
        views, off = {}, 0
        for name, shape, fn, kwargs in entries:
            n = math.prod(shape)
            view = buffer[off:off + n].reshape(shape)
            off += n
            got = _named(name, fn, fn, shape, key / name, backend=backend, out=view, **kwargs)
            if got is not view:     # a callable that ignored out=: copy its (checked) result in
                view[...] = _checked_result(name, got, shape, dt, impl, dev)
            views[name] = view
        return buffer, views
    extra = {} if device is None else {"device": device if dev is None else f"cuda:{dev}"}
    return {name: _checked_result(name, _named(name, fn, fn, shape, key / name, backend=backend, **extra, **kwargs),
                                  shape, normalize_dtype(kwargs["dtype"]), impl, dev)
            for name, shape, fn, kwargs in entries}


def _named(name, init, f, *args, **kwargs):
    """``f(*args, **kwargs)``; a plain TypeError/ValueError from it is re-raised (same type)
    with the parameter's name and initializer in front, so a bad entry of a large spec is
    easy to find."""
    try:
        return f(*args, **kwargs)
    except (TypeError, ValueError) as e:
        if type(e) not in (TypeError, ValueError) or str(e).startswith(f"parameter {name!r}"):
            raise
        label = init if isinstance(init, str) else getattr(init, "__name__", type(init).__name__)
        raise type(e)(f"parameter {name!r} ({label}): {e}") from e


def _checked_result(name, arr, shape, dt, impl=None, dev=None):
    if dev is None:
        ok = isinstance(arr, np.ndarray) and not _dispatch.is_device_array(arr) and arr.dtype == dt
    else:
        dt = np.dtype(impl.storage_dtype(dt))
        ok = _dispatch.is_device_array(arr) and arr.dtype == dt and int(arr.device.id) == dev
    if not ok or tuple(arr.shape) != tuple(shape):
        want = f"a numpy array of shape {tuple(shape)} and dtype {dt}" if dev is None else \
            f"a cupy array on cuda:{dev} of shape {tuple(shape)} and dtype {dt}"
        got = f"{type(arr).__name__} {getattr(arr, 'shape', '')} {getattr(arr, 'dtype', '')}"
        raise ValueError(f"parameter {name!r}: the initializer returned {got}, expected {want}")
    return arr
