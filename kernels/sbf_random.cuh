// symbreak_fast: the per-element arithmetic of the random streams, for CUDA and for host C++.
//
// This header mirrors symbreak_fast/_spec.py (the specification in code) function by
// function, under the same names, and docs/RNG.md describes the contract. It compiles
//   * under NVRTC/nvcc for the kernels in sbf_fill.cu (SBF_FN = __device__ inline), with
//     -fmad=false so no multiply-add is contracted into an FMA, and the NVRTC defaults
//     -prec-div=true -prec-sqrt=true -ftz=false (IEEE division and square root, subnormals kept);
//   * as plain C++ on the host (g++ -O2 -ffp-contract=off), the emulation that proves the
//     kernels' bits without a GPU (tests/test_cuda_host.py).
// Rules (as in the spec): only IEEE basic operations, each rounded to the working precision
// (float or double) before the next; int<->float conversions round to nearest even; no
// platform transcendental functions; every element is a pure function of (key, index).
#ifndef SBF_RANDOM_CUH
#define SBF_RANDOM_CUH

#include "sbf_constants.cuh"

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define SBF_FN __device__ __forceinline__
#define SBF_DEVICE_CODE 1
#else
#define SBF_FN static inline
#include <string.h>
#include <math.h>
#endif

typedef unsigned int sbf_u32;
typedef int sbf_i32;
typedef unsigned long long sbf_u64;
typedef long long sbf_i64;
typedef unsigned short sbf_u16;

// --- bit reinterpretation ------------------------------------------------------------------
SBF_FN sbf_u32 f32_bits(float x) {
#ifdef SBF_DEVICE_CODE
    return __float_as_uint(x);
#else
    sbf_u32 b; memcpy(&b, &x, 4); return b;
#endif
}
SBF_FN float f32_from_bits(sbf_u32 b) {
#ifdef SBF_DEVICE_CODE
    return __uint_as_float(b);
#else
    float x; memcpy(&x, &b, 4); return x;
#endif
}
SBF_FN sbf_u64 f64_bits(double x) {
#ifdef SBF_DEVICE_CODE
    return (sbf_u64)__double_as_longlong(x);
#else
    sbf_u64 b; memcpy(&b, &x, 8); return b;
#endif
}
SBF_FN double f64_from_bits(sbf_u64 b) {
#ifdef SBF_DEVICE_CODE
    return __longlong_as_double((long long)b);
#else
    double x; memcpy(&x, &b, 8); return x;
#endif
}
// correctly rounded square roots (IEEE): explicit round-to-nearest intrinsics on the device
SBF_FN float sqrt_f32(float x) {
#ifdef SBF_DEVICE_CODE
    return __fsqrt_rn(x);
#else
    return sqrtf(x);
#endif
}
SBF_FN double sqrt_f64(double x) {
#ifdef SBF_DEVICE_CODE
    return __dsqrt_rn(x);
#else
    return sqrt(x);
#endif
}

// --- Philox4x32-10 (Random123 philox.h) ---------------------------------------------------
struct sbf_words { sbf_u32 w0, w1, w2, w3; };

SBF_FN void mulhilo32(sbf_u32 a, sbf_u32 b, sbf_u32* lo, sbf_u32* hi) {
    sbf_u64 p = (sbf_u64)a * (sbf_u64)b;
    *lo = (sbf_u32)p;
    *hi = (sbf_u32)(p >> 32);
}

// One round: out = [hi1 ^ x1 ^ k0, lo1, hi0 ^ x3 ^ k1, lo0]
SBF_FN sbf_words philox4x32_round(sbf_words x, sbf_u32 k0, sbf_u32 k1) {
    sbf_u32 lo0, hi0, lo1, hi1;
    mulhilo32(x.w0, PHILOX_M4x32_0, &lo0, &hi0);
    mulhilo32(x.w2, PHILOX_M4x32_1, &lo1, &hi1);
    sbf_words r = {hi1 ^ x.w1 ^ k0, lo1, hi0 ^ x.w3 ^ k1, lo0};
    return r;
}

