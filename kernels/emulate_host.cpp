// Host build of the CUDA kernels and of every per-element function, for tests without a GPU.
//
//   g++ -std=c++17 -O2 -ffp-contract=off -fno-fast-math -shared -fPIC -I kernels
//       kernels/emulate_host.cpp -o libsbf_emulate.so
//
// -ffp-contract=off is the host's -fmad=false: no a*b+c is fused, so every operation rounds
// exactly as in the NumPy reference. tests/test_cuda_host.py drives this library with ctypes:
// sbf_host_launch runs a kernel of sbf_fill.cu over an emulated grid with the launch plan that
// symbreak_fast/backends/cuda_cupy.py computes for the GPU; the sbf_host_* functions expose the
// header's functions one by one for function-level comparison with symbreak_fast/_spec.py.
#include "sbf_fill.cu"

sbf_dim3 sbf_blockIdx, sbf_threadIdx, sbf_blockDim, sbf_gridDim;
long long sbf_host_vector_stores = 0;

// The vector-store counter (sbf_fill.cu, sbf_store_vector): read, then reset to 0.
extern "C" long long sbf_host_take_vector_stores() {
    long long n = sbf_host_vector_stores;
    sbf_host_vector_stores = 0;
    return n;
}

typedef void (*sbf_kernel_fn)(void*, SBF_PARAMS);
struct sbf_entry { const char* name; sbf_kernel_fn fn; };

#define SBF_ENTRY(NAME, T) {#NAME, [](void* o, SBF_PARAMS) { NAME((T*)o, SBF_ARGS); }}
static const sbf_entry SBF_KERNELS[] = {
    SBF_ENTRY(sbf_random_bits_uint32, sbf_u32),
    SBF_ENTRY(sbf_uniform_float32, float),
    SBF_ENTRY(sbf_normal_float32, float),
    SBF_ENTRY(sbf_truncated_normal_float32, float),
    SBF_ENTRY(sbf_uniform_float16, sbf_u16),
    SBF_ENTRY(sbf_normal_float16, sbf_u16),
    SBF_ENTRY(sbf_truncated_normal_float16, sbf_u16),
    SBF_ENTRY(sbf_uniform_bfloat16, sbf_u16),
    SBF_ENTRY(sbf_normal_bfloat16, sbf_u16),
    SBF_ENTRY(sbf_truncated_normal_bfloat16, sbf_u16),
    SBF_ENTRY(sbf_uniform_float64, double),
    SBF_ENTRY(sbf_normal_float64, double),
    SBF_ENTRY(sbf_truncated_normal_float64, double),
};

// Run kernel `name` over grid x block threads; returns 0, or -1 for an unknown name.
extern "C" int sbf_host_launch(const char* name, unsigned grid, unsigned block, void* out, SBF_PARAMS) {
    for (const sbf_entry& e : SBF_KERNELS) {
        if (strcmp(e.name, name) != 0) continue;
        sbf_gridDim = {grid, 1, 1};
        sbf_blockDim = {block, 1, 1};
        for (unsigned b = 0; b < grid; ++b)
            for (unsigned t = 0; t < block; ++t) {
                sbf_blockIdx = {b, 0, 0};
                sbf_threadIdx = {t, 0, 0};
                e.fn(out, SBF_ARGS);
            }
        return 0;
    }
    return -1;
}

// --- the header's functions one by one (element i of each output from element i of inputs)
extern "C" void sbf_host_philox4x32_10(sbf_i64 n, const sbf_u32* c, const sbf_u32* k, sbf_u32* out) {
    for (sbf_i64 i = 0; i < n; ++i) {
        sbf_words w = philox4x32_10(c[4 * i], c[4 * i + 1], c[4 * i + 2], c[4 * i + 3], k[2 * i], k[2 * i + 1]);
        out[4 * i] = w.w0; out[4 * i + 1] = w.w1; out[4 * i + 2] = w.w2; out[4 * i + 3] = w.w3;
    }
}

