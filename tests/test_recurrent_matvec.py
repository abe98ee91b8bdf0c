"""The matrix-vector case (B = 1) of the packed recurrent product (fastrnn_recurrent.h), in
every version the CPU runs: against numpy for every shape of the recurrent tests, rows of W
read in either order (recurrent_step_product at even and odd steps), a thread's share of the
columns (panel ranges), nothing written past the end of c; and the single-layer and stacked
rnn at B = 1 (whose recurrences use it) against the numpy twin and centred finite differences,
with a non-zero carried state.

Tolerance of a product: |c - c_ref| <= rtol * (|a| @ |W| + |c0|) elementwise, the bound a sum of
K products in a different order can reach (rtol 1e-12 in float64, 1e-5 in float32).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from conftest import (
    RECURRENT_RTOL,
    RECURRENT_SIZES,
    TOL,
    centred_differences,
    make_chunk,
    make_model,
    rel_err,
)
from fastrnn.model import _kernel


def operands(K: int, N: int, dtype, transposed: bool, seed: int = 0):
    """(a (1, K), W (K, N) or (N, K) when transposed, c0 (1, N)), standard normal."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((1, K)).astype(dtype)
    W = rng.standard_normal((N, K) if transposed else (K, N)).astype(dtype)
    c0 = rng.standard_normal((1, N)).astype(dtype)
    return a, W, c0


def scaled_error(c, a, W, c0, transposed: bool, accumulate: bool) -> np.ndarray:
    """|c - c_ref| / (|a| @ |W| + |c0|) elementwise, the reference in float64."""
    Wk = (W.T if transposed else W).astype(np.float64)
    a64, c064 = a.astype(np.float64), c0.astype(np.float64)
    want = a64 @ Wk + (c064 if accumulate else 0.0)
    bound = np.abs(a64) @ np.abs(Wk) + (np.abs(c064) if accumulate else 0.0)
    return np.abs(c.astype(np.float64) - want) / bound


