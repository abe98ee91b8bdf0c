/* Elementwise gate loops of the LSTM and GRU cells (and dropout), vectorised like fastrnn_simd.h.
 *
 * Each cell function handles one stream's row of one time step, for `n` consecutive hidden
 * units: its gate row holds G blocks (LSTM: i, f, g, o; GRU: r, z, n) that start `stride`
 * values apart, so `gates` points at the first unit's value in block 0 and gate block g of unit
 * k is gates[g * stride + k]. A whole row is n = stride = H; a thread that owns the units
 * [j0, j1) of a shared recurrence passes gates + j0, stride H and n = j1 - j0 (the per-unit
 * buffers then also start at unit j0). The Cython kernel (_cells.pxi) calls it once per stream
 * b per step, after the step's recurrent product.
 *
 * sigmoid and tanh reuse the branch-free exp polynomial of fastrnn_simd.h, so these loops
 * vectorise too, and are compiled per CPU level with the same FR_CLONES dispatch.
 * All pointers are to distinct C-contiguous buffers (validated in Python); names end in _f / _d.
 */
#ifndef FASTRNN_GATES_H
#define FASTRNN_GATES_H

#include "fastrnn_simd.h"

/* sigmoid(x) = 1 / (1 + exp(-x)), stable on both sides: with e = exp(-|x|) <= 1,
 * sigmoid(x) = 1/(1+e) for x >= 0 and e/(1+e) for x < 0. The select is branch-free. */
static inline double fr_sigmoid_d(double x)
{
    double e = fr_exp_nonpos_d(-fabs(x));
    double s = 1.0 / (1.0 + e);
    return x >= 0.0 ? s : e * s;
}

static inline float fr_sigmoid_f(float x)
{
    float e = fr_exp_nonpos_f(-fabsf(x));
    float s = 1.0f / (1.0f + e);
    return x >= 0.0f ? s : e * s;
}

#define FR_DEFINE_GATE_LOOPS(T, S)                                                            \
                                                                                              \
/* dst[i] = a[i] * b[i]   (dropout forward: h * mask) */                                      \
FR_CLONES static void fr_mul_##S(T *FR_RESTRICT dst, const T *FR_RESTRICT a,                  \
                                 const T *FR_RESTRICT b, Py_ssize_t n)                        \
{                                                                                             \
    FR_SIMD                                                                                   \
    for (Py_ssize_t i = 0; i < n; i++) dst[i] = a[i] * b[i];                                  \
}                                                                                             \
                                                                                              \
/* a[i] *= b[i]   (dropout backward: dh * mask, in place) */                                  \
FR_CLONES static void fr_scale_##S(T *FR_RESTRICT a, const T *FR_RESTRICT b, Py_ssize_t n)    \
{                                                                                             \
    FR_SIMD                                                                                   \
    for (Py_ssize_t i = 0; i < n; i++) a[i] *= b[i];                                          \
}                                                                                             \
                                                                                              \
/* One LSTM step for one stream, n units. gates (4 blocks of n, `stride` apart): in,          \
 * pre-activations x W + b + h_prev Whh; out, activations i, f, g, o. c_prev (n): c_{t-1}.    \
 * Outputs c (n), tc = tanh(c) (n), h (n):                                                    \
 *   i = sig(.), f = sig(.), g = tanh(.), o = sig(.)                                          \
 *   c = f * c_prev + i * g;   h = o * tanh(c)                                                */\
FR_CLONES static void fr_lstm_forward_##S(T *FR_RESTRICT gates, Py_ssize_t stride,          \
                                          const T *FR_RESTRICT c_prev, T *FR_RESTRICT c,      \
                                          T *FR_RESTRICT tc, T *FR_RESTRICT h, Py_ssize_t n)  \
{                                                                                             \
    T *FR_RESTRICT gi = gates, *FR_RESTRICT gf = gates + stride;                              \
    T *FR_RESTRICT gg = gates + 2 * stride, *FR_RESTRICT go = gates + 3 * stride;             \
    FR_SIMD                                                                                   \
    for (Py_ssize_t k = 0; k < n; k++) {                                                      \
        T i = fr_sigmoid_##S(gi[k]), f = fr_sigmoid_##S(gf[k]);                               \
        T g = fr_tanh_##S(gg[k]), o = fr_sigmoid_##S(go[k]);                                  \
        T ck = f * c_prev[k] + i * g;                                                         \
        T t = fr_tanh_##S(ck);                                                                \
        gi[k] = i; gf[k] = f; gg[k] = g; go[k] = o;                                           \
        c[k] = ck; tc[k] = t; h[k] = o * t;                                                   \
    }                                                                                         \
}                                                                                             \
                                                                                              \
/* Backward of fr_lstm_forward for one stream, n units. gates (4 blocks, `stride` apart): in, \
 * activations i, f, g, o; out, dL/d(pre-activations). dh (n): dL/dh_t (from above and from   \
 * step t+1). dc (n): in, dL/dc_t from step t+1; out, dL/dc_{t-1}. Differentiates, line by    \
 * line of the forward:                                                                       \
 *   h = o * tc          ->  do = dh * tc;  dc += dh * o * (1 - tc^2)                         \
 *   c = f*c_prev + i*g  ->  di = dc * g;  df = dc * c_prev;  dg = dc * i;  dc_prev = dc * f  \
 *   i,f,o = sig(.)      ->  d. *= s * (1 - s);   g = tanh(.)  ->  dg *= 1 - g^2              */\
