/* The recurrent product and the outer sum of fastrnn_recurrent_isa.h in any register layout,
 * against naive sums, for many shapes: compiled with -DVEC_BYTES=64 -DMR=12 -DACC=24 -DMV_MAX=28
 * -DMV_CHAINS=16 (the AVX-512 layout)
 * it runs that layout's blocking (panels of 32 floats, 12-row tiles, 128-row K passes) on any
 * x86-64 CPU, as GCC/Clang split 64-byte vectors into the vectors the CPU has; at B = 1 the
 * matrix-vector blocks, rows in both orders; the outer sum X^T @ D with leading dimensions
 * wider than the matrices and K in passes of 1 to 256 rows. Exit status 0
 * when every error is within 1e-5 (float) / 1e-12 (double) of sum |a*w|. Used by
 * tests/test_recurrent_layouts.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#define FR_RESTRICT __restrict__
#define FR_UNROLL _Pragma("GCC unroll 16")
#define FR_ALWAYS_INLINE __attribute__((always_inline))
#define FR_CAT3_(a, b, c) a##b##c
#define FR_CAT3(a, b, c) FR_CAT3_(a, b, c)
typedef float vf __attribute__((vector_size(VEC_BYTES)));
typedef double vd __attribute__((vector_size(VEC_BYTES)));
#define FR_TARGET
#define FR_NV 2
#define FR_MR MR
#define FR_ACC ACC
#define FR_MV_MAX MV_MAX
#define FR_MV_CHAINS MV_CHAINS
#define FR_T float
#define FR_VEC vf
#define FR_VLEN (VEC_BYTES / 4)
#define FR_FN(x) FR_CAT3(t_, x, _f)
#include "fastrnn_recurrent_isa.h"
#undef FR_T
#undef FR_VEC
#undef FR_VLEN
#undef FR_FN
#define FR_T double
#define FR_VEC vd
#define FR_VLEN (VEC_BYTES / 8)
#define FR_FN(x) FR_CAT3(t_, x, _d)
#include "fastrnn_recurrent_isa.h"

/* The worst error of the outer sum C (M, N) (+)= X^T @ D, X (K, M), D (K, N), against a
 * long double sum, relative to sum |x*d| (+ |C|), for float (worst[0]) and double (worst[1]).
 * X, D and C are stored with leading dimensions 3 wider than M and N, the gap NaN: a value
 * read outside the matrices would show. */
