# Included by _kernel.pyx before the kernels: the packed recurrent product (fastrnn_recurrent.h).
#
# Every recurrence of the kernel multiplies the same weight matrix T times per chunk:
# h_{t-1} @ Whh forward, dpre_t @ Whh^T backward. The matrix is packed once per chunk into a
# caller's buffer (a workspace array of packed_size(K, N, dtype) values, allocated once per
# shape in model.py) and each step runs a register-blocked micro-kernel over the packed panels:
#
#     recurrent_pack(packed, W, K, N, ldw, transposed)     packed = panels of W (K, N) or of W^T
#     recurrent_product(A, lda, packed, K, N, C, ldc, B, accumulate)
#                                                          C (B, N) (+)= A (B, K) @ W
#     recurrent_step_product(A, lda, packed, K, N, C, ldc, B, accumulate, t)
#                                                          the same, at step t of a recurrence
#
# At B = 1 the product is a matrix-vector kernel; recurrent_step_product lets it read the rows
# of W in the order opposite to the previous step's (see fastrnn_recurrent.h), which keeps part
# of a W a little larger than L1 (H = 100 in float32) in L1 from one step to the next.
#
# The version (AVX-512, AVX2+FMA or portable C) is chosen at import from the CPU's features;
# the environment variable FASTRNN_RECURRENT_ISA=portable|avx2|avx512 or set_recurrent_isa()
# selects a narrower one (never one the CPU lacks).
import os as _os
import warnings as _warnings

cdef extern from "fastrnn_recurrent.h" nogil:
    int FR_ISA_PORTABLE, FR_ISA_AVX2, FR_ISA_AVX512
    void fr_recurrent_init()
    int fr_recurrent_isa()
    int fr_recurrent_isa_best()
    int fr_recurrent_set_isa(int isa)
    size_t fr_recurrent_packed_size_f(int K, int N)
    size_t fr_recurrent_packed_size_d(int K, int N)
    int fr_recurrent_panels_f(int N)
    int fr_recurrent_panels_d(int N)
    int fr_recurrent_panel_width_f()
    int fr_recurrent_panel_width_d()
    void fr_recurrent_pack_f(float *buffer, const float *W, int K, int N, int ldw,
                             int transposed)
    void fr_recurrent_pack_d(double *buffer, const double *W, int K, int N, int ldw,
                             int transposed)
    void fr_recurrent_product_panels_f(const float *A, int lda, const float *buffer, int K,
                                       int N, float *C, int ldc, int B, int accumulate,
                                       int panel_begin, int panel_end)
    void fr_recurrent_product_panels_d(const double *A, int lda, const double *buffer, int K,
                                       int N, double *C, int ldc, int B, int accumulate,
                                       int panel_begin, int panel_end)
    void fr_recurrent_product_f(const float *A, int lda, const float *buffer, int K, int N,
                                float *C, int ldc, int B, int accumulate)
    void fr_recurrent_product_d(const double *A, int lda, const double *buffer, int K, int N,
                                double *C, int ldc, int B, int accumulate)
    void fr_recurrent_step_product_f(const float *A, int lda, const float *buffer, int K,
                                     int N, float *C, int ldc, int B, int accumulate, int step)
    void fr_recurrent_step_product_d(const double *A, int lda, const double *buffer, int K,
                                     int N, double *C, int ldc, int B, int accumulate, int step)
    int fr_outer_rows_f(int N, size_t capacity)
    int fr_outer_rows_d(int N, size_t capacity)
    void fr_outer_sum_f(const float *X, int ldx, const float *D, int ldd, int K, int M, int N,
                        float *C, int ldc, int accumulate, float *buffer, int rows,
                        int panel_begin, int panel_end)
    void fr_outer_sum_d(const double *X, int ldx, const double *D, int ldd, int K, int M, int N,
                        double *C, int ldc, int accumulate, double *buffer, int rows,
                        int panel_begin, int panel_end)


