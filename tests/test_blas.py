"""The typed BLAS shim (_blas.pxd: row-major gemm / gemv over scipy's BLAS) against numpy.

Every transpose combination, both dtypes, alpha and beta other than 0 and 1, and leading
dimensions larger than the width of the block used, through the test-only wrappers compiled
into the kernel (_probes.pxi). Entries outside the output block must stay untouched.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastrnn.backend import kernel as _kernel

pytestmark = pytest.mark.skipif(_kernel is None, reason="the compiled kernel is not built")

RTOL = {np.float64: 1e-12, np.float32: 1e-5}
DTYPES = [np.float64, np.float32]
PAD = 3  # extra columns: leading dimension = width + PAD


def _padded(rng, rows: int, cols: int, dtype) -> np.ndarray:
    """A C-contiguous (rows + 1, cols + PAD) buffer whose top-left (rows, cols) block is used."""
    return rng.standard_normal((rows + 1, cols + PAD)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (-0.7, 1.0), (2.5, -1.5)])
def test_gemm(dtype, trans_a, trans_b, alpha, beta):
    rng = np.random.default_rng(11)
    M, N, K = 5, 7, 4
    A = _padded(rng, *((K, M) if trans_a else (M, K)), dtype)
    B = _padded(rng, *((N, K) if trans_b else (K, N)), dtype)
    C = _padded(rng, M, N, dtype)
    a = A[:K, :M].T if trans_a else A[:M, :K]
    b = B[:N, :K].T if trans_b else B[:K, :N]
    expected = C.copy()
    expected[:M, :N] = alpha * (a.astype(np.float64) @ b.astype(np.float64)) + beta * C[
        :M, :N
    ].astype(np.float64)
    _kernel._blas_gemm_for_tests(trans_a, trans_b, M, N, K, alpha, A, B, beta, C)
    np.testing.assert_allclose(C, expected, rtol=RTOL[dtype], atol=RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (-0.7, 1.0), (2.5, -1.5)])
def test_gemv(dtype, trans_a, alpha, beta):
    rng = np.random.default_rng(12)
    M, N = 6, 4
    A = _padded(rng, M, N, dtype)
    x = rng.standard_normal(M if trans_a else N).astype(dtype)
    y = rng.standard_normal(N if trans_a else M).astype(dtype)
    a = A[:M, :N].T if trans_a else A[:M, :N]
    expected = alpha * (a.astype(np.float64) @ x) + beta * y.astype(np.float64)
    _kernel._blas_gemv_for_tests(trans_a, M, N, alpha, A, x, beta, y)
    np.testing.assert_allclose(y, expected, rtol=RTOL[dtype], atol=RTOL[dtype])


def test_wrappers_refuse_blocks_outside_their_buffers():
    A, B, C = np.zeros((2, 3)), np.zeros((3, 4)), np.zeros((2, 4))
    with pytest.raises(ValueError):
        _kernel._blas_gemm_for_tests(False, False, 3, 4, 3, 1.0, A, B, 0.0, C)
    with pytest.raises(ValueError):
        _kernel._blas_gemv_for_tests(False, 2, 3, 1.0, A, np.zeros(2), 0.0, np.zeros(2))
