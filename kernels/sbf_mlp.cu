// symbreak_fast MLP kernels: the fused pieces of a training step around cuBLAS GEMMs.
//
// symbreak_fast/backends/mlp_cupy.py runs the GEMMs with cupy.matmul (cuBLAS) and everything else
// with the kernels below: bias + activation (forward epilogue), activation derivative + bias
// gradient (backward epilogue), softmax cross-entropy and MSE (loss + its gradient), and the SGD /
// momentum / Adam updates of the flat parameter buffer. With exact_symmetry (constant inits) the
// GEMMs are sbf_mlp_gemm_exact instead: column-exact, no FMA, bitwise the CPU reference's order.
//
// Compiled by NVRTC ourselves (mlp_cupy.compile_mlp_kernels), with
//   -std=c++17 -fmad=true -prec-div=true -prec-sqrt=true -ftz=false
// FMA contraction is allowed here: the MLP is not part of the bit contract of the generators
// (docs/RNG.md), and a*b+c in one rounding is both faster and at least as accurate. Subnormals
// are kept (CuPy's own RawModule compile would add -ftz=true, which is why we call NVRTC).
// The same file also compiles as host C++ (kernels/emulate_mlp_host.cpp, g++ -O2
// -ffp-contract=off), where a sequential loop plays the grid: tests/test_mlp_cuda_host.py.
//
// Rules that make that emulation faithful: no shared memory, no barriers, no atomics, no warp
// intrinsics. Every thread writes only its own outputs, and every reduction is done by ONE thread
// in a fixed order (a column of a row chunk, a row, a grid-stride residue class), then finished by
// one thread per output in a fixed order. So results are deterministic run to run on a device
// (they depend only on the launch plan, which depends on the device's SM count), and every column
// goes through the same code path in the same order: columns that start equal (a constant init)
// stay bitwise equal through the forward epilogue, the backward epilogue and the optimizer.
//
// Transcendentals are the platform's libm (CUDA's expf/tanhf/erff/expm1f/logf, <= 2 ulp; glibc on
// the host), so the emulation is compared with the NumPy reference within float tolerances, not
// bit for bit. Activations are templates over <ACT, T>; each kernel is instantiated under an
// explicit extern "C" name (bottom of the file), T = float or double.
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#ifndef SBF_FN
#define SBF_FN __device__ __forceinline__
#endif
#define SBF_MLP_DEVICE_CODE 1
#define SBF_KERNEL extern "C" __global__ void __launch_bounds__(256)
#define SBF_TID ((sbf_i64)blockIdx.x * (sbf_i64)blockDim.x + (sbf_i64)threadIdx.x)
#define SBF_NTHREADS ((sbf_i64)gridDim.x * (sbf_i64)blockDim.x)
#else
#ifndef SBF_FN
#define SBF_FN static inline
#endif
#include <math.h>
#include <string.h>
typedef long long sbf_i64;
#include "emulate_grid.h"       // blockIdx & co. as host globals; SBF_TID, SBF_NTHREADS
#define SBF_KERNEL extern "C" void
#endif

#if defined(SBF_MLP_DEVICE_CODE)
typedef long long sbf_i64;
#endif

// --- libm by type (explicit names: no reliance on <cmath> overloads on the host) -----------------
SBF_FN float sbf_exp(float x) { return expf(x); }
SBF_FN double sbf_exp(double x) { return exp(x); }
SBF_FN float sbf_expm1(float x) { return expm1f(x); }
SBF_FN double sbf_expm1(double x) { return expm1(x); }
SBF_FN float sbf_log(float x) { return logf(x); }
SBF_FN double sbf_log(double x) { return log(x); }
SBF_FN float sbf_tanh(float x) { return tanhf(x); }
SBF_FN double sbf_tanh(double x) { return tanh(x); }
SBF_FN float sbf_erf(float x) { return erff(x); }
SBF_FN double sbf_erf(double x) { return erf(x); }
SBF_FN float sbf_sqrt(float x) { return sqrtf(x); }
SBF_FN double sbf_sqrt(double x) { return sqrt(x); }

SBF_FN double sbf_nan() {
    double x;
#ifdef SBF_MLP_DEVICE_CODE
    x = __longlong_as_double(0x7ff8000000000000LL);
#else
    const unsigned long long b = 0x7ff8000000000000ULL;
    memcpy(&x, &b, 8);
#endif
    return x;
}