cdef extern from "fastrnn_barrier.h" nogil:
    ctypedef struct fr_barrier:
        int sleeps
    void fr_barrier_init(fr_barrier *b)
    void fr_barrier_wait(fr_barrier *b, int n)


cdef extern from * nogil:
    """
    #if defined(_WIN32)
    #  include <windows.h>
    static void fr_sleep_us(int us) { Sleep((DWORD) ((us + 999) / 1000)); }
    #else
    #  include <time.h>
    static void fr_sleep_us(int us)
    {
        struct timespec pause = {us / 1000000, (long) (us % 1000000) * 1000L};
        nanosleep(&pause, NULL);
    }
    #endif
    """
    void fr_sleep_us(int us)


cdef void barrier_rounds(fr_barrier *barrier, int *arrived, int rounds, int late_us, int tid,
                         int n, int *early) noexcept nogil:
    """barrier_probe's loop for thread tid of n: per round r, the thread r % n arrives late_us
    microseconds late; every thread marks its arrival, waits, then counts into early the
    threads whose mark of round r it does not see (any: one passed the barrier too soon)."""
    cdef int r, k
    for r in range(rounds):
        if r % n == tid and late_us > 0:
            fr_sleep_us(late_us)
        arrived[tid] = r + 1
        fr_barrier_wait(barrier, n)
        for k in range(n):
            if arrived[k] < r + 1:
                early[tid] += 1
        fr_barrier_wait(barrier, n)     # nobody marks round r + 1 before all have looked


def barrier_probe(int threads, int rounds, int late_us):
    """Test door to the barrier of the shared recurrences: `threads` threads pass it 2*rounds
    times, one of them late_us microseconds late in each round (long enough, and the others
    sleep instead of spinning). Returns (threads that ran every round, passes seen too soon,
    times a thread went to sleep)."""
    if threads < 1 or rounds < 1 or late_us < 0:
        raise ValueError(f"threads >= 1, rounds >= 1, late_us >= 0; got {threads}, {rounds}, "
                         f"{late_us}")
    cdef fr_barrier barrier
    cdef int *arrived = <int *> PyMem_Malloc(2 * threads * sizeof(int))
    if arrived == NULL:
        raise MemoryError()
    cdef int *early = arrived + threads
    cdef int n = 0, tid = 0, k, total = 0, ran = 0
    memset(arrived, 0, 2 * threads * sizeof(int))
    fr_barrier_init(&barrier)
    try:
        with nogil, parallel(num_threads=threads):
            n = omp_get_num_threads()
            tid = omp_get_thread_num()
            barrier_rounds(&barrier, arrived, rounds, late_us, tid, n, early)
        for k in range(threads):
            total += early[k]
            ran += arrived[k] == rounds
        return ran, total, barrier.sleeps
    finally:
        PyMem_Free(arrived)


RECURRENT_ISAS = ("portable", "avx2", "avx512")   # narrowest first, index = FR_ISA_*

# Threads that share the columns of a recurrence (set_recurrent_threads); 1: no parallel region.
cdef int recurrent_thread_count = 1
# Multiply-adds per step below which a recurrence stays on one thread: a barrier per step costs
# about a microsecond, a step this small about ten.
cdef enum:
    PARALLEL_MIN_MADDS = 1 << 20


cdef inline void recurrent_pack(floating *packed, const floating *W, int K, int N, int ldw,
                                bint transposed) noexcept nogil:
    """packed = the panels of W (K, N), row-major with leading dimension ldw; transposed:
    of W^T for an (N, K) matrix W."""
    if floating is float:
        fr_recurrent_pack_f(packed, W, K, N, ldw, transposed)
    else:
        fr_recurrent_pack_d(packed, W, K, N, ldw, transposed)


