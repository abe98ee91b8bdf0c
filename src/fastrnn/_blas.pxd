# The typed BLAS shim: row-major GEMM/GEMV over scipy.linalg.cython_blas, one fused source for
# float32 and float64. The kernel calls only these, never cython_blas directly.
#
# BLAS is column-major; a row-major (r, c) matrix is the column-major (c, r) matrix, its
# transpose. So row-major C = op(A) @ op(B) is column-major C^T = op(B)^T @ op(A)^T: the
# operands swap places and keep their transpose flags.
from scipy.linalg.cython_blas cimport sgemm, dgemm, sgemv, dgemv

ctypedef fused floating:
    float
    double


cdef inline void gemm(bint trans_a, bint trans_b, int M, int N, int K, floating alpha,
                      const floating *A, int lda, const floating *B, int ldb,
                      floating beta, floating *C, int ldc) noexcept nogil:
    """C (M, N) = alpha * op(A) @ op(B) + beta * C, row-major; op(A) is (M, K), op(B) (K, N)."""
    cdef char ta = b'T' if trans_b else b'N'
    cdef char tb = b'T' if trans_a else b'N'
    if floating is float:
        sgemm(&ta, &tb, &N, &M, &K, &alpha, <float *> B, &ldb, <float *> A, &lda,
              &beta, C, &ldc)
    else:
        dgemm(&ta, &tb, &N, &M, &K, &alpha, <double *> B, &ldb, <double *> A, &lda,
              &beta, C, &ldc)


cdef inline void gemv(bint trans_a, int M, int N, floating alpha, const floating *A, int lda,
                      const floating *x, floating beta, floating *y) noexcept nogil:
    """y = alpha * op(A) @ x + beta * y for a row-major (M, N) matrix A, unit strides.

    At B = 1 the recurrence is a vector-matrix product; GEMV avoids GEMM's fixed cost there.
    """
    cdef char t = b'N' if trans_a else b'T'
    cdef int one = 1
    if floating is float:
        sgemv(&t, &N, &M, &alpha, <float *> A, &lda, <float *> x, &one, &beta, y, &one)
    else:
        dgemv(&t, &N, &M, &alpha, <double *> A, &lda, <double *> x, &one, &beta, y, &one)