// Philox4x32-10 of counter (c0, c1, c2, c3) under key (k0, k1); the key is bumped
// (wrapping mod 2**32) by (PHILOX_W32_0, PHILOX_W32_1) between rounds.
SBF_FN sbf_words philox4x32_10(sbf_u32 c0, sbf_u32 c1, sbf_u32 c2, sbf_u32 c3, sbf_u32 k0, sbf_u32 k1) {
    sbf_words x = {c0, c1, c2, c3};
#ifdef SBF_DEVICE_CODE
#pragma unroll
#endif
    for (int r = 0; r < PHILOX_ROUNDS; ++r) {
        if (r) { k0 += PHILOX_W32_0; k1 += PHILOX_W32_1; }
        x = philox4x32_round(x, k0, k1);
    }
    return x;
}

// The four words of counter block `block`: counter = (lo32, hi32, 0, 0).
SBF_FN sbf_words philox_block(sbf_u64 block, sbf_u32 k0, sbf_u32 k1) {
    return philox4x32_10((sbf_u32)block, (sbf_u32)(block >> 32), 0u, 0u, k0, k1);
}

SBF_FN sbf_u32 select_word(sbf_words w, int i) {
    return i == 0 ? w.w0 : (i == 1 ? w.w1 : (i == 2 ? w.w2 : w.w3));
}

// --- bits -> uniform floats ---------------------------------------------------------------
// [0, 1): top 24 bits times 2**-24. Exact.
SBF_FN float bits_to_unit_float32(sbf_u32 w) { return (float)(w >> 8) * TWO_M24_F32; }
// (0, 1): (2*(w >> 9) + 1) * 2**-24. Exact.
SBF_FN float bits_to_open_unit_float32(sbf_u32 w) { return (float)((w >> 9) * 2u + 1u) * TWO_M24_F32; }
// (0, 1]: float32(int32(w >> 1)) * 2**-31 + 2**-32 (two RNE roundings).
SBF_FN float bits_to_radius_float32(sbf_u32 w) {
    float a = (float)(sbf_i32)(w >> 1) * TWO_M31_F32;
    return a + TWO_M32_F32;
}
SBF_FN sbf_u64 join64(sbf_u32 hi, sbf_u32 lo) { return ((sbf_u64)hi << 32) | (sbf_u64)lo; }
// [0, 1): top 53 bits of hi:lo times 2**-53. Exact.
SBF_FN double bits_to_unit_float64(sbf_u32 hi, sbf_u32 lo) { return (double)(join64(hi, lo) >> 11) * TWO_M53_F64; }
// (0, 1): (2*(m >> 12) + 1) * 2**-53. Exact.
SBF_FN double bits_to_open_unit_float64(sbf_u32 hi, sbf_u32 lo) {
    return (double)((join64(hi, lo) >> 12) * 2ull + 1ull) * TWO_M53_F64;
}
// (0, 1]: ((m >> 11) + 1) * 2**-53. Exact.
SBF_FN double bits_to_radius_float64(sbf_u32 hi, sbf_u32 lo) {
    return (double)((join64(hi, lo) >> 11) + 1ull) * TWO_M53_F64;
}

// --- log from basic operations (atanh series; see _spec.py) -------------------------------
// log(x) + k_offset*log(2) for positive normal float32 x.
SBF_FN float log_float32(float x, sbf_i32 k_offset) {
    sbf_u32 bits = f32_bits(x);
    sbf_i32 k = ((sbf_i32)(bits - SQRT_HALF_BITS_F32)) >> 23;   // arithmetic shift
    float m = f32_from_bits(bits - ((sbf_u32)k << 23));       // in [sqrt(1/2), sqrt(2))
    float f = m - 1.0f;
    float s = f / (2.0f + f);
    float z = s * s;
    float p = z * (LOG_F32_C0 + z * (LOG_F32_C1 + z * (LOG_F32_C2 + z * LOG_F32_C3)));
    float two_s = s + s;
    float log_m = two_s + two_s * p;
    float kf = (float)(k + k_offset);
    float hi = kf * LN2_HI_F32;
    float lo = kf * LN2_LO_F32;
    return hi + (log_m + lo);
}