cdef inline void recurrent_product(const floating *A, int lda, const floating *packed, int K,
                                   int N, floating *C, int ldc, int B,
                                   bint accumulate) noexcept nogil:
    """C (B, N) = A (B, K) @ W + (C if accumulate else 0), W packed by recurrent_pack."""
    if floating is float:
        fr_recurrent_product_f(A, lda, packed, K, N, C, ldc, B, accumulate)
    else:
        fr_recurrent_product_d(A, lda, packed, K, N, C, ldc, B, accumulate)


cdef inline void recurrent_step_product(const floating *A, int lda, const floating *packed,
                                        int K, int N, floating *C, int ldc, int B,
                                        bint accumulate, int step) noexcept nogil:
    """recurrent_product at step `step` of a recurrence (the same result up to the order of
    the K terms of each sum: at B = 1, odd steps read the rows of W in descending order)."""
    if floating is float:
        fr_recurrent_step_product_f(A, lda, packed, K, N, C, ldc, B, accumulate, step)
    else:
        fr_recurrent_step_product_d(A, lda, packed, K, N, C, ldc, B, accumulate, step)


cdef inline floating *packed_after(floating *packed, int K, int N) noexcept nogil:
    """Where the next packed matrix starts in a buffer whose first holds a (K, N) matrix."""
    if floating is float:
        return packed + fr_recurrent_packed_size_f(K, N)
    else:
        return packed + fr_recurrent_packed_size_d(K, N)


cdef inline int recurrent_panels(const floating *packed, int N) noexcept nogil:
    """Column panels of an N-column packed matrix (packed only selects the dtype)."""
    if floating is float:
        return fr_recurrent_panels_f(N)
    else:
        return fr_recurrent_panels_d(N)


cdef inline int recurrent_panel_width(const floating *packed) noexcept nogil:
    """Columns per panel (packed only selects the dtype)."""
    if floating is float:
        return fr_recurrent_panel_width_f()
    else:
        return fr_recurrent_panel_width_d()


cdef inline void recurrent_product_panels(const floating *A, int lda, const floating *packed,
                                          int K, int N, floating *C, int ldc, int B,
                                          bint accumulate, int panel_begin,
                                          int panel_end) noexcept nogil:
    """recurrent_product restricted to the columns of panels [panel_begin, panel_end)."""
    if floating is float:
        fr_recurrent_product_panels_f(A, lda, packed, K, N, C, ldc, B, accumulate, panel_begin,
                                      panel_end)
    else:
        fr_recurrent_product_panels_d(A, lda, packed, K, N, C, ldc, B, accumulate, panel_begin,
                                      panel_end)


cdef inline int recurrence_threads(const floating *packed, int B, int K, int N) noexcept nogil:
    """Threads for a recurrence whose step is (B, K) @ (K, N): recurrent_thread_count when the
    step is large enough to share and has at least two panels per thread, else 1."""
    cdef int n = recurrent_thread_count
    if n <= 1 or <long long> B * K * N < PARALLEL_MIN_MADDS:
        return 1
    while n > 1 and recurrent_panels(packed, N) < 2 * n:
        n -= 1
    return n


# A weight gradient X^T @ D (X (K, M), D (K, N), K = T*B rows) with at most OUTER_SUM_MAX_M
# rows M is the kernel's outer sum (fastrnn_recurrent.h) rather than the BLAS GEMM, which packs
# both operands whole on every call: at M = 100 (K = 1280) the outer sum measured 1.1-1.3x the
# GEMM's speed, at M = 200 1.08x, from M = 256 on level or slower (AVX2, one core). It packs up
# to 128 rows of D at a time into the caller's scratch, which must hold at least
# OUTER_SUM_MIN_ROWS of them. With recurrent_threads() > 1 the threads own ranges of columns,
# so the result has the bits of one thread's.
cdef enum:
    OUTER_SUM_MAX_M = 255
    OUTER_SUM_MIN_ROWS = 16


