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
 *   FR_MV_MAX  accumulator vectors of the matrix-vector product (B = 1): the register file
 *              less one for the broadcast value (the loads of W fold into the multiply-adds)
 *   FR_MV_CHAINS  independent multiply-add chains that hide the multiply-add latency
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
        if (!transposed && width == FR_NR) {
            /* a whole panel: copies of a constant size, which the compiler inlines (an outer
             * sum packs every row of a chunk this way, a few values at a time) */
            for (int k = 0; k < K; k++)
                memcpy(panel + (size_t) k * FR_NR, W + (size_t) k * ldw + n0,
                       FR_NR * sizeof(FR_T));
        } else if (!transposed) {
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
    const FR_T *FR_RESTRICT A, int lda, int ldk, const FR_T *FR_RESTRICT Wp, int K, int kc,
    FR_T *FR_RESTRICT C, int ldc, int accumulate, int part, const int m, const int nvec)
{
    /* C (m, cols) (+)= A (m, kc) @ rows [0, kc) of the nvec consecutive vectors of columns
     * that start at panel Wp (A and Wp already point at the first of the kc rows); vector v
     * is vector v % NV of panel v / NV. cols = (nvec - 1) * VLEN + part: the last vector
     * holds `part` (1..VLEN) columns of C, read and written through a scratch vector when
     * part < VLEN, so a matrix's edge costs the vectors it has, not whole panels. Element
     * (i, k) of A is A[i * lda + k * ldk]. */
    FR_VEC acc[FR_MR][4 * FR_NV];
    FR_T edge[FR_VLEN];
    const size_t panel_stride = (size_t) K * FR_NR;
    const int last = nvec - 1, partial = part < FR_VLEN;
    FR_UNROLL
    for (int i = 0; i < m; i++) {
        FR_UNROLL
        for (int v = 0; v < nvec; v++) {
            if (!accumulate) {
                acc[i][v] = (FR_VEC) {0};
            } else if (v == last && partial) {
                memset(edge, 0, sizeof edge);
                memcpy(edge, C + (size_t) i * ldc + v * FR_VLEN, (size_t) part * sizeof(FR_T));
                acc[i][v] = FR_FN(load)(edge);
            } else {
                acc[i][v] = FR_FN(load)(C + (size_t) i * ldc + v * FR_VLEN);
            }
        }
    }
    for (int k = 0; k < kc; k++) {
        FR_VEC w[4 * FR_NV];
        FR_UNROLL
        for (int v = 0; v < nvec; v++)
            w[v] = FR_FN(load)(Wp + (v / FR_NV) * panel_stride + (size_t) k * FR_NR
                               + (v % FR_NV) * FR_VLEN);
        FR_UNROLL
        for (int i = 0; i < m; i++) {
            const FR_T a = A[(size_t) i * lda + (size_t) k * ldk];
            FR_UNROLL
            for (int v = 0; v < nvec; v++)
                acc[i][v] += a * w[v];
        }
    }
    FR_UNROLL
    for (int i = 0; i < m; i++) {
        FR_UNROLL
        for (int v = 0; v < nvec; v++) {
            if (v == last && partial) {
                FR_FN(store)(edge, acc[i][v]);
                memcpy(C + (size_t) i * ldc + v * FR_VLEN, edge, (size_t) part * sizeof(FR_T));
            } else {
                FR_FN(store)(C + (size_t) i * ldc + v * FR_VLEN, acc[i][v]);
            }
        }
    }
}

/* Vectors of columns a tile of m rows holds in its accumulators: whole panels, as many as
 * the accumulators allow (at most 4, at least 1). At m = 1 this gives 4*NV independent
 * accumulation chains, enough to hide the multiply-add latency. */
#define FR_TILE_VECTORS(m) (FR_NP_OF(m) * FR_NV)

#define FR_TILE_NV(M, NVEC)                                                               \
    case NVEC:                                                                            \
        if (NVEC <= FR_TILE_VECTORS(M))                                                   \
            FR_FN(tile)(A, lda, ldk, Wp, K, kc, C, ldc, accumulate, part, M, NVEC);       \
        break;