// --- activations -------------------------------------------------------------------------------
// Codes as in mlp_cupy.ACTIVATIONS (the order there is this order).
#define SBF_ACT_LINEAR 0
#define SBF_ACT_RELU 1
#define SBF_ACT_LEAKY_RELU 2     // alpha = negative slope
#define SBF_ACT_TANH 3
#define SBF_ACT_SIGMOID 4
#define SBF_ACT_GELU 5           // exact: z * Phi(z) = 0.5 z (1 + erf(z / sqrt 2))
#define SBF_ACT_GELU_TANH 6      // 0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))
#define SBF_ACT_SELU 7           // lambda z (z > 0), lambda alpha_selu (exp(z) - 1) (z <= 0)

#define SBF_INV_SQRT2 0.70710678118654752440          // 1 / sqrt(2): erf argument of exact GELU
#define SBF_INV_SQRT_2PI 0.39894228040143267794       // 1 / sqrt(2 pi): standard normal density
#define SBF_SQRT_2_OVER_PI 0.79788456080286535588     // sqrt(2 / pi): tanh-GELU (Hendrycks & Gimpel)
#define SBF_GELU_C 0.044715                           // cubic coefficient of tanh-GELU
#define SBF_SELU_LAMBDA 1.0507009873554804934         // SELU scale (Klambauer et al. 2017; torch's value)
#define SBF_SELU_ALPHA 1.6732632423543772848          // SELU alpha  (same source)

// f(z). NaN in gives NaN out for every activation (divergence stays visible).
template <int ACT, typename T>
SBF_FN T sbf_act(T z, T alpha) {
    if (ACT == SBF_ACT_RELU) return z <= (T)0 ? (T)0 : z;
    if (ACT == SBF_ACT_LEAKY_RELU) return z <= (T)0 ? alpha * z : z;
    if (ACT == SBF_ACT_TANH) return sbf_tanh(z);
    if (ACT == SBF_ACT_SIGMOID) {         // never exp of a positive argument: no overflow, no 0/0
        if (z >= (T)0) return (T)1 / ((T)1 + sbf_exp(-z));
        const T e = sbf_exp(z);
        return e / ((T)1 + e);
    }
    if (ACT == SBF_ACT_GELU) return (T)0.5 * z * ((T)1 + sbf_erf(z * (T)SBF_INV_SQRT2));
    if (ACT == SBF_ACT_GELU_TANH) {
        const T u = (T)SBF_SQRT_2_OVER_PI * (z + (T)SBF_GELU_C * z * z * z);
        return (T)0.5 * z * ((T)1 + sbf_tanh(u));
    }
    if (ACT == SBF_ACT_SELU)
        return z > (T)0 ? (T)SBF_SELU_LAMBDA * z : (T)(SBF_SELU_LAMBDA * SBF_SELU_ALPHA) * sbf_expm1(z);
    return z;                             // linear
}

// g * f'(z), from z (relu, leaky_relu, gelu, gelu_tanh, selu) or from a = f(z) (tanh, sigmoid).
// relu / leaky_relu take f'(0) = 0 / alpha (torch's convention). SELU's derivative is computed
// from z (lambda alpha exp(z)), not as a + lambda alpha, which cancels for z << 0.
template <int ACT, typename T>
SBF_FN T sbf_act_grad(T g, T z, T a, T alpha) {
    if (ACT == SBF_ACT_RELU) return z > (T)0 ? g : (T)0 * g;
    if (ACT == SBF_ACT_LEAKY_RELU) return z > (T)0 ? g : alpha * g;
    if (ACT == SBF_ACT_TANH) return g * ((T)1 - a * a);
    if (ACT == SBF_ACT_SIGMOID) return g * (a * ((T)1 - a));
    if (ACT == SBF_ACT_GELU) {
        const T cdf = (T)0.5 * ((T)1 + sbf_erf(z * (T)SBF_INV_SQRT2));
        const T pdf = (T)SBF_INV_SQRT_2PI * sbf_exp((T)-0.5 * z * z);
        return g * (cdf + z * pdf);
    }
    if (ACT == SBF_ACT_GELU_TANH) {
        const T z2 = z * z;
        const T t = sbf_tanh((T)SBF_SQRT_2_OVER_PI * (z + (T)SBF_GELU_C * z2 * z));
        const T du = (T)SBF_SQRT_2_OVER_PI * ((T)1 + (T)(3.0 * SBF_GELU_C) * z2);
        return g * ((T)0.5 * ((T)1 + t) + (T)0.5 * z * ((T)1 - t * t) * du);
    }
    if (ACT == SBF_ACT_SELU)
        return z > (T)0 ? g * (T)SBF_SELU_LAMBDA : g * ((T)(SBF_SELU_LAMBDA * SBF_SELU_ALPHA) * sbf_exp(z));
    return g;                             // linear
}

