/* Elementwise loops of the fastrnn kernel, written so that the compiler vectorises them.
 *
 * Why this file exists: a loop that calls libm's scalar tanh/exp per element is slower than
 * numpy at H >= 100. Here tanh and exp are branch-free polynomials (range reduction by
 * n = round(z / ln 2), a Taylor polynomial of expm1 on |r| <= ln2/2, 2^n built from its bits),
 * accurate to a few ulp in both precisions, so GCC/Clang turn each loop into SIMD code.
 *
 * Portability: nothing here needs -march=native. On x86-64 with GCC or Clang every loop is
 * compiled three times (baseline SSE2, AVX2+FMA, AVX-512) and the best version for the running
 * CPU is chosen once at load time (target_clones / ifunc). Elsewhere the plain loop is used.
 *
 * All pointers are to C-contiguous buffers; the caller (Cython, after Python validation)
 * guarantees sizes. Names end in _f (float) or _d (double).
 */
#ifndef FASTRNN_SIMD_H
#define FASTRNN_SIMD_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && defined(__has_attribute) && !defined(__INTEL_COMPILER)
#  if __has_attribute(target_clones) && !defined(FASTRNN_NO_CLONES) && !defined(__AVX2__)
#    define FR_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#  endif
#endif
#ifndef FR_CLONES
#  define FR_CLONES
#endif

#if defined(_OPENMP) || defined(__GNUC__)
#  define FR_SIMD _Pragma("omp simd")
#  define FR_SIMD_SUM_S _Pragma("omp simd reduction(+:s)")
#  define FR_SIMD_MAX_M _Pragma("omp simd reduction(max:m)")
#else
#  define FR_SIMD
#  define FR_SIMD_SUM_S
#  define FR_SIMD_MAX_M
#endif

#define FR_RESTRICT __restrict__

/* ------------------------------------------------------------------ scalar building blocks
 * Inlined into the loops below; each is branch-free so the loops vectorise. */

static inline double fr_expm1_reduced_d(double r)
{
    /* expm1(r) for |r| <= ln2/2: Taylor to r^13 (truncation error < 5e-18). */
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    return p * r;
}

static inline float fr_expm1_reduced_f(float r)
{
    /* expm1(r) for |r| <= ln2/2: Taylor to r^7 (truncation error < 6e-9). */
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    return p * r;
}

/* z = n ln2 + r with n = round(z / ln2); returns r and 2^n. z must lie in [-708, 0]
 * (float: [-87, 0]) so that 2^n is a normal number. The shifter 1.5 * 2^52 makes the FPU
 * do the rounding and leaves n in the low bits of kd's representation. */
static inline double fr_reduce_d(double z, double *scale)
{
    const double shifter = 0x1.8p52, log2e = 0x1.71547652b82fep0;
    const double ln2_hi = 0x1.62e42fefa3800p-1, ln2_lo = 0x1.ef35793c76730p-45;
    double kd = z * log2e + shifter;
    uint64_t bits;
    memcpy(&bits, &kd, sizeof bits);
    kd -= shifter;
    bits = (bits + 1023u) << 52;
    memcpy(scale, &bits, sizeof bits);
    return (z - kd * ln2_hi) - kd * ln2_lo;
}

static inline float fr_reduce_f(float z, float *scale)
{
    const float shifter = 0x1.8p23f, log2e = 0x1.715476p0f;
    const float ln2_hi = 0x1.62e4p-1f, ln2_lo = 0x1.7f7d1cp-20f;
    float kd = z * log2e + shifter;
    uint32_t bits;
    memcpy(&bits, &kd, sizeof bits);
    kd -= shifter;
    bits = (bits + 127u) << 23;
    memcpy(scale, &bits, sizeof bits);
    return (z - kd * ln2_hi) - kd * ln2_lo;
}

/* exp(z) for z <= 0 (softmax after subtracting the row maximum). */
static inline double fr_exp_nonpos_d(double z)
{
    double scale;
    z = z < -708.0 ? -708.0 : z;   /* exp(-708) ~ 3e-308: below that, 0 and e^-708 agree */
    double r = fr_reduce_d(z, &scale);
    return scale + scale * fr_expm1_reduced_d(r);
}

static inline float fr_exp_nonpos_f(float z)
{
    float scale;
    z = z < -87.0f ? -87.0f : z;
    float r = fr_reduce_f(z, &scale);
    return scale + scale * fr_expm1_reduced_f(r);
}

