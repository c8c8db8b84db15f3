// symbreak_fast fill kernels: every public stream, every dtype, whole tensors and index= boxes.
//
// symbreak_fast/backends/cuda_cupy.py compiles this file (its local includes inlined) with NVRTC
// itself, straight to a cubin for the device's sm_XX, with exactly these options
//   -std=c++17 -fmad=false            (no FMA contraction: each * and + rounds as in the spec)
//   -prec-div=true -prec-sqrt=true -ftz=false   (IEEE division / square root, subnormals kept)
// (cupy.RawModule(code=...) is not used: it adds -ftz=true), caches the cubin on disk under a
// hash of source, options, arch and NVRTC version, and loads it with cupy.RawModule(path=...)
// once per device and option set. The same file also compiles as host C++
// (kernels/emulate_host.cpp), where a sequential loop plays the grid.
//
// Work decomposition. The output is a set of rows (docs/RNG.md, "index="): row r starts at global
// flat index s_r = base + sum_i digit_i(r) * outer_stride[i] (digits of r over outer_size[], C
// order, computed on the device) and holds row_len consecutive elements; output element
// r*row_len + o is global element s_r + o. A work item is one Philox block of one row: the
// items of row r are the blocks (s_r >> 2) + j, j < per_row (two blocks per 4 elements when the
// row starts mid-block). Each thread handles whole blocks (4 words -> 4 float32-family outputs,
// or 2 float64 outputs) in a grid-stride loop, and stores them with one 16-byte (8-byte for
// 16-bit dtypes) vector store when the block lies inside the row and the address is aligned;
// otherwise element by element (sbf_store_block). Every element is a pure function of (key,
// global index), so the grid shape, the number of rows and the alignment never change the bits.
#include "sbf_random.cuh"

#ifdef SBF_DEVICE_CODE
#define SBF_KERNEL extern "C" __global__ void __launch_bounds__(256)
#define SBF_TID ((sbf_i64)blockIdx.x * (sbf_i64)blockDim.x + (sbf_i64)threadIdx.x)
#define SBF_NTHREADS ((sbf_i64)gridDim.x * (sbf_i64)blockDim.x)
typedef unsigned long long sbf_uptr;
#else
#include "emulate_grid.h"       // blockIdx & co. as host globals; SBF_TID, SBF_NTHREADS
#define SBF_KERNEL extern "C" void
typedef unsigned long long sbf_uptr;   // 64-bit hosts only (as the ctypes driver assumes)
#endif

// Output storage types and conversions from the working precision.
// KIND: 0 = float32, 1 = float16 bits, 2 = bfloat16 bits, 3 = uint32 bits, 4 = float64
template <int KIND> struct sbf_store;
template <> struct sbf_store<0> { typedef float T; };
template <> struct sbf_store<1> { typedef sbf_u16 T; };
template <> struct sbf_store<2> { typedef sbf_u16 T; };
template <> struct sbf_store<3> { typedef sbf_u32 T; };
template <> struct sbf_store<4> { typedef double T; };

template <int KIND>
SBF_FN typename sbf_store<KIND>::T sbf_convert32(float y) {
    if (KIND == 1) return (typename sbf_store<KIND>::T)round_float32_to_float16_bits(y);
    if (KIND == 2) return (typename sbf_store<KIND>::T)round_float32_to_bfloat16_bits(y);
    return (typename sbf_store<KIND>::T)y;
}

// Global flat index of the first element of row r.
SBF_FN sbf_i64 sbf_row_start(sbf_i64 r, sbf_i64 base, int n_outer, const sbf_i64* outer) {
    sbf_i64 s = base;
    for (int i = n_outer - 1; i >= 0; --i) {     // outer[i] = size, outer[n_outer + i] = stride
        sbf_i64 size = outer[i];
        sbf_i64 q = r / size;
        s += (r - q * size) * outer[n_outer + i];
        r = q;
    }
    return s;
}

// Work item -> (row r, its first global index s, Philox block b) for blocks of E elements
// (E = 4 or 2). per_row = the most blocks a row of row_len can touch: ((row_len + E - 2) / E) + 1.
struct sbf_item { sbf_i64 r, s, b; };

template <int E>
SBF_FN sbf_i64 sbf_blocks_per_row(sbf_i64 row_len) { return (row_len + E - 2) / E + 1; }

