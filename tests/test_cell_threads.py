"""LSTM and GRU recurrences shared among threads (set_recurrent_threads > 1): each thread owns a
range of hidden units, computes their columns of every gate block and their gate loop, one
barrier per step (_cells.pxi). Every value is computed by one thread in the one-thread order, so
the shared result must equal the one-thread result bit for bit; both are checked against the
numpy twin (float64 1e-10, float32 1e-4 relative) and, at a small size, against centred finite
differences, always with a non-zero carried state (h and, for the LSTM, c).

share_cell_recurrences_at_any_size(True) makes the kernel share even steps too small to be worth
it (odd H, B = 1), so that the shared path is reached at every size tested here.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from conftest import TOL, centred_differences, make_chunk, make_model, rel_err
from fastrnn.model import _kernel

CELLS = ("lstm", "gru")
GATES = {"lstm": 4, "gru": 3}
ISAS = _kernel.supported_recurrent_isas()


@pytest.fixture
def shared_at_any_size():
    """Share every LSTM and GRU recurrence, then restore the thread count and the size rule."""
    threads = _kernel.recurrent_threads()
    before = _kernel.share_cell_recurrences_at_any_size(True)
    yield
    _kernel.share_cell_recurrences_at_any_size(before)
    _kernel.set_recurrent_threads(threads)


def results_by_threads(m, x, y, h0, thread_counts):
    """{threads: (loss, grads copied, h_last copied)} of the kernel at each thread count."""
    out = {}
    for threads in thread_counts:
        _kernel.set_recurrent_threads(threads)
        B = x.shape[0]
        assert _kernel.cell_recurrence_threads_for(B, GATES[m.cell], m.hidden_size, m.dtype) == (
            threads
        )
        loss, grads, h_last = m.loss_and_grads(x, y, h0)
        out[threads] = (loss, {k: v.copy() for k, v in grads.items()}, h_last.copy())
    return out


def assert_same_bits(a, b, label):
    loss_a, grads_a, h_a = a
    loss_b, grads_b, h_b = b
    assert loss_a == loss_b, label
    assert np.array_equal(h_a, h_b), label
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        assert np.array_equal(grads_a[name], grads_b[name]), (label, name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "cell,L,H,B", list(itertools.product(CELLS, (1, 2), (17, 100, 257), (1, 3, 32)))
)
def test_shared_recurrence_equals_one_thread_and_the_twin(shared_at_any_size, dtype, cell, L, H, B):
    m = make_model(cell, L, dtype, V=11, H=H, seed=3)
    x, y, h0 = make_chunk(m, B=B, T=5, state_scale=0.6)
    results = results_by_threads(m, x, y, h0, (1, 2, 3))
    for threads in (2, 3):
        assert_same_bits(results[threads], results[1], f"{threads} threads")
    loss_n, grads_n, h_n = m.loss_and_grads(x, y, h0, backend="numpy")
    loss, grads, h_last = results[2]
    tol = TOL[dtype]
    assert abs(loss - loss_n) <= tol * abs(loss_n)
    assert rel_err(h_last, h_n) <= tol
    for name in grads_n:
        assert rel_err(grads[name], grads_n[name]) <= tol, name


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("cell", CELLS)
def test_shared_recurrence_equals_one_thread_in_every_product_version(
    shared_at_any_size, isa, cell
):
    """The panel width (the unit of a thread's share) differs between versions."""
    before = _kernel.set_recurrent_isa(isa)
    try:
        m = make_model(cell, 2, np.float64, V=9, H=45, seed=5)
        x, y, h0 = make_chunk(m, B=7, T=4)
        results = results_by_threads(m, x, y, h0, (1, 2, 4))
    finally:
        _kernel.set_recurrent_isa(before)
    for threads in (2, 4):
        assert_same_bits(results[threads], results[1], f"{isa} {threads} threads")


@pytest.mark.parametrize("cell", CELLS)
def test_shared_recurrence_matches_finite_differences(shared_at_any_size, cell):
    """Centred differences (float64, 2 layers, H = 17 split over 2 threads) on sampled entries
    of every parameter and of the carried state, relative to the array's largest gradient."""
    _kernel.set_recurrent_threads(2)
    m = make_model(cell, 2, np.float64, V=5, H=17, jitter=0.5)
    x, y, h0 = make_chunk(m, B=3, T=4, state_scale=0.8)
    _, grads, _ = m.loss_and_grads(x, y, h0)
    grads = {k: v.copy() for k, v in grads.items()}
    rng = np.random.default_rng(0)

    def loss():
        return m.loss(x, y, h0)[0]

    for name, arr in [*m.params.items(), ("h0", h0)]:
        g = grads[name].ravel()
        picked = rng.choice(g.size, size=min(g.size, 25), replace=False)
        numeric = centred_differences(loss, arr, picked)
        worst = np.abs(numeric - g[picked]).max()
        assert worst / np.abs(g).max() < 1e-6, (name, worst / np.abs(g).max())


def test_state_carried_over_chunks_on_threads_equals_one_thread(shared_at_any_size):
    """Three chunks in a row, each starting from the state the previous one left."""
    m = make_model("lstm", 2, np.float32, V=13, H=100, seed=2)
    x, y, h0 = make_chunk(m, B=5, T=6)
    states = {}
    for threads in (1, 2):
        _kernel.set_recurrent_threads(threads)
        h = h0.copy()
        for _ in range(3):
            _, _, h = m.loss_and_grads(x, y, h)
            h = h.copy()
        states[threads] = h
    assert np.array_equal(states[1], states[2])


def test_default_training_size_is_shared_and_small_steps_are_not():
    """Without the test door: the 2-layer LSTM H=256 B=32 runs on 2 threads, a B=1 or H=17
    step stays on one (a barrier per step would cost more than it saves)."""
    threads = _kernel.set_recurrent_threads(2)
    try:
        for cell in CELLS:
            G = GATES[cell]
            assert _kernel.cell_recurrence_threads_for(32, G, 256, np.float32) == 2
            assert _kernel.cell_recurrence_threads_for(1, G, 256, np.float32) == 1
            assert _kernel.cell_recurrence_threads_for(32, G, 17, np.float32) == 1
        _kernel.set_recurrent_threads(1)
        assert _kernel.cell_recurrence_threads_for(32, 4, 256, np.float32) == 1
    finally:
        _kernel.set_recurrent_threads(threads)