cdef inline int outer_rows(const floating *scratch, int N, Py_ssize_t capacity) noexcept nogil:
    """Rows of an N-column D whose panels fit in a scratch buffer of `capacity` values."""
    if floating is float:
        return fr_outer_rows_f(N, <size_t> capacity)
    else:
        return fr_outer_rows_d(N, <size_t> capacity)


cdef inline void outer_sum_panels(const floating *X, int ldx, const floating *D, int ldd, int K,
                                  int M, int N, floating *C, int ldc, bint accumulate,
                                  floating *scratch, int rows, int panel_begin,
                                  int panel_end) noexcept nogil:
    """The outer sum's columns of panels [panel_begin, panel_end), K in passes of `rows`."""
    if floating is float:
        fr_outer_sum_f(X, ldx, D, ldd, K, M, N, C, ldc, accumulate, scratch, rows, panel_begin,
                       panel_end)
    else:
        fr_outer_sum_d(X, ldx, D, ldd, K, M, N, C, ldc, accumulate, scratch, rows, panel_begin,
                       panel_end)


cdef inline bint outer_sum_applies(int M, int rows, double alpha, bint accumulate) noexcept nogil:
    """Whether outer_sum runs the kernel's outer sum (M rows of C, `rows` rows of D per pass in
    the scratch) rather than the BLAS."""
    return M <= OUTER_SUM_MAX_M and rows >= OUTER_SUM_MIN_ROWS and (alpha == 1 or not accumulate)


