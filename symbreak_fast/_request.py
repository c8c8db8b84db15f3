"""A validated generation request: what every backend receives.

``make_request`` turns public arguments into kernel parameters. Everything is
checked here, before any output is allocated or written.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._indexing import Box, normalize_index, normalize_shape, row_plan
from ._key import as_key
from ._tail import MAX_NEAR_BOUND, truncation_masses



def bfloat16_dtype() -> np.dtype:
    """numpy dtype of ml_dtypes.bfloat16, imported on first use (the import costs ~1 s)."""
    try:
        import ml_dtypes
    except ImportError as e:  # pragma: no cover - ml-dtypes is a core dependency
        raise TypeError("dtype bfloat16 needs the ml-dtypes package: pip install ml-dtypes") from e
    return np.dtype(ml_dtypes.bfloat16)


def is_bfloat16(dt: np.dtype) -> bool:
    """True for ml_dtypes' bfloat16 (recognized by name: no ml_dtypes import needed)."""
    return dt.kind == "V" and dt.itemsize == 2 and dt.name == "bfloat16"

FLOAT_DTYPES = ("float32", "float64", "float16", "bfloat16")
# largest |z| a standard variate of each compute precision can take (normal tails)
MAX_ABS_NORMAL = {"float32": 6.67, "float64": 8.58}
TRUNC_REACH = 16.0


_FAST_DTYPES = {name: np.dtype(name) for name in ("float32", "float64", "float16")}
_FAST_DTYPES.update({np.float32: np.dtype(np.float32), np.float64: np.dtype(np.float64),
                     np.float16: np.dtype(np.float16)})
_FMAX: dict = {}


def normalize_dtype(dtype) -> np.dtype:
    try:
        return _FAST_DTYPES[dtype]
    except (KeyError, TypeError):
        pass
    if isinstance(dtype, str) and dtype.lower() in ("bfloat16", "bf16"):
        return bfloat16_dtype()
    aliases = {"f32": "float32", "f64": "float64", "f16": "float16", "half": "float16"}
    if isinstance(dtype, str):
        dtype = aliases.get(dtype.lower(), dtype)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dtype is None or dt is None or (dt not in (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16))
                      and not is_bfloat16(dt)):
        raise TypeError(f"unsupported dtype {dtype!r}; use one of {', '.join(FLOAT_DTYPES)} (default float32)")
    return dt


def dtype_name(dt: np.dtype) -> str:
    return "bfloat16" if is_bfloat16(dt) else dt.name


def _fmax(dt: np.dtype) -> float:
    if dt not in _FMAX:
        _FMAX[dt] = float(_finfo(dt).max)
    return _FMAX[dt]


def _finfo(dt: np.dtype):
    if is_bfloat16(dt):
        import ml_dtypes
        return ml_dtypes.finfo(dt)
    return np.finfo(dt)


def _to_dtype(x: float, dt: np.dtype) -> float:
    """x rounded (RNE) to dt as a Python float; float16/bfloat16 via float32, as the kernels do."""
    if dt == np.float64:
        return float(x)
    with np.errstate(over="ignore"):
        return float(np.float32(x).astype(dt).astype(np.float64))


def _next_toward(x: float, dt: np.dtype, direction: float) -> float:
    """The dt value adjacent to the dt-representable ``x`` in the direction of ``direction``."""
    if dt == np.float64 or dt == np.float32:
        return float(np.nextafter(dt.type(x), dt.type(direction)))
    # 16-bit floats: step the sign-magnitude bit pattern
    bits = int(np.asarray([x], dtype=dt).view(np.uint16)[0])
    if x == 0:
        bits = 0x0001 if direction > 0 else 0x8001
    elif (direction > x) == (x > 0):
        bits += 1     # away from zero
    else:
        bits -= 1     # toward zero
    return float(np.asarray([bits], dtype=np.uint16).view(dt).astype(np.float64)[0])


def _round_inward(x: float, dt: np.dtype, up: bool) -> float:
    """The smallest dt value >= x (``up``) or the largest dt value <= x."""
    r = _to_dtype(x, dt)
    if up and r < x:
        r = _next_toward(r, dt, math.inf)
    elif not up and r > x:
        r = _next_toward(r, dt, -math.inf)
    return r


def _check_real(name: str, v) -> float:
    if type(v) is float and v == v:      # fast path: a Python float that is not NaN
        return v
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(v).__name__} {v!r}")
    try:
        v = float(v)
    except OverflowError:                # an int beyond float64
        raise ValueError(f"{name} is an int of {int(v).bit_length()} bits, beyond the float64 range; "
                         "pass a finite number") from None
    if math.isnan(v):
        raise ValueError(f"{name} is NaN; pass a finite number")
    return v


@dataclass(frozen=True, slots=True)
class Request:
    dist: str                 # "bits" | "uniform" | "normal" | "truncated_normal"
    dtype: np.dtype           # output dtype
    box: Box
    k0: int
    k1: int
    shift: float = 0.0        # y = clamp(shift + scale * z, lo, hi)
    scale: float = 1.0
    lo: float = -math.inf
    hi: float = math.inf
    pa: float = 0.0           # truncated normal: Phi(a), Phi(-b), P(a<Z<b) (x 2**64 for float32)
    qb: float = 0.0
    mass: float = 1.0

    @property
    def out_shape(self):
        return self.box.out_shape

    @property
    def size(self) -> int:
        return self.box.size

    @property
    def compute(self) -> str:
        """Working precision of the kernel: float64 for float64 output, else float32."""
        if self.dist == "bits":
            return "uint32"
        return "float64" if self.dtype == np.float64 else "float32"

    def rows(self):
        return row_plan(self.box)