template <int E>
SBF_FN sbf_item sbf_locate(sbf_i64 item, sbf_i64 per_row, sbf_i64 n_rows, sbf_i64 row_len, sbf_i64 base,
                           int n_outer, const sbf_i64* outer) {
    sbf_item it;
    it.r = n_rows == 1 ? 0 : item / per_row;          // the whole-tensor case skips the division
    it.s = n_outer ? sbf_row_start(it.r, base, n_outer, outer) : base + it.r * row_len;
    it.b = (E == 4 ? it.s >> 2 : it.s >> 1) + (item - it.r * per_row);   // s >= 0
    return it;
}

// One whole Philox block's outputs with one vector store: 16 bytes for 4 x float32 / uint32 and
// 2 x float64, 8 bytes for 4 x 16-bit. The caller has checked that the block lies inside its row
// and that p is aligned to the vector's size. The vector is assembled from the values with
// make_* (never by reading the local array through another type); writing through a vector
// pointer is CUDA's own vector-access idiom (device memory has no declared C++ type). The host
// build copies the same bytes with memcpy and counts the vector stores, so the emulation checks
// when this path is taken (tests/test_cuda_host.py).
#ifdef SBF_DEVICE_CODE
SBF_FN void sbf_store_vector(float* p, const float* v) {
    __stwb(reinterpret_cast<float4*>(p), make_float4(v[0], v[1], v[2], v[3]));     // st.global.wb.v4.f32
}
SBF_FN void sbf_store_vector(sbf_u32* p, const sbf_u32* v) {
    __stwb(reinterpret_cast<uint4*>(p), make_uint4(v[0], v[1], v[2], v[3]));       // st.global.wb.v4.u32
}
SBF_FN void sbf_store_vector(sbf_u16* p, const sbf_u16* v) {
    __stwb(reinterpret_cast<ushort4*>(p), make_ushort4(v[0], v[1], v[2], v[3]));   // st.global.wb.v4.u16
}
SBF_FN void sbf_store_vector(double* p, const double* v) {
    __stwb(reinterpret_cast<double2*>(p), make_double2(v[0], v[1]));               // st.global.wb.v2.f64
}
#else
template <typename T>
SBF_FN void sbf_store_vector(T* p, const T* v) {
    memcpy(p, v, sizeof(T) == 2 ? 8 : 16);
    ++sbf_host_vector_stores;
}
#endif

// Store the E values v of one block (global elements g0 .. g0+E-1) into the row [s, s+len)
// whose first element sits at out + o_row: one vector store when the whole block is inside the
// row and its destination is aligned to the vector (sizeof(T) * E bytes), else element by
// element (row edges, and rows whose start is not congruent to a block start modulo the vector).
template <typename T, int E>
SBF_FN void sbf_store_block(T* out, sbf_i64 o_row, sbf_i64 s, sbf_i64 len, sbf_i64 g0, const T* v) {
    const sbf_i64 o = o_row + (g0 - s);         // output position of element g0 (may be < o_row)
    if (g0 >= s && g0 + E <= s + len) {
        T* p = out + o;
        if (((sbf_uptr)p & (sizeof(T) * E - 1)) == 0) {
            sbf_store_vector(p, v);
            return;
        }
        for (int e = 0; e < E; ++e) p[e] = v[e];
        return;
    }
    for (int e = 0; e < E; ++e) {
        sbf_i64 g = g0 + e;
        if (g >= s && g < s + len) out[o + e] = v[e];
    }
}

// float32 family (and uint32 bits): 4 elements per Philox block.
template <int DIST, int KIND>
SBF_FN void sbf_fill_family32(typename sbf_store<KIND>::T* out, sbf_i64 n_rows, sbf_i64 row_len, sbf_i64 base,
                              int n_outer, const sbf_i64* outer, sbf_u32 k0, sbf_u32 k1,
                              double shift_d, double scale_d, double lo_d, double hi_d,
                              double pa_d, double qb_d, double mass_d) {
    typedef typename sbf_store<KIND>::T T;
    // kernel parameters arrive as doubles holding float32 values: the conversion is exact
    const float shift = (float)shift_d, scale = (float)scale_d, lo = (float)lo_d, hi = (float)hi_d;
    const float pa = (float)pa_d, qb = (float)qb_d, mass = (float)mass_d;
    const sbf_i64 per_row = sbf_blocks_per_row<4>(row_len);
    const sbf_i64 n_items = n_rows * per_row;
    for (sbf_i64 item = SBF_TID; item < n_items; item += SBF_NTHREADS) {
        const sbf_item it = sbf_locate<4>(item, per_row, n_rows, row_len, base, n_outer, outer);
        const sbf_i64 g0 = it.b * 4;
        if (g0 >= it.s + row_len) continue;               // past the row's last block
        sbf_words w = philox_block((sbf_u64)it.b, k0, k1);
        T v[4];
        if (DIST == SBF_DIST_BITS) {
            v[0] = (T)w.w0; v[1] = (T)w.w1; v[2] = (T)w.w2; v[3] = (T)w.w3;
        } else {
            sbf_f32x4 z = standard_block_float32<DIST>(w, pa, qb, mass);
            v[0] = sbf_convert32<KIND>(affine_clamp(z.v0, shift, scale, lo, hi));
            v[1] = sbf_convert32<KIND>(affine_clamp(z.v1, shift, scale, lo, hi));
            v[2] = sbf_convert32<KIND>(affine_clamp(z.v2, shift, scale, lo, hi));
            v[3] = sbf_convert32<KIND>(affine_clamp(z.v3, shift, scale, lo, hi));
        }
        sbf_store_block<T, 4>(out, it.r * row_len, it.s, row_len, g0, v);
    }
}

