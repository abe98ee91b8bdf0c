# ----------------------------------------------------------------------------- probes
# A single loop exposed for tests and the speed guard (checked against numpy).

def tanh_array(floating[::1] a):
    """a[:] = tanh(a), the kernel's vectorised tanh."""
    with nogil:
        tanh_inplace(&a[0], a.shape[0])


# The BLAS shim (_blas.pxd) as seen from Python, for tests/test_blas.py only. A, B and C are
# C-contiguous (rows, ld) buffers whose width is the leading dimension; the product uses their
# top-left blocks of the given sizes, so a leading dimension larger than the width is tested.

def _blas_gemm_for_tests(bint trans_a, bint trans_b, int M, int N, int K, double alpha,
                         const floating[:, ::1] A, const floating[:, ::1] B, double beta,
                         floating[:, ::1] C):
    """C[:M, :N] = alpha * op(A) @ op(B) + beta * C[:M, :N], op(A) (M, K), op(B) (K, N)."""
    a_rows, a_cols = (K, M) if trans_a else (M, K)
    b_rows, b_cols = (N, K) if trans_b else (K, N)
    if (A.shape[0] < a_rows or A.shape[1] < a_cols or B.shape[0] < b_rows
            or B.shape[1] < b_cols or C.shape[0] < M or C.shape[1] < N
            or min(M, N, K) < 1):
        raise ValueError("a block does not fit its buffer")
    with nogil:
        gemm(trans_a, trans_b, M, N, K, <floating> alpha, &A[0, 0], <int> A.shape[1],
             &B[0, 0], <int> B.shape[1], <floating> beta, &C[0, 0], <int> C.shape[1])


def _blas_gemv_for_tests(bint trans_a, int M, int N, double alpha, const floating[:, ::1] A,
                         const floating[::1] x, double beta, floating[::1] y):
    """y = alpha * op(A[:M, :N]) @ x + beta * y."""
    if (A.shape[0] < M or A.shape[1] < N or min(M, N) < 1
            or x.shape[0] != (M if trans_a else N) or y.shape[0] != (N if trans_a else M)):
        raise ValueError("a block does not fit its buffer")
    with nogil:
        gemv(trans_a, M, N, <floating> alpha, &A[0, 0], <int> A.shape[1], &x[0],
             <floating> beta, &y[0])


def recurrent_step_seconds(const floating[:, ::1] A, const floating[:, ::1] W,
                           floating[:, ::1] C, floating[::1] packed, int repeats, bint blas):
    """Seconds per call of C += A (B, K) @ W (K, N), the best of `repeats` timed batches of
    calls, through the packed product as a recurrence calls it (W packed once, outside the
    timing; call i as step i, see recurrent_step_product) or, with blas, the BLAS call the
    kernel would otherwise make (GEMV at B = 1, GEMM else). For benchmarks."""
    import time
    cdef int B = <int> A.shape[0], K = <int> A.shape[1], N = <int> C.shape[1], i, r
    cdef int calls = 200
    if C.shape[0] != B or W.shape[0] != K or W.shape[1] != N or repeats < 1:
        raise ValueError("A (B, K), W (K, N), C (B, N), repeats >= 1 expected")
    recurrent_product_probe(A, W, C, packed, False, True)
    best = float("inf")
    for r in range(repeats):
        t0 = time.perf_counter()
        with nogil:
            for i in range(calls):
                if not blas:
                    recurrent_step_product(&A[0, 0], K, &packed[0], K, N, &C[0, 0], N, B, True,
                                           i)
                elif B == 1:
                    gemv(True, K, N, <floating> 1, &W[0, 0], N, &A[0, 0], <floating> 1,
                         &C[0, 0])
                else:
                    gemm(False, False, B, N, K, <floating> 1, &A[0, 0], K, &W[0, 0], N,
                         <floating> 1, &C[0, 0], N)
        best = min(best, (time.perf_counter() - t0) / calls)
    return best