/* tanh(x) = -expm1(-2|x|) / (2 + expm1(-2|x|)) with the sign of x: no cancellation near 0,
 * so the relative error stays a few ulp for tiny x too. |x| is clamped where tanh rounds to 1. */
static inline double fr_tanh_d(double x)
{
    double a = fabs(x), scale;
    a = a > 20.0 ? 20.0 : a;
    double r = fr_reduce_d(-2.0 * a, &scale);
    double u = scale * fr_expm1_reduced_d(r) + (scale - 1.0);
    return copysign(-u / (2.0 + u), x);
}

static inline float fr_tanh_f(float x)
{
    float a = fabsf(x), scale;
    a = a > 10.0f ? 10.0f : a;
    float r = fr_reduce_f(-2.0f * a, &scale);
    float u = scale * fr_expm1_reduced_f(r) + (scale - 1.0f);
    return copysignf(-u / (2.0f + u), x);
}

/* ------------------------------------------------------------------ array loops
 * One definition per precision, generated by a macro so that float and double cannot drift
 * apart (the Cython side picks one by its fused type). */

#define FR_DEFINE_LOOPS(T, S)                                                                 \
                                                                                              \
/* a[i] = tanh(a[i]) */                                                                       \
FR_CLONES static void fr_tanh_inplace_##S(T *FR_RESTRICT a, Py_ssize_t n)                     \
{                                                                                             \
    FR_SIMD                                                                                   \
    for (Py_ssize_t i = 0; i < n; i++) a[i] = fr_tanh_##S(a[i]);                              \
}                                                                                             \
                                                                                              \
/* dst[i] = src[i] + bias[i] */                                                               \
FR_CLONES static void fr_add_##S(T *FR_RESTRICT dst, const T *FR_RESTRICT src,                \
                                 const T *FR_RESTRICT bias, Py_ssize_t n)                     \
{                                                                                             \
    FR_SIMD                                                                                   \
    for (Py_ssize_t i = 0; i < n; i++) dst[i] = src[i] + bias[i];                             \
}                                                                                             \
                                                                                              \
/* acc[i] += src[i] */                                                                        \
FR_CLONES static void fr_accumulate_##S(T *FR_RESTRICT acc, const T *FR_RESTRICT src,         \
                                        Py_ssize_t n)                                         \
{                                                                                             \
    FR_SIMD                                                                                   \
    for (Py_ssize_t i = 0; i < n; i++) acc[i] += src[i];                                      \
}                                                                                             \
                                                                                              \
/* dpre[i] = dh[i] * (1 - h[i]^2), in place over dh: the derivative of h = tanh(pre) */       \
FR_CLONES static void fr_tanh_backward_##S(T *FR_RESTRICT dh, const T *FR_RESTRICT h,         \
                                           Py_ssize_t n)                                      \
{                                                                                             \
    FR_SIMD                                                                                   \
    for (Py_ssize_t i = 0; i < n; i++) dh[i] = dh[i] * ((T)1 - h[i] * h[i]);                  \
}                                                                                             \
                                                                                              \
/* max(x[0:n]), n >= 1: inlined into the loops that need a row's maximum (and so compiled    \
 * for each of their instruction sets) */                                                    \
