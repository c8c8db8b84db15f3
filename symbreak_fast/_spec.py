"""The bit-level contract of symbreak_fast, written as readable NumPy.

This module *is* the specification (docs/RNG.md describes it in prose). Every
other backend (Numba, the host-compiled C header, CUDA) mirrors the functions
below one for one, under the same names, and the test-suite compares them bit
for bit.

Rules that make bit identity possible:

* only IEEE-754 basic operations (+ - * /, sqrt, int<->float conversion with
  round-to-nearest-even) and integer/bit manipulation, each rounded to the
  working precision before the next one (no FMA contraction, no fastmath);
* no platform transcendental functions (log, sin, cos, erf, ...): they are
  written below from those basic operations, in a fixed evaluation order;
* every element is a pure function of (key, global flat C-order index).

All functions take and return NumPy arrays and are vectorized elementwise.
"""
from __future__ import annotations

import numpy as np

u32 = np.uint32
u64 = np.uint64
f32 = np.float32
f64 = np.float64

# ---------------------------------------------------------------------------
# Philox4x32-10 (Salmon, Moraes, Dror, Shaw 2011; Random123 philox.h)
# ---------------------------------------------------------------------------
PHILOX_M4x32_0 = 0xD2511F53  # round multiplier for words 0/1
PHILOX_M4x32_1 = 0xCD9E8D57  # round multiplier for words 2/3
PHILOX_W32_0 = 0x9E3779B9    # key bump, golden ratio
PHILOX_W32_1 = 0xBB67AE85    # key bump, sqrt(3) - 1
PHILOX_ROUNDS = 10


def mulhilo32(a, b):
    """(lo, hi) 32-bit halves of the 64-bit product of uint32 ``a`` and constant ``b``."""
    p = a.astype(u64) * u64(b)
    return (p & u64(0xFFFFFFFF)).astype(u32), (p >> u64(32)).astype(u32)


