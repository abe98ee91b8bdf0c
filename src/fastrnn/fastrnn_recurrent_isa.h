/* The recurrent product for ONE (dtype, instruction set): packing and the register-blocked
 * micro-kernel. Not a header of its own: fastrnn_recurrent.h includes it once per pair, after
 * defining
 *   FR_T       element type (float or double)
 *   FR_FN(x)   the name of this instance's function x (e.g. fr_rp_pack_f_avx2)
 *   FR_TARGET  function attribute selecting the instruction set (empty for the portable one)
 *   FR_VEC     one SIMD vector of FR_T (GCC/Clang vector extension), or FR_T itself
 *   FR_VLEN    elements in FR_VEC
 *   FR_NV      vectors across one panel: a panel is FR_NR = FR_VLEN * FR_NV columns wide
 *   FR_MR      rows of A (streams) per tile
 *   FR_ACC     accumulator vectors the register file holds beside the operands
 *
 * Packed layout of a logical (K, N) matrix W: ceil(N / NR) column panels, panel p holding
 * columns [p*NR, p*NR + NR) as K rows of NR values (row k = W[k, p*NR:(p+1)*NR]), the columns
 * past N zero. A panel is what one tile streams through, in order, once per K.
 *
 * A tile computes C[i0:i0+m, panels j..j+np) += A[i0:i0+m, :] @ panels, the m * np * NV
 * accumulators in registers: per k, np*NV vector loads of W, m broadcasts of A[i, k] and
 * m*np*NV multiply-adds. m and np are compile-time constants at every call (the switch in
 * FR_FN(tile_any)), so the loops over them unroll and the accumulators stay in registers.
 */

#define FR_NR (FR_VLEN * FR_NV)
/* Rows of K per pass over the panels: a panel's share of them (FR_KC * NR values) is 16 KB,
 * so that it stays in L1 beside the FR_MR rows of A while every row block reads it. */
#define FR_KC ((int) (16384 / (FR_NR * sizeof(FR_T))))
/* Panels per tile for m rows: as many as the accumulators allow (at most 4, at least 1). At
 * m = 1 (the matrix-vector case) this gives 4*NV independent accumulation chains, enough to
 * hide the multiply-add latency. */
#define FR_NP_OF(m) ((FR_ACC / ((m) * FR_NV)) > 4 ? 4 : (FR_ACC / ((m) * FR_NV)) < 1 ? 1 \
                     : (FR_ACC / ((m) * FR_NV)))

static FR_TARGET void FR_FN(pack)(FR_T *FR_RESTRICT dst, const FR_T *FR_RESTRICT W, int K,
                                   int N, int ldw, int transposed)
{
    /* dst = the packed layout of the (K, N) matrix W (transposed = 0: W[k * ldw + n]) or of
     * W^T for an (N, K) matrix W (transposed = 1: element (k, n) is W[n * ldw + k]). */
    const int panels = (N + FR_NR - 1) / FR_NR;
    for (int p = 0; p < panels; p++) {
        FR_T *panel = dst + (size_t) p * K * FR_NR;
        const int n0 = p * FR_NR, width = N - n0 < FR_NR ? N - n0 : FR_NR;
        if (!transposed) {
            for (int k = 0; k < K; k++) {
                memcpy(panel + (size_t) k * FR_NR, W + (size_t) k * ldw + n0,
                       (size_t) width * sizeof(FR_T));
                for (int c = width; c < FR_NR; c++)
                    panel[(size_t) k * FR_NR + c] = 0;
            }
        } else {
            for (int c = 0; c < FR_NR; c++) {
                FR_T *out = panel + c;
                if (c < width) {
                    const FR_T *row = W + (size_t) (n0 + c) * ldw;
                    for (int k = 0; k < K; k++)
                        out[(size_t) k * FR_NR] = row[k];
                } else {
                    for (int k = 0; k < K; k++)
                        out[(size_t) k * FR_NR] = 0;
                }
            }
        }
    }
}