SBF_FN double log_float64(double x) {
    sbf_u64 bits = f64_bits(x);
    sbf_i64 k = ((sbf_i64)(bits - SQRT_HALF_BITS_F64)) >> 52;
    double m = f64_from_bits(bits - ((sbf_u64)k << 52));
    double f = m - 1.0;
    double s = f / (2.0 + f);
    double z = s * s;
    double p = LOG_F64_C9;
    p = LOG_F64_C8 + z * p; p = LOG_F64_C7 + z * p; p = LOG_F64_C6 + z * p;
    p = LOG_F64_C5 + z * p; p = LOG_F64_C4 + z * p; p = LOG_F64_C3 + z * p;
    p = LOG_F64_C2 + z * p; p = LOG_F64_C1 + z * p; p = LOG_F64_C0 + z * p;
    p = z * p;
    double two_s = s + s;
    double log_m = two_s + two_s * p;
    double kf = (double)k;
    double hi = kf * LN2_HI_F64;
    double lo = kf * LN2_LO_F64;
    return hi + (log_m + lo);
}

// --- sin/cos of the Box-Muller angle, reduced exactly in integers ------------------------
struct sbf_sc32 { float s, c; };
struct sbf_sc64 { double s, c; };

SBF_FN sbf_sc32 sincos_poly_float32(float x) {
    float z = x * x;
    float ps = SIN_F32_C3;
    ps = SIN_F32_C2 + z * ps; ps = SIN_F32_C1 + z * ps; ps = SIN_F32_C0 + z * ps;
    float pc = COS_F32_C4;
    pc = COS_F32_C3 + z * pc; pc = COS_F32_C2 + z * pc; pc = COS_F32_C1 + z * pc; pc = COS_F32_C0 + z * pc;
    sbf_sc32 r;
    r.s = x + x * (z * ps);
    r.c = 1.0f + z * pc;
    return r;
}

SBF_FN sbf_sc64 sincos_poly_float64(double x) {
    double z = x * x;
    double ps = SIN_F64_C7;
    ps = SIN_F64_C6 + z * ps; ps = SIN_F64_C5 + z * ps; ps = SIN_F64_C4 + z * ps; ps = SIN_F64_C3 + z * ps;
    ps = SIN_F64_C2 + z * ps; ps = SIN_F64_C1 + z * ps; ps = SIN_F64_C0 + z * ps;
    double pc = COS_F64_C8;
    pc = COS_F64_C7 + z * pc; pc = COS_F64_C6 + z * pc; pc = COS_F64_C5 + z * pc; pc = COS_F64_C4 + z * pc;
    pc = COS_F64_C3 + z * pc; pc = COS_F64_C2 + z * pc; pc = COS_F64_C1 + z * pc; pc = COS_F64_C0 + z * pc;
    sbf_sc64 r;
    r.s = x + x * (z * ps);
    r.c = 1.0 + z * pc;
    return r;
}

// (cos theta, sin theta) from quadrant q, the half-quadrant swap flag and (sin x, cos x):
// sign flips and swaps only. Returned as .c = cos theta, .s = sin theta.
SBF_FN sbf_sc32 quadrant_rotate_float32(sbf_u32 q, bool swap, sbf_sc32 v) {
    float cs = swap ? v.s : v.c;
    float sn = swap ? v.c : v.s;
    sbf_sc32 r;
    r.c = q == 0 ? cs : (q == 1 ? -sn : (q == 2 ? -cs : sn));
    r.s = q == 0 ? sn : (q == 1 ? cs : (q == 2 ? -sn : -cs));
    return r;
}

SBF_FN sbf_sc64 quadrant_rotate_float64(sbf_u64 q, bool swap, sbf_sc64 v) {
    double cs = swap ? v.s : v.c;
    double sn = swap ? v.c : v.s;
    sbf_sc64 r;
    r.c = q == 0 ? cs : (q == 1 ? -sn : (q == 2 ? -cs : sn));
    r.s = q == 0 ? sn : (q == 1 ? cs : (q == 2 ? -sn : -cs));
    return r;
}

