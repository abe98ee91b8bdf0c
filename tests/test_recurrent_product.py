"""The packed recurrent product (fastrnn_recurrent.h) against numpy, in every version the CPU
runs (portable, AVX2+FMA, AVX-512), and the models that use it against the numpy twin.

Tolerance: |C - C_ref| <= rtol * (|A| @ |W| + |C0|) elementwise, the bound a sum of K products
in a different order can reach (rtol 1e-12 in float64, 1e-5 in float32).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import RECURRENT_ISAS, RECURRENT_RTOL, RECURRENT_SIZES
from fastrnn import CharRNN
from fastrnn.model import _kernel


def product_error(
    B: int, K: int, N: int, dtype, transposed: bool, accumulate: bool, seed: int = 0
) -> float:
    """max |C - C_ref| / (|A| @ |W| + |C0|) of one packed product against numpy in float64."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((B, K)).astype(dtype)
    W = rng.standard_normal((N, K) if transposed else (K, N)).astype(dtype)
    C0 = rng.standard_normal((B, N)).astype(dtype)
    C = C0.copy()
    packed = np.full(_kernel.packed_size(K, N, dtype), np.nan, dtype=dtype)
    _kernel.recurrent_product_probe(A, W, C, packed, transposed, accumulate)
    Wk = (W.T if transposed else W).astype(np.float64)
    A64, C064 = A.astype(np.float64), C0.astype(np.float64)
    want = A64 @ Wk + (C064 if accumulate else 0.0)
    bound = np.abs(A64) @ np.abs(Wk) + (np.abs(C064) if accumulate else 0.0)
    return float((np.abs(C - want) / bound).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("transposed", [False, True])
def test_every_edge_shape_matches_numpy(isa, dtype, transposed):
    """B from 1 to 64 (tails of every row block), K and N off the vector width."""
    for B in (1, 2, 3, 4, 5, 6, 7, 11, 12, 13, 25, 32, 64):
        for K, N in ((1, 1), (3, 17), (17, 3), (100, 100), (1, 700), (700, 1)):
            for accumulate in (True, False):
                err = product_error(B, K, N, dtype, transposed, accumulate)
                assert err <= RECURRENT_RTOL[dtype], (isa, B, K, N, accumulate, err)
    for B in (1, 7, 13, 64):
        for K, N in ((257, 700), (700, 257)):
            err = product_error(B, K, N, dtype, transposed, B % 2 == 0)
            assert err <= RECURRENT_RTOL[dtype], (isa, B, K, N, err)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_overwrite_ignores_what_c_held(isa, dtype):
    rng = np.random.default_rng(1)
    A, W = rng.standard_normal((5, 17)).astype(dtype), rng.standard_normal((17, 33)).astype(dtype)
    C = np.full((5, 33), np.nan, dtype=dtype)
    packed = np.empty(_kernel.packed_size(17, 33, dtype), dtype=dtype)
    _kernel.recurrent_product_probe(A, W, C, packed, False, False)
    np.testing.assert_allclose(
        C, A @ W, rtol=RECURRENT_RTOL[dtype] * 100, atol=RECURRENT_RTOL[dtype] * 100
    )


@settings(max_examples=40, deadline=None)
@given(
    B=st.integers(1, 64),
    K=st.sampled_from(RECURRENT_SIZES) | st.integers(1, 200),
    N=st.sampled_from(RECURRENT_SIZES) | st.integers(1, 200),
    use64=st.booleans(),
    transposed=st.booleans(),
    accumulate=st.booleans(),
    isa_index=st.integers(0, 2),
    seed=st.integers(0, 2**16),
)
def test_random_shapes_match_numpy(B, K, N, use64, transposed, accumulate, isa_index, seed):
    dtype = np.float64 if use64 else np.float32
    before = _kernel.set_recurrent_isa(RECURRENT_ISAS[min(isa_index, len(RECURRENT_ISAS) - 1)])
    try:
        err = product_error(B, K, N, dtype, transposed, accumulate, seed)
    finally:
        _kernel.set_recurrent_isa(before)
    assert err <= RECURRENT_RTOL[dtype]


def test_packed_size_covers_every_version():
    for dtype, itemsize in ((np.float32, 4), (np.float64, 8)):
        widest_panel = 128 // itemsize
        for K, N in ((1, 1), (17, 3), (100, 100), (512, 2048)):
            want = K * (-(-N // widest_panel) * widest_panel) + 64 // itemsize
            assert _kernel.packed_size(K, N, dtype) == want
    with pytest.raises(ValueError):
        _kernel.packed_size(0, 3, np.float32)
    with pytest.raises(TypeError):
        _kernel.packed_size(3, 3, np.int32)


def test_probe_refuses_a_small_buffer_and_wrong_shapes():
    A, W, C = np.ones((2, 3)), np.ones((3, 4)), np.zeros((2, 4))
    with pytest.raises(ValueError, match="packed"):
        _kernel.recurrent_product_probe(A, W, C, np.empty(3), False, True)
    with pytest.raises(ValueError, match="shapes"):
        _kernel.recurrent_product_probe(A, W, C, np.empty(100), True, True)


def test_versions_are_chosen_from_the_cpu():
    assert RECURRENT_ISAS[0] == "portable"
    assert _kernel.recurrent_isa() == RECURRENT_ISAS[-1], (
        "import picks the widest version the CPU has"
    )
    for name in _kernel.RECURRENT_ISAS:
        if name not in RECURRENT_ISAS:
            with pytest.raises(ValueError, match="cannot run"):
                _kernel.set_recurrent_isa(name)
    with pytest.raises(ValueError, match="must be one of"):
        _kernel.set_recurrent_isa("sse9")
    assert _kernel.recurrent_isa() == RECURRENT_ISAS[-1]


def _isa_in_fresh_process(value: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, FASTRNN_RECURRENT_ISA=value)
    code = "from fastrnn.model import _kernel; print(_kernel.recurrent_isa())"
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("name", RECURRENT_ISAS)
def test_environment_variable_narrows_the_version(name):
    run = _isa_in_fresh_process(name)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == name


def test_environment_variable_never_widens_past_the_cpu():
    wider = [n for n in _kernel.RECURRENT_ISAS if n not in RECURRENT_ISAS]
    if not wider:
        pytest.skip("this CPU runs every version")
    run = _isa_in_fresh_process(wider[-1])
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == RECURRENT_ISAS[-1]
    assert "cannot run" in run.stderr


@pytest.mark.parametrize("cell,layers", [("rnn", 1), ("rnn", 2), ("lstm", 2), ("gru", 2)])
def test_models_match_the_numpy_twin_in_every_version(isa, cell, layers):
    """Forward and backward through the packed product, B = 1 (matrix-vector) and B > 1,
    H off the vector width, with a non-zero carried state."""
    for B, H in ((1, 17), (3, 20), (7, 33)):
        model = CharRNN(11, H, num_layers=layers, cell=cell, dtype=np.float64, seed=3)
        rng = np.random.default_rng(4)
        x = rng.integers(0, 11, (B, 5)).astype(np.int32)
        y = rng.integers(0, 11, (B, 5)).astype(np.int32)
        h0 = 0.5 * rng.standard_normal(model.state_shape(B))
        loss_k, g_k, h_k = model.loss_and_grads(x, y, h0, backend="kernel")
        loss_n, g_n, h_n = model.loss_and_grads(x, y, h0, backend="numpy")
        assert abs(loss_k - loss_n) <= 1e-10 * abs(loss_n)
        np.testing.assert_allclose(h_k, h_n, rtol=1e-10, atol=1e-12)
        for name in g_n:
            np.testing.assert_allclose(
                g_k[name],
                g_n[name],
                rtol=1e-9,
                atol=1e-12,
                err_msg=f"{isa} {cell} B={B} H={H} {name}",
            )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layers,B,H", [(1, 16, 300), (2, 7, 701), (1, 64, 129)])
def test_rnn_recurrence_on_threads_equals_one_thread(dtype, layers, B, H):
    """Shared among threads, each computing its own columns of every step, the rnn's recurrence
    gives the one-thread result exactly (the same sums per column), forward and backward."""
    model = CharRNN(20, H, num_layers=layers, cell="rnn", dtype=dtype, seed=1)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 20, (B, 6)).astype(np.int32)
    y = rng.integers(0, 20, (B, 6)).astype(np.int32)
    h0 = (0.3 * rng.standard_normal(model.initial_state(B).shape)).astype(dtype)
    results = {}
    before = _kernel.recurrent_threads()
    try:
        for threads in (1, 2, 3):
            _kernel.set_recurrent_threads(threads)
            assert _kernel.recurrence_threads_for(B, H, H, dtype) == threads
            loss, grads, h_last = model.loss_and_grads(x, y, h0)
            results[threads] = (loss, {k: v.copy() for k, v in grads.items()}, h_last)
    finally:
        _kernel.set_recurrent_threads(before)
    loss1, grads1, h1 = results[1]
    for threads in (2, 3):
        loss, grads, h_last = results[threads]
        assert loss == loss1 and np.array_equal(h_last, h1)
        for name in grads1:
            assert np.array_equal(grads[name], grads1[name]), (threads, name)
    _, grads_n, _ = model.loss_and_grads(x, y, h0, backend="numpy")
    for name in grads_n:
        scale = np.abs(grads_n[name]).max()
        assert np.abs(grads1[name] - grads_n[name]).max() <= 100 * RECURRENT_RTOL[dtype] * scale, (
            name
        )


def test_thread_count_is_set_and_restored_by_limit_threads():
    from fastrnn.train import limit_threads

    before = _kernel.recurrent_threads()
    with limit_threads(2):
        assert _kernel.recurrent_threads() == 2
    assert _kernel.recurrent_threads() == before
    with pytest.raises(ValueError, match=">= 1"):
        _kernel.set_recurrent_threads(0)


def test_small_recurrences_stay_on_one_thread():
    before = _kernel.set_recurrent_threads(2)
    try:
        assert _kernel.recurrence_threads_for(1, 100, 100, np.float32) == 1  # B = 1, H = 100
        assert _kernel.recurrence_threads_for(32, 100, 100, np.float32) == 1  # M: too small
        assert _kernel.recurrence_threads_for(32, 512, 512, np.float32) == 2  # L
    finally:
        _kernel.set_recurrent_threads(before)