#define FR_TILE_CASE(M)                                                                   \
    case M:                                                                               \
        switch (nvec) {                                                                   \
            FR_TILE_NV(M, 1) FR_TILE_NV(M, 2) FR_TILE_NV(M, 3) FR_TILE_NV(M, 4)           \
            FR_TILE_NV(M, 5) FR_TILE_NV(M, 6) FR_TILE_NV(M, 7) FR_TILE_NV(M, 8)           \
            default: break;                                                               \
        }                                                                                 \
        break;
#if 4 * FR_NV > 8
#error "4 * FR_NV > 8: add cases"
#endif

static FR_TARGET void FR_FN(tile_any)(const FR_T *A, int lda, int ldk, const FR_T *Wp, int K,
                                      int kc, FR_T *C, int ldc, int accumulate, int part,
                                      int m, int nvec)
{
    /* tile with m in [1, FR_MR] and nvec in [1, FR_TILE_VECTORS(m)] as compile-time
     * constants. */
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
#undef FR_TILE_NV
#undef FR_TILE_CASE

static inline FR_TARGET void FR_FN(panel_group)(const FR_T *A, int lda, int ldk,
                                                const FR_T *Wp, int K, int kc, int N, FR_T *C,
                                                int ldc, int accumulate, int rows, int m, int p,
                                                int np)
{
    /* C[:rows, cols] (+)= A[:rows, :kc] @ the kc rows at Wp of panels [p, p + np) (Wp: the
     * first of the kc rows of panel 0, C: column 0), in tiles of m rows (rows a multiple of
     * m) and the np panels; a tile that runs past column N holds only the vectors with
     * columns < N. */
    const int n0 = p * FR_NR;
    const int cols = N - n0 < np * FR_NR ? N - n0 : np * FR_NR;
    const int nvec = (cols + FR_VLEN - 1) / FR_VLEN;
    const int part = cols - (nvec - 1) * FR_VLEN;
    for (int i0 = 0; i0 < rows; i0 += m)
        FR_FN(tile_any)(A + (size_t) i0 * lda, lda, ldk, Wp + (size_t) p * K * FR_NR, K, kc,
                        C + (size_t) i0 * ldc + n0, ldc, accumulate, part, m, nvec);
}

/* A full row block (FR_MR rows) takes one panel per tile: its accumulators hold no more. */
typedef char FR_FN(one_panel_at_full_rows)[FR_NP_OF(FR_MR) == 1 ? 1 : -1];

/* ------------------------------------------------------------- the matrix-vector product
 *
 * At B = 1 the product is c (N) (+)= a (K) @ W, W given packed as above. A block of nv
 * consecutive column vectors (nv <= FR_MV_MAX, starting at a panel boundary) keeps all its
 * accumulators in registers and streams its panels once, row by row: per row k, one broadcast
 * of a[k] and nv multiply-adds with the loads of W folded in. When nv is too small to hide
 * the multiply-add latency, u interleaved sets of accumulators take the rows k = j (mod u)
 * and are summed at the end. With u = 1 each column is summed in the order of the tiles of
 * the general product (c, then k = 0, 1, ..., K-1), so its results are the same. */

/* Interleaved accumulator sets for a block of nv vectors: enough for FR_MV_CHAINS chains, at
 * most 4 and within FR_MV_MAX accumulators. */
#define FR_MV_U(nv) (((FR_MV_CHAINS + (nv) - 1) / (nv)) > 4 ? 4                                \
                     : ((FR_MV_CHAINS + (nv) - 1) / (nv)) * (nv) > FR_MV_MAX                     \
                         ? (FR_MV_MAX / (nv) < 1 ? 1 : FR_MV_MAX / (nv))                         \
                         : ((FR_MV_CHAINS + (nv) - 1) / (nv)))

