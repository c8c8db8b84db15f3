// Host build of the MLP kernels (sbf_mlp.cu) over an emulated grid, for tests without a GPU.
//
//   g++ -std=c++17 -O2 -ffp-contract=off -fno-fast-math -shared -fPIC -I kernels
//       kernels/emulate_mlp_host.cpp -o libsbf_mlp_emulate.so
//
// tests/mlp_cuda_host.py drives it with ctypes. Every kernel is registered with a signature that
// is DERIVED from its C++ parameter types (so it cannot drift from the kernel): tokens
// "float*", "double*", "int64*" for buffers, "int64", "double" for scalars. The Python side
// checks each argument of a launch (array dtype per pointer, numpy scalar type per value) against
// it, packs the arguments into 64-bit slots, and sbf_mlp_host_launch runs the kernel body once
// per (block, thread) of the grid, in order. The kernels use no shared memory, barriers or
// atomics, so this sequential schedule is a faithful one.
#include <stdint.h>
#include <string.h>
#include <string>
#include <utility>
#include "sbf_mlp.cu"

sbf_dim3 sbf_blockIdx, sbf_threadIdx, sbf_blockDim, sbf_gridDim;

typedef unsigned long long sbf_slot;

template <typename A> struct sbf_arg;
template <> struct sbf_arg<sbf_i64> {
    static const char* name() { return "int64"; }
    static sbf_i64 get(sbf_slot s) { return (sbf_i64)s; }
};
template <> struct sbf_arg<double> {
    static const char* name() { return "double"; }
    static double get(sbf_slot s) { double x; memcpy(&x, &s, 8); return x; }
};
template <typename E> struct sbf_ptr_name;
template <> struct sbf_ptr_name<float> { static const char* name() { return "float*"; } };
template <> struct sbf_ptr_name<double> { static const char* name() { return "double*"; } };
template <> struct sbf_ptr_name<sbf_i64> { static const char* name() { return "int64*"; } };
template <typename E> struct sbf_arg<E*> {
    static const char* name() { return sbf_ptr_name<E>::name(); }
    static E* get(sbf_slot s) { return (E*)(uintptr_t)s; }
};
template <typename E> struct sbf_arg<const E*> {
    static const char* name() { return sbf_ptr_name<E>::name(); }
    static const E* get(sbf_slot s) { return (const E*)(uintptr_t)s; }
};

struct sbf_entry {
    const char* name;
    std::string sig;
    void (*run)(void* fn, const sbf_slot* s);
    void* fn;
};

template <typename... A, size_t... I>
static void sbf_invoke(void (*f)(A...), const sbf_slot* s, std::index_sequence<I...>) {
    f(sbf_arg<A>::get(s[I])...);
}

template <typename... A>
static sbf_entry sbf_make_entry(const char* name, void (*f)(A...)) {
    sbf_entry e;
    e.name = name;
    const char* parts[] = {sbf_arg<A>::name()..., nullptr};
    for (size_t i = 0; i < sizeof...(A); ++i) {
        if (i) e.sig += " ";
        e.sig += parts[i];
    }
    e.fn = (void*)f;
    e.run = [](void* fn, const sbf_slot* s) {
        sbf_invoke((void (*)(A...))fn, s, std::index_sequence_for<A...>{});
    };
    return e;
}