def philox4x32_round(x0, x1, x2, x3, k0, k1):
    """One Philox round: out = [hi1 ^ x1 ^ k0, lo1, hi0 ^ x3 ^ k1, lo0]."""
    lo0, hi0 = mulhilo32(x0, PHILOX_M4x32_0)
    lo1, hi1 = mulhilo32(x2, PHILOX_M4x32_1)
    return hi1 ^ x1 ^ k0, lo1, hi0 ^ x3 ^ k1, lo0


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 of counter (c0, c1, c2, c3) under key (k0, k1); uint32 arrays.

    The key is bumped by (PHILOX_W32_0, PHILOX_W32_1) between rounds, as in
    Random123 ``philox4x32_R(10, ctr, key)``.
    """
    x0, x1, x2, x3 = (np.asarray(c, dtype=u32) for c in (c0, c1, c2, c3))
    ka = np.asarray(k0, dtype=u32)
    kb = np.asarray(k1, dtype=u32)
    for r in range(PHILOX_ROUNDS):
        if r:
            # key bump, wrapping mod 2**32
            ka = ((ka.astype(u64) + u64(PHILOX_W32_0)) & u64(0xFFFFFFFF)).astype(u32)
            kb = ((kb.astype(u64) + u64(PHILOX_W32_1)) & u64(0xFFFFFFFF)).astype(u32)
        x0, x1, x2, x3 = philox4x32_round(x0, x1, x2, x3, ka, kb)
    return x0, x1, x2, x3


def philox_block(block, k0, k1):
    """The four words of counter block ``block`` (uint64): counter = (lo32, hi32, 0, 0)."""
    block = np.asarray(block, dtype=u64)
    lo = (block & u64(0xFFFFFFFF)).astype(u32)
    hi = (block >> u64(32)).astype(u32)
    z = np.zeros_like(lo)
    return philox4x32_10(lo, hi, z, z, k0, k1)


def select_word(words, w):
    """words[w] elementwise, where ``w`` is an integer array of word positions 0..3."""
    w0, w1, w2, w3 = words
    return np.where(w == 0, w0, np.where(w == 1, w1, np.where(w == 2, w2, w3)))


# ---------------------------------------------------------------------------
# bits -> uniform floats. Each conversion is exact (no rounding) unless noted.
# ---------------------------------------------------------------------------
TWO_M24 = f32(2.0 ** -24)
TWO_M31 = f32(2.0 ** -31)
TWO_M32 = f32(2.0 ** -32)
TWO_M53 = f64(2.0 ** -53)


def bits_to_unit_float32(w):
    """[0, 1): top 24 bits of ``w`` times 2**-24. Never 1.0; 0.0 possible. Exact."""
    return (w >> u32(8)).astype(f32) * TWO_M24


def bits_to_open_unit_float32(w):
    """(0, 1): (2*(w >> 9) + 1) * 2**-24, i.e. 2**23 bin midpoints. Never 0 or 1. Exact."""
    return ((w >> u32(9)) * u32(2) + u32(1)).astype(f32) * TWO_M24


def bits_to_radius_float32(w):
    """(0, 1] input of the Box-Muller log: float32(w >> 1) * 2**-31 + 2**-32.

    31 bits reach down to 2**-32, so the normal's tail reaches 6.66 sigma.
    Two roundings (int->float32 conversion, final add; both RNE). Range
    [2**-32, 1.0]: never 0, so log() is always finite.
    """
    return (w >> u32(1)).astype(np.int32).astype(f32) * TWO_M31 + TWO_M32


def bits_to_unit_float64(hi, lo):
    """[0, 1): top 53 bits of the 64-bit word (hi:lo) times 2**-53. Exact."""
    m = (hi.astype(u64) << u64(32)) | lo.astype(u64)
    return (m >> u64(11)).astype(f64) * TWO_M53


def bits_to_open_unit_float64(hi, lo):
    """(0, 1): (2*(m >> 12) + 1) * 2**-53 with m = hi:lo. Never 0 or 1. Exact."""
    m = (hi.astype(u64) << u64(32)) | lo.astype(u64)
    return ((m >> u64(12)) * u64(2) + u64(1)).astype(f64) * TWO_M53


def bits_to_radius_float64(hi, lo):
    """(0, 1]: ((m >> 11) + 1) * 2**-53 with m = hi:lo. Range [2**-53, 1]. Exact."""
    m = (hi.astype(u64) << u64(32)) | lo.astype(u64)
    return ((m >> u64(11)) + u64(1)).astype(f64) * TWO_M53


# ---------------------------------------------------------------------------
# log from basic operations
#   x = 2**k * m with m in [sqrt(1/2), sqrt(2)),  s = (m - 1) / (m + 1),
#   log(m) = 2 atanh(s) = 2s (1 + s^2/3 + s^4/5 + ...),  |s| <= 0.1716.
#   log(x) = k*LN2_HI + (log(m) + k*LN2_LO); k*LN2_HI is exact (LN2_HI has
#   trailing zero bits), so the only large rounding is the final add.
#   ``k_offset`` adds an integer to k: log(x * 2**k_offset) without forming the
#   product (the float32 truncated normal works on probabilities scaled by 2**64).
# ---------------------------------------------------------------------------
LN2_HI_F32 = f32(0.693145751953125)  # 0x3f317200: 9 trailing zero bits, k*LN2_HI exact for |k| < 512
LN2_LO_F32 = f32(1.4286068202862268e-06)  # ln 2 - LN2_HI_F32
SQRT_HALF_BITS_F32 = 0x3F3504F3      # float32 bits of sqrt(1/2)
# atanh series 2/(2n+1) truncated after s^8: next term s^10/11 ~ 2.0e-9 relative.
LOG_F32_C = tuple(f32(1.0 / (2 * n + 1)) for n in range(1, 5))

LN2_HI_F64 = f64(6.93147180369123816490e-01)  # 0x3fe62e42fee00000
LN2_LO_F64 = f64(1.90821492927058770002e-10)
SQRT_HALF_BITS_F64 = 0x3FE6A09E667F3BCD
# truncated after s^20: next term s^22/23 < 1e-18 relative.
LOG_F64_C = tuple(f64(1.0 / (2 * n + 1)) for n in range(1, 11))


def log_float32(x, k_offset=0):
    """log(x) + k_offset * log(2) for positive normal float32 ``x`` (inputs are >= 2**-126)."""
    bits = x.view(u32)
    # k = exponent relative to sqrt(1/2): arithmetic shift of the signed difference
    k = (bits - u32(SQRT_HALF_BITS_F32)).view(np.int32) >> np.int32(23)
    m = (bits - (k << np.int32(23)).view(u32)).view(f32)  # in [sqrt(1/2), sqrt(2))
    f = m - f32(1.0)            # exact (Sterbenz)
    s = f / (f32(2.0) + f)
    z = s * s
    c1, c2, c3, c4 = LOG_F32_C
    p = z * (c1 + z * (c2 + z * (c3 + z * c4)))
    two_s = s + s
    log_m = two_s + two_s * p
    kf = (k + np.int32(k_offset)).astype(f32)
    return kf * LN2_HI_F32 + (log_m + kf * LN2_LO_F32)


def log_float64(x):
    """Natural log of positive normal float64 ``x``."""
    bits = x.view(u64)
    k = (bits - u64(SQRT_HALF_BITS_F64)).view(np.int64) >> np.int64(52)
    m = (bits - (k << np.int64(52)).view(u64)).view(f64)
    f = m - f64(1.0)
    s = f / (f64(2.0) + f)
    z = s * s
    p = LOG_F64_C[-1]
    for c in LOG_F64_C[-2::-1]:
        p = c + z * p
    p = z * p
    two_s = s + s
    log_m = two_s + two_s * p
    kf = k.astype(f64)
    return kf * LN2_HI_F64 + (log_m + kf * LN2_LO_F64)


# ---------------------------------------------------------------------------
# sin/cos of the Box-Muller angle, reduced exactly in the integer domain.
#   The angle is theta = 2*pi*(j_full + 1/2) / 2**B for a B-bit integer; its top
#   two bits give the quadrant q, the rest the position j in the quadrant. For
#   the upper half of a quadrant, sin/cos swap and j -> (2**(B-2) - 1 - j), so
#   the polynomial argument x = (2j + 1) * pi * 2**-B lies in (0, pi/4).
#   (cos, sin)(theta) = rotate((cos x, sin x) or swapped, by q quarter turns):
#   all sign flips and swaps, no rounding.
# ---------------------------------------------------------------------------
PI_2M24_F32 = f32(np.pi) * f32(2.0 ** -24)   # float32(pi) * 2**-24, exact scaling
PI_2M52_F64 = f64(np.pi) * f64(2.0 ** -52)
# Taylor coefficients; truncation error at pi/4 ~ 3e-9 (f32) / 1.2e-19 (f64) relative.
SIN_F32_C = tuple(f32((-1) ** n / _f) for n, _f in ((1, 6.0), (2, 120.0), (3, 5040.0), (4, 362880.0)))
COS_F32_C = tuple(f32((-1) ** n / _f) for n, _f in ((1, 2.0), (2, 24.0), (3, 720.0), (4, 40320.0), (5, 3628800.0)))


def _fact(n):
    r = 1
    for i in range(2, n + 1):
        r *= i
    return r


SIN_F64_C = tuple(f64((-1) ** n / _fact(2 * n + 1)) for n in range(1, 9))   # x^3 .. x^17
COS_F64_C = tuple(f64((-1) ** n / _fact(2 * n)) for n in range(1, 10))      # x^2 .. x^18


def _horner(z, coeffs):
    """c0 + z*(c1 + z*(c2 + ...)) evaluated innermost first."""
    p = coeffs[-1]
    for c in coeffs[-2::-1]:
        p = c + z * p
    return p


def sincos_poly_float32(x):
    """(sin x, cos x) for float32 x in (0, pi/4)."""
    z = x * x
    s = x + x * (z * _horner(z, SIN_F32_C))
    c = f32(1.0) + z * _horner(z, COS_F32_C)
    return s, c


def sincos_poly_float64(x):
    z = x * x
    s = x + x * (z * _horner(z, SIN_F64_C))
    c = f64(1.0) + z * _horner(z, COS_F64_C)
    return s, c


def _quadrant_rotate(q, swap, s, c):
    """(cos theta, sin theta) from the quadrant q (0..3), the half-quadrant swap flag
    and (sin x, cos x) of the reduced argument."""
    cs = np.where(swap, s, c)   # cos of the angle within the quadrant
    sn = np.where(swap, c, s)   # sin of the angle within the quadrant
    cos_t = np.where(q == 0, cs, np.where(q == 1, -sn, np.where(q == 2, -cs, sn)))
    sin_t = np.where(q == 0, sn, np.where(q == 1, cs, np.where(q == 2, -sn, -cs)))
    return cos_t, sin_t


def angle_cos_sin_float32(w):
    """(cos, sin) of theta = 2*pi*((w >> 8) + 1/2) / 2**24 (24-bit angle from word w)."""
    k = w >> u32(8)
    q = k >> u32(22)
    j = k & u32(0x3FFFFF)
    swap = j >= u32(0x200000)
    j = np.where(swap, u32(0x3FFFFF) - j, j)
    x = (j * u32(2) + u32(1)).astype(f32) * PI_2M24_F32
    s, c = sincos_poly_float32(x)
    return _quadrant_rotate(q, swap, s, c)


def angle_cos_sin_float64(hi, lo):
    """(cos, sin) of theta = 2*pi*((m >> 12) + 1/2) / 2**52, m = hi:lo (52-bit angle)."""
    m = ((hi.astype(u64) << u64(32)) | lo.astype(u64)) >> u64(12)
    q = m >> u64(50)
    j = m & u64((1 << 50) - 1)
    swap = j >= u64(1 << 49)
    j = np.where(swap, u64((1 << 50) - 1) - j, j)
    x = (j * u64(2) + u64(1)).astype(f64) * PI_2M52_F64
    s, c = sincos_poly_float64(x)
    return _quadrant_rotate(q, swap, s, c)


def box_muller_radius_float32(u1):
    """sqrt(-2 log u1) for u1 in (0, 1]."""
    return np.sqrt(log_float32(u1) * f32(-2.0))


def box_muller_radius_float64(u1):
    return np.sqrt(log_float64(u1) * f64(-2.0))


# ---------------------------------------------------------------------------
# Inverse normal CDF for lower-tail probabilities s in (0, 1/2]:
# Wichura 1988, Algorithm AS 241 (PPND7 for float32, PPND16 for float64).
# Branch-free: every branch is evaluated and the right one selected, so the
# cost does not depend on the draw.
# ---------------------------------------------------------------------------
PPND7_A = tuple(f32(v) for v in (3.3871327179, 50.434271938, 159.29113202, 59.109374720))
PPND7_B = tuple(f32(v) for v in (1.0, 17.895169469, 78.757757664, 67.187563600))
PPND7_C = tuple(f32(v) for v in (1.4234372777, 2.7568153900, 1.3067284816, 0.17023821103))
PPND7_D = tuple(f32(v) for v in (1.0, 0.73700164250, 0.12021132975))
PPND7_E = tuple(f32(v) for v in (6.6579051150, 3.0812263860, 0.42868294337, 0.017337203997))
PPND7_F = tuple(f32(v) for v in (1.0, 0.24197894225, 0.012258202635))

PPND16_A = tuple(f64(v) for v in (
    3.3871328727963666080, 1.3314166789178437745e+2, 1.9715909503065514427e+3,
    1.3731693765509461125e+4, 4.5921953931549871457e+4, 6.7265770927008700853e+4,
    3.3430575583588128105e+4, 2.5090809287301226727e+3))
PPND16_B = tuple(f64(v) for v in (
    1.0, 4.2313330701600911252e+1, 6.8718700749205790830e+2, 5.3941960214247511077e+3,
    2.1213794301586595867e+4, 3.9307895800092710610e+4, 2.8729085735721942674e+4,
    5.2264952788528545610e+3))
PPND16_C = tuple(f64(v) for v in (
    1.42343711074968357734, 4.63033784615654529590, 5.76949722146069140550,
    3.64784832476320460504, 1.27045825245236838258, 2.41780725177450611770e-1,
    2.27238449892691845833e-2, 7.74545014278341407640e-4))
PPND16_D = tuple(f64(v) for v in (
    1.0, 2.05319162663775882187, 1.67638483018380384940, 6.89767334985100004550e-1,
    1.48103976427480074590e-1, 1.51986665636164571966e-2, 5.47593808499534494600e-4,
    1.05075007164441684324e-9))
PPND16_E = tuple(f64(v) for v in (
    6.65790464350110377720, 5.46378491116411436990, 1.78482653991729133580,
    2.96560571828504891230e-1, 2.65321895265761230930e-2, 1.24266094738807843860e-3,
    2.71155556874348757815e-5, 2.01033439929228813265e-7))
PPND16_F = tuple(f64(v) for v in (
    1.0, 5.99832206555887937690e-1, 1.36929880922735805310e-1, 1.48753612908506148525e-2,
    7.86869131145613259100e-4, 1.84631831751005468180e-5, 1.42151175831644588870e-7,
    2.04426310338993978564e-15))
PPND_SPLIT1 = 0.425   # |s - 1/2| <= SPLIT1: central rational in (0.180625 - q^2)
PPND_SPLIT2 = 5.0     # r = sqrt(-log s) <= SPLIT2: intermediate tail, else far tail
PPND_CONST1 = 0.180625
PPND_CONST2 = 1.6

TINY_F32 = f32(2.0 ** -126)   # smallest normal float32: floor for s before log (never reached)
TINY_F64 = f64(2.0 ** -1022)
TRUNC_SCALE_EXP_F32 = 64                       # float32 truncated normal: probabilities * 2**64
TRUNC_HALF_SCALED_F32 = f32(2.0 ** 63)         # 1/2 scaled
TRUNC_UNSCALE_F32 = f32(2.0 ** -64)


def ndtri_lower_float32(s):
    """Phi^{-1}(s * 2**-64) for float32 s in (0, 2**63] (result <= 0); AS 241 PPND7.

    The float32 truncated normal carries its probabilities scaled by 2**64
    (TRUNC_SCALE_F32) so that tail masses down to Q(13) ~ 6e-39 and their
    fractions stay normal floats: no subnormal ever reaches the log.
    """
    s = np.where(s < TINY_F32, TINY_F32, s)
    q = (s - TRUNC_HALF_SCALED_F32) * TRUNC_UNSCALE_F32   # = s * 2**-64 - 1/2, one rounding
    rc = f32(PPND_CONST1) - q * q
    central = q * _horner(rc, PPND7_A) / _horner(rc, PPND7_B)
    rt = np.sqrt(-log_float32(s, -TRUNC_SCALE_EXP_F32))
    r1 = rt - f32(PPND_CONST2)
    mid = _horner(r1, PPND7_C) / _horner(r1, PPND7_D)
    r2 = rt - f32(PPND_SPLIT2)
    far = _horner(r2, PPND7_E) / _horner(r2, PPND7_F)
    tail = np.where(rt <= f32(PPND_SPLIT2), mid, far)
    return np.where(q >= f32(-PPND_SPLIT1), central, -tail)


def ndtri_lower_float64(s):
    """Phi^{-1}(s) for float64 s in (0, 1/2] (result <= 0); AS 241 PPND16."""
    s = np.where(s < TINY_F64, TINY_F64, s)
    q = s - f64(0.5)
    rc = f64(PPND_CONST1) - q * q
    central = q * _horner(rc, PPND16_A) / _horner(rc, PPND16_B)
    rt = np.sqrt(-log_float64(s))
    r1 = rt - f64(PPND_CONST2)
    mid = _horner(r1, PPND16_C) / _horner(r1, PPND16_D)
    r2 = rt - f64(PPND_SPLIT2)
    far = _horner(r2, PPND16_E) / _horner(r2, PPND16_F)
    tail = np.where(rt <= f64(PPND_SPLIT2), mid, far)
    return np.where(q >= f64(-PPND_SPLIT1), central, -tail)


def truncated_standard_normal_float32(u, pa, qb, mass):
    """Standard normal truncated to [a, b] by inversion, from open uniform u in (0, 1).

    pa = Phi(a), qb = Phi(-b) (the two outer tail masses) and mass = P(a < Z < b)
    come from the host (_tail.py), all scaled by 2**64 in float32 (see
    ndtri_lower_float32). The draw is measured from the lower bound as a
    lower-tail probability p = pa + mass*u and from the upper bound as an
    upper-tail probability q = qb + mass*(1 - u) (1 - u is exact); the smaller
    of the two is inverted, so both tails keep their relative precision.
    """
    p = pa + mass * u
    q = qb + mass * (f32(1.0) - u)
    lower = p < q
    z = ndtri_lower_float32(np.where(lower, p, q))   # <= 0
    return np.where(lower, z, -z)


def truncated_standard_normal_float64(u, pa, qb, mass):
    """As the float32 version, unscaled: float64 holds Q(13) ~ 6e-39 and its fractions."""
    p = pa + mass * u
    q = qb + mass * (f64(1.0) - u)
    lower = p < q
    z = ndtri_lower_float64(np.where(lower, p, q))
    return np.where(lower, z, -z)


# ---------------------------------------------------------------------------
# float32 -> float16 / bfloat16, round to nearest, ties to even (bit exact)
# ---------------------------------------------------------------------------
def round_float32_to_bfloat16_bits(x):
    """uint16 bits of bfloat16(x), RNE. NaN stays a quiet NaN."""
    b = x.view(u32)
    rounded = (b + u32(0x7FFF) + ((b >> u32(16)) & u32(1))) >> u32(16)
    nan = (b & u32(0x7FFFFFFF)) > u32(0x7F800000)
    return np.where(nan, (b >> u32(16)) | u32(0x40), rounded).astype(np.uint16)


def round_float32_to_float16_bits(x):
    """uint16 bits of float16(x), RNE, with subnormals, overflow to inf, NaN kept."""
    b = x.view(u32)
    sign = (b >> u32(16)) & u32(0x8000)
    a = b & u32(0x7FFFFFFF)
    # normal half range: rebias exponent (127 -> 15) and round off 13 mantissa bits
    r = a - u32(0x38000000)
    normal = (r + u32(0xFFF) + ((r >> u32(13)) & u32(1))) >> u32(13)
    # subnormal half: value = mant24 * 2**(e-150) -> mant24 >> (126 - e), RNE
    e = a >> u32(23)
    mant = (a & u32(0x7FFFFF)) | u32(0x800000)
    shift = np.clip(u32(126) - np.minimum(e, u32(126)), u32(1), u32(31))  # in 14..24 where used
    half = u32(1) << (shift - u32(1))
    rem = mant & ((u32(1) << shift) - u32(1))
    sub = mant >> shift
    sub = sub + ((rem > half) | ((rem == half) & ((sub & u32(1)) == u32(1)))).astype(u32)
    out = np.where(a >= u32(0x38800000), normal, np.where(a > u32(0x33000000), sub, u32(0)))
    out = np.where(a >= u32(0x477FF000), u32(0x7C00), out)       # rounds to >= 65520: inf
    out = np.where(a > u32(0x7F800000), u32(0x7E00), out)        # NaN
    return (out | sign).astype(np.uint16)


# ---------------------------------------------------------------------------
# Element map: which Philox words feed global flat element g.
#   32-bit outputs (uint32 bits; float32/float16/bfloat16 uniform and
#   truncated normal): block g >> 2, word g & 3.
#   float32-family normal: block g >> 2; Box-Muller pair (g & 3) >> 1 uses words
#   (2p, 2p+1) = (radius, angle); g & 1 picks cos (0) or sin (1).
#   float64 uniform/truncated normal: block g >> 1, words (2h, 2h+1) as (hi, lo), h = g & 1.
#   float64 normal: block g >> 1, (w0:w1) radius, (w2:w3) angle; g & 1 picks cos/sin.
# ---------------------------------------------------------------------------
def random_bits_elements(g, k0, k1):
    """uint32 word for each global index in ``g`` (int64 array)."""
    g = g.astype(u64)
    words = philox_block(g >> u64(2), k0, k1)
    return select_word(words, (g & u64(3)).astype(np.int64))


def standard_uniform_float32_elements(g, k0, k1):
    return bits_to_unit_float32(random_bits_elements(g, k0, k1))


def open_uniform_float32_elements(g, k0, k1):
    return bits_to_open_unit_float32(random_bits_elements(g, k0, k1))


def standard_normal_float32_elements(g, k0, k1):
    g = g.astype(u64)
    w0, w1, w2, w3 = philox_block(g >> u64(2), k0, k1)
    second = (g & u64(2)) != 0
    radius_word = np.where(second, w2, w0)
    angle_word = np.where(second, w3, w1)
    r = box_muller_radius_float32(bits_to_radius_float32(radius_word))
    cos_t, sin_t = angle_cos_sin_float32(angle_word)
    return r * np.where((g & u64(1)) != 0, sin_t, cos_t)


def _f64_words(g, k0, k1):
    g = g.astype(u64)
    w0, w1, w2, w3 = philox_block(g >> u64(1), k0, k1)
    odd = (g & u64(1)) != 0
    return g, odd, (w0, w1, w2, w3)


def standard_uniform_float64_elements(g, k0, k1):
    _, odd, (w0, w1, w2, w3) = _f64_words(g, k0, k1)
    return bits_to_unit_float64(np.where(odd, w2, w0), np.where(odd, w3, w1))


def open_uniform_float64_elements(g, k0, k1):
    _, odd, (w0, w1, w2, w3) = _f64_words(g, k0, k1)
    return bits_to_open_unit_float64(np.where(odd, w2, w0), np.where(odd, w3, w1))


def standard_normal_float64_elements(g, k0, k1):
    _, odd, (w0, w1, w2, w3) = _f64_words(g, k0, k1)
    r = box_muller_radius_float64(bits_to_radius_float64(w0, w1))
    cos_t, sin_t = angle_cos_sin_float64(w2, w3)
    return r * np.where(odd, sin_t, cos_t)


def affine_clamp(z, shift, scale, lo, hi):
    """clamp(shift + scale * z) to [lo, hi] in z's precision (multiply, then add).

    The clamp is two strict comparisons, y < lo -> lo then y > hi -> hi, so a
    signed zero is kept as computed (min/max functions differ between libraries
    on -0.0 vs +0.0; comparisons do not).
    """
    y = shift + scale * z
    y = np.where(y < lo, lo, y)
    return np.where(y > hi, hi, y)