FR_CLONES static void fr_lstm_backward_##S(T *FR_RESTRICT gates, Py_ssize_t stride,         \
                                           const T *FR_RESTRICT c_prev,                       \
                                           const T *FR_RESTRICT tc, const T *FR_RESTRICT dh,  \
                                           T *FR_RESTRICT dc, Py_ssize_t n)                   \
{                                                                                             \
    T *FR_RESTRICT gi = gates, *FR_RESTRICT gf = gates + stride;                              \
    T *FR_RESTRICT gg = gates + 2 * stride, *FR_RESTRICT go = gates + 3 * stride;             \
    FR_SIMD                                                                                   \
    for (Py_ssize_t k = 0; k < n; k++) {                                                      \
        T i = gi[k], f = gf[k], g = gg[k], o = go[k], t = tc[k];                              \
        T d_o = dh[k] * t;                                                                    \
        T d_c = dc[k] + dh[k] * o * ((T)1 - t * t);                                           \
        gi[k] = d_c * g * i * ((T)1 - i);                                                     \
        gf[k] = d_c * c_prev[k] * f * ((T)1 - f);                                             \
        gg[k] = d_c * i * ((T)1 - g * g);                                                     \
        go[k] = d_o * o * ((T)1 - o);                                                         \
        dc[k] = d_c * f;                                                                      \
    }                                                                                         \
}                                                                                             \
                                                                                              \
/* One GRU step for one stream, n units. gates (3 blocks of n, `stride` apart): in, r and z   \
 * blocks hold x W + b + h_prev Whh, the n block holds x W_n + b_n only; out, activations r,  \
 * z, n. hn (n) = h_prev W_hn + b_hn.                                                         \
 *   r = sig(.), z = sig(.), n = tanh(x W_n + b_n + r * hn);   h = (1 - z) * n + z * h_prev   */\
FR_CLONES static void fr_gru_forward_##S(T *FR_RESTRICT gates, Py_ssize_t stride,           \
                                         const T *FR_RESTRICT hn,                             \
                                         const T *FR_RESTRICT h_prev, T *FR_RESTRICT h,       \
                                         Py_ssize_t n)                                        \
{                                                                                             \
    T *FR_RESTRICT gr = gates, *FR_RESTRICT gz = gates + stride;                              \
    T *FR_RESTRICT gn = gates + 2 * stride;                                                   \
    FR_SIMD                                                                                   \
    for (Py_ssize_t k = 0; k < n; k++) {                                                      \
        T r = fr_sigmoid_##S(gr[k]), z = fr_sigmoid_##S(gz[k]);                               \
        T nn = fr_tanh_##S(gn[k] + r * hn[k]);                                                \
        gr[k] = r; gz[k] = z; gn[k] = nn;                                                     \
        h[k] = ((T)1 - z) * nn + z * h_prev[k];                                               \
    }                                                                                         \
}                                                                                             \
                                                                                              \
/* Backward of fr_gru_forward for one stream, n units. gates (3 blocks, `stride` apart): in,  \
 * activations r, z, n; out, dL/d(pre-activations) (the n block is the gradient of x W_n +    \
 * b_n). hn (n): in, the cached h_prev W_hn + b_hn; out, its gradient dhn. dh (n): dL/dh_t.   \
 * dh_prev (n): += dh * z (the direct path; the caller adds the product paths).               \
 * Differentiates, line by line:                                                              \
 *   h = (1-z)*n + z*h_prev  ->  dn = dh * (1 - z);  dz = dh * (h_prev - n);  dh_prev += dh*z \
 *   n = tanh(a + r * hn)    ->  da = dn * (1 - n^2);  dr = da * hn;  dhn = da * r            \
 *   r, z = sig(.)           ->  d. *= s * (1 - s)                                            */\
FR_CLONES static void fr_gru_backward_##S(T *FR_RESTRICT gates, Py_ssize_t stride,          \
                                          T *FR_RESTRICT hn, const T *FR_RESTRICT h_prev,     \
                                          const T *FR_RESTRICT dh, T *FR_RESTRICT dh_prev,    \
                                          Py_ssize_t n)                                       \
{                                                                                             \
    T *FR_RESTRICT gr = gates, *FR_RESTRICT gz = gates + stride;                              \
    T *FR_RESTRICT gn = gates + 2 * stride;                                                   \
    FR_SIMD                                                                                   \
    for (Py_ssize_t k = 0; k < n; k++) {                                                      \
        T r = gr[k], z = gz[k], nn = gn[k];                                                   \
        T da = dh[k] * ((T)1 - z) * ((T)1 - nn * nn);                                         \
        T dz = dh[k] * (h_prev[k] - nn);                                                      \
        gr[k] = da * hn[k] * r * ((T)1 - r);                                                  \
        gz[k] = dz * z * ((T)1 - z);                                                          \
        gn[k] = da;                                                                           \
        hn[k] = da * r;                                                                       \
        dh_prev[k] += dh[k] * z;                                                              \
    }                                                                                         \
}

FR_DEFINE_GATE_LOOPS(float, f)
FR_DEFINE_GATE_LOOPS(double, d)

#endif /* FASTRNN_GATES_H */