static inline FR_ALWAYS_INLINE FR_TARGET void FR_FN(mv_block)(
    const FR_T *FR_RESTRICT a, const FR_T *FR_RESTRICT Wb, int K, FR_T *FR_RESTRICT c,
    int cols, int accumulate, int descending, const int nv, const int u)
{
    /* c[:cols] (+)= a (K) @ the nv column vectors of W starting at Wb (the first row of a
     * panel), cols <= nv * FR_VLEN (only the last block of a matrix has cols < nv * FR_VLEN:
     * it reads and writes c through the scratch `edge`). */
    FR_VEC acc[4][FR_MV_MAX];
    FR_T edge[FR_MV_MAX * FR_VLEN];
    const size_t panel_stride = (size_t) K * FR_NR;
    const int whole = cols == nv * FR_VLEN;
    FR_T *out = whole ? c : edge;
    if (!whole)
        for (int i = 0; i < nv * FR_VLEN; i++)
            edge[i] = (accumulate && i < cols) ? c[i] : 0;
    FR_UNROLL
    for (int v = 0; v < nv; v++) {
        acc[0][v] = accumulate || !whole ? FR_FN(load)(out + v * FR_VLEN) : (FR_VEC) {0};
        FR_UNROLL
        for (int j = 1; j < u; j++)
            acc[j][v] = (FR_VEC) {0};
    }
    /* rows in the order k = 0, 1, ..., K-1, or K-1, ..., 0 when descending */
    const int da = descending ? -1 : 1, dw = descending ? -FR_NR : FR_NR;
    const FR_T *ak = descending ? a + (K - 1) : a;
    const FR_T *row = descending ? Wb + (size_t) (K - 1) * FR_NR : Wb;
    int k = 0;
    for (; k + u <= K; k += u) {
        FR_UNROLL
        for (int j = 0; j < u; j++) {
            const FR_T s = ak[j * da];
            const FR_T *r = row + j * dw;
            FR_UNROLL
            for (int v = 0; v < nv; v++)
                acc[j][v] += s * FR_FN(load)(r + (v / FR_NV) * panel_stride
                                             + (v % FR_NV) * FR_VLEN);
        }
        ak += u * da;
        row += u * dw;
    }
    for (; k < K; k++) {
        const FR_T s = *ak;
        FR_UNROLL
        for (int v = 0; v < nv; v++)
            acc[0][v] += s * FR_FN(load)(row + (v / FR_NV) * panel_stride + (v % FR_NV) * FR_VLEN);
        ak += da;
        row += dw;
    }
    FR_UNROLL
    for (int v = 0; v < nv; v++) {
        FR_UNROLL
        for (int j = 1; j < u; j++)
            acc[0][v] += acc[j][v];
        FR_FN(store)(out + v * FR_VLEN, acc[0][v]);
    }
    if (!whole)
        memcpy(c, edge, (size_t) cols * sizeof(FR_T));
}

#define FR_MV_CASE(NV, U)                                                                \
    case NV:                                                                             \
        if (NV * U <= FR_MV_MAX)                                                         \
            FR_FN(mv_block)(a, Wb, K, c, cols, accumulate, descending, NV, U);           \
        break;
#define FR_MV_CASES(U)                                                                   \
    switch (nv) {                                                                        \
        FR_MV_CASE(1, U) FR_MV_CASE(2, U) FR_MV_CASE(3, U) FR_MV_CASE(4, U)              \
        FR_MV_CASE(5, U) FR_MV_CASE(6, U) FR_MV_CASE(7, U) FR_MV_CASE(8, U)              \
        FR_MV_CASE(9, U) FR_MV_CASE(10, U) FR_MV_CASE(11, U) FR_MV_CASE(12, U)           \
        FR_MV_CASE(13, U) FR_MV_CASE(14, U) FR_MV_CASE(15, U) FR_MV_CASE(16, U)          \
        FR_MV_CASE(17, U) FR_MV_CASE(18, U) FR_MV_CASE(19, U) FR_MV_CASE(20, U)          \
        FR_MV_CASE(21, U) FR_MV_CASE(22, U) FR_MV_CASE(23, U) FR_MV_CASE(24, U)          \
        FR_MV_CASE(25, U) FR_MV_CASE(26, U) FR_MV_CASE(27, U) FR_MV_CASE(28, U)          \
        default:                                                                         \
            break;                                                                       \
    }
