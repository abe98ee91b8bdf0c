/* The head product of generation for a few rows (the N streams): C (n, m) += A (n, k) @ W,
 * row-major, with W (k, m) packed once per generation call into column panels.
 *
 * OpenBLAS's GEMM packs all of W on every call; at V = 6533 the head's W is 6.7 MB and that
 * copy costs more than the arithmetic. A generation call reads the same W at every step, so
 * here it is packed once per call (fr_pack_panels), and every step streams through the panels
 * in order: panel q holds columns [q*PANEL, (q+1)*PANEL) of all k rows, contiguous (the last
 * panel zero-padded). PANEL is 64 bytes: 16 floats, 8 doubles. Each block of 4 rows of A
 * accumulates a panel in registers over k.
 *
 * Plain C that GCC vectorises, compiled per CPU level by FR_CLONES (fastrnn_simd.h).
 * Names end in _f / _d.
 */
#ifndef FASTRNN_ROWS_H
#define FASTRNN_ROWS_H

#include "fastrnn_simd.h"

#define FR_DEFINE_ROWS(T, S, PANEL)                                                           \
                                                                                              \
/* The panel count of an (k, m) matrix, and so the packed size: panels * k * PANEL values. */ \
static inline Py_ssize_t fr_panels_##S(Py_ssize_t m) { return (m + PANEL - 1) / PANEL; }      \
                                                                                              \
/* P (panels, k, PANEL) = W (k, m) cut into column panels, the last zero-padded. */           \
static void fr_pack_panels_##S(Py_ssize_t k, Py_ssize_t m, const T *W, Py_ssize_t ldw, T *P)  \
{                                                                                             \
    for (Py_ssize_t q = 0; q < fr_panels_##S(m); q++) {                                       \
        Py_ssize_t j0 = q * PANEL, w = m - j0 < PANEL ? m - j0 : PANEL;                       \
        for (Py_ssize_t p = 0; p < k; p++) {                                                  \
            T *dst = P + (q * k + p) * PANEL;                                                 \
            memcpy(dst, W + p * ldw + j0, (size_t)w * sizeof(T));                             \
            if (w < PANEL) memset(dst + w, 0, (size_t)(PANEL - w) * sizeof(T));               \
        }                                                                                     \
    }                                                                                         \
}                                                                                             \
                                                                                              \
/* acc (r, PANEL) = A[:r, :k] @ panel (k, PANEL), for r <= 4 rows. */                         \
static inline void fr_panel_rows_##S(Py_ssize_t r, Py_ssize_t k, const T *A, Py_ssize_t lda,  \
                                     const T *panel, T acc[4][PANEL])                         \
{                                                                                             \
    T acc0[PANEL] = {0}, acc1[PANEL] = {0}, acc2[PANEL] = {0}, acc3[PANEL] = {0};             \
    const T *A1 = A + (r > 1 ? lda : 0), *A2 = A + (r > 2 ? 2 * lda : 0);                     \
    const T *A3 = A + (r > 3 ? 3 * lda : 0);                                                  \
    for (Py_ssize_t p = 0; p < k; p++) {                                                      \
        const T *wp = panel + p * PANEL;                                                      \
        T a0 = A[p], a1 = A1[p], a2 = A2[p], a3 = A3[p];                                      \
        FR_SIMD                                                                               \
        for (int j = 0; j < PANEL; j++) {                                                     \
            acc0[j] += a0 * wp[j]; acc1[j] += a1 * wp[j];                                     \
            acc2[j] += a2 * wp[j]; acc3[j] += a3 * wp[j];                                     \
        }                                                                                     \
    }                                                                                         \
    for (int j = 0; j < PANEL; j++) {                                                         \
        acc[0][j] = acc0[j]; acc[1][j] = acc1[j]; acc[2][j] = acc2[j]; acc[3][j] = acc3[j];   \
    }                                                                                         \
}                                                                                             \
                                                                                              \
