/* The recurrent product of fastrnn: C (B, N) (+)= A (B, K) @ W (K, N), with W packed once per
 * chunk and reused by the T sequential steps.
 *
 * Why this file exists: at B = 32, H = 512 a training step is mostly the T products
 * h_{t-1} @ Whh and their backward twins dpre_t @ Whh^T. A BLAS GEMM repacks its operand on
 * every call (a quarter of the step at that size); here W (or W^T) is packed once per chunk
 * into column panels, and a register-blocked micro-kernel streams through them every step.
 * At B = 1 a matrix-vector kernel streams the same packed W once per step, all its
 * accumulators (up to the register file) in registers, with enough independent chains to hide
 * the multiply-add latency; a recurrence alternates the order of the rows between steps so
 * that a W a little larger than L1 is partly read from L1 (fr_recurrent_step_product_X).
 *
 * Versions: AVX-512 (avx512f), AVX2+FMA and portable C (GCC/Clang vector extensions of
 * 16 bytes, or scalar code on other compilers), each for float (_f) and double (_d), from one
 * source (fastrnn_recurrent_isa.h). The best version the CPU supports is chosen once by
 * fr_recurrent_init (from __builtin_cpu_supports); fr_recurrent_set_isa can only narrow it
 * (tests run every version the CPU has). Change it only between kernel calls: a buffer packed
 * by one version is read by the same version.
 *
 * Buffers: a packed buffer holds fr_recurrent_packed_size_X(K, N) values (enough for every
 * version: K rows of N rounded up to FR_NR_MAX, plus slack to align the panels to 64 bytes).
 * Callers allocate it once per shape; nothing here allocates.
 */
#ifndef FASTRNN_RECURRENT_H
#define FASTRNN_RECURRENT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define FR_ISA_PORTABLE 0
#define FR_ISA_AVX2 1
#define FR_ISA_AVX512 2

#ifndef FR_RESTRICT
#  if defined(__GNUC__)
#    define FR_RESTRICT __restrict__
#  else
#    define FR_RESTRICT
#  endif
#endif

#if defined(__clang__)
#  define FR_UNROLL _Pragma("unroll")
#elif defined(__GNUC__) && __GNUC__ >= 8
#  define FR_UNROLL _Pragma("GCC unroll 16")
#else
#  define FR_UNROLL
#endif

#if defined(__GNUC__)
#  define FR_ALWAYS_INLINE __attribute__((always_inline))
#else
#  define FR_ALWAYS_INLINE
#endif

#if defined(__x86_64__) && defined(__GNUC__) && defined(__has_attribute)
#  if __has_attribute(target)
#    define FR_HAVE_X86_VERSIONS 1
#  endif
#endif

/* The widest panel of any version, in bytes: two 64-byte vectors. */
#define FR_PANEL_BYTES_MAX 128
#define FR_ALIGN 64

/* ------------------------------------------------------------------ the versions */

#define FR_CAT3_(a, b, c) a##b##c
#define FR_CAT3(a, b, c) FR_CAT3_(a, b, c)

/* portable */
#if defined(__GNUC__)
typedef float fr_vf_portable __attribute__((vector_size(16)));
typedef double fr_vd_portable __attribute__((vector_size(16)));
#  define FR_PORTABLE_VLEN_BYTES 16
#else
typedef float fr_vf_portable;
typedef double fr_vd_portable;
#  define FR_PORTABLE_VLEN_BYTES 0
#endif

#define FR_TARGET
#define FR_NV 2
#define FR_MR 4
#define FR_ACC 8
#define FR_MV_MAX 12
#define FR_MV_CHAINS 8

#define FR_T float
#define FR_VEC fr_vf_portable
#define FR_VLEN (FR_PORTABLE_VLEN_BYTES ? FR_PORTABLE_VLEN_BYTES / 4 : 1)
#define FR_FN(x) FR_CAT3(fr_rp_, x, _f_portable)
#include "fastrnn_recurrent_isa.h"
#undef FR_T
#undef FR_VEC
#undef FR_VLEN
#undef FR_FN

#define FR_T double
#define FR_VEC fr_vd_portable
#define FR_VLEN (FR_PORTABLE_VLEN_BYTES ? FR_PORTABLE_VLEN_BYTES / 8 : 1)
#define FR_FN(x) FR_CAT3(fr_rp_, x, _d_portable)
#include "fastrnn_recurrent_isa.h"
#undef FR_T
#undef FR_VEC
#undef FR_VLEN
#undef FR_FN

#undef FR_TARGET
#undef FR_MR
#undef FR_ACC
#undef FR_MV_MAX
#undef FR_MV_CHAINS