#if FR_MV_MAX > 28
#error "FR_MV_MAX > 28: add cases"
#endif

static FR_TARGET void FR_FN(mv_block_any)(const FR_T *a, const FR_T *Wb, int K, FR_T *c,
                                          int cols, int accumulate, int descending, int nv,
                                          int u)
{
    /* mv_block with nv and u (nv * u <= FR_MV_MAX, u <= 4) as compile-time constants. */
    switch (u) {
        case 1: FR_MV_CASES(1) break;
        case 2: FR_MV_CASES(2) break;
        case 3: FR_MV_CASES(3) break;
        case 4: FR_MV_CASES(4) break;
        default: break;
    }
}
#undef FR_MV_CASES
#undef FR_MV_CASE

/* A block holds whole panels. */
typedef char FR_FN(mv_whole_panels)[FR_MV_MAX >= FR_NV ? 1 : -1];

static FR_TARGET void FR_FN(matvec)(const FR_T *FR_RESTRICT a, const FR_T *FR_RESTRICT Wp,
                                     int K, int N, FR_T *FR_RESTRICT c, int accumulate,
                                     int descending, int panel_begin, int panel_end)
{
    /* c[cols] (+)= a (K) @ W[:, cols] for the columns of panels [panel_begin, panel_end).
     * The blocks are those of the whole matrix (its panels in the fewest blocks of at most
     * FR_MV_MAX / FR_NV panels, of nearly equal size; of each panel only the vectors that hold
     * columns < N), each with its u; a range of panels computes its part of every block it
     * meets with that block's u. So every column is the same sum whatever the range (a
     * thread's share gives the bits of the whole product). */
    const int max_panels = FR_MV_MAX / FR_NV;
    const int panels = (N + FR_NR - 1) / FR_NR;
    const int blocks = (panels + max_panels - 1) / max_panels;
    const int vectors_of_n = (N + FR_VLEN - 1) / FR_VLEN;
    for (int b = 0; b < blocks; b++) {
        const int g0 = panels * b / blocks, g1 = panels * (b + 1) / blocks;
        const int p0 = g0 > panel_begin ? g0 : panel_begin;
        const int p1 = g1 < panel_end ? g1 : panel_end;
        if (p0 >= p1)
            continue;
        const int u = FR_MV_U((g1 * FR_NV < vectors_of_n ? g1 * FR_NV : vectors_of_n)
                              - g0 * FR_NV);
        const int v0 = p0 * FR_NV;
        const int v1 = p1 * FR_NV < vectors_of_n ? p1 * FR_NV : vectors_of_n;
        const int n0 = v0 * FR_VLEN;
        const int cols = (N < v1 * FR_VLEN ? N : v1 * FR_VLEN) - n0;
        FR_FN(mv_block_any)(a, Wp + (size_t) p0 * K * FR_NR, K, c + n0, cols, accumulate,
                            descending, v1 - v0, u);
    }
}

#undef FR_MV_U