// --- forward epilogue: z += b (row broadcast), a = f(z) --------------------------------------------
// z, a: (rows, cols) C order; b: (cols,). Grid-stride over the rows*cols elements; the column is
// carried incrementally (no 64-bit division per element). `a` may alias `z` (same element, same
// thread: z is written before a).
template <int ACT, typename T>
SBF_FN void sbf_mlp_bias_act_t(T* z, const T* b, T* a, sbf_i64 rows, sbf_i64 cols, double alpha_d) {
    const T alpha = (T)alpha_d;
    const sbf_i64 n = rows * cols;
    const sbf_i64 step = SBF_NTHREADS;
    sbf_i64 i = SBF_TID;
    if (i >= n) return;
    sbf_i64 c = i % cols;
    const sbf_i64 dc = step % cols;
    for (; i < n; i += step) {
        const T v = z[i] + b[c];
        z[i] = v;
        a[i] = sbf_act<ACT, T>(v, alpha);
        c += dc;
        if (c >= cols) c -= cols;
    }
}

// --- backward epilogue: g *= f'(z) in place, and the bias gradient db = g.sum(axis=0) ----------------
// Work item = (row chunk k, column c), item = k * cols + c (adjacent threads: adjacent columns, so
// the loads of one row are coalesced). The item walks rows [k*chunk_rows, min(rows, (k+1)*chunk_rows))
// in order, scales g and sums it in double. With one chunk it writes db[c] directly; otherwise
// part[k*cols + c], and sbf_mlp_colsum_finish adds the chunks in order k = 0, 1, ...
template <int ACT, typename T>
SBF_FN void sbf_mlp_act_grad_t(T* g, const T* z, const T* a, sbf_i64 rows, sbf_i64 cols, double alpha_d,
                               sbf_i64 chunk_rows, sbf_i64 n_chunks, double* part, T* db) {
    const T alpha = (T)alpha_d;
    const sbf_i64 items = cols * n_chunks;
    for (sbf_i64 item = SBF_TID; item < items; item += SBF_NTHREADS) {
        const sbf_i64 k = item / cols;
        const sbf_i64 c = item - k * cols;
        const sbf_i64 r0 = k * chunk_rows;
        const sbf_i64 r1 = r0 + chunk_rows < rows ? r0 + chunk_rows : rows;
        double acc = 0.0;
        for (sbf_i64 r = r0; r < r1; ++r) {
            const sbf_i64 i = r * cols + c;
            T v = g[i];
            if (ACT != SBF_ACT_LINEAR) {
                v = sbf_act_grad<ACT, T>(v, z[i], a[i], alpha);
                g[i] = v;
            }
            acc += (double)v;
        }
        if (n_chunks == 1) db[c] = (T)acc;
        else part[k * cols + c] = acc;
    }
}

// out[c] = sum_k part[k*cols + c], k in order; one thread per column.
template <typename T>
SBF_FN void sbf_mlp_colsum_finish_t(const double* part, sbf_i64 n_chunks, sbf_i64 cols, T* out) {
    for (sbf_i64 c = SBF_TID; c < cols; c += SBF_NTHREADS) {
        double acc = 0.0;
        for (sbf_i64 k = 0; k < n_chunks; ++k) acc += part[k * cols + c];
        out[c] = (T)acc;
    }
}