def make_request(dist, shape, key, *, dtype="float32", index=None, **p) -> Request:
    shape = normalize_shape(shape)
    key = as_key(key)
    box = normalize_index(index, shape)
    k0, k1 = key.words
    if dist == "bits":
        return Request("bits", np.dtype(np.uint32), box, k0, k1)
    dt = normalize_dtype(dtype)
    fmax = _fmax(dt)
    if dist == "uniform":
        low = _check_real("low", p["low"])
        high = _check_real("high", p["high"])
        if math.isinf(low) or math.isinf(high):
            raise ValueError(f"low and high must be finite, got low={low}, high={high}")
        if low > high:
            raise ValueError(f"uniform needs low <= high, got low={low} > high={high}; swap them")
        low_t = _to_dtype(low, dt)
        high_t = _to_dtype(high, dt)
        if max(abs(low_t), abs(high_t)) > fmax or math.isinf(low_t) or math.isinf(high_t):
            raise ValueError(f"low={low}, high={high} overflow {dtype_name(dt)}")
        cdt = np.float64 if dt == np.float64 else np.float32
        with np.errstate(over="ignore"):
            span = float(cdt(high_t) - cdt(low_t))
        if math.isinf(span):
            raise ValueError(f"high - low = {high_t - low_t} overflows {np.dtype(cdt).name}; "
                             "narrow the interval")
        hi = _next_toward(high_t, dt, -math.inf) if high_t > low_t else low_t
        hi = max(hi, low_t)
        return Request("uniform", dt, box, k0, k1, shift=low_t, scale=span, lo=low_t, hi=hi)
    mean = _check_real("mean", p["mean"])
    std = _check_real("std", p["std"])
    if math.isinf(mean) or math.isinf(std):
        raise ValueError(f"mean and std must be finite, got mean={mean}, std={std}")
    if std < 0:
        raise ValueError(f"std must be >= 0, got {std}; pass abs(std) (the sign is meaningless)")
    compute = "float64" if dt == np.float64 else "float32"
    cdt = np.float64 if dt == np.float64 else np.float32
    with np.errstate(over="ignore"):       # overflow to inf is what this test looks for
        fits = abs(float(cdt(mean))) <= fmax and abs(float(cdt(std))) <= fmax
    if not fits:
        raise ValueError(f"mean={mean} / std={std} overflow {dtype_name(dt)}")
    shift, scale = float(cdt(mean)), float(cdt(std))
    if dist == "normal":
        zmax = MAX_ABS_NORMAL[compute]
        if abs(shift) + scale * zmax > fmax:
            raise ValueError(f"normal(mean={mean}, std={std}) can reach {abs(mean) + std * zmax:.4g}, "
                             f"beyond the largest {dtype_name(dt)} ({fmax:.4g}); use a wider dtype or "
                             "a smaller std")
        return Request("normal", dt, box, k0, k1, shift=shift, scale=scale)
    assert dist == "truncated_normal"
    a = _check_real("lower", p["lower"])
    b = _check_real("upper", p["upper"])
    if not a < b:
        raise ValueError(f"truncated_normal needs lower < upper (in units of std), got lower={a}, upper={b}")
    if a > MAX_NEAR_BOUND or b < -MAX_NEAR_BOUND:
        raise ValueError(
            f"the truncation interval [{a}, {b}] (in std units) lies entirely beyond "
            f"{MAX_NEAR_BOUND} std from the mean, where its probability mass underflows; "
            "shift `mean` toward the interval instead")
    # reach of the standardized draw on each side: the bound itself, or for an infinite
    # (or very far) bound the inverse CDF of the smallest tail mass a draw can produce,
    # which stays below 16 std (14.2 float32, 15.6 float64, at the 13-std interval limit)
    zmax = max(min(abs(a), TRUNC_REACH), min(abs(b), TRUNC_REACH))
    if abs(shift) + scale * zmax > fmax:
        raise ValueError(f"truncated_normal(mean={mean}, std={std}, [{a}, {b}]) can reach "
                         f"{abs(mean) + std * zmax:.4g}, beyond the largest {dtype_name(dt)} "
                         f"({fmax:.4g}); use a wider dtype or a smaller std")
    pa, qb, mass = truncation_masses(a, b)
    lo = _round_inward(shift + scale * a, dt, up=True) if math.isfinite(a) else -math.inf
    hi = _round_inward(shift + scale * b, dt, up=False) if math.isfinite(b) else math.inf
    if lo > hi:  # std so small that no dt value lies strictly inside: pin to the mean
        lo = hi = _to_dtype(mean, dt)
    if compute == "float32":  # scaled by 2**64 (exact in float64), then rounded once
        pa, qb, mass = (float(np.float32(math.ldexp(v, 64))) for v in (pa, qb, mass))
    return Request("truncated_normal", dt, box, k0, k1, shift=shift, scale=scale,
                   lo=lo, hi=hi, pa=pa, qb=qb, mass=mass)