cdef inline void outer_sum(int M, int N, int K, floating alpha, const floating *X, int ldx,
                           const floating *D, int ldd, bint accumulate, floating *C, int ldc,
                           floating *scratch, Py_ssize_t capacity) noexcept nogil:
    """C (M, N) = alpha * X^T @ D + (C if accumulate else 0), X (K, M) and D (K, N) row-major:
    the sum over the K rows of the outer products X[k]^T D[k], a weight gradient. The kernel's
    outer sum where it is faster than the BLAS (M <= OUTER_SUM_MAX_M; alpha = 1 or C
    overwritten) and `scratch` (`capacity` values, free to overwrite) holds enough rows of D,
    on the threads a recurrence of that size would take; the BLAS GEMM otherwise."""
    cdef int rows = outer_rows(scratch, N, capacity) if capacity > 0 else 0
    cdef int panels = recurrent_panels(scratch, N)
    cdef int threads = recurrence_threads(scratch, M, K, N)
    cdef int n, tid
    cdef Py_ssize_t i, j
    if not outer_sum_applies(M, rows, alpha, accumulate):
        gemm(True, False, M, N, K, alpha, X, ldx, D, ldd, <floating> accumulate, C, ldc)
        return
    if threads == 1:
        outer_sum_panels(X, ldx, D, ldd, K, M, N, C, ldc, accumulate, scratch, rows, 0, panels)
    else:
        n = tid = 0     # assigned again in the region (private)
        with parallel(num_threads=threads):
            n = omp_get_num_threads()
            tid = omp_get_thread_num()
            outer_sum_panels(X, ldx, D, ldd, K, M, N, C, ldc, accumulate, scratch, rows,
                             panels * tid // n, panels * (tid + 1) // n)
    if alpha != 1:
        for i in range(M):
            for j in range(N):
                C[i * ldc + j] *= alpha


def set_recurrent_threads(int n):
    """Share every large enough recurrence (rnn, single layer or stacked; every LSTM and GRU
    layer, see _cells.pxi) among n threads, each computing its own columns of every step, one
    barrier per step. Returns the previous count."""
    global recurrent_thread_count
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    before = recurrent_thread_count
    recurrent_thread_count = n
    return before


def recurrence_threads_for(int B, int K, int N, dtype):
    """The threads a recurrence with steps (B, K) @ (K, N) of `dtype` runs on now."""
    import numpy as np
    cdef float f = 0
    cdef double d = 0
    if np.dtype(dtype) == np.float32:
        return recurrence_threads(&f, B, K, N)
    return recurrence_threads(&d, B, K, N)


def recurrent_threads():
    """The thread count set by set_recurrent_threads (1 at import)."""
    return recurrent_thread_count


def recurrent_isa():
    """The name of the recurrent-product version in use: 'portable', 'avx2' or 'avx512'."""
    return RECURRENT_ISAS[fr_recurrent_isa()]


def supported_recurrent_isas():
    """The versions this CPU can run, narrowest first."""
    return RECURRENT_ISAS[:fr_recurrent_isa_best() + 1]


def set_recurrent_isa(name):
    """Use version `name` (one of supported_recurrent_isas()); call it between kernel calls.
    Returns the name of the version used before."""
    before = recurrent_isa()
    if name not in RECURRENT_ISAS:
        raise ValueError(f"recurrent ISA must be one of {RECURRENT_ISAS}, got {name!r}")
    if fr_recurrent_set_isa(RECURRENT_ISAS.index(name)) != 0:
        raise ValueError(f"this CPU cannot run the {name!r} recurrent product; it supports "
                         f"{supported_recurrent_isas()}")
    return before


def packed_size(int K, int N, dtype):
    """Values of a buffer that holds a packed (K, N) matrix of `dtype` for any version."""
    import numpy as np
    if K < 1 or N < 1:
        raise ValueError(f"K and N must be >= 1, got {K}, {N}")
    if np.dtype(dtype) == np.float32:
        return fr_recurrent_packed_size_f(K, N)
    if np.dtype(dtype) == np.float64:
        return fr_recurrent_packed_size_d(K, N)
    raise TypeError(f"dtype must be float32 or float64, got {dtype}")


cdef object _checked_product_shapes(const floating[:, ::1] A, const floating[:, ::1] W,
                                    floating[:, ::1] C, floating[::1] packed, bint transposed):
    """The checks of a test door: A (B, K), op(W) (K, N), C (B, N), packed large enough."""
    cdef int B = <int> A.shape[0], K = <int> A.shape[1], N = <int> C.shape[1]
    cdef size_t needed
    shape = (N, K) if transposed else (K, N)
    if C.shape[0] != B or (W.shape[0], W.shape[1]) != shape:
        raise ValueError(f"shapes: A {(A.shape[0], A.shape[1])}, W {(W.shape[0], W.shape[1])},"
                         f" C {(C.shape[0], C.shape[1])}, transposed={transposed}")
    if floating is float:
        needed = fr_recurrent_packed_size_f(K, N)
    else:
        needed = fr_recurrent_packed_size_d(K, N)
    if <size_t> packed.shape[0] < needed:
        raise ValueError(f"packed holds {packed.shape[0]} values, fewer than packed_size")


def recurrent_product_probe(const floating[:, ::1] A, const floating[:, ::1] W,
                            floating[:, ::1] C, floating[::1] packed, bint transposed,
                            bint accumulate):
    """Test door to the recurrent product: C = A @ op(W) (+ C if accumulate), with op(W) = W
    (K, N) or W^T (W then (N, K)), packed into `packed` (packed_size(K, N) values) first."""
    _checked_product_shapes(A, W, C, packed, transposed)
    cdef int B = <int> A.shape[0], K = <int> A.shape[1], N = <int> C.shape[1]
    with nogil:
        recurrent_pack(&packed[0], &W[0, 0], K, N, <int> W.shape[1], transposed)
        recurrent_product(&A[0, 0], K, &packed[0], K, N, &C[0, 0], N, B, accumulate)


def recurrent_step_product_probe(const floating[:, ::1] A, const floating[:, ::1] W,
                                 floating[:, ::1] C, floating[::1] packed, bint transposed,
                                 bint accumulate, int step):
    """Test door to recurrent_step_product: recurrent_product_probe at step `step`."""
    _checked_product_shapes(A, W, C, packed, transposed)
    cdef int B = <int> A.shape[0], K = <int> A.shape[1], N = <int> C.shape[1]
    with nogil:
        recurrent_pack(&packed[0], &W[0, 0], K, N, <int> W.shape[1], transposed)
        recurrent_step_product(&A[0, 0], K, &packed[0], K, N, &C[0, 0], N, B, accumulate, step)


def recurrent_product_panels_probe(const floating[:, ::1] A, const floating[:, ::1] W,
                                   floating[:, ::1] C, floating[::1] packed, bint transposed,
                                   bint accumulate, int panel_begin, int panel_end):
    """Test door to recurrent_product_panels (a thread's share of a step): the columns of
    panels [panel_begin, panel_end) of C = A @ op(W) (+ C), the other columns untouched.
    Panels are recurrent_panel_columns(dtype) columns wide."""
    _checked_product_shapes(A, W, C, packed, transposed)
    cdef int B = <int> A.shape[0], K = <int> A.shape[1], N = <int> C.shape[1]
    if not 0 <= panel_begin <= panel_end <= recurrent_panels(&packed[0], N):
        raise ValueError(f"panels [{panel_begin}, {panel_end}) out of "
                         f"[0, {recurrent_panels(&packed[0], N)})")
    with nogil:
        recurrent_pack(&packed[0], &W[0, 0], K, N, <int> W.shape[1], transposed)
        recurrent_product_panels(&A[0, 0], K, &packed[0], K, N, &C[0, 0], N, B, accumulate,
                                 panel_begin, panel_end)


def outer_sum_probe(const floating[:, ::1] X, const floating[:, ::1] D, floating[:, ::1] C,
                    floating[::1] scratch, double alpha, bint accumulate):
    """Test door to outer_sum: C = alpha * X^T @ D (+ C if accumulate), X (K, M), D (K, N),
    C (M, N), with `scratch` free to overwrite. Returns True when the kernel's outer sum ran,
    False when the BLAS did."""
    cdef int K = <int> X.shape[0], M = <int> X.shape[1], N = <int> D.shape[1]
    if D.shape[0] != K or (C.shape[0], C.shape[1]) != (M, N) or min(K, M, N) < 1:
        raise ValueError(f"shapes: X {(X.shape[0], X.shape[1])}, D {(D.shape[0], D.shape[1])}, "
                         f"C {(C.shape[0], C.shape[1])}")
    if scratch.shape[0] < 1:
        raise ValueError("scratch is empty")
    cdef int rows = outer_rows(&scratch[0], N, scratch.shape[0])
    with nogil:
        outer_sum(M, N, K, <floating> alpha, &X[0, 0], M, &D[0, 0], N, accumulate, &C[0, 0], N,
                  &scratch[0], scratch.shape[0])
    return outer_sum_applies(M, rows, <floating> alpha, accumulate)


def recurrent_panel_columns(dtype):
    """Columns per panel of the version in use for `dtype` (the unit of a thread's share)."""
    import numpy as np
    cdef float f = 0
    cdef double d = 0
    if np.dtype(dtype) == np.float32:
        return recurrent_panel_width(&f)
    return recurrent_panel_width(&d)


def _select_recurrent_isa(request):
    """The import-time choice: the best version, or the narrower one requested."""
    fr_recurrent_init()
    if not request:
        return
    if request not in RECURRENT_ISAS:
        raise ValueError(f"FASTRNN_RECURRENT_ISA must be one of {RECURRENT_ISAS}, "
                         f"got {request!r}")
    if fr_recurrent_set_isa(RECURRENT_ISAS.index(request)) != 0:
        _warnings.warn(f"FASTRNN_RECURRENT_ISA={request}: this CPU cannot run it; using "
                       f"{recurrent_isa()!r}", RuntimeWarning, stacklevel=2)


_select_recurrent_isa(_os.environ.get("FASTRNN_RECURRENT_ISA", "").strip().lower())