static FR_TARGET void FR_FN(product)(const FR_T *FR_RESTRICT A, int lda, int ldk,
                                      const FR_T *FR_RESTRICT Wp, int K, int N,
                                      FR_T *FR_RESTRICT C, int ldc, int B, int accumulate,
                                      int descending, int panel_begin, int panel_end)
{
    /* C[:, cols] (+)= A (B, K) @ W[:, cols] for the columns of panels [panel_begin, panel_end),
     * W given packed (Wp). K in passes of FR_KC rows; in a pass, the rows in whole blocks of
     * FR_MR take one panel per tile, the B % FR_MR rows left take FR_NP_OF of them (enough
     * accumulators to keep the multiply-adds busy), and a tile at column N only the vectors
     * with columns < N (panel_group). Every element is the same chain of multiply-adds
     * (C or 0, then k = 0, 1, ..., K-1) whatever the tiling or the range of panels. Element
     * (i, k) of A is A[i * lda + k * ldk]. B = 1 and ldk = 1: the matrix-vector product
     * (matvec), its rows of W in descending order when `descending` (which the other cases
     * ignore). */
    if (B == 1 && ldk == 1) {
        FR_FN(matvec)(A, Wp, K, N, C, accumulate, descending, panel_begin, panel_end);
        return;
    }
    const int tail = B % FR_MR, full = B - tail;
    const int group = tail ? FR_NP_OF(tail) : 1;
    for (int k0 = 0; k0 < K; k0 += FR_KC) {
        const int kc = K - k0 < FR_KC ? K - k0 : FR_KC;
        const int add = accumulate || k0 > 0;
        const FR_T *Wk = Wp + (size_t) k0 * FR_NR;
        /* a group of panels: the whole row blocks one panel at a time, then the tail rows
         * over the group, while its kc rows are still in cache */
        for (int g = panel_begin; g < panel_end; g += group) {
            const int ng = panel_end - g < group ? panel_end - g : group;
            for (int p = g; full && p < g + ng; p++)
                FR_FN(panel_group)(A + (size_t) k0 * ldk, lda, ldk, Wk, K, kc, N, C, ldc, add,
                                   full, FR_MR, p, 1);
            if (tail)
                FR_FN(panel_group)(A + (size_t) full * lda + (size_t) k0 * ldk, lda, ldk, Wk, K,
                                   kc, N, C + (size_t) full * ldc, ldc, add, tail, tail, g, ng);
        }
    }
}

/* ------------------------------------------------------------------ the outer sum
 *
 * C (M, N) (+)= X^T @ D for X (K, M) and D (K, N) row-major with K much larger than M and N:
 * the weight gradient of a layer, the sum over K rows (the chunk's T*B) of the outer products
 * X[k]^T D[k]. K in passes of `rows` rows: each packs its rows of D into panels (buffer) and
 * runs the product with A = X^T, read in place (element (i, k) at X[k * ldx + i]), so
 * neither operand is copied whole and X is never transposed. Only the columns of panels
 * [panel_begin, panel_end) are computed, and only their panels are packed, into the part of
 * the buffer the range would take in a pass of `rows` rows: threads that own different ranges
 * share one buffer, and every element is the same chain of multiply-adds whatever the range. */
static FR_TARGET void FR_FN(outer_sum)(const FR_T *FR_RESTRICT X, int ldx,
                                        const FR_T *FR_RESTRICT D, int ldd, int K, int M, int N,
                                        FR_T *FR_RESTRICT C, int ldc, int accumulate,
                                        FR_T *FR_RESTRICT buffer, int rows, int panel_begin,
                                        int panel_end)
{
    const int n0 = panel_begin * FR_NR;
    const int width = (N < panel_end * FR_NR ? N : panel_end * FR_NR) - n0;
    if (width <= 0)
        return;
    if (K == 0 && !accumulate)
        for (int i = 0; i < M; i++)
            memset(C + (size_t) i * ldc + n0, 0, (size_t) width * sizeof(FR_T));
    /* this range's part of the buffer, the same in every pass (a last, shorter pass must not
     * reach into another range's part while that one is still in an earlier pass) */
    FR_T *own = buffer + (size_t) panel_begin * rows * FR_NR;
    for (int k0 = 0; k0 < K; k0 += rows) {
        const int kb = K - k0 < rows ? K - k0 : rows;
        FR_FN(pack)(own, D + (size_t) k0 * ldd + n0, kb, width, ldd, 0);
        /* the product finds panel p at (where panel 0 would be) + p * kb * NR */
        FR_FN(product)(X + (size_t) k0 * ldx, 1, ldx, own - (size_t) panel_begin * kb * FR_NR,
                       kb, N, C, ldc, M, accumulate || k0 > 0, 0, panel_begin, panel_end);
    }
}

#undef FR_NR
#undef FR_KC
#undef FR_NP_OF