static void check_outer_sum(int K, int M, int N, int accumulate, int rows, double worst[2]) {
  const int ldx = M + 3, ldd = N + 3, ldc = N + 3;
  const int nr_f = 2 * VEC_BYTES / 4;
  const size_t packed = (size_t) rows * ((N + nr_f - 1) / nr_f * nr_f) + 64;
  double *X = malloc(sizeof(double) * K * ldx + 8), *D = malloc(sizeof(double) * K * ldd + 8);
  double *C0 = malloc(sizeof(double) * M * ldc), *Cd = malloc(sizeof(double) * M * ldc);
  float *Xf = malloc(4 * K * ldx + 4), *Df = malloc(4 * K * ldd + 4), *Cf = malloc(4 * M * ldc);
  float *Pf = aligned_alloc(64, 4 * packed + 64);
  double *Pd = aligned_alloc(64, 8 * packed + 64);
  for (int i = 0; i < K * ldx; i++) {
    X[i] = i % ldx < M ? rand() / (double) RAND_MAX - 0.5 : NAN; Xf[i] = (float) X[i]; }
  for (int i = 0; i < K * ldd; i++) {
    D[i] = i % ldd < N ? rand() / (double) RAND_MAX - 0.5 : NAN; Df[i] = (float) D[i]; }
  for (int i = 0; i < M * ldc; i++) {
    C0[i] = i % ldc < N ? rand() / (double) RAND_MAX - 0.5 : NAN; Cd[i] = C0[i]; Cf[i] = (float) C0[i]; }
  /* in two ranges of panels, as two threads would (the first empty when N has one panel) */
  const int panels_f = (N + nr_f - 1) / nr_f, panels_d = (N + nr_f / 2 - 1) / (nr_f / 2);
  t_outer_sum_f(Xf, ldx, Df, ldd, K, M, N, Cf, ldc, accumulate, Pf, rows, 0, panels_f / 2);
  t_outer_sum_f(Xf, ldx, Df, ldd, K, M, N, Cf, ldc, accumulate, Pf, rows, panels_f / 2, panels_f);
  t_outer_sum_d(X, ldx, D, ldd, K, M, N, Cd, ldc, accumulate, Pd, rows, 0, panels_d / 2);
  t_outer_sum_d(X, ldx, D, ldd, K, M, N, Cd, ldc, accumulate, Pd, rows, panels_d / 2, panels_d);
  for (int i = 0; i < M; i++) for (int j = 0; j < N; j++) {
    long double s = accumulate ? C0[i * ldc + j] : 0, b = accumulate ? fabs(C0[i * ldc + j]) : 0;
    double sf = accumulate ? (double) (float) C0[i * ldc + j] : 0, bf = fabs(sf);
    for (int k = 0; k < K; k++) {
      long double p = (long double) X[k * ldx + i] * D[k * ldd + j]; s += p; b += fabsl(p);
      double pf = (double) Xf[k * ldx + i] * Df[k * ldd + j]; sf += pf; bf += fabs(pf); }
    double ef = b > 0 ? fabs(Cf[i * ldc + j] - sf) / bf : fabs(Cf[i * ldc + j] - sf);
    double ed = b > 0 ? fabs(Cd[i * ldc + j] - (double) s) / (double) b : fabs(Cd[i * ldc + j] - (double) s);
    if (!(ef <= worst[0])) worst[0] = ef;
    if (!(ed <= worst[1])) worst[1] = ed; }
  for (int i = 0; i < M * ldc; i++)   /* the gaps between C's rows untouched */
    if (i % ldc >= N && !(isnan(Cd[i]) && isnan(Cf[i]))) { worst[0] = worst[1] = INFINITY; }
  free(X); free(D); free(C0); free(Cd); free(Xf); free(Df); free(Cf); free(Pf); free(Pd);
}

