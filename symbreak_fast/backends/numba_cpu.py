"""The Numba CPU backend: _spec mirrored function by function, same names, same
operation order, so every output bit equals the NumPy reference.

Layout for speed: each parallel task fills a contiguous output segment tile by
tile. A tile is TB consecutive Philox blocks; the round loop runs outside and
the loop over the TB counters inside, so LLVM vectorizes the 32x32->64
multiplies across counters (vpmuludq). Transforms are branch-free, written
from IEEE basic operations (no libm, no fastmath: LLVM never contracts a*b+c
into an FMA without the 'contract' flag, which fastmath=False leaves off).

Numba promotes uint32 arithmetic to 64 bits; every value that must wrap mod
2**32 is passed through np.uint32() at the point the spec wraps it.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .. import _spec as S
from .._request import Request, is_bfloat16
from ._numba_env import CACHE, parallel_launch

NAME = "numba"

_JIT = dict(cache=CACHE, error_model="numpy", nogil=True)   # CACHE: see _numba_env (read-only installs)
# per-element helpers are inlined at Numba-IR level: LLVM only vectorizes a loop whose
# body has no calls, and cross-function inlining is not guaranteed otherwise
_INL = dict(_JIT, inline="always")

TB = 64             # Philox blocks per tile (the vectorized inner loop length)
CHUNK = 1 << 16     # elements per parallel task (rows shorter than this are grouped)

M0 = np.uint64(S.PHILOX_M4x32_0)
M1 = np.uint64(S.PHILOX_M4x32_1)
W0 = np.uint32(S.PHILOX_W32_0)
W1 = np.uint32(S.PHILOX_W32_1)
MASK32 = np.uint64(0xFFFFFFFF)

TWO_M24 = S.TWO_M24
TWO_M31 = S.TWO_M31
TWO_M32 = S.TWO_M32
TWO_M53 = S.TWO_M53
F32_1, F32_2, F32_M2, F32_HALF = np.float32(1.0), np.float32(2.0), np.float32(-2.0), np.float32(0.5)
F64_1, F64_2, F64_M2, F64_HALF = np.float64(1.0), np.float64(2.0), np.float64(-2.0), np.float64(0.5)

LN2_HI_F32, LN2_LO_F32 = S.LN2_HI_F32, S.LN2_LO_F32
LOG_F32_C1, LOG_F32_C2, LOG_F32_C3, LOG_F32_C4 = S.LOG_F32_C
SQRT_HALF_BITS_F32 = np.uint32(S.SQRT_HALF_BITS_F32)
LN2_HI_F64, LN2_LO_F64 = S.LN2_HI_F64, S.LN2_LO_F64
LOG_F64_C = S.LOG_F64_C
SQRT_HALF_BITS_F64 = np.uint64(S.SQRT_HALF_BITS_F64)

PI_2M24_F32 = S.PI_2M24_F32
PI_2M52_F64 = S.PI_2M52_F64
SIN_F32_1, SIN_F32_2, SIN_F32_3, SIN_F32_4 = S.SIN_F32_C
COS_F32_1, COS_F32_2, COS_F32_3, COS_F32_4, COS_F32_5 = S.COS_F32_C
SIN_F64_C = S.SIN_F64_C
COS_F64_C = S.COS_F64_C

A7, B7, C7, D7, E7, F7 = S.PPND7_A, S.PPND7_B, S.PPND7_C, S.PPND7_D, S.PPND7_E, S.PPND7_F
A16, B16, C16, D16, E16, F16_ = S.PPND16_A, S.PPND16_B, S.PPND16_C, S.PPND16_D, S.PPND16_E, S.PPND16_F
SPLIT1_F32, SPLIT2_F32 = np.float32(S.PPND_SPLIT1), np.float32(S.PPND_SPLIT2)
CONST1_F32, CONST2_F32 = np.float32(S.PPND_CONST1), np.float32(S.PPND_CONST2)
SPLIT1_F64, SPLIT2_F64 = np.float64(S.PPND_SPLIT1), np.float64(S.PPND_SPLIT2)
CONST1_F64, CONST2_F64 = np.float64(S.PPND_CONST1), np.float64(S.PPND_CONST2)
TINY_F32, TINY_F64 = S.TINY_F32, S.TINY_F64
TRUNC_SCALE_EXP_F32 = S.TRUNC_SCALE_EXP_F32
TRUNC_HALF_SCALED_F32 = S.TRUNC_HALF_SCALED_F32
TRUNC_UNSCALE_F32 = S.TRUNC_UNSCALE_F32


# ---------------------------------------------------------------------------
# Philox4x32-10
# ---------------------------------------------------------------------------
@njit(**_INL)
def mulhilo32(a, b):
    p = np.uint64(a) * b
    return np.uint32(p & MASK32), np.uint32(p >> np.uint64(32))


@njit(**_INL)
def philox4x32_round(x0, x1, x2, x3, k0, k1):
    lo0, hi0 = mulhilo32(x0, M0)
    lo1, hi1 = mulhilo32(x2, M1)
    return np.uint32(hi1 ^ x1 ^ k0), lo1, np.uint32(hi0 ^ x3 ^ k1), lo0


@njit(**_JIT)
def philox4x32_10(c0, c1, c2, c3, k0, k1):
    x0, x1, x2, x3 = np.uint32(c0), np.uint32(c1), np.uint32(c2), np.uint32(c3)
    ka, kb = np.uint32(k0), np.uint32(k1)
    for r in range(10):
        if r:
            ka = np.uint32(ka + W0)
            kb = np.uint32(kb + W1)
        x0, x1, x2, x3 = philox4x32_round(x0, x1, x2, x3, ka, kb)
    return x0, x1, x2, x3


LO32 = np.uint64(0xFFFFFFFF)
HI32 = np.uint64(0xFFFFFFFF00000000)
S32 = np.uint64(32)


@njit(**_INL)
def philox4x32_round_x2(x0, x1, x2, x3, ka, kb):
    """philox4x32_round on two counters at once, SWAR: each uint64 holds the same
    word of an even (low half) and an odd (high half) counter. The 32x32->64
    products of both halves map onto vpmuludq, so LLVM fills whole 256-bit
    registers with eight counters instead of four zero-extended ones."""
    e0 = (x0 & LO32) * M0
    o0 = (x0 >> S32) * M0
    e1 = (x2 & LO32) * M1
    o1 = (x2 >> S32) * M1
    hi0 = (e0 >> S32) | (o0 & HI32)
    lo0 = (e0 & LO32) | (o0 << S32)
    hi1 = (e1 >> S32) | (o1 & HI32)
    lo1 = (e1 & LO32) | (o1 << S32)
    return hi1 ^ x1 ^ ka, lo1, hi0 ^ x3 ^ kb, lo0


@njit(**_INL)
def _key_x2(k):
    k = np.uint64(k)
    return k | (k << S32)


@njit(**_JIT)
def philox_tile(blk0, k0, k1, X0, X1, X2, X3):
    """Philox4x32-10 of counter blocks blk0 .. blk0 + TB - 1.

    X_w (uint64[TB // 2]) viewed as uint32[TB] holds word w of block blk0 + j at
    position j (little-endian halves). The ten rounds are unrolled so the loop
    body is straight-line code that LLVM vectorizes across j.
    """
    a0, b0 = np.uint32(k0), np.uint32(k1)
    a1, b1 = np.uint32(a0 + W0), np.uint32(b0 + W1)
    a2, b2 = np.uint32(a1 + W0), np.uint32(b1 + W1)
    a3, b3 = np.uint32(a2 + W0), np.uint32(b2 + W1)
    a4, b4 = np.uint32(a3 + W0), np.uint32(b3 + W1)
    a5, b5 = np.uint32(a4 + W0), np.uint32(b4 + W1)
    a6, b6 = np.uint32(a5 + W0), np.uint32(b5 + W1)
    a7, b7 = np.uint32(a6 + W0), np.uint32(b6 + W1)
    a8, b8 = np.uint32(a7 + W0), np.uint32(b7 + W1)
    a9, b9 = np.uint32(a8 + W0), np.uint32(b8 + W1)
    A0, A1, A2, A3, A4 = _key_x2(a0), _key_x2(a1), _key_x2(a2), _key_x2(a3), _key_x2(a4)
    A5, A6, A7, A8, A9 = _key_x2(a5), _key_x2(a6), _key_x2(a7), _key_x2(a8), _key_x2(a9)
    B0, B1, B2, B3, B4 = _key_x2(b0), _key_x2(b1), _key_x2(b2), _key_x2(b3), _key_x2(b4)
    B5, B6, B7, B8, B9 = _key_x2(b5), _key_x2(b6), _key_x2(b7), _key_x2(b8), _key_x2(b9)
    base = np.uint64(blk0)
    for j in range(TB // 2):
        be = base + np.uint64(2 * j)
        bo = be + np.uint64(1)
        y0 = (be & LO32) | (bo << S32)      # counter word 0 = block mod 2**32
        y1 = (be >> S32) | (bo & HI32)      # counter word 1 = block div 2**32
        y2 = np.uint64(0)
        y3 = np.uint64(0)
        y0, y1, y2, y3 = philox4x32_round_x2(y0, y1, y2, y3, A0, B0)
        y0, y1, y2, y3 = philox4x32_round_x2(y0, y1, y2, y3, A1, B1)
        y0, y1, y2, y3 = philox4x32_round_x2(y0, y1, y2, y3, A2, B2)
        y0, y1, y2, y3 = philox4x32_round_x2(y0, y1, y2, y3, A3, B3)
        y0, y1, y2, y3 = philox4x32_round_x2(y0, y1, y2, y3, A4, B4)
        y0, y1, y2, y3 = philox4x32_round_x2(y0, y1, y2, y3, A5, B5)
        y0, y1, y2, y3 = philox4x32_round_x2(y0, y1, y2, y3, A6, B6)
        y0, y1, y2, y3 = philox4x32_round_x2(y0, y1, y2, y3, A7, B7)
        y0, y1, y2, y3 = philox4x32_round_x2(y0, y1, y2, y3, A8, B8)
        y0, y1, y2, y3 = philox4x32_round_x2(y0, y1, y2, y3, A9, B9)
        X0[j] = y0
        X1[j] = y1
        X2[j] = y2
        X3[j] = y3


# ---------------------------------------------------------------------------
# bits -> uniforms
# ---------------------------------------------------------------------------
@njit(**_INL)
def bits_to_unit_float32(w):
    return np.float32(np.uint32(w) >> np.uint32(8)) * TWO_M24


@njit(**_INL)
def bits_to_open_unit_float32(w):
    return np.float32(np.int32((np.uint32(w) >> np.uint32(9)) * np.uint32(2) + np.uint32(1))) * TWO_M24


@njit(**_INL)
def bits_to_radius_float32(w):
    return np.float32(np.int32(np.uint32(w) >> np.uint32(1))) * TWO_M31 + TWO_M32


@njit(**_INL)
def _join64(hi, lo):
    return (np.uint64(hi) << np.uint64(32)) | np.uint64(lo)


@njit(**_INL)
def bits_to_unit_float64(hi, lo):
    return np.float64(np.int64(_join64(hi, lo) >> np.uint64(11))) * TWO_M53


@njit(**_INL)
def bits_to_open_unit_float64(hi, lo):
    m = (_join64(hi, lo) >> np.uint64(12)) * np.uint64(2) + np.uint64(1)
    return np.float64(np.int64(m)) * TWO_M53


@njit(**_INL)
def bits_to_radius_float64(hi, lo):
    return np.float64(np.int64((_join64(hi, lo) >> np.uint64(11)) + np.uint64(1))) * TWO_M53


# ---------------------------------------------------------------------------
# log
# ---------------------------------------------------------------------------
@njit(**_INL)
def log_float32(x, k_offset):
    bits = np.float32(x).view(np.uint32)
    k = np.int32(np.uint32(bits - SQRT_HALF_BITS_F32)) >> np.int32(23)
    m = np.uint32(bits - np.uint32(k << np.int32(23))).view(np.float32)
    f = m - F32_1
    s = f / (F32_2 + f)
    z = s * s
    p = z * (LOG_F32_C1 + z * (LOG_F32_C2 + z * (LOG_F32_C3 + z * LOG_F32_C4)))
    two_s = s + s
    log_m = two_s + two_s * p
    kf = np.float32(np.int32(k + np.int32(k_offset)))
    return kf * LN2_HI_F32 + (log_m + kf * LN2_LO_F32)


@njit(**_INL)
def log_float64(x):
    bits = np.float64(x).view(np.uint64)
    k = np.int64(bits - SQRT_HALF_BITS_F64) >> np.int64(52)
    m = np.uint64(bits - np.uint64(k << np.int64(52))).view(np.float64)
    f = m - F64_1
    s = f / (F64_2 + f)
    z = s * s
    c = LOG_F64_C
    p = c[9]
    p = c[8] + z * p
    p = c[7] + z * p
    p = c[6] + z * p
    p = c[5] + z * p
    p = c[4] + z * p
    p = c[3] + z * p
    p = c[2] + z * p
    p = c[1] + z * p
    p = c[0] + z * p
    p = z * p
    two_s = s + s
    log_m = two_s + two_s * p
    kf = np.float64(k)
    return kf * LN2_HI_F64 + (log_m + kf * LN2_LO_F64)


# ---------------------------------------------------------------------------
# sin/cos of the Box-Muller angle
# ---------------------------------------------------------------------------
@njit(**_INL)
def sincos_poly_float32(x):
    z = x * x
    s = x + x * (z * (SIN_F32_1 + z * (SIN_F32_2 + z * (SIN_F32_3 + z * SIN_F32_4))))
    c = F32_1 + z * (COS_F32_1 + z * (COS_F32_2 + z * (COS_F32_3 + z * (COS_F32_4 + z * COS_F32_5))))
    return s, c


@njit(**_INL)
def sincos_poly_float64(x):
    z = x * x
    a = SIN_F64_C
    ps = a[7]
    ps = a[6] + z * ps
    ps = a[5] + z * ps
    ps = a[4] + z * ps
    ps = a[3] + z * ps
    ps = a[2] + z * ps
    ps = a[1] + z * ps
    ps = a[0] + z * ps
    b = COS_F64_C
    pc = b[8]
    pc = b[7] + z * pc
    pc = b[6] + z * pc
    pc = b[5] + z * pc
    pc = b[4] + z * pc
    pc = b[3] + z * pc
    pc = b[2] + z * pc
    pc = b[1] + z * pc
    pc = b[0] + z * pc
    s = x + x * (z * ps)
    c = F64_1 + z * pc
    return s, c


@njit(**_INL)
def _quadrant_rotate_float32(q, swap, s, c):
    """_spec._quadrant_rotate with integer masks: selects and sign flips on the bit
    patterns (exactly np.where / unary minus), so LLVM vectorizes it. Every integer
    step is wrapped in np.uint32 so the vector lanes stay 32 bits wide."""
    U = np.uint32
    m = U(U(0) - U(swap ^ U(q & U(1))))
    nm = U(~m)
    sb = np.float32(s).view(U)
    cb = np.float32(c).view(U)
    cos_b = U(U(sb & m) | U(cb & nm))
    sin_b = U(U(cb & m) | U(sb & nm))
    flip_c = U(U(U(U(q + U(1)) >> U(1)) & U(1)) << U(31))
    flip_s = U(U(q >> U(1)) << U(31))
    return U(cos_b ^ flip_c).view(np.float32), U(sin_b ^ flip_s).view(np.float32)


@njit(**_INL)
def _quadrant_rotate_float64(q, swap, s, c):
    m = np.uint64(np.uint64(0) - np.uint64(swap ^ (q & np.uint64(1))))
    sb = np.float64(s).view(np.uint64)
    cb = np.float64(c).view(np.uint64)
    cos_b = (sb & m) | (cb & ~m)
    sin_b = (cb & m) | (sb & ~m)
    flip_c = np.uint64(((q + np.uint64(1)) >> np.uint64(1)) & np.uint64(1)) << np.uint64(63)
    flip_s = np.uint64(q >> np.uint64(1)) << np.uint64(63)
    return np.uint64(cos_b ^ flip_c).view(np.float64), np.uint64(sin_b ^ flip_s).view(np.float64)


@njit(**_INL)
def angle_cos_sin_float32(w):
    U = np.uint32
    k = U(U(w) >> U(8))
    q = U(k >> U(22))
    j = U(k & U(0x3FFFFF))
    swap = U(j >> U(21))                                # upper half of the quadrant
    j = U(j ^ U(U(U(0) - swap) & U(0x3FFFFF)))          # = 0x3FFFFF - j there
    x = np.float32(np.int32(U(U(j << U(1)) | U(1)))) * PI_2M24_F32
    s, c = sincos_poly_float32(x)
    return _quadrant_rotate_float32(q, swap, s, c)


@njit(**_INL)
def angle_cos_sin_float64(hi, lo):
    m = _join64(hi, lo) >> np.uint64(12)
    q = m >> np.uint64(50)
    j = m & np.uint64((1 << 50) - 1)
    swap = j >> np.uint64(49)
    j = j ^ (np.uint64(np.uint64(0) - swap) & np.uint64((1 << 50) - 1))
    x = np.float64(np.int64(j * np.uint64(2) + np.uint64(1))) * PI_2M52_F64
    s, c = sincos_poly_float64(x)
    return _quadrant_rotate_float64(q, swap, s, c)


@njit(**_INL)
def box_muller_radius_float32(u1):
    return np.sqrt(log_float32(u1, 0) * F32_M2)


@njit(**_INL)
def box_muller_radius_float64(u1):
    return np.sqrt(log_float64(u1) * F64_M2)


# ---------------------------------------------------------------------------
# inverse normal CDF (AS 241), branch-free
# ---------------------------------------------------------------------------
@njit(**_INL)
def ndtri_lower_float32(s):
    """_spec.ndtri_lower_float32 with the branch selected *before* the division:
    (num/den if c else num2/den2) == (num if c else num2)/(den if c else den2)
    bit for bit, and -(a/b) == (-a)/b, so one division serves all three
    branches; choosing the tail coefficients first is likewise exact."""
    s = TINY_F32 if s < TINY_F32 else s
    q = (s - TRUNC_HALF_SCALED_F32) * TRUNC_UNSCALE_F32
    rc = CONST1_F32 - q * q
    rt = np.sqrt(-log_float32(s, -TRUNC_SCALE_EXP_F32))
    mid = rt <= SPLIT2_F32
    r = (rt - CONST2_F32) if mid else (rt - SPLIT2_F32)
    c0 = C7[0] if mid else E7[0]
    c1 = C7[1] if mid else E7[1]
    c2 = C7[2] if mid else E7[2]
    c3 = C7[3] if mid else E7[3]
    d1 = D7[1] if mid else F7[1]
    d2 = D7[2] if mid else F7[2]
    tnum = c0 + r * (c1 + r * (c2 + r * c3))
    tden = D7[0] + r * (d1 + r * d2)
    cnum = q * (A7[0] + rc * (A7[1] + rc * (A7[2] + rc * A7[3])))
    cden = B7[0] + rc * (B7[1] + rc * (B7[2] + rc * B7[3]))
    central = q >= -SPLIT1_F32
    return (cnum if central else -tnum) / (cden if central else tden)


@njit(**_INL)
def _horner8(x, c):
    p = c[7]
    p = c[6] + x * p
    p = c[5] + x * p
    p = c[4] + x * p
    p = c[3] + x * p
    p = c[2] + x * p
    p = c[1] + x * p
    return c[0] + x * p


@njit(**_INL)
def ndtri_lower_float64(s):
    s = TINY_F64 if s < TINY_F64 else s
    q = s - F64_HALF
    rc = CONST1_F64 - q * q
    rt = np.sqrt(-log_float64(s))
    mid = rt <= SPLIT2_F64
    r = (rt - CONST2_F64) if mid else (rt - SPLIT2_F64)
    tnum = _horner8(r, C16) if mid else _horner8(r, E16)
    tden = _horner8(r, D16) if mid else _horner8(r, F16_)
    cnum = q * _horner8(rc, A16)
    cden = _horner8(rc, B16)
    central = q >= -SPLIT1_F64
    return (cnum if central else -tnum) / (cden if central else tden)


@njit(**_INL)
def truncated_standard_normal_float32(u, pa, qb, mass):
    p = pa + mass * u
    q = qb + mass * (F32_1 - u)
    lower = p < q
    z = ndtri_lower_float32(p if lower else q)
    return z if lower else -z


@njit(**_INL)
def truncated_standard_normal_float64(u, pa, qb, mass):
    p = pa + mass * u
    q = qb + mass * (F64_1 - u)
    lower = p < q
    z = ndtri_lower_float64(p if lower else q)
    return z if lower else -z


# ---------------------------------------------------------------------------
# float32 -> float16 / bfloat16 bits, RNE
# ---------------------------------------------------------------------------
@njit(**_INL)
def round_float32_to_bfloat16_bits(x):
    b = np.float32(x).view(np.uint32)
    rounded = np.uint32(b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    nan = (b & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    return np.uint16(((b >> np.uint32(16)) | np.uint32(0x40)) if nan else rounded)


@njit(**_INL)
def round_float32_to_float16_bits(x):
    b = np.float32(x).view(np.uint32)
    sign = (b >> np.uint32(16)) & np.uint32(0x8000)
    a = b & np.uint32(0x7FFFFFFF)
    r = np.uint32(a - np.uint32(0x38000000))
    normal = np.uint32(r + np.uint32(0xFFF) + ((r >> np.uint32(13)) & np.uint32(1))) >> np.uint32(13)
    e = a >> np.uint32(23)
    mant = (a & np.uint32(0x7FFFFF)) | np.uint32(0x800000)
    shift = np.uint32(126) - min(e, np.uint32(126))
    shift = min(max(shift, np.uint32(1)), np.uint32(31))
    half = np.uint32(1) << (shift - np.uint32(1))
    rem = mant & np.uint32((np.uint32(1) << shift) - np.uint32(1))
    sub = mant >> shift
    if rem > half or (rem == half and (sub & np.uint32(1)) == np.uint32(1)):
        sub = sub + np.uint32(1)
    out = normal if a >= np.uint32(0x38800000) else (sub if a > np.uint32(0x33000000) else np.uint32(0))
    out = np.uint32(0x7C00) if a >= np.uint32(0x477FF000) else out
    out = np.uint32(0x7E00) if a > np.uint32(0x7F800000) else out
    return np.uint16(out | sign)


# ---------------------------------------------------------------------------
# tiles and kernels
#   dist: 0 uniform, 1 normal, 2 truncated normal, 3 raw bits
#   kind (float32 family): 0 float32, 1 float16 bits, 2 bfloat16 bits
# ---------------------------------------------------------------------------
@njit(**_JIT)
def _tile32(dist, X0, X1, X2, X3, t, pa, qb, mass):
    """t[0:4*TB] = standard variates of the tile's 4*TB elements (float32 family)."""
    x0, x1, x2, x3 = X0.view(np.uint32), X1.view(np.uint32), X2.view(np.uint32), X3.view(np.uint32)
    if dist == 0:
        for j in range(TB):
            t[4 * j] = bits_to_unit_float32(x0[j])
            t[4 * j + 1] = bits_to_unit_float32(x1[j])
            t[4 * j + 2] = bits_to_unit_float32(x2[j])
            t[4 * j + 3] = bits_to_unit_float32(x3[j])
    elif dist == 1:
        for j in range(TB):
            r0 = box_muller_radius_float32(bits_to_radius_float32(x0[j]))
            c0, s0 = angle_cos_sin_float32(x1[j])
            r1 = box_muller_radius_float32(bits_to_radius_float32(x2[j]))
            c1, s1 = angle_cos_sin_float32(x3[j])
            t[4 * j] = r0 * c0
            t[4 * j + 1] = r0 * s0
            t[4 * j + 2] = r1 * c1
            t[4 * j + 3] = r1 * s1
    else:
        for j in range(TB):
            t[4 * j] = truncated_standard_normal_float32(bits_to_open_unit_float32(x0[j]), pa, qb, mass)
            t[4 * j + 1] = truncated_standard_normal_float32(bits_to_open_unit_float32(x1[j]), pa, qb, mass)
            t[4 * j + 2] = truncated_standard_normal_float32(bits_to_open_unit_float32(x2[j]), pa, qb, mass)
            t[4 * j + 3] = truncated_standard_normal_float32(bits_to_open_unit_float32(x3[j]), pa, qb, mass)


@njit(**_INL)
def affine_clamp(z, shift, scale, lo, hi):
    y = shift + scale * z
    y = lo if y < lo else y
    return hi if y > hi else y


@njit(**_JIT)
def _store32(out, o, t, s, n, kind, shift, scale, lo, hi):
    """out[o:o+n] = dtype(affine_clamp(t[s:s+n]))."""
    if kind == 0:
        for i in range(n):
            out[o + i] = affine_clamp(t[s + i], shift, scale, lo, hi)
    elif kind == 1:
        for i in range(n):
            out[o + i] = round_float32_to_float16_bits(affine_clamp(t[s + i], shift, scale, lo, hi))
    else:
        for i in range(n):
            out[o + i] = round_float32_to_bfloat16_bits(affine_clamp(t[s + i], shift, scale, lo, hi))


@njit(**_JIT)
def _segment32(out, o0, g0, n, k0, k1, dist, kind, shift, scale, lo, hi, pa, qb, mass,
               x0, x1, x2, x3, t, tb):
    blk = g0 >> 2
    blk_end = (g0 + n + 3) >> 2
    while blk < blk_end:
        philox_tile(blk, k0, k1, x0, x1, x2, x3)
        first = blk * 4
        e_lo = max(g0, first)
        e_hi = min(g0 + n, first + 4 * TB)
        if dist == 3:
            # de-interleave the SWAR words into block order with 64-bit lane ops:
            # tb64[4j .. 4j+3] = words (0,1), (2,3) of block 2j, then of block 2j+1
            tb64 = tb.view(np.uint64)
            for j in range(TB // 2):
                tb64[4 * j] = (x0[j] & LO32) | (x1[j] << S32)
                tb64[4 * j + 1] = (x2[j] & LO32) | (x3[j] << S32)
                tb64[4 * j + 2] = (x0[j] >> S32) | (x1[j] & HI32)
                tb64[4 * j + 3] = (x2[j] >> S32) | (x3[j] & HI32)
            o = o0 + (e_lo - g0)
            s = e_lo - first
            for i in range(e_hi - e_lo):
                out[o + i] = tb[s + i]
        else:
            _tile32(dist, x0, x1, x2, x3, t, pa, qb, mass)
            _store32(out, o0 + (e_lo - g0), t, e_lo - first, e_hi - e_lo, kind, shift, scale, lo, hi)
        blk += TB


@njit(**_INL)
def _philox_buffers():
    """The four SWAR word arrays one task's philox_tile calls write into."""
    return (np.empty(TB // 2, np.uint64), np.empty(TB // 2, np.uint64), np.empty(TB // 2, np.uint64),
            np.empty(TB // 2, np.uint64))


@njit(**_INL)
def _task_plan(nrows, row_len):
    """(rows per task, chunks per row, tasks): long rows are cut into CHUNK-element
    pieces, short rows are grouped until a task holds about CHUNK elements."""
    if row_len >= CHUNK:
        rpt = 1
        nch = (row_len + CHUNK - 1) // CHUNK
    else:
        rpt = max(1, CHUNK // row_len)
        nch = 1
    return rpt, nch, ((nrows + rpt - 1) // rpt) * nch


@njit(**_INL)
def _task_rows(task, nrows, row_len, rpt, nch):
    """(first row, end row, offset in the row, elements per row) of one task."""
    rb = task // nch
    c = task - rb * nch
    s0 = c * CHUNK
    return rb * rpt, min(nrows, (rb + 1) * rpt), s0, min(row_len, s0 + CHUNK) - s0


@njit(parallel=True, **_JIT)
def fill32(out, row_starts, row_len, k0, k1, dist, kind, shift, scale, lo, hi, pa, qb, mass):
    """Fill ``out`` (float32, uint16 or uint32, 1-D) for the 32-bit family."""
    nrows = row_starts.shape[0]
    rpt, nch, ntasks = _task_plan(nrows, row_len)
    for task in prange(ntasks):
        x0, x1, x2, x3 = _philox_buffers()
        t = np.empty(4 * TB, np.float32)
        tb = np.empty(4 * TB, np.uint32)
        r0, r1, s0, n = _task_rows(task, nrows, row_len, rpt, nch)
        for r in range(r0, r1):
            _segment32(out, r * row_len + s0, row_starts[r] + s0, n, k0, k1, dist, kind,
                       shift, scale, lo, hi, pa, qb, mass, x0, x1, x2, x3, t, tb)


@njit(**_JIT)
def _tile64(dist, X0, X1, X2, X3, t, pa, qb, mass):
    """t[0:2*TB] = standard variates of the tile's 2*TB float64 elements."""
    x0, x1, x2, x3 = X0.view(np.uint32), X1.view(np.uint32), X2.view(np.uint32), X3.view(np.uint32)
    if dist == 0:
        for j in range(TB):
            t[2 * j] = bits_to_unit_float64(x0[j], x1[j])
            t[2 * j + 1] = bits_to_unit_float64(x2[j], x3[j])
    elif dist == 1:
        for j in range(TB):
            r = box_muller_radius_float64(bits_to_radius_float64(x0[j], x1[j]))
            c, s = angle_cos_sin_float64(x2[j], x3[j])
            t[2 * j] = r * c
            t[2 * j + 1] = r * s
    else:
        for j in range(TB):
            t[2 * j] = truncated_standard_normal_float64(bits_to_open_unit_float64(x0[j], x1[j]), pa, qb, mass)
            t[2 * j + 1] = truncated_standard_normal_float64(bits_to_open_unit_float64(x2[j], x3[j]), pa, qb, mass)


@njit(**_JIT)
def _segment64(out, o0, g0, n, k0, k1, dist, shift, scale, lo, hi, pa, qb, mass, x0, x1, x2, x3, t):
    blk = g0 >> 1
    blk_end = (g0 + n + 1) >> 1
    while blk < blk_end:
        philox_tile(blk, k0, k1, x0, x1, x2, x3)
        first = blk * 2
        e_lo = max(g0, first)
        e_hi = min(g0 + n, first + 2 * TB)
        _tile64(dist, x0, x1, x2, x3, t, pa, qb, mass)
        o = o0 + (e_lo - g0)
        s = e_lo - first
        for i in range(e_hi - e_lo):
            out[o + i] = affine_clamp(t[s + i], shift, scale, lo, hi)
        blk += TB


@njit(parallel=True, **_JIT)
def fill64(out, row_starts, row_len, k0, k1, dist, shift, scale, lo, hi, pa, qb, mass):
    """Fill the float64 1-D ``out``."""
    nrows = row_starts.shape[0]
    rpt, nch, ntasks = _task_plan(nrows, row_len)
    for task in prange(ntasks):
        x0, x1, x2, x3 = _philox_buffers()
        t = np.empty(2 * TB, np.float64)
        r0, r1, s0, n = _task_rows(task, nrows, row_len, rpt, nch)
        for r in range(r0, r1):
            _segment64(out, r * row_len + s0, row_starts[r] + s0, n, k0, k1, dist,
                       shift, scale, lo, hi, pa, qb, mass, x0, x1, x2, x3, t)


@njit(**_JIT)
def fill32_serial(out, row_starts, row_len, k0, k1, dist, kind, shift, scale, lo, hi, pa, qb, mass):
    """fill32 in the calling thread, for requests of at most one task: a parallel
    launch costs ~10 us idle and milliseconds when another process holds a core."""
    nrows = row_starts.shape[0]
    rpt, nch, ntasks = _task_plan(nrows, row_len)
    x0, x1, x2, x3 = _philox_buffers()
    t = np.empty(4 * TB, np.float32)
    tb = np.empty(4 * TB, np.uint32)
    for task in range(ntasks):
        r0, r1, s0, n = _task_rows(task, nrows, row_len, rpt, nch)
        for r in range(r0, r1):
            _segment32(out, r * row_len + s0, row_starts[r] + s0, n, k0, k1, dist, kind,
                       shift, scale, lo, hi, pa, qb, mass, x0, x1, x2, x3, t, tb)


@njit(**_JIT)
def fill64_serial(out, row_starts, row_len, k0, k1, dist, shift, scale, lo, hi, pa, qb, mass):
    """fill64 in the calling thread (see fill32_serial)."""
    nrows = row_starts.shape[0]
    rpt, nch, ntasks = _task_plan(nrows, row_len)
    x0, x1, x2, x3 = _philox_buffers()
    t = np.empty(2 * TB, np.float64)
    for task in range(ntasks):
        r0, r1, s0, n = _task_rows(task, nrows, row_len, rpt, nch)
        for r in range(r0, r1):
            _segment64(out, r * row_len + s0, row_starts[r] + s0, n, k0, k1, dist,
                       shift, scale, lo, hi, pa, qb, mass, x0, x1, x2, x3, t)


_DIST = {"uniform": 0, "normal": 1, "truncated_normal": 2, "bits": 3}


def generate(req: Request, out_flat: np.ndarray) -> None:
    row_starts, row_len = req.rows()
    k0, k1 = np.uint32(req.k0), np.uint32(req.k1)
    dist = _DIST[req.dist]
    serial = out_flat.size <= CHUNK      # one task: no parallel launch
    # one conversion for all scalar parameters (each rounded once, RNE, as np.float32(x) would)
    f64 = req.compute == "float64"
    shift, scale, lo, hi, pa, qb, mass = np.array(
        (req.shift, req.scale, req.lo, req.hi, req.pa, req.qb, req.mass), np.float64 if f64 else np.float32)
    if f64:
        args = (out_flat, row_starts, np.int64(row_len), k0, k1, dist, shift, scale, lo, hi, pa, qb, mass)
        if serial:
            fill64_serial(*args)
        else:
            parallel_launch(fill64, *args)
        return
    kind = 1 if req.dtype == np.float16 else (2 if is_bfloat16(req.dtype) else 0)
    args = (out_flat, row_starts, np.int64(row_len), k0, k1, dist, kind, shift, scale, lo, hi, pa, qb, mass)
    if serial:
        fill32_serial(*args)
    else:
        parallel_launch(fill32, *args)