// which: 0 random_bits, 1 standard_uniform_f32, 2 open_uniform_f32, 3 standard_normal_f32 (float out);
//        4 standard_uniform_f64, 5 open_uniform_f64, 6 standard_normal_f64 (double out)
extern "C" void sbf_host_elements(int which, sbf_i64 n, const sbf_u64* g, sbf_u32 k0, sbf_u32 k1, void* out) {
    for (sbf_i64 i = 0; i < n; ++i) {
        switch (which) {
            case 0: ((sbf_u32*)out)[i] = random_bits_element(g[i], k0, k1); break;
            case 1: ((float*)out)[i] = standard_uniform_float32_element(g[i], k0, k1); break;
            case 2: ((float*)out)[i] = open_uniform_float32_element(g[i], k0, k1); break;
            case 3: ((float*)out)[i] = standard_normal_float32_element(g[i], k0, k1); break;
            case 4: ((double*)out)[i] = standard_uniform_float64_element(g[i], k0, k1); break;
            case 5: ((double*)out)[i] = open_uniform_float64_element(g[i], k0, k1); break;
            case 6: ((double*)out)[i] = standard_normal_float64_element(g[i], k0, k1); break;
        }
    }
}

// which: 0 bits_to_unit, 1 bits_to_open_unit, 2 bits_to_radius (float32, one word per element);
//        3.. 5 the float64 versions (two words hi, lo per element); 6 bfloat16 bits, 7 float16 bits
//        of float32 inputs passed as their bits; 8 angle cos, 9 angle sin (float32)
extern "C" void sbf_host_bits(int which, sbf_i64 n, const sbf_u32* w, void* out) {
    for (sbf_i64 i = 0; i < n; ++i) {
        switch (which) {
            case 0: ((float*)out)[i] = bits_to_unit_float32(w[i]); break;
            case 1: ((float*)out)[i] = bits_to_open_unit_float32(w[i]); break;
            case 2: ((float*)out)[i] = bits_to_radius_float32(w[i]); break;
            case 3: ((double*)out)[i] = bits_to_unit_float64(w[2 * i], w[2 * i + 1]); break;
            case 4: ((double*)out)[i] = bits_to_open_unit_float64(w[2 * i], w[2 * i + 1]); break;
            case 5: ((double*)out)[i] = bits_to_radius_float64(w[2 * i], w[2 * i + 1]); break;
            case 6: ((sbf_u16*)out)[i] = round_float32_to_bfloat16_bits(f32_from_bits(w[i])); break;
            case 7: ((sbf_u16*)out)[i] = round_float32_to_float16_bits(f32_from_bits(w[i])); break;
            case 8: ((float*)out)[i] = angle_cos_sin_float32(w[i]).c; break;
            case 9: ((float*)out)[i] = angle_cos_sin_float32(w[i]).s; break;
        }
    }
}

// float32 maps. which: 0 log_float32(x, k_offset), 1 box_muller_radius_float32, 2 ndtri_lower_float32,
// 3 truncated_standard_normal_float32(x, pa, qb, mass)
extern "C" void sbf_host_map_float32(int which, sbf_i64 n, const float* x, float* out, sbf_i32 k_offset,
                                     float pa, float qb, float mass) {
    for (sbf_i64 i = 0; i < n; ++i) {
        switch (which) {
            case 0: out[i] = log_float32(x[i], k_offset); break;
            case 1: out[i] = box_muller_radius_float32(x[i]); break;
            case 2: out[i] = ndtri_lower_float32(x[i]); break;
            case 3: out[i] = truncated_standard_normal_float32(x[i], pa, qb, mass); break;
        }
    }
}

// float64 maps, as above (no k_offset)
extern "C" void sbf_host_map_float64(int which, sbf_i64 n, const double* x, double* out,
                                     double pa, double qb, double mass) {
    for (sbf_i64 i = 0; i < n; ++i) {
        switch (which) {
            case 0: out[i] = log_float64(x[i]); break;
            case 1: out[i] = box_muller_radius_float64(x[i]); break;
            case 2: out[i] = ndtri_lower_float64(x[i]); break;
            case 3: out[i] = truncated_standard_normal_float64(x[i], pa, qb, mass); break;
        }
    }
}