int main(void) {
  int sizes[] = {1, 3, 17, 100, 257, 700, 129, 64, 32, 33};
  int Bs[] = {1,2,3,4,5,6,7,8,9,11,12,13,24,25,31,32,64};
  double worst_f = 0, worst_d = 0; int n = 0;
  srand(1);
  for (int bi = 0; bi < 17; bi++) for (int ki = 0; ki < 10; ki++) for (int ni = 0; ni < 10; ni++) for (int tr = 0; tr < 2; tr++) {
    int B = Bs[bi], K = sizes[ki], N = sizes[ni], acc = (bi + ki + ni) % 2;
    if ((long)B*K*N > 300000) continue;   /* keeps the run to about a second */
    int nr_f = 2 * VEC_BYTES / 4, nr_d = 2 * VEC_BYTES / 8;
    int Np = (N + nr_f - 1) / nr_f * nr_f;
    double *A = malloc(sizeof(double)*B*K), *W = malloc(sizeof(double)*K*N), *C0 = malloc(sizeof(double)*B*N);
    double *ref = malloc(sizeof(double)*B*N), *bound = malloc(sizeof(double)*B*N);   /* double */
    double *reff = malloc(sizeof(double)*B*N), *boundf = malloc(sizeof(double)*B*N); /* float */
    float *Af = malloc(4*B*K), *Wf = malloc(4*K*N), *Cf = malloc(4*B*N), *Pf = aligned_alloc(64, 4*((size_t)K*Np+64));
    double *Cd = malloc(8*B*N), *Pd = aligned_alloc(64, 8*((size_t)K*Np+64));
    for (int i = 0; i < B*K; i++) { A[i] = rand()/(double)RAND_MAX - 0.5 + rand()/(double)RAND_MAX*1e-9; Af[i] = (float)A[i]; }
    for (int i = 0; i < K*N; i++) { W[i] = rand()/(double)RAND_MAX - 0.5 + rand()/(double)RAND_MAX*1e-9; Wf[i] = (float)W[i]; }
    for (int i = 0; i < B*N; i++) { C0[i] = rand()/(double)RAND_MAX - 0.5; Cf[i] = (float)C0[i]; Cd[i] = C0[i]; }
    /* W as stored: (K, N) or, transposed, the (N, K) matrix whose transpose is the product's */
    float *Wsf = malloc(4*K*N); double *Wsd = malloc(8*K*N);
    for (int k = 0; k < K; k++) for (int j = 0; j < N; j++) {
      if (tr) { Wsf[j*K+k] = Wf[k*N+j]; Wsd[j*K+k] = W[k*N+j]; } else { Wsf[k*N+j] = Wf[k*N+j]; Wsd[k*N+j] = W[k*N+j]; } }
    for (int i = 0; i < B; i++) for (int j = 0; j < N; j++) {
      long double s = acc ? C0[i*N+j] : 0, b = acc ? fabs(C0[i*N+j]) : 0;
      double sf = acc ? (double)Cf[i*N+j] : 0, bf = acc ? fabs((double)Cf[i*N+j]) : 0;
      for (int k = 0; k < K; k++) {
        long double p = (long double)A[i*K+k]*W[k*N+j]; s += p; b += fabsl(p);
        double pf = (double)Af[i*K+k]*Wf[k*N+j]; sf += pf; bf += fabs(pf); }
      ref[i*N+j] = s; bound[i*N+j] = b; reff[i*N+j] = sf; boundf[i*N+j] = bf; }
    for (size_t i = 0; i < (size_t)K*Np+64; i++) { Pf[i] = NAN; Pd[i] = NAN; }  /* all overwritten */
    int desc = (ki + ni) % 2;   /* the order of the rows at B = 1 */
    t_pack_f(Pf, Wsf, K, N, tr ? K : N, tr); t_product_f(Af, K, 1, Pf, K, N, Cf, N, B, acc, desc, 0, (N + nr_f - 1) / nr_f);
    t_pack_d(Pd, Wsd, K, N, tr ? K : N, tr); t_product_d(A, K, 1, Pd, K, N, Cd, N, B, acc, desc, 0, (N + nr_d - 1) / nr_d);
    for (int i = 0; i < B*N; i++) {
      double ef = fabs(Cf[i]-reff[i])/boundf[i], ed = fabs(Cd[i]-ref[i])/bound[i];
      if (!(ef <= worst_f)) worst_f = ef; if (!(ed <= worst_d)) worst_d = ed; }
    n++;
    free(A); free(W); free(C0); free(ref); free(bound); free(reff); free(boundf); free(Af); free(Wf); free(Cf); free(Pf); free(Cd); free(Pd); free(Wsf); free(Wsd);
  }
  printf("VEC_BYTES %d MR %d ACC %d: %d shapes; worst relative error float %.3g (limit 1e-5), double %.3g (limit 1e-12)\n", VEC_BYTES, MR, ACC, n, worst_f, worst_d);
  int Ks[] = {0, 1, 2, 17, 40, 300}, Ms[] = {1, 3, 5, 13, 24, 100}, Ns[] = {1, 3, 17, 65, 100, 257};
  int passes[] = {1, 7, 16, 256};
  double worst[2] = {0, 0}; int outer = 0;
  for (int ki = 0; ki < 6; ki++) for (int mi = 0; mi < 6; mi++) for (int ni = 0; ni < 6; ni++)
    for (int pi = 0; pi < 4; pi++) {
      if (Ks[ki] > 40 && pi == 0) continue;   /* one row per pass: short K only */
      check_outer_sum(Ks[ki], Ms[mi], Ns[ni], (ki + mi + ni + pi) % 2, passes[pi], worst);
      outer++;
    }
  printf("outer sum: %d shapes; worst relative error float %.3g (limit 1e-5), double %.3g (limit 1e-12)\n", outer, worst[0], worst[1]);
  return !(worst_f <= 1e-5 && worst_d <= 1e-12 && worst[0] <= 1e-5 && worst[1] <= 1e-12);
}