#ifdef FR_HAVE_X86_VERSIONS
/* AVX2 + FMA: 16 ymm registers, 6 rows x 2 vectors = 12 accumulators. */
typedef float fr_vf_avx2 __attribute__((vector_size(32)));
typedef double fr_vd_avx2 __attribute__((vector_size(32)));
#  define FR_TARGET __attribute__((target("avx2,fma")))
#  define FR_MR 6
#  define FR_ACC 12
#  define FR_MV_MAX 14
#  define FR_MV_CHAINS 10

#  define FR_T float
#  define FR_VEC fr_vf_avx2
#  define FR_VLEN 8
#  define FR_FN(x) FR_CAT3(fr_rp_, x, _f_avx2)
#  include "fastrnn_recurrent_isa.h"
#  undef FR_T
#  undef FR_VEC
#  undef FR_VLEN
#  undef FR_FN

#  define FR_T double
#  define FR_VEC fr_vd_avx2
#  define FR_VLEN 4
#  define FR_FN(x) FR_CAT3(fr_rp_, x, _d_avx2)
#  include "fastrnn_recurrent_isa.h"
#  undef FR_T
#  undef FR_VEC
#  undef FR_VLEN
#  undef FR_FN

#  undef FR_TARGET
#  undef FR_MR
#  undef FR_ACC
#  undef FR_MV_MAX
#  undef FR_MV_CHAINS

/* AVX-512F: 32 zmm registers, 12 rows x 2 vectors = 24 accumulators. */
typedef float fr_vf_avx512 __attribute__((vector_size(64)));
typedef double fr_vd_avx512 __attribute__((vector_size(64)));
#  define FR_TARGET __attribute__((target("avx512f")))
#  define FR_MR 12
#  define FR_ACC 24
#  define FR_MV_MAX 28
#  define FR_MV_CHAINS 16

#  define FR_T float
#  define FR_VEC fr_vf_avx512
#  define FR_VLEN 16
#  define FR_FN(x) FR_CAT3(fr_rp_, x, _f_avx512)
#  include "fastrnn_recurrent_isa.h"
#  undef FR_T
#  undef FR_VEC
#  undef FR_VLEN
#  undef FR_FN

#  define FR_T double
#  define FR_VEC fr_vd_avx512
#  define FR_VLEN 8
#  define FR_FN(x) FR_CAT3(fr_rp_, x, _d_avx512)
#  include "fastrnn_recurrent_isa.h"
#  undef FR_T
#  undef FR_VEC
#  undef FR_VLEN
#  undef FR_FN

#  undef FR_TARGET
#  undef FR_MR
#  undef FR_ACC
#  undef FR_MV_MAX
#  undef FR_MV_CHAINS
#endif
#undef FR_NV

/* ------------------------------------------------------------------ dispatch */

typedef void (*fr_rp_pack_f_fn)(float *, const float *, int, int, int, int);
typedef void (*fr_rp_pack_d_fn)(double *, const double *, int, int, int, int);
typedef void (*fr_rp_product_f_fn)(const float *, int, int, const float *, int, int, float *,
                                   int, int, int, int, int, int);
typedef void (*fr_rp_product_d_fn)(const double *, int, int, const double *, int, int, double *,
                                   int, int, int, int, int, int);
typedef void (*fr_rp_outer_sum_f_fn)(const float *, int, const float *, int, int, int, int,
                                     float *, int, int, float *, int, int, int);
typedef void (*fr_rp_outer_sum_d_fn)(const double *, int, const double *, int, int, int, int,
                                     double *, int, int, double *, int, int, int);

typedef struct {
    fr_rp_pack_f_fn pack_f;
    fr_rp_product_f_fn product_f;
    fr_rp_outer_sum_f_fn outer_sum_f;
    int nr_f;                 /* panel width (columns) of the float version */
    fr_rp_pack_d_fn pack_d;
    fr_rp_product_d_fn product_d;
    fr_rp_outer_sum_d_fn outer_sum_d;
    int nr_d;
} fr_rp_version;

static const fr_rp_version fr_rp_versions[3] = {
    {fr_rp_pack_f_portable, fr_rp_product_f_portable, fr_rp_outer_sum_f_portable,
     2 * (FR_PORTABLE_VLEN_BYTES ? FR_PORTABLE_VLEN_BYTES / 4 : 1),
     fr_rp_pack_d_portable, fr_rp_product_d_portable, fr_rp_outer_sum_d_portable,
     2 * (FR_PORTABLE_VLEN_BYTES ? FR_PORTABLE_VLEN_BYTES / 8 : 1)},
#ifdef FR_HAVE_X86_VERSIONS
    {fr_rp_pack_f_avx2, fr_rp_product_f_avx2, fr_rp_outer_sum_f_avx2, 16, fr_rp_pack_d_avx2,
     fr_rp_product_d_avx2, fr_rp_outer_sum_d_avx2, 8},
    {fr_rp_pack_f_avx512, fr_rp_product_f_avx512, fr_rp_outer_sum_f_avx512, 32,
     fr_rp_pack_d_avx512, fr_rp_product_d_avx512, fr_rp_outer_sum_d_avx512, 16},
#else
    {0, 0, 0, 0, 0, 0, 0, 0},
    {0, 0, 0, 0, 0, 0, 0, 0},
#endif
};