#define SBF_E(NAME) sbf_make_entry(#NAME, &NAME)
static const sbf_entry SBF_MLP_KERNELS[] = {
    SBF_E(sbf_mlp_bias_act_linear_float32), SBF_E(sbf_mlp_bias_act_relu_float32),
    SBF_E(sbf_mlp_bias_act_leaky_relu_float32), SBF_E(sbf_mlp_bias_act_tanh_float32),
    SBF_E(sbf_mlp_bias_act_sigmoid_float32), SBF_E(sbf_mlp_bias_act_gelu_float32),
    SBF_E(sbf_mlp_bias_act_gelu_tanh_float32), SBF_E(sbf_mlp_bias_act_selu_float32),
    SBF_E(sbf_mlp_bias_act_linear_float64), SBF_E(sbf_mlp_bias_act_relu_float64),
    SBF_E(sbf_mlp_bias_act_leaky_relu_float64), SBF_E(sbf_mlp_bias_act_tanh_float64),
    SBF_E(sbf_mlp_bias_act_sigmoid_float64), SBF_E(sbf_mlp_bias_act_gelu_float64),
    SBF_E(sbf_mlp_bias_act_gelu_tanh_float64), SBF_E(sbf_mlp_bias_act_selu_float64),
    SBF_E(sbf_mlp_act_grad_linear_float32), SBF_E(sbf_mlp_act_grad_relu_float32),
    SBF_E(sbf_mlp_act_grad_leaky_relu_float32), SBF_E(sbf_mlp_act_grad_tanh_float32),
    SBF_E(sbf_mlp_act_grad_sigmoid_float32), SBF_E(sbf_mlp_act_grad_gelu_float32),
    SBF_E(sbf_mlp_act_grad_gelu_tanh_float32), SBF_E(sbf_mlp_act_grad_selu_float32),
    SBF_E(sbf_mlp_act_grad_linear_float64), SBF_E(sbf_mlp_act_grad_relu_float64),
    SBF_E(sbf_mlp_act_grad_leaky_relu_float64), SBF_E(sbf_mlp_act_grad_tanh_float64),
    SBF_E(sbf_mlp_act_grad_sigmoid_float64), SBF_E(sbf_mlp_act_grad_gelu_float64),
    SBF_E(sbf_mlp_act_grad_gelu_tanh_float64), SBF_E(sbf_mlp_act_grad_selu_float64),
    SBF_E(sbf_mlp_colsum_finish_float32), SBF_E(sbf_mlp_colsum_finish_float64),
    SBF_E(sbf_mlp_softmax_xent_float32), SBF_E(sbf_mlp_softmax_xent_float64),
    SBF_E(sbf_mlp_mse_float32), SBF_E(sbf_mlp_mse_float64),
    SBF_E(sbf_mlp_gemm_exact_float32), SBF_E(sbf_mlp_gemm_exact_float64),
    SBF_E(sbf_mlp_sgd_float32), SBF_E(sbf_mlp_sgd_float64),
    SBF_E(sbf_mlp_momentum_float32), SBF_E(sbf_mlp_momentum_float64),
    SBF_E(sbf_mlp_adam_float32), SBF_E(sbf_mlp_adam_float64),
};
static const int SBF_N_MLP_KERNELS = sizeof(SBF_MLP_KERNELS) / sizeof(SBF_MLP_KERNELS[0]);

extern "C" int sbf_mlp_host_count() { return SBF_N_MLP_KERNELS; }
extern "C" const char* sbf_mlp_host_name(int i) { return i >= 0 && i < SBF_N_MLP_KERNELS ? SBF_MLP_KERNELS[i].name : nullptr; }

// Space-separated parameter types of kernel `name`, or NULL when there is no such kernel.
extern "C" const char* sbf_mlp_host_signature(const char* name) {
    for (const sbf_entry& e : SBF_MLP_KERNELS)
        if (strcmp(e.name, name) == 0) return e.sig.c_str();
    return nullptr;
}

// Run kernel `name` over grid x block threads with its arguments packed in 64-bit slots
// (pointers as addresses, int64 as is, doubles as their bits). Returns 0, or -1 for an unknown name.
extern "C" int sbf_mlp_host_launch(const char* name, unsigned grid, unsigned block, const sbf_slot* slots) {
    for (const sbf_entry& e : SBF_MLP_KERNELS) {
        if (strcmp(e.name, name) != 0) continue;
        sbf_gridDim = {grid, 1, 1};
        sbf_blockDim = {block, 1, 1};
        for (unsigned b = 0; b < grid; ++b)
            for (unsigned t = 0; t < block; ++t) {
                sbf_blockIdx = {b, 0, 0};
                sbf_threadIdx = {t, 0, 0};
                e.run(e.fn, slots);
            }
        return 0;
    }
    return -1;
}

// Per-element activation functions (f, and g * f' with g = 1), for function-level tests:
// which = activation code (SBF_ACT_*), dt 0 = float32, 1 = float64; a_out may be NULL.
template <typename T>
static void sbf_host_act_t(int which, sbf_i64 n, const T* z, T alpha, T* f, T* df) {
    for (sbf_i64 i = 0; i < n; ++i) {
        T a = z[i], d = (T)1;
        switch (which) {
#define SBF_CASE(A) case A: a = sbf_act<A, T>(z[i], alpha); d = sbf_act_grad<A, T>((T)1, z[i], a, alpha); break;
            SBF_CASE(SBF_ACT_LINEAR) SBF_CASE(SBF_ACT_RELU) SBF_CASE(SBF_ACT_LEAKY_RELU) SBF_CASE(SBF_ACT_TANH)
            SBF_CASE(SBF_ACT_SIGMOID) SBF_CASE(SBF_ACT_GELU) SBF_CASE(SBF_ACT_GELU_TANH) SBF_CASE(SBF_ACT_SELU)
#undef SBF_CASE
        }
        f[i] = a;
        df[i] = d;
    }
}
extern "C" void sbf_mlp_host_act(int which, int dt, sbf_i64 n, const void* z, double alpha, void* f, void* df) {
    if (dt == 0) sbf_host_act_t<float>(which, n, (const float*)z, (float)alpha, (float*)f, (float*)df);
    else sbf_host_act_t<double>(which, n, (const double*)z, alpha, (double*)f, (double*)df);
}