// --- softmax cross-entropy: one thread per row ---------------------------------------------------------
// row_loss[r] = logsumexp(x_r) - x_r[y_r], computed as log(sum_j exp(x_j - m)) - (x_y - m), m = max_j x_j;
// dlogits[r, j] = (softmax(x_r)_j - [j == y_r]) * inv_batch. The row is read three times by its thread
// (max, exp + sum, normalize); exp(x_j - m) is parked in dlogits between the last two passes, so
// dlogits may alias logits. A label outside [0, cols) gives a NaN row loss and NaN gradients (the
// host checks the labels when the loss is NaN).
template <typename T>
SBF_FN void sbf_mlp_softmax_xent_t(const T* logits, const sbf_i64* labels, T* dlogits, double* row_loss,
                                   sbf_i64 rows, sbf_i64 cols, double inv_batch_d) {
    const T inv_batch = (T)inv_batch_d;
    for (sbf_i64 r = SBF_TID; r < rows; r += SBF_NTHREADS) {
        const T* x = logits + r * cols;
        T* d = dlogits + r * cols;
        const sbf_i64 y = labels[r];
        if (y < 0 || y >= cols) {
            row_loss[r] = sbf_nan();
            for (sbf_i64 j = 0; j < cols; ++j) d[j] = (T)sbf_nan();
            continue;
        }
        T m = x[0];
        for (sbf_i64 j = 1; j < cols; ++j) m = x[j] > m ? x[j] : m;
        const T xy = x[y];
        double s = 0.0;
        for (sbf_i64 j = 0; j < cols; ++j) {
            const T e = sbf_exp(x[j] - m);
            d[j] = e;
            s += (double)e;
        }
        const T st = (T)s;
        row_loss[r] = (double)(sbf_log(st) - (xy - m));
        for (sbf_i64 j = 0; j < cols; ++j) {
            const T p = d[j] / st;
            d[j] = (j == y ? p - (T)1 : p) * inv_batch;
        }
    }
}

// --- mean squared error: elementwise gradient + per-thread partial sums ---------------------------------
// dpred[i] = (pred[i] - target[i]) * scale (scale = 2 / n); part[t] = sum over i = t, t + N, ... of
// (pred - target)^2 in double, for every thread t < N = grid * block (the host then sums part in order).
template <typename T>
SBF_FN void sbf_mlp_mse_t(const T* pred, const T* target, T* dpred, double* part, sbf_i64 n, double scale_d) {
    const T scale = (T)scale_d;
    const sbf_i64 t = SBF_TID;
    double acc = 0.0;
    for (sbf_i64 i = t; i < n; i += SBF_NTHREADS) {
        const T dlt = pred[i] - target[i];
        dpred[i] = dlt * scale;
        acc += (double)dlt * (double)dlt;
    }
    part[t] = acc;
}

// --- column-exact GEMM: out = a @ b, each element a fixed-order sequential k-sum ---------------------------
// out[i, j] = (((0 + a[i,0] b[0,j]) + a[i,1] b[1,j]) + ...) + a[i,K-1] b[K-1,j]: every product rounded,
// then added, k in order, accumulated in T. Every output element runs this same operation sequence
// (no tiles, no edge code), so identical columns of b give bitwise identical columns of out: what a
// constant-init net needs to keep its neurons copies of each other (cuBLAS, like OpenBLAS, rounds
// columns of one matrix differently). The sequence is the one of symbreak_fast._mlp_ref.matmul and
// mlp_numba.matmul, so the three agree bit for bit. On the device the round-to-nearest intrinsics
// keep -fmad=true from contracting the pair into an FMA; the host build has -ffp-contract=off.
// out (rows, cols) C order; element (i, k) of a at a[i*sa_i + k*sa_k], (k, j) of b at b[k*sb_k + j*sb_j]
// (strides in elements, so transposed views need no copy). One thread per output element, grid-stride;
// adjacent threads take adjacent columns (b loads coalesce when sb_j == 1). Slow next to cuBLAS: it is
// for the small nets of symmetry experiments (MLP exact_symmetry=True), not for throughput.
#ifdef SBF_MLP_DEVICE_CODE
SBF_FN float sbf_mul_rn(float x, float y) { return __fmul_rn(x, y); }
SBF_FN double sbf_mul_rn(double x, double y) { return __dmul_rn(x, y); }
SBF_FN float sbf_add_rn(float x, float y) { return __fadd_rn(x, y); }
SBF_FN double sbf_add_rn(double x, double y) { return __dadd_rn(x, y); }
#else
template <typename T> SBF_FN T sbf_mul_rn(T x, T y) { return x * y; }
template <typename T> SBF_FN T sbf_add_rn(T x, T y) { return x + y; }
#endif