/* The version in use (FR_ISA_*); set by fr_recurrent_init at module load. */
static int fr_rp_active = FR_ISA_PORTABLE;

/* The widest version this CPU (and OS) can run. */
static int fr_recurrent_isa_best(void)
{
#ifdef FR_HAVE_X86_VERSIONS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return FR_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return FR_ISA_AVX2;
#endif
    return FR_ISA_PORTABLE;
}

static void fr_recurrent_init(void)
{
    fr_rp_active = fr_recurrent_isa_best();
}

static int fr_recurrent_isa(void)
{
    return fr_rp_active;
}

/* Use version isa; returns 0, or -1 (and changes nothing) if the CPU cannot run it. */
static int fr_recurrent_set_isa(int isa)
{
    if (isa < FR_ISA_PORTABLE || isa > fr_recurrent_isa_best())
        return -1;
    fr_rp_active = isa;
    return 0;
}

static size_t fr_round_up(size_t n, size_t m)
{
    return (n + m - 1) / m * m;
}

/* Values a packed buffer of a (K, N) matrix needs, for any version. */
static size_t fr_recurrent_packed_size_f(int K, int N)
{
    return (size_t) K * fr_round_up((size_t) N, FR_PANEL_BYTES_MAX / sizeof(float))
           + FR_ALIGN / sizeof(float);
}

static size_t fr_recurrent_packed_size_d(int K, int N)
{
    return (size_t) K * fr_round_up((size_t) N, FR_PANEL_BYTES_MAX / sizeof(double))
           + FR_ALIGN / sizeof(double);
}

/* The first 64-byte aligned address of a packed buffer, where its panels start. */
static void *fr_aligned(const void *buffer)
{
    uintptr_t p = (uintptr_t) buffer;
    return (void *) ((p + FR_ALIGN - 1) & ~(uintptr_t) (FR_ALIGN - 1));
}

/* Column panels of an N-column matrix in the active version (the unit of work of a thread). */
static int fr_recurrent_panels_f(int N)
{
    int nr = fr_rp_versions[fr_rp_active].nr_f;
    return (N + nr - 1) / nr;
}

static int fr_recurrent_panels_d(int N)
{
    int nr = fr_rp_versions[fr_rp_active].nr_d;
    return (N + nr - 1) / nr;
}

/* Columns per panel in the active version. */
static int fr_recurrent_panel_width_f(void)
{
    return fr_rp_versions[fr_rp_active].nr_f;
}

static int fr_recurrent_panel_width_d(void)
{
    return fr_rp_versions[fr_rp_active].nr_d;
}

/* buffer = packed (K, N) matrix W (row-major, leading dimension ldw), or, when transposed,
 * packed W^T of an (N, K) matrix W. */
static void fr_recurrent_pack_f(float *buffer, const float *W, int K, int N, int ldw,
                                int transposed)
{
    fr_rp_versions[fr_rp_active].pack_f((float *) fr_aligned(buffer), W, K, N, ldw, transposed);
}

static void fr_recurrent_pack_d(double *buffer, const double *W, int K, int N, int ldw,
                                int transposed)
{
    fr_rp_versions[fr_rp_active].pack_d((double *) fr_aligned(buffer), W, K, N, ldw,
                                        transposed);
}

/* C (B, N) (+)= A (B, K) @ W for the columns of panels [panel_begin, panel_end), W packed in
 * buffer by fr_recurrent_pack_X; accumulate = 0 overwrites C. A and C row-major with leading
 * dimensions lda and ldc; C must not overlap A or the buffer. */
static void fr_recurrent_product_panels_f(const float *A, int lda, const float *buffer, int K,
                                          int N, float *C, int ldc, int B, int accumulate,
                                          int panel_begin, int panel_end)
{
    fr_rp_versions[fr_rp_active].product_f(A, lda, 1, (const float *) fr_aligned(buffer), K, N,
                                           C, ldc, B, accumulate, 0, panel_begin, panel_end);
}

static void fr_recurrent_product_panels_d(const double *A, int lda, const double *buffer, int K,
                                          int N, double *C, int ldc, int B, int accumulate,
                                          int panel_begin, int panel_end)
{
    fr_rp_versions[fr_rp_active].product_d(A, lda, 1, (const double *) fr_aligned(buffer), K,
                                           N, C, ldc, B, accumulate, 0, panel_begin,
                                           panel_end);
}