static inline T fr_row_max_##S(const T *FR_RESTRICT x, Py_ssize_t n)                          \
{                                                                                             \
    T m = x[0];                                                                               \
    FR_SIMD_MAX_M                                                                             \
    for (Py_ssize_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;                               \
    return m;                                                                                 \
}                                                                                             \
                                                                                              \
/* The softmax of a chunk in three passes, so that the exp, the costly part, runs as one long \
 * loop over all the chunk's values instead of a short loop with a scalar tail per row:      \
 * row -= max(row) per row (fr_subtract_max), a = exp(a) over the chunk (fr_exp_nonpos_inplace, \
 * every value <= 0 by then), row /= sum(row) per row (fr_normalize). */                      \
FR_CLONES static void fr_subtract_max_##S(T *FR_RESTRICT row, Py_ssize_t n)                    \
{                                                                                             \
    const T m = fr_row_max_##S(row, n);                                                       \
    FR_SIMD                                                                                   \
    for (Py_ssize_t i = 0; i < n; i++) row[i] -= m;                                           \
}                                                                                             \
                                                                                              \
/* a[i] = exp(a[i]) for a[i] <= 0 */                                                          \
FR_CLONES static void fr_exp_nonpos_inplace_##S(T *FR_RESTRICT a, Py_ssize_t n)               \
{                                                                                             \
    FR_SIMD                                                                                   \
    for (Py_ssize_t i = 0; i < n; i++) a[i] = fr_exp_nonpos_##S(a[i]);                        \
}                                                                                             \
                                                                                              \
/* row /= s, s = sum(row); returns s in double (after fr_subtract_max and the exp, s is in    \
 * [1, n]: the maximum contributes exp(0) = 1). */                                            \
FR_CLONES static double fr_normalize_##S(T *FR_RESTRICT row, Py_ssize_t n)                    \
{                                                                                             \
    T s = 0;                                                                                  \
    FR_SIMD_SUM_S                                                                             \
    for (Py_ssize_t i = 0; i < n; i++) s += row[i];                                           \
    T inv = (T)1 / s;                                                                         \
    FR_SIMD                                                                                   \
    for (Py_ssize_t i = 0; i < n; i++) row[i] *= inv;                                         \
    return (double)s;                                                                         \
}

/* dst (n, m) = src (m, n)^T, both row-major, in 32 x 32 tiles so that both sides stay in cache.
 * Backpropagation multiplies by Whh^T every step; BLAS runs the plain (untransposed) product of
 * a pre-transposed copy faster than the transposed one (measured: 6.6 against 10.2 us at
 * B=32, H=100), so the copy is made once per chunk. */
#define FR_DEFINE_TRANSPOSE(T, S)                                                             \
static void fr_transpose_##S(T *FR_RESTRICT dst, const T *FR_RESTRICT src, Py_ssize_t m,      \
                             Py_ssize_t n)                                                    \
{                                                                                             \
    for (Py_ssize_t i0 = 0; i0 < m; i0 += 32)                                                 \
        for (Py_ssize_t j0 = 0; j0 < n; j0 += 32) {                                           \
            Py_ssize_t i1 = i0 + 32 < m ? i0 + 32 : m, j1 = j0 + 32 < n ? j0 + 32 : n;        \
            for (Py_ssize_t i = i0; i < i1; i++)                                              \
                for (Py_ssize_t j = j0; j < j1; j++) dst[j * m + i] = src[i * n + j];         \
        }                                                                                     \
}

FR_DEFINE_TRANSPOSE(float, f)
FR_DEFINE_TRANSPOSE(double, d)

/* 1 when no entry of a is nan or inf: x - x is 0 for finite x and nan otherwise. */
#define FR_DEFINE_CHECKS(T, S)                                                                \
FR_CLONES static int fr_all_finite_##S(const T *FR_RESTRICT a, Py_ssize_t n)                  \
{                                                                                             \
    T s = 0;                                                                                  \
    FR_SIMD_SUM_S                                                                             \
    for (Py_ssize_t i = 0; i < n; i++) s += a[i] - a[i];                                      \
    return s == 0;                                                                            \
}

FR_DEFINE_CHECKS(float, f)
FR_DEFINE_CHECKS(double, d)

/* ------------------------------------------------------------------ optimizer updates
 * One pass per parameter: g is clipped to [-clip, clip] (clip = inf: no clipping) and scaled by
 * scale (global-norm clipping) as it is read; numpy needs a dozen passes for the same update. */

#define FR_DEFINE_UPDATES(T, S, SQRT)                                                              \
                                                                                              \
static inline T fr_clip_##S(T g, T clip, T scale)                                            \
{                                                                                             \
    g = g > clip ? clip : g;                                                                  \
    g = g < -clip ? -clip : g;                                                                \
    return g * scale;                                                                         \
}                                                                                             \
                                                                                              \
/* p -= lr * g */                                                                             \
FR_CLONES static void fr_sgd_##S(T *FR_RESTRICT p, const T *FR_RESTRICT g, Py_ssize_t n,     \
                                 T lr, T clip, T scale)                                       \
{                                                                                             \
    FR_SIMD                                                                                   \
    for (Py_ssize_t i = 0; i < n; i++) p[i] -= lr * fr_clip_##S(g[i], clip, scale);          \
}                                                                                             \
                                                                                              \
/* c += g^2; p -= lr * g / (sqrt(c) + eps) */                                                 \
FR_CLONES static void fr_adagrad_##S(T *FR_RESTRICT p, const T *FR_RESTRICT g,               \
                                     T *FR_RESTRICT c, Py_ssize_t n, T lr, T eps, T clip,     \
                                     T scale)                                                 \
{                                                                                             \
    FR_SIMD                                                                                   \
    for (Py_ssize_t i = 0; i < n; i++) {                                                      \
        T gi = fr_clip_##S(g[i], clip, scale);                                                \
        c[i] += gi * gi;                                                                      \
        p[i] -= lr * gi / (SQRT(c[i]) + eps);                                                 \
    }                                                                                         \
}                                                                                             \
                                                                                              \