template <typename T>
SBF_FN void sbf_mlp_gemm_exact_t(const T* a, const T* b, T* out, sbf_i64 rows, sbf_i64 cols, sbf_i64 inner,
                                 sbf_i64 sa_i, sbf_i64 sa_k, sbf_i64 sb_k, sbf_i64 sb_j) {
    const sbf_i64 n = rows * cols;
    for (sbf_i64 e = SBF_TID; e < n; e += SBF_NTHREADS) {
        const sbf_i64 i = e / cols;
        const sbf_i64 j = e - i * cols;
        const T* ai = a + i * sa_i;
        const T* bj = b + j * sb_j;
        T acc = (T)0;
        for (sbf_i64 k = 0; k < inner; ++k) acc = sbf_add_rn(acc, sbf_mul_rn(ai[k * sa_k], bj[k * sb_k]));
        out[e] = acc;
    }
}

// --- optimizers: one grid-stride pass over the flat buffers -----------------------------------------------
// p -= lr g
template <typename T>
SBF_FN void sbf_mlp_sgd_t(T* p, const T* g, sbf_i64 n, double lr_d) {
    const T lr = (T)lr_d;
    for (sbf_i64 i = SBF_TID; i < n; i += SBF_NTHREADS) p[i] = p[i] - lr * g[i];
}

// v = mu v + g; p -= lr v   (torch.optim.SGD with momentum, dampening 0, no nesterov)
template <typename T>
SBF_FN void sbf_mlp_momentum_t(T* p, const T* g, T* v, sbf_i64 n, double lr_d, double mu_d) {
    const T lr = (T)lr_d, mu = (T)mu_d;
    for (sbf_i64 i = SBF_TID; i < n; i += SBF_NTHREADS) {
        const T vi = mu * v[i] + g[i];
        v[i] = vi;
        p[i] = p[i] - lr * vi;
    }
}

// torch.optim.Adam (no weight decay, no amsgrad), step t >= 1, as torch's single-tensor path:
//   m = m + (1 - b1) (g - m)              (m.lerp_(g, 1 - b1))
//   v = b2 v + (1 - b2) g^2
//   p -= step_size * m / (sqrt(v) / sqrt_bc2 + eps),  step_size = lr / (1 - b1^t), sqrt_bc2 = sqrt(1 - b2^t)
// one_m_b1, one_m_b2, step_size and sqrt_bc2 are computed by the host in double.
template <typename T>
SBF_FN void sbf_mlp_adam_t(T* p, const T* g, T* m, T* v, sbf_i64 n, double one_m_b1_d, double b2_d,
                           double one_m_b2_d, double eps_d, double step_size_d, double sqrt_bc2_d) {
    const T one_m_b1 = (T)one_m_b1_d, b2 = (T)b2_d, one_m_b2 = (T)one_m_b2_d, eps = (T)eps_d;
    const T step_size = (T)step_size_d, sqrt_bc2 = (T)sqrt_bc2_d;
    for (sbf_i64 i = SBF_TID; i < n; i += SBF_NTHREADS) {
        const T gi = g[i];
        const T mi = m[i] + one_m_b1 * (gi - m[i]);
        const T vi = b2 * v[i] + one_m_b2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] - step_size * (mi / (sbf_sqrt(vi) / sqrt_bc2 + eps));
    }
}

// --- extern "C" entry points (explicit names; mlp_cupy.KERNEL_NAMES lists them all) ----------------------
#define SBF_BIAS_ACT(NAME, ACT, T) \
    SBF_KERNEL NAME(T* z, const T* b, T* a, sbf_i64 rows, sbf_i64 cols, double alpha) { \
        sbf_mlp_bias_act_t<ACT, T>(z, b, a, rows, cols, alpha); }