def packed_for(K: int, N: int, dtype) -> np.ndarray:
    """A packed buffer for a (K, N) matrix, NaN before packing (a value read before it is
    written shows)."""
    return np.full(_kernel.packed_size(K, N, dtype), np.nan, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("transposed", [False, True])
def test_matvec_matches_numpy_for_every_shape_and_row_order(isa, dtype, transposed):
    """K and N over the sizes of the recurrent tests (1 to 700, on and off the vector width),
    rows in ascending (even step) and descending (odd step) order, += and =."""
    for K, N in itertools.product(RECURRENT_SIZES, RECURRENT_SIZES):
        a, W, c0 = operands(K, N, dtype, transposed, seed=K * 1000 + N)
        for step, accumulate in itertools.product((0, 1, 2, 7), (True, False)):
            c = c0.copy()
            _kernel.recurrent_step_product_probe(
                a, W, c, packed_for(K, N, dtype), transposed, accumulate, step
            )
            err = scaled_error(c, a, W, c0, transposed, accumulate).max()
            assert err <= RECURRENT_RTOL[dtype], (isa, K, N, step, accumulate, err)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_step_zero_is_the_plain_product(isa, dtype):
    """Even steps read the rows as recurrent_product does: the same sums, the same bits."""
    for K, N in ((17, 100), (100, 100), (257, 33)):
        a, W, c0 = operands(K, N, dtype, False, seed=N)
        plain, stepped = c0.copy(), c0.copy()
        _kernel.recurrent_product_probe(a, W, plain, packed_for(K, N, dtype), False, True)
        _kernel.recurrent_step_product_probe(a, W, stepped, packed_for(K, N, dtype), False, True, 4)
        np.testing.assert_array_equal(stepped, plain)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("step", [0, 1])
def test_nothing_is_written_past_the_last_column(isa, dtype, step):
    """c is the first row of a (2, N) array: the second row (past c's last column, where a
    whole vector store of a partly used panel would land) keeps its values."""
    for K, N in ((5, 1), (17, 3), (100, 100), (3, 257), (9, 700)):
        a, W, _ = operands(K, N, dtype, False, seed=N + K)
        c = np.full((2, N), 7.0, dtype=dtype)
        _kernel.recurrent_step_product_probe(
            a, W, c[:1], packed_for(K, N, dtype), False, True, step
        )
        np.testing.assert_array_equal(c[1], np.full(N, 7.0, dtype=dtype))
        c0 = np.full((1, N), 7.0, dtype=dtype)
        assert scaled_error(c[:1], a, W, c0, False, True).max() <= RECURRENT_RTOL[dtype]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_overwrite_ignores_nan_in_c(isa, dtype):
    for K, N in ((1, 1), (17, 3), (100, 100), (700, 257)):
        a, W, _ = operands(K, N, dtype, True, seed=3)
        c = np.full((1, N), np.nan, dtype=dtype)
        _kernel.recurrent_step_product_probe(a, W, c, packed_for(K, N, dtype), True, False, 1)
        assert np.isfinite(c).all()
        assert scaled_error(c, a, W, np.zeros_like(c), True, False).max() <= RECURRENT_RTOL[dtype]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_panel_ranges_compute_their_columns_only(isa, dtype):
    """A thread's share at B = 1: the columns of panels [p0, p1) equal the full product's
    (the same sums), every other column keeps its value."""
    width = _kernel.recurrent_panel_columns(dtype)
    for K, N in ((33, 17), (100, 100), (17, 257), (5, 700)):
        a, W, c0 = operands(K, N, dtype, False, seed=K + N)
        full = c0.copy()
        _kernel.recurrent_product_probe(a, W, full, packed_for(K, N, dtype), False, True)
        panels = -(-N // width)
        for p0, p1 in {
            (0, panels),
            (0, 1),
            (panels - 1, panels),
            (1, panels),
            (0, panels // 2),
            (panels // 3, 2 * panels // 3 + 1),
            (panels // 2, panels // 2),
        }:
            c = c0.copy()
            _kernel.recurrent_product_panels_probe(
                a, W, c, packed_for(K, N, dtype), False, True, p0, p1
            )
            inside = np.zeros(N, dtype=bool)
            inside[p0 * width : p1 * width] = True
            np.testing.assert_array_equal(c[0, inside], full[0, inside])
            np.testing.assert_array_equal(c[0, ~inside], c0[0, ~inside])


def test_panel_probe_refuses_a_range_out_of_bounds():
    a, W, c = np.ones((1, 3)), np.ones((3, 4)), np.zeros((1, 4))
    packed = packed_for(3, 4, np.float64)
    for p0, p1 in ((-1, 1), (1, 0), (0, 99)):
        with pytest.raises(ValueError, match="panels"):
            _kernel.recurrent_product_panels_probe(a, W, c, packed, False, True, p0, p1)
    with pytest.raises(ValueError, match="shapes"):
        _kernel.recurrent_step_product_probe(a, W, c, packed, True, True, 0)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rnn_at_one_stream_matches_the_numpy_twin(isa, layers, dtype):
    """Forward and backward through the matrix-vector recurrences at B = 1, odd and even T
    (both row orders at the last step), H on and off the vector width, a non-zero carried
    state: loss, gradients (dh0 included) and the last hidden state."""
    for H, T in ((17, 7), (100, 40), (257, 4)):
        m = make_model("rnn", L=layers, dtype=dtype, V=13, H=H, seed=H, jitter=0.1)
        x, y, h0 = make_chunk(m, B=1, T=T, seed=T)
        loss_k, g_k, h_k = m.loss_and_grads(x, y, h0, backend="kernel")
        g_k = {name: g.copy() for name, g in g_k.items()}
        loss_n, g_n, h_n = m.loss_and_grads(x, y, h0, backend="numpy")
        tol = TOL[dtype]
        assert abs(loss_k - loss_n) <= tol * abs(loss_n), (isa, H, T)
        assert rel_err(h_k, h_n) <= tol, (isa, H, T)
        for name in g_n:
            assert rel_err(g_k[name], g_n[name]) <= tol, (isa, layers, H, T, name)


@pytest.mark.parametrize("layers", [1, 2])
def test_rnn_at_one_stream_matches_finite_differences(isa, layers):
    """Every parameter (a sample of entries) and the carried state h0 of a float64 rnn at
    B = 1, T = 5 (steps of both row orders), against centred differences of the kernel's loss."""
    m = make_model("rnn", L=layers, dtype=np.float64, V=6, H=19, seed=5, jitter=0.4)
    x, y, h0 = make_chunk(m, B=1, T=5, seed=2, state_scale=0.6)
    _, grads, _ = m.loss_and_grads(x, y, h0, backend="kernel")
    grads = {name: g.copy() for name, g in grads.items()}

    def loss() -> float:
        return m.loss(x, y, h0, backend="kernel")[0]

    rng = np.random.default_rng(0)
    for name, array in list(m.params.items()) + [("h0", h0)]:
        picked = rng.choice(array.size, size=min(array.size, 12), replace=False)
        numeric = centred_differences(loss, array, picked)
        analytic = grads[name].reshape(-1)[picked]
        # relative 1e-6, and an absolute 1e-9 for the entries near 0 (the differences' own
        # error is ~1e-10 here)
        bound = 1e-6 * (np.abs(analytic) + np.abs(numeric)) + 1e-9
        assert (np.abs(analytic - numeric) <= bound).all(), (isa, layers, name)
    assert np.abs(grads["h0"]).max() > 1e-6, "the carried state's gradient should not vanish"