/* C (B, N) (+)= A (B, K) @ W, every column. */
static void fr_recurrent_product_f(const float *A, int lda, const float *buffer, int K, int N,
                                   float *C, int ldc, int B, int accumulate)
{
    fr_recurrent_product_panels_f(A, lda, buffer, K, N, C, ldc, B, accumulate, 0,
                                  fr_recurrent_panels_f(N));
}

static void fr_recurrent_product_d(const double *A, int lda, const double *buffer, int K, int N,
                                   double *C, int ldc, int B, int accumulate)
{
    fr_recurrent_product_panels_d(A, lda, buffer, K, N, C, ldc, B, accumulate, 0,
                                  fr_recurrent_panels_d(N));
}

/* fr_recurrent_product_X for step `step` of a recurrence, every column. At B = 1 a step reads
 * the rows of W in the order opposite to the step before (descending at odd steps): when W is
 * somewhat larger than the L1 cache, the rows the previous step read last are still there and
 * are read first, instead of having been evicted just before they are needed (as reading in
 * the same order every step does). Only the order of the K terms of each sum changes. */
static void fr_recurrent_step_product_f(const float *A, int lda, const float *buffer, int K,
                                        int N, float *C, int ldc, int B, int accumulate,
                                        int step)
{
    fr_rp_versions[fr_rp_active].product_f(A, lda, 1, (const float *) fr_aligned(buffer), K, N,
                                           C, ldc, B, accumulate, step & 1, 0,
                                           fr_recurrent_panels_f(N));
}

static void fr_recurrent_step_product_d(const double *A, int lda, const double *buffer, int K,
                                        int N, double *C, int ldc, int B, int accumulate,
                                        int step)
{
    fr_rp_versions[fr_rp_active].product_d(A, lda, 1, (const double *) fr_aligned(buffer), K,
                                           N, C, ldc, B, accumulate, step & 1, 0,
                                           fr_recurrent_panels_d(N));
}

/* Rows of D an outer sum packs per pass at most: enough that C is loaded and stored once per
 * many multiply-adds, few enough that a pass of X and a panel stay close to L1 (float32,
 * M = 100 to 200, AVX2: 114-160 rows measured best, 256 up to 10% slower, 32 slower still). */
#define FR_OUTER_ROWS_MAX 128

/* Rows of an N-column D whose panels a buffer of `capacity` values holds (at most
 * FR_OUTER_ROWS_MAX), in the active version; 0 when not one. */
static int fr_outer_rows_f(int N, size_t capacity)
{
    size_t row = fr_round_up((size_t) N, (size_t) fr_rp_versions[fr_rp_active].nr_f);
    size_t slack = FR_ALIGN / sizeof(float);
    size_t rows = capacity > slack ? (capacity - slack) / row : 0;
    return rows > FR_OUTER_ROWS_MAX ? FR_OUTER_ROWS_MAX : (int) rows;
}

static int fr_outer_rows_d(int N, size_t capacity)
{
    size_t row = fr_round_up((size_t) N, (size_t) fr_rp_versions[fr_rp_active].nr_d);
    size_t slack = FR_ALIGN / sizeof(double);
    size_t rows = capacity > slack ? (capacity - slack) / row : 0;
    return rows > FR_OUTER_ROWS_MAX ? FR_OUTER_ROWS_MAX : (int) rows;
}

/* C[:, cols] (+)= X^T @ D[:, cols] for the columns of panels [panel_begin, panel_end) (of
 * fr_recurrent_panels_X(N)), X (K, M) and D (K, N) row-major with leading dimensions ldx, ldd
 * and ldc; accumulate = 0 overwrites C. K in passes of `rows` rows (1 <= rows <=
 * fr_outer_rows_X(N, capacity) of the buffer), each packed into the buffer, where a range of
 * panels writes only its own part. C must not overlap X, D or the buffer. */
static void fr_outer_sum_f(const float *X, int ldx, const float *D, int ldd, int K, int M, int N,
                           float *C, int ldc, int accumulate, float *buffer, int rows,
                           int panel_begin, int panel_end)
{
    fr_rp_versions[fr_rp_active].outer_sum_f(X, ldx, D, ldd, K, M, N, C, ldc, accumulate,
                                             (float *) fr_aligned(buffer), rows, panel_begin,
                                             panel_end);
}

static void fr_outer_sum_d(const double *X, int ldx, const double *D, int ldd, int K, int M,
                           int N, double *C, int ldc, int accumulate, double *buffer, int rows,
                           int panel_begin, int panel_end)
{
    fr_rp_versions[fr_rp_active].outer_sum_d(X, ldx, D, ldd, K, M, N, C, ldc, accumulate,
                                             (double *) fr_aligned(buffer), rows, panel_begin,
                                             panel_end);
}

#endif