#define SBF_ACT_GRAD(NAME, ACT, T) \
    SBF_KERNEL NAME(T* g, const T* z, const T* a, sbf_i64 rows, sbf_i64 cols, double alpha, \
                    sbf_i64 chunk_rows, sbf_i64 n_chunks, double* part, T* db) { \
        sbf_mlp_act_grad_t<ACT, T>(g, z, a, rows, cols, alpha, chunk_rows, n_chunks, part, db); }

SBF_BIAS_ACT(sbf_mlp_bias_act_linear_float32, SBF_ACT_LINEAR, float)
SBF_BIAS_ACT(sbf_mlp_bias_act_relu_float32, SBF_ACT_RELU, float)
SBF_BIAS_ACT(sbf_mlp_bias_act_leaky_relu_float32, SBF_ACT_LEAKY_RELU, float)
SBF_BIAS_ACT(sbf_mlp_bias_act_tanh_float32, SBF_ACT_TANH, float)
SBF_BIAS_ACT(sbf_mlp_bias_act_sigmoid_float32, SBF_ACT_SIGMOID, float)
SBF_BIAS_ACT(sbf_mlp_bias_act_gelu_float32, SBF_ACT_GELU, float)
SBF_BIAS_ACT(sbf_mlp_bias_act_gelu_tanh_float32, SBF_ACT_GELU_TANH, float)
SBF_BIAS_ACT(sbf_mlp_bias_act_selu_float32, SBF_ACT_SELU, float)
SBF_BIAS_ACT(sbf_mlp_bias_act_linear_float64, SBF_ACT_LINEAR, double)
SBF_BIAS_ACT(sbf_mlp_bias_act_relu_float64, SBF_ACT_RELU, double)
SBF_BIAS_ACT(sbf_mlp_bias_act_leaky_relu_float64, SBF_ACT_LEAKY_RELU, double)
SBF_BIAS_ACT(sbf_mlp_bias_act_tanh_float64, SBF_ACT_TANH, double)
SBF_BIAS_ACT(sbf_mlp_bias_act_sigmoid_float64, SBF_ACT_SIGMOID, double)
SBF_BIAS_ACT(sbf_mlp_bias_act_gelu_float64, SBF_ACT_GELU, double)
SBF_BIAS_ACT(sbf_mlp_bias_act_gelu_tanh_float64, SBF_ACT_GELU_TANH, double)
SBF_BIAS_ACT(sbf_mlp_bias_act_selu_float64, SBF_ACT_SELU, double)

SBF_ACT_GRAD(sbf_mlp_act_grad_linear_float32, SBF_ACT_LINEAR, float)
SBF_ACT_GRAD(sbf_mlp_act_grad_relu_float32, SBF_ACT_RELU, float)
SBF_ACT_GRAD(sbf_mlp_act_grad_leaky_relu_float32, SBF_ACT_LEAKY_RELU, float)
SBF_ACT_GRAD(sbf_mlp_act_grad_tanh_float32, SBF_ACT_TANH, float)
SBF_ACT_GRAD(sbf_mlp_act_grad_sigmoid_float32, SBF_ACT_SIGMOID, float)
SBF_ACT_GRAD(sbf_mlp_act_grad_gelu_float32, SBF_ACT_GELU, float)
SBF_ACT_GRAD(sbf_mlp_act_grad_gelu_tanh_float32, SBF_ACT_GELU_TANH, float)
SBF_ACT_GRAD(sbf_mlp_act_grad_selu_float32, SBF_ACT_SELU, float)
SBF_ACT_GRAD(sbf_mlp_act_grad_linear_float64, SBF_ACT_LINEAR, double)
SBF_ACT_GRAD(sbf_mlp_act_grad_relu_float64, SBF_ACT_RELU, double)
SBF_ACT_GRAD(sbf_mlp_act_grad_leaky_relu_float64, SBF_ACT_LEAKY_RELU, double)
SBF_ACT_GRAD(sbf_mlp_act_grad_tanh_float64, SBF_ACT_TANH, double)
SBF_ACT_GRAD(sbf_mlp_act_grad_sigmoid_float64, SBF_ACT_SIGMOID, double)
SBF_ACT_GRAD(sbf_mlp_act_grad_gelu_float64, SBF_ACT_GELU, double)
SBF_ACT_GRAD(sbf_mlp_act_grad_gelu_tanh_float64, SBF_ACT_GELU_TANH, double)
SBF_ACT_GRAD(sbf_mlp_act_grad_selu_float64, SBF_ACT_SELU, double)