// float64: 2 elements per Philox block.
template <int DIST>
SBF_FN void sbf_fill_family64(double* out, sbf_i64 n_rows, sbf_i64 row_len, sbf_i64 base,
                              int n_outer, const sbf_i64* outer, sbf_u32 k0, sbf_u32 k1,
                              double shift, double scale, double lo, double hi,
                              double pa, double qb, double mass) {
    const sbf_i64 per_row = sbf_blocks_per_row<2>(row_len);
    const sbf_i64 n_items = n_rows * per_row;
    for (sbf_i64 item = SBF_TID; item < n_items; item += SBF_NTHREADS) {
        const sbf_item it = sbf_locate<2>(item, per_row, n_rows, row_len, base, n_outer, outer);
        const sbf_i64 g0 = it.b * 2;
        if (g0 >= it.s + row_len) continue;
        sbf_words w = philox_block((sbf_u64)it.b, k0, k1);
        sbf_f64x2 z = standard_block_float64<DIST>(w, pa, qb, mass);
        double v[2];
        v[0] = affine_clamp(z.v0, shift, scale, lo, hi);
        v[1] = affine_clamp(z.v1, shift, scale, lo, hi);
        sbf_store_block<double, 2>(out, it.r * row_len, it.s, row_len, g0, v);
    }
}

// One extern "C" kernel per (distribution, output kind), all with the same parameter list:
// (out, n_rows, row_len, base, n_outer, outer[2*n_outer], k0, k1,
//  shift, scale, lo, hi, pa, qb, mass)   -- parameters as doubles (float32 values for 32-bit kinds)
#define SBF_PARAMS sbf_i64 n_rows, sbf_i64 row_len, sbf_i64 base, int n_outer, const sbf_i64* outer, \
    sbf_u32 k0, sbf_u32 k1, double shift, double scale, double lo, double hi, double pa, double qb, double mass
#define SBF_ARGS n_rows, row_len, base, n_outer, outer, k0, k1, shift, scale, lo, hi, pa, qb, mass
#define SBF_FILL32(NAME, DIST, KIND) \
    SBF_KERNEL NAME(typename sbf_store<KIND>::T* out, SBF_PARAMS) { \
        sbf_fill_family32<DIST, KIND>(out, SBF_ARGS); }
#define SBF_FILL64(NAME, DIST) \
    SBF_KERNEL NAME(double* out, SBF_PARAMS) { sbf_fill_family64<DIST>(out, SBF_ARGS); }

SBF_FILL32(sbf_random_bits_uint32, SBF_DIST_BITS, 3)
SBF_FILL32(sbf_uniform_float32, SBF_DIST_UNIFORM, 0)
SBF_FILL32(sbf_normal_float32, SBF_DIST_NORMAL, 0)
SBF_FILL32(sbf_truncated_normal_float32, SBF_DIST_TRUNCATED, 0)
SBF_FILL32(sbf_uniform_float16, SBF_DIST_UNIFORM, 1)
SBF_FILL32(sbf_normal_float16, SBF_DIST_NORMAL, 1)
SBF_FILL32(sbf_truncated_normal_float16, SBF_DIST_TRUNCATED, 1)
SBF_FILL32(sbf_uniform_bfloat16, SBF_DIST_UNIFORM, 2)
SBF_FILL32(sbf_normal_bfloat16, SBF_DIST_NORMAL, 2)
SBF_FILL32(sbf_truncated_normal_bfloat16, SBF_DIST_TRUNCATED, 2)
SBF_FILL64(sbf_uniform_float64, SBF_DIST_UNIFORM)
SBF_FILL64(sbf_normal_float64, SBF_DIST_NORMAL)
SBF_FILL64(sbf_truncated_normal_float64, SBF_DIST_TRUNCATED)