/* C (n, m) += A (n, k) @ W for W packed by fr_pack_panels_##S(k, m, W, ., P). */             \
FR_CLONES static void fr_panels_product_##S(Py_ssize_t n, Py_ssize_t m, Py_ssize_t k,         \
                                            const T *A, Py_ssize_t lda, const T *P,           \
                                            T *C, Py_ssize_t ldc)                             \
{                                                                                             \
    T acc[4][PANEL];                                                                          \
    for (Py_ssize_t q = 0; q < fr_panels_##S(m); q++) {                                       \
        Py_ssize_t j0 = q * PANEL, w = m - j0 < PANEL ? m - j0 : PANEL;                       \
        for (Py_ssize_t b0 = 0; b0 < n; b0 += 4) {                                            \
            Py_ssize_t r = n - b0 < 4 ? n - b0 : 4;                                           \
            fr_panel_rows_##S(r, k, A + b0 * lda, lda, P + q * k * PANEL, acc);               \
            for (Py_ssize_t b = 0; b < r; b++)                                                \
                for (Py_ssize_t j = 0; j < w; j++) C[(b0 + b) * ldc + j0 + j] += acc[b][j];   \
        }                                                                                     \
    }                                                                                         \
}                                                                                             \
                                                                                              \
/* c (m,) += a (k,) @ W for one row and W packed by fr_pack_panels_##S(k, m, W, ., P): four   \
 * panels at a time, so that eight independent accumulators hide the latency of the FMA (one \
 * panel alone would be one chain of k dependent FMAs); the last panels one at a time, their  \
 * k rows dealt to four accumulators. */                                                      \
FR_CLONES static void fr_panels_row_##S(Py_ssize_t m, Py_ssize_t k, const T *a, const T *P,   \
                                        T *c)                                                 \
{                                                                                             \
    Py_ssize_t panels = fr_panels_##S(m), q = 0;                                              \
    for (; q + 4 <= panels; q += 4) {                                                         \
        const T *p0 = P + q * k * PANEL, *p1 = p0 + k * PANEL;                                \
        const T *p2 = p1 + k * PANEL, *p3 = p2 + k * PANEL;                                   \
        T acc0[PANEL] = {0}, acc1[PANEL] = {0}, acc2[PANEL] = {0}, acc3[PANEL] = {0};         \
        for (Py_ssize_t p = 0; p < k; p++) {                                                  \
            T ap = a[p];                                                                      \
            const T *w0 = p0 + p * PANEL, *w1 = p1 + p * PANEL;                               \
            const T *w2 = p2 + p * PANEL, *w3 = p3 + p * PANEL;                               \
            FR_SIMD                                                                           \
            for (int j = 0; j < PANEL; j++) {                                                 \
                acc0[j] += ap * w0[j]; acc1[j] += ap * w1[j];                                 \
                acc2[j] += ap * w2[j]; acc3[j] += ap * w3[j];                                 \
            }                                                                                 \
        }                                                                                     \
        T *out = c + q * PANEL;                                                               \
        Py_ssize_t w = m - q * PANEL < 4 * PANEL ? m - q * PANEL : 4 * PANEL;                 \
        for (Py_ssize_t j = 0; j < w; j++)                                                    \
            out[j] += j < PANEL ? acc0[j] : j < 2 * PANEL ? acc1[j - PANEL]                   \
                    : j < 3 * PANEL ? acc2[j - 2 * PANEL] : acc3[j - 3 * PANEL];              \
    }                                                                                         \
    for (; q < panels; q++) {                                                                 \
        const T *panel = P + q * k * PANEL;                                                   \
        T acc0[PANEL] = {0}, acc1[PANEL] = {0}, acc2[PANEL] = {0}, acc3[PANEL] = {0};         \
        Py_ssize_t p = 0;                                                                     \
        for (; p + 4 <= k; p += 4) {                                                          \
            const T *w = panel + p * PANEL;                                                   \
            T a0 = a[p], a1 = a[p + 1], a2 = a[p + 2], a3 = a[p + 3];                         \
            FR_SIMD                                                                           \
            for (int j = 0; j < PANEL; j++) {                                                 \
                acc0[j] += a0 * w[j]; acc1[j] += a1 * w[PANEL + j];                           \
                acc2[j] += a2 * w[2 * PANEL + j]; acc3[j] += a3 * w[3 * PANEL + j];           \
            }                                                                                 \
        }                                                                                     \
        for (; p < k; p++)                                                                    \
            for (int j = 0; j < PANEL; j++) acc0[j] += a[p] * panel[p * PANEL + j];           \
        Py_ssize_t j0 = q * PANEL, w = m - j0 < PANEL ? m - j0 : PANEL;                       \
        for (Py_ssize_t j = 0; j < w; j++)                                                    \
            c[j0 + j] += (acc0[j] + acc1[j]) + (acc2[j] + acc3[j]);                          \
    }                                                                                         \
}

FR_DEFINE_ROWS(float, f, 16)
FR_DEFINE_ROWS(double, d, 8)

#endif /* FASTRNN_ROWS_H */