SBF_KERNEL sbf_mlp_colsum_finish_float32(const double* part, sbf_i64 n_chunks, sbf_i64 cols, float* out) {
    sbf_mlp_colsum_finish_t<float>(part, n_chunks, cols, out); }
SBF_KERNEL sbf_mlp_colsum_finish_float64(const double* part, sbf_i64 n_chunks, sbf_i64 cols, double* out) {
    sbf_mlp_colsum_finish_t<double>(part, n_chunks, cols, out); }

SBF_KERNEL sbf_mlp_softmax_xent_float32(const float* logits, const sbf_i64* labels, float* dlogits,
                                        double* row_loss, sbf_i64 rows, sbf_i64 cols, double inv_batch) {
    sbf_mlp_softmax_xent_t<float>(logits, labels, dlogits, row_loss, rows, cols, inv_batch); }
SBF_KERNEL sbf_mlp_softmax_xent_float64(const double* logits, const sbf_i64* labels, double* dlogits,
                                        double* row_loss, sbf_i64 rows, sbf_i64 cols, double inv_batch) {
    sbf_mlp_softmax_xent_t<double>(logits, labels, dlogits, row_loss, rows, cols, inv_batch); }

SBF_KERNEL sbf_mlp_mse_float32(const float* pred, const float* target, float* dpred, double* part, sbf_i64 n,
                               double scale) {
    sbf_mlp_mse_t<float>(pred, target, dpred, part, n, scale); }
SBF_KERNEL sbf_mlp_mse_float64(const double* pred, const double* target, double* dpred, double* part, sbf_i64 n,
                               double scale) {
    sbf_mlp_mse_t<double>(pred, target, dpred, part, n, scale); }

#define SBF_GEMM_PARAMS sbf_i64 rows, sbf_i64 cols, sbf_i64 inner, sbf_i64 sa_i, sbf_i64 sa_k, sbf_i64 sb_k, \
    sbf_i64 sb_j
SBF_KERNEL sbf_mlp_gemm_exact_float32(const float* a, const float* b, float* out, SBF_GEMM_PARAMS) {
    sbf_mlp_gemm_exact_t<float>(a, b, out, rows, cols, inner, sa_i, sa_k, sb_k, sb_j); }
SBF_KERNEL sbf_mlp_gemm_exact_float64(const double* a, const double* b, double* out, SBF_GEMM_PARAMS) {
    sbf_mlp_gemm_exact_t<double>(a, b, out, rows, cols, inner, sa_i, sa_k, sb_k, sb_j); }

SBF_KERNEL sbf_mlp_sgd_float32(float* p, const float* g, sbf_i64 n, double lr) { sbf_mlp_sgd_t<float>(p, g, n, lr); }
SBF_KERNEL sbf_mlp_sgd_float64(double* p, const double* g, sbf_i64 n, double lr) { sbf_mlp_sgd_t<double>(p, g, n, lr); }

SBF_KERNEL sbf_mlp_momentum_float32(float* p, const float* g, float* v, sbf_i64 n, double lr, double mu) {
    sbf_mlp_momentum_t<float>(p, g, v, n, lr, mu); }
SBF_KERNEL sbf_mlp_momentum_float64(double* p, const double* g, double* v, sbf_i64 n, double lr, double mu) {
    sbf_mlp_momentum_t<double>(p, g, v, n, lr, mu); }

#define SBF_ADAM_PARAMS sbf_i64 n, double one_m_b1, double b2, double one_m_b2, double eps, double step_size, \
    double sqrt_bc2
SBF_KERNEL sbf_mlp_adam_float32(float* p, const float* g, float* m, float* v, SBF_ADAM_PARAMS) {
    sbf_mlp_adam_t<float>(p, g, m, v, n, one_m_b1, b2, one_m_b2, eps, step_size, sqrt_bc2); }
SBF_KERNEL sbf_mlp_adam_float64(double* p, const double* g, double* m, double* v, SBF_ADAM_PARAMS) {
    sbf_mlp_adam_t<double>(p, g, m, v, n, one_m_b1, b2, one_m_b2, eps, step_size, sqrt_bc2); }