/* c = alpha c + (1 - alpha) g^2; p -= lr * g / (sqrt(c) + eps) */                            \
FR_CLONES static void fr_rmsprop_##S(T *FR_RESTRICT p, const T *FR_RESTRICT g,               \
                                     T *FR_RESTRICT c, Py_ssize_t n, T lr, T alpha, T eps,    \
                                     T clip, T scale)                                         \
{                                                                                             \
    FR_SIMD                                                                                   \
    for (Py_ssize_t i = 0; i < n; i++) {                                                      \
        T gi = fr_clip_##S(g[i], clip, scale);                                                \
        c[i] = alpha * c[i] + (1 - alpha) * (gi * gi);                                        \
        p[i] -= lr * gi / (SQRT(c[i]) + eps);                                                 \
    }                                                                                         \
}                                                                                             \
                                                                                              \
/* m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p -= lr_t * m / (sqrt(v) + eps_t) */       \
FR_CLONES static void fr_adam_##S(T *FR_RESTRICT p, const T *FR_RESTRICT g,                  \
                                  T *FR_RESTRICT m, T *FR_RESTRICT v, Py_ssize_t n, T lr_t,   \
                                  T b1, T b2, T eps_t, T clip, T scale)                       \
{                                                                                             \
    FR_SIMD                                                                                   \
    for (Py_ssize_t i = 0; i < n; i++) {                                                      \
        T gi = fr_clip_##S(g[i], clip, scale);                                                \
        m[i] = b1 * m[i] + (1 - b1) * gi;                                                     \
        v[i] = b2 * v[i] + (1 - b2) * (gi * gi);                                              \
        p[i] -= lr_t * m[i] / (SQRT(v[i]) + eps_t);                                           \
    }                                                                                         \
}                                                                                             \
                                                                                              \
/* sum of clip(g)^2 in double: the squared global norm after elementwise clipping */          \
FR_CLONES static double fr_clipped_sq_norm_##S(const T *FR_RESTRICT g, Py_ssize_t n, T clip)  \
{                                                                                             \
    double s = 0;                                                                             \
    FR_SIMD_SUM_S                                                                             \
    for (Py_ssize_t i = 0; i < n; i++) {                                                      \
        double gi = (double)fr_clip_##S(g[i], clip, (T)1);                                    \
        s += gi * gi;                                                                         \
    }                                                                                         \
    return s;                                                                                 \
}

FR_DEFINE_LOOPS(float, f)
FR_DEFINE_LOOPS(double, d)
FR_DEFINE_UPDATES(float, f, sqrtf)
FR_DEFINE_UPDATES(double, d, sqrt)

/* ------------------------------------------------------------------ sampling
 * The draw of generation in two vectorised passes over a row of logits x: its maximum, then
 * the softmax weights in double (the numpy twin: reference.next_index). */

#define FR_DEFINE_SAMPLING(T, S)                                                              \
                                                                                              \
/* max(x[0:n]), n >= 1 */                                                                     \
FR_CLONES static T fr_max_##S(const T *FR_RESTRICT x, Py_ssize_t n)                           \
{                                                                                             \
    return fr_row_max_##S(x, n);                                                              \
}                                                                                             \
                                                                                              \
/* w[i] = exp(z - m) where z = x[i] * r >= cutoff and z - m > -708, else 0 (double), for     \
 * m = max(x) * r: the unnormalised softmax weights at temperature 1 / r. Weights below e^-708 \
 * (where fr_exp_nonpos_d clamps) are 0, so that no index of weight ~0 is drawn at u = 0. */  \
FR_CLONES static void fr_sampling_weights_##S(double *FR_RESTRICT w, const T *FR_RESTRICT x,  \
                                              Py_ssize_t n, double r, double m,               \
                                              double cutoff)                                  \
{                                                                                             \
    FR_SIMD                                                                                   \
    for (Py_ssize_t i = 0; i < n; i++) {                                                      \
        double z = (double)x[i] * r;                                                          \
        double e = fr_exp_nonpos_d(z - m);                                                    \
        w[i] = z >= cutoff && z - m > -708.0 ? e : 0.0;                                       \
    }                                                                                         \
}

FR_DEFINE_SAMPLING(float, f)
FR_DEFINE_SAMPLING(double, d)

#endif /* FASTRNN_SIMD_H */