static inline FR_TARGET FR_VEC FR_FN(load)(const FR_T *p)
{
    FR_VEC v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline FR_TARGET void FR_FN(store)(FR_T *p, FR_VEC v)
{
    memcpy(p, &v, sizeof v);
}

static inline FR_ALWAYS_INLINE FR_TARGET void FR_FN(tile)(
    const FR_T *FR_RESTRICT A, int lda, const FR_T *FR_RESTRICT Wp, int K, int kc,
    FR_T *FR_RESTRICT C, int ldc, int accumulate, const int m, const int np)
{
    /* C (m, np*NR) (+)= A (m, kc) @ rows [0, kc) of np consecutive panels of K rows, starting
     * at Wp (A and Wp already point at the first of the kc rows). */
    FR_VEC acc[FR_MR][4 * FR_NV];
    const size_t panel_stride = (size_t) K * FR_NR;
    FR_UNROLL
    for (int i = 0; i < m; i++) {
        FR_UNROLL
        for (int v = 0; v < np * FR_NV; v++)
            acc[i][v] = accumulate ? FR_FN(load)(C + (size_t) i * ldc + v * FR_VLEN)
                                   : (FR_VEC) {0};
    }
    for (int k = 0; k < kc; k++) {
        FR_VEC w[4 * FR_NV];
        FR_UNROLL
        for (int p = 0; p < np; p++) {
            FR_UNROLL
            for (int v = 0; v < FR_NV; v++)
                w[p * FR_NV + v] = FR_FN(load)(Wp + p * panel_stride + (size_t) k * FR_NR
                                               + v * FR_VLEN);
        }
        FR_UNROLL
        for (int i = 0; i < m; i++) {
            const FR_T a = A[(size_t) i * lda + k];
            FR_UNROLL
            for (int v = 0; v < np * FR_NV; v++)
                acc[i][v] += a * w[v];
        }
    }
    FR_UNROLL
    for (int i = 0; i < m; i++) {
        FR_UNROLL
        for (int v = 0; v < np * FR_NV; v++)
            FR_FN(store)(C + (size_t) i * ldc + v * FR_VLEN, acc[i][v]);
    }
}

#define FR_TILE_NP(M, NP)                                                                 \
    case NP:                                                                              \
        if (NP <= FR_NP_OF(M))                                                            \
            FR_FN(tile)(A, lda, Wp, K, kc, C, ldc, accumulate, M, NP);                    \
        break;
#define FR_TILE_CASE(M)                                                                   \
    case M:                                                                               \
        switch (np) { FR_TILE_NP(M, 1) FR_TILE_NP(M, 2) FR_TILE_NP(M, 3) FR_TILE_NP(M, 4) } \
        break;

static FR_TARGET void FR_FN(tile_any)(const FR_T *A, int lda, const FR_T *Wp, int K, int kc,
                                      FR_T *C, int ldc, int accumulate, int m, int np)
{
    /* tile with m in [1, FR_MR] and np in [1, FR_NP_OF(m)], as compile-time constants. */
    switch (m) {
        FR_TILE_CASE(1)
        FR_TILE_CASE(2)
        FR_TILE_CASE(3)
        FR_TILE_CASE(4)
#if FR_MR > 4
        FR_TILE_CASE(5)
        FR_TILE_CASE(6)
#endif
#if FR_MR > 6
        FR_TILE_CASE(7)
        FR_TILE_CASE(8)
#endif
#if FR_MR > 8
        FR_TILE_CASE(9)
        FR_TILE_CASE(10)
        FR_TILE_CASE(11)
        FR_TILE_CASE(12)
#endif
#if FR_MR > 12
#error "FR_MR > 12: add cases"
#endif
        default:
            break;
    }
}
#undef FR_TILE_NP
#undef FR_TILE_CASE

/* A full row block (FR_MR rows) takes one panel per tile, so that a tile's np never exceeds
 * FR_NP_OF(m) for the tail row block either. */
typedef char FR_FN(one_panel_at_full_rows)[FR_NP_OF(FR_MR) == 1 ? 1 : -1];

static FR_TARGET void FR_FN(product)(const FR_T *FR_RESTRICT A, int lda,
                                      const FR_T *FR_RESTRICT Wp, int K, int N,
                                      FR_T *FR_RESTRICT C, int ldc, int B, int accumulate,
                                      int panel_begin, int panel_end)
{
    /* C[:, cols] (+)= A (B, K) @ W[:, cols] for the columns of panels [panel_begin, panel_end),
     * W given packed (Wp). K in passes of FR_KC rows; in a pass, panels outside, row blocks
     * inside: a group of panels' FR_KC rows is read from memory once and then from L1 for
     * every block of FR_MR rows. A group that runs past column N is computed in a
     * zero-padded scratch tile and only its columns < N written. B >= FR_MR: groups of one
     * panel; B < FR_MR: one row block, groups of FR_NP_OF(B) panels, the last group what is
     * left. */
    FR_T edge[FR_MR * 4 * FR_NR];
    const int group = B < FR_MR ? FR_NP_OF(B) : 1;
    for (int k0 = 0; k0 < K; k0 += FR_KC) {
        const int kc = K - k0 < FR_KC ? K - k0 : FR_KC;
        const int add = accumulate || k0 > 0;
        for (int p = panel_begin; p < panel_end;) {
            const int np = panel_end - p >= group ? group : panel_end - p;
            const int n0 = p * FR_NR, width = np * FR_NR;
            const int cols = N - n0 < width ? N - n0 : width;
            const FR_T *Wg = Wp + (size_t) p * K * FR_NR + (size_t) k0 * FR_NR;
            for (int i0 = 0; i0 < B; i0 += FR_MR) {
                const int m = B - i0 < FR_MR ? B - i0 : FR_MR;
                const FR_T *Ai = A + (size_t) i0 * lda + k0;
                FR_T *Ci = C + (size_t) i0 * ldc + n0;
                if (cols == width) {
                    FR_FN(tile_any)(Ai, lda, Wg, K, kc, Ci, ldc, add, m, np);
                    continue;
                }
                for (int i = 0; i < m; i++)
                    for (int c = 0; c < width; c++)
                        edge[i * width + c] = (add && c < cols) ? Ci[(size_t) i * ldc + c] : 0;
                FR_FN(tile_any)(Ai, lda, Wg, K, kc, edge, width, 1, m, np);
                for (int i = 0; i < m; i++)
                    memcpy(Ci + (size_t) i * ldc, edge + i * width,
                           (size_t) cols * sizeof(FR_T));
            }
            p += np;
        }
    }
}

#undef FR_NR
#undef FR_KC
#undef FR_NP_OF