// theta = 2*pi*((w >> 8) + 1/2) / 2**24
SBF_FN sbf_sc32 angle_cos_sin_float32(sbf_u32 w) {
    sbf_u32 k = w >> 8;
    sbf_u32 q = k >> 22;
    sbf_u32 j = k & 0x3FFFFFu;
    bool swap = j >= 0x200000u;
    j = swap ? 0x3FFFFFu - j : j;
    float x = (float)(j * 2u + 1u) * PI_2M24_F32;
    return quadrant_rotate_float32(q, swap, sincos_poly_float32(x));
}

// theta = 2*pi*((m >> 12) + 1/2) / 2**52, m = hi:lo
SBF_FN sbf_sc64 angle_cos_sin_float64(sbf_u32 hi, sbf_u32 lo) {
    sbf_u64 m = join64(hi, lo) >> 12;
    sbf_u64 q = m >> 50;
    sbf_u64 j = m & ((1ull << 50) - 1ull);
    bool swap = j >= (1ull << 49);
    j = swap ? ((1ull << 50) - 1ull) - j : j;
    double x = (double)(j * 2ull + 1ull) * PI_2M52_F64;
    return quadrant_rotate_float64(q, swap, sincos_poly_float64(x));
}

SBF_FN float box_muller_radius_float32(float u1) { return sqrt_f32(log_float32(u1, 0) * -2.0f); }
SBF_FN double box_muller_radius_float64(double u1) { return sqrt_f64(log_float64(u1) * -2.0); }

