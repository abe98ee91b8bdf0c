"""The outer sum of the kernel (fastrnn_recurrent.h): the weight gradients C = alpha * X^T @ D
(+ C) of layers with few rows, D packed in passes into a scratch buffer and X read in place,
in every version the CPU runs, against numpy; where it gives way to the BLAS; and that sharing
it among threads leaves every bit as one thread computes it.

Tolerance as the recurrent product's: |C - C_ref| <= rtol * (|alpha| * |X|^T @ |D| + |C0|)
elementwise (rtol 1e-12 in float64, 1e-5 in float32).
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import RECURRENT_RTOL
from fastrnn.model import _kernel


def operands(K: int, M: int, N: int, dtype, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((K, M)).astype(dtype)
    D = rng.standard_normal((K, N)).astype(dtype)
    C0 = rng.standard_normal((M, N)).astype(dtype)
    return X, D, C0


def scratch_for(N: int, rows: int, dtype) -> np.ndarray:
    """A scratch buffer holding `rows` rows of N columns in any version's panels, NaN-filled (a
    value read before it is written would show)."""
    return np.full(_kernel.packed_size(rows, N, dtype), np.nan, dtype=dtype)


def outer_sum(X, D, C0, alpha: float, accumulate: bool, scratch):
    """(C, ran the kernel's outer sum) of the test door, C0 left as it was."""
    C = C0.copy()
    ran = _kernel.outer_sum_probe(X, D, C, scratch, alpha, accumulate)
    return C, ran


def error(C, X, D, C0, alpha: float, accumulate: bool) -> float:
    """max |C - C_ref| / bound, the reference in float64."""
    X64, D64, C064 = (a.astype(np.float64) for a in (X, D, C0))
    want = alpha * (X64.T @ D64) + (C064 if accumulate else 0.0)
    bound = abs(alpha) * (np.abs(X64).T @ np.abs(D64)) + (np.abs(C064) if accumulate else 0.0)
    return float((np.abs(C - want) / bound).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_edge_shape_matches_numpy(isa, dtype):
    """M across the row blocks' tails up to the largest M it takes, N off the vector width,
    K from one row to several passes of the scratch."""
    for K in (1, 2, 40, 300):
        for M in (1, 5, 13, 100, 255):
            for N in (1, 17, 65, 100, 257):
                for accumulate, alpha in ((True, 1.0), (False, 1.0), (False, 1 / 7)):
                    X, D, C0 = operands(K, M, N, dtype, seed=K + M + N)
                    C, ran = outer_sum(X, D, C0, alpha, accumulate, scratch_for(N, 64, dtype))
                    assert ran, (isa, K, M, N)
                    err = error(C, X, D, C0, alpha, accumulate)
                    assert err <= RECURRENT_RTOL[dtype], (isa, K, M, N, accumulate, alpha, err)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_overwrite_ignores_what_c_held(isa, dtype):
    X, D, _ = operands(50, 7, 33, dtype)
    C_nan = np.full((7, 33), np.nan, dtype=dtype)
    C, ran = outer_sum(X, D, C_nan, 1.0, False, scratch_for(33, 16, dtype))
    assert ran
    assert np.isfinite(C).all()
    assert error(C, X, D, np.zeros_like(C), 1.0, False) <= RECURRENT_RTOL[dtype]


@pytest.mark.parametrize(
    "M,scratch_rows,alpha,accumulate,why",
    [
        (256, 64, 1.0, False, "more rows than the outer sum takes"),
        (100, 8, 1.0, False, "scratch for fewer than 16 rows of D"),
        (100, 64, 0.5, True, "alpha with accumulate"),
    ],
)
def test_gives_way_to_the_blas_and_is_still_right(M, scratch_rows, alpha, accumulate, why):
    X, D, C0 = operands(40, M, 65, np.float64)
    C, ran = outer_sum(X, D, C0, alpha, accumulate, scratch_for(65, scratch_rows, np.float64))
    assert not ran, why
    assert error(C, X, D, C0, alpha, accumulate) <= RECURRENT_RTOL[np.float64]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_shared_among_threads_gives_the_bits_of_one(dtype):
    """M*K*N above the size a recurrence is shared at: 2 and 3 threads own ranges of columns."""
    X, D, C0 = operands(1300, 100, 100, dtype, seed=5)
    before = _kernel.recurrent_threads()
    try:
        results = {}
        for threads in (1, 2, 3):
            _kernel.set_recurrent_threads(threads)
            results[threads] = outer_sum(X, D, C0, 1.0, True, scratch_for(100, 256, dtype))
    finally:
        _kernel.set_recurrent_threads(before)
    assert all(ran for _, ran in results.values())
    assert np.array_equal(results[2][0], results[1][0])
    assert np.array_equal(results[3][0], results[1][0])
    assert error(results[1][0], X, D, C0, 1.0, True) <= RECURRENT_RTOL[dtype]


def test_refuses_shapes_that_do_not_agree():
    X, D, C0 = operands(10, 4, 6, np.float64)
    with pytest.raises(ValueError, match="shapes"):
        _kernel.outer_sum_probe(X, D[:9], C0.copy(), scratch_for(6, 16, np.float64), 1.0, False)
    with pytest.raises(ValueError, match="shapes"):
        _kernel.outer_sum_probe(X, D, C0[:3].copy(), scratch_for(6, 16, np.float64), 1.0, False)