// --- inverse normal CDF, AS 241 (branch-free in the spec; selects here give the same values)
#define SBF_H4(z, P) ((P##0) + (z) * ((P##1) + (z) * ((P##2) + (z) * (P##3))))
#define SBF_H3(z, P) ((P##0) + (z) * ((P##1) + (z) * (P##2)))
#define SBF_H8(z, P) ((P##0) + (z) * ((P##1) + (z) * ((P##2) + (z) * ((P##3) + (z) * ((P##4) + \
    (z) * ((P##5) + (z) * ((P##6) + (z) * (P##7))))))))

// Phi^{-1}(s * 2**-64) for float32 s in (0, 2**63] (probabilities scaled by 2**64).
SBF_FN float ndtri_lower_float32(float s) {
    s = s < TINY_F32 ? TINY_F32 : s;
    float q = (s - TRUNC_HALF_SCALED_F32) * TRUNC_UNSCALE_F32;
    float rc = PPND_CONST1_F32 - q * q;
    float central = q * SBF_H4(rc, PPND7_A) / SBF_H4(rc, PPND7_B);
    float rt = sqrt_f32(-log_float32(s, -TRUNC_SCALE_EXP_F32));
    float r1 = rt - PPND_CONST2_F32;
    float mid = SBF_H4(r1, PPND7_C) / SBF_H3(r1, PPND7_D);
    float r2 = rt - PPND_SPLIT2_F32;
    float far = SBF_H4(r2, PPND7_E) / SBF_H3(r2, PPND7_F);
    float tail = rt <= PPND_SPLIT2_F32 ? mid : far;
    return q >= -PPND_SPLIT1_F32 ? central : -tail;
}

// Phi^{-1}(s) for float64 s in (0, 1/2].
SBF_FN double ndtri_lower_float64(double s) {
    s = s < TINY_F64 ? TINY_F64 : s;
    double q = s - 0.5;
    double rc = PPND_CONST1_F64 - q * q;
    double central = q * SBF_H8(rc, PPND16_A) / SBF_H8(rc, PPND16_B);
    double rt = sqrt_f64(-log_float64(s));
    double r1 = rt - PPND_CONST2_F64;
    double mid = SBF_H8(r1, PPND16_C) / SBF_H8(r1, PPND16_D);
    double r2 = rt - PPND_SPLIT2_F64;
    double far = SBF_H8(r2, PPND16_E) / SBF_H8(r2, PPND16_F);
    double tail = rt <= PPND_SPLIT2_F64 ? mid : far;
    return q >= -PPND_SPLIT1_F64 ? central : -tail;
}

// Standard normal truncated to [a, b] from open uniform u: invert the smaller tail mass.
SBF_FN float truncated_standard_normal_float32(float u, float pa, float qb, float mass) {
    float p = pa + mass * u;
    float q = qb + mass * (1.0f - u);
    bool lower = p < q;
    float z = ndtri_lower_float32(lower ? p : q);
    return lower ? z : -z;
}

SBF_FN double truncated_standard_normal_float64(double u, double pa, double qb, double mass) {
    double p = pa + mass * u;
    double q = qb + mass * (1.0 - u);
    bool lower = p < q;
    double z = ndtri_lower_float64(lower ? p : q);
    return lower ? z : -z;
}

// --- float32 -> float16 / bfloat16 bits, round to nearest even ----------------------------
SBF_FN sbf_u16 round_float32_to_bfloat16_bits(float x) {
    sbf_u32 b = f32_bits(x);
    sbf_u32 rounded = (b + 0x7FFFu + ((b >> 16) & 1u)) >> 16;
    bool nan = (b & 0x7FFFFFFFu) > 0x7F800000u;
    return (sbf_u16)(nan ? ((b >> 16) | 0x40u) : rounded);
}

SBF_FN sbf_u16 round_float32_to_float16_bits(float x) {
    sbf_u32 b = f32_bits(x);
    sbf_u32 sign = (b >> 16) & 0x8000u;
    sbf_u32 a = b & 0x7FFFFFFFu;
    sbf_u32 r = a - 0x38000000u;
    sbf_u32 normal = (r + 0xFFFu + ((r >> 13) & 1u)) >> 13;
    sbf_u32 e = a >> 23;
    sbf_u32 mant = (a & 0x7FFFFFu) | 0x800000u;
    sbf_u32 shift = 126u - (e < 126u ? e : 126u);
    shift = shift < 1u ? 1u : (shift > 31u ? 31u : shift);
    sbf_u32 half = 1u << (shift - 1u);
    sbf_u32 rem = mant & ((1u << shift) - 1u);
    sbf_u32 sub = mant >> shift;
    sub = sub + ((rem > half) || (rem == half && (sub & 1u) == 1u) ? 1u : 0u);
    sbf_u32 out = a >= 0x38800000u ? normal : (a > 0x33000000u ? sub : 0u);
    out = a >= 0x477FF000u ? 0x7C00u : out;
    out = a > 0x7F800000u ? 0x7E00u : out;
    return (sbf_u16)(out | sign);
}

// --- element map: the spec's *_elements for one global index g -----------------------------
SBF_FN sbf_u32 random_bits_element(sbf_u64 g, sbf_u32 k0, sbf_u32 k1) {
    return select_word(philox_block(g >> 2, k0, k1), (int)(g & 3ull));
}
SBF_FN float standard_uniform_float32_element(sbf_u64 g, sbf_u32 k0, sbf_u32 k1) {
    return bits_to_unit_float32(random_bits_element(g, k0, k1));
}
SBF_FN float open_uniform_float32_element(sbf_u64 g, sbf_u32 k0, sbf_u32 k1) {
    return bits_to_open_unit_float32(random_bits_element(g, k0, k1));
}
SBF_FN float standard_normal_float32_element(sbf_u64 g, sbf_u32 k0, sbf_u32 k1) {
    sbf_words w = philox_block(g >> 2, k0, k1);
    bool second = (g & 2ull) != 0;
    float r = box_muller_radius_float32(bits_to_radius_float32(second ? w.w2 : w.w0));
    sbf_sc32 cs = angle_cos_sin_float32(second ? w.w3 : w.w1);
    return r * ((g & 1ull) ? cs.s : cs.c);
}
SBF_FN double standard_uniform_float64_element(sbf_u64 g, sbf_u32 k0, sbf_u32 k1) {
    sbf_words w = philox_block(g >> 1, k0, k1);
    bool odd = (g & 1ull) != 0;
    return bits_to_unit_float64(odd ? w.w2 : w.w0, odd ? w.w3 : w.w1);
}
SBF_FN double open_uniform_float64_element(sbf_u64 g, sbf_u32 k0, sbf_u32 k1) {
    sbf_words w = philox_block(g >> 1, k0, k1);
    bool odd = (g & 1ull) != 0;
    return bits_to_open_unit_float64(odd ? w.w2 : w.w0, odd ? w.w3 : w.w1);
}
SBF_FN double standard_normal_float64_element(sbf_u64 g, sbf_u32 k0, sbf_u32 k1) {
    sbf_words w = philox_block(g >> 1, k0, k1);
    double r = box_muller_radius_float64(bits_to_radius_float64(w.w0, w.w1));
    sbf_sc64 cs = angle_cos_sin_float64(w.w2, w.w3);
    return r * ((g & 1ull) ? cs.s : cs.c);
}

// clamp(shift + scale * z) to [lo, hi]: multiply, add, then two strict comparisons
SBF_FN float affine_clamp(float z, float shift, float scale, float lo, float hi) {
    float t = scale * z;
    float y = shift + t;
    y = y < lo ? lo : y;
    return y > hi ? hi : y;
}
SBF_FN double affine_clamp(double z, double shift, double scale, double lo, double hi) {
    double t = scale * z;
    double y = shift + t;
    y = y < lo ? lo : y;
    return y > hi ? hi : y;
}

// --- block forms used by the kernels: all outputs of one Philox block at once -------------
// Distribution codes shared with symbreak_fast/backends/cuda_cupy.py.
#define SBF_DIST_BITS 0
#define SBF_DIST_UNIFORM 1
#define SBF_DIST_NORMAL 2
#define SBF_DIST_TRUNCATED 3

struct sbf_f32x4 { float v0, v1, v2, v3; };
struct sbf_f64x2 { double v0, v1; };

// Standard variates of the 4 float32-family elements 4b..4b+3 of block words w
// (equal to standard_*_float32_element of each, evaluated once per Box-Muller pair).
template <int DIST>
SBF_FN sbf_f32x4 standard_block_float32(sbf_words w, float pa, float qb, float mass) {
    sbf_f32x4 r;
    if (DIST == SBF_DIST_UNIFORM) {
        r.v0 = bits_to_unit_float32(w.w0); r.v1 = bits_to_unit_float32(w.w1);
        r.v2 = bits_to_unit_float32(w.w2); r.v3 = bits_to_unit_float32(w.w3);
    } else if (DIST == SBF_DIST_NORMAL) {
        float r0 = box_muller_radius_float32(bits_to_radius_float32(w.w0));
        sbf_sc32 a0 = angle_cos_sin_float32(w.w1);
        float r1 = box_muller_radius_float32(bits_to_radius_float32(w.w2));
        sbf_sc32 a1 = angle_cos_sin_float32(w.w3);
        r.v0 = r0 * a0.c; r.v1 = r0 * a0.s; r.v2 = r1 * a1.c; r.v3 = r1 * a1.s;
    } else {
        r.v0 = truncated_standard_normal_float32(bits_to_open_unit_float32(w.w0), pa, qb, mass);
        r.v1 = truncated_standard_normal_float32(bits_to_open_unit_float32(w.w1), pa, qb, mass);
        r.v2 = truncated_standard_normal_float32(bits_to_open_unit_float32(w.w2), pa, qb, mass);
        r.v3 = truncated_standard_normal_float32(bits_to_open_unit_float32(w.w3), pa, qb, mass);
    }
    return r;
}

// Standard variates of the 2 float64 elements 2b, 2b+1 of block words w.
template <int DIST>
SBF_FN sbf_f64x2 standard_block_float64(sbf_words w, double pa, double qb, double mass) {
    sbf_f64x2 r;
    if (DIST == SBF_DIST_UNIFORM) {
        r.v0 = bits_to_unit_float64(w.w0, w.w1); r.v1 = bits_to_unit_float64(w.w2, w.w3);
    } else if (DIST == SBF_DIST_NORMAL) {
        double rad = box_muller_radius_float64(bits_to_radius_float64(w.w0, w.w1));
        sbf_sc64 a = angle_cos_sin_float64(w.w2, w.w3);
        r.v0 = rad * a.c; r.v1 = rad * a.s;
    } else {
        r.v0 = truncated_standard_normal_float64(bits_to_open_unit_float64(w.w0, w.w1), pa, qb, mass);
        r.v1 = truncated_standard_normal_float64(bits_to_open_unit_float64(w.w2, w.w3), pa, qb, mass);
    }
    return r;
}

#endif  // SBF_RANDOM_CUH
