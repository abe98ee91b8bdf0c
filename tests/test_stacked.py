"""Stacked rnn / LSTM / GRU layers with dropout: the kernel against its numpy twin (loss, every
gradient, the caches), dropout reproducibility, state carry over chunks, and the single-layer
fast path reproduced by the stacked path."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import fastrnn
from conftest import CELLS, TOL, make_chunk, make_model, rel_err, run_reseeded
from fastrnn import CharRNN, reference_cells

LAYERS = (1, 2, 3)


# ------------------------------------------------------------------ kernel vs numpy


@pytest.mark.parametrize(
    "cell,L,dtype,dropout",
    [
        (c, L, dt, p)
        for c, L, dt, p in itertools.product(CELLS, LAYERS, (np.float64, np.float32), (0.0, 0.4))
    ],
)
def test_kernel_matches_numpy(cell, L, dtype, dropout):
    m = make_model(cell, L, dtype, dropout)
    x, y, h0 = make_chunk(m, B=3, T=5)
    lk, gk, hk = run_reseeded(m, "kernel", x, y, h0, train=True)
    ln, gn, hn = run_reseeded(m, "numpy", x, y, h0, train=True)
    tol = TOL[dtype]
    assert abs(lk - ln) <= tol * abs(ln)
    assert set(gk) == set(m.params) | {"h0"}
    for name in gn:
        assert gk[name].shape == gn[name].shape
        assert rel_err(gk[name], gn[name]) <= tol, name
    assert hk.shape == h0.shape
    assert rel_err(hk, hn) <= tol


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("B,T,H,V", [(1, 1, 1, 2), (1, 6, 3, 4), (4, 1, 6, 3), (2, 3, 17, 40)])
def test_kernel_matches_numpy_odd_shapes(cell, B, T, H, V):
    m = make_model(cell, 2, np.float64, dropout=0.25, V=V, H=H)
    x, y, h0 = make_chunk(m, B=B, T=T)
    lk, gk, hk = run_reseeded(m, "kernel", x, y, h0, train=True)
    ln, gn, hn = run_reseeded(m, "numpy", x, y, h0, train=True)
    assert abs(lk - ln) <= 1e-10 * abs(ln)
    for name in gn:
        assert rel_err(gk[name], gn[name]) <= 1e-10, name
    assert rel_err(hk, hn) <= 1e-10


@pytest.mark.parametrize("cell", CELLS)
def test_intermediate_buffers_match(cell):
    """Same caches on both backends, not only the same loss (the twins mirror each other).
    The scratch of the recurrent product (packed) holds each backend's own layout of Whh^T."""
    m = make_model(cell, 2, np.float64, dropout=0.3)
    x, y, h0 = make_chunk(m, B=2, T=3)
    run_reseeded(m, "kernel", x, y, h0, train=True)
    ws_k = {
        k: (v.copy() if isinstance(v, np.ndarray) else v)
        for k, v in vars(m._workspace(2, 3, True)).items()
    }
    run_reseeded(m, "numpy", x, y, h0, train=True)
    ws_n = vars(m._workspace(2, 3, True))
    for name, buf in ws_k.items():
        if buf is not None and name != "packed":
            assert rel_err(buf, ws_n[name]) <= 1e-10, name


# ------------------------------------------------------------------ dropout


@pytest.mark.parametrize("cell", CELLS)
def test_dropout_masks_identical_between_backends(cell):
    mk = make_model(cell, 2, np.float64, dropout=0.5, seed=3)
    mn = make_model(cell, 2, np.float64, dropout=0.5, seed=3)
    x, y, h0 = make_chunk(mk)
    lk, gk, _ = mk.loss_and_grads(x, y, h0, backend="kernel")
    ln, gn, _ = mn.loss_and_grads(x, y, h0, backend="numpy")
    np.testing.assert_array_equal(mk._workspace(3, 4, True).masks, mn._workspace(3, 4, True).masks)
    assert abs(lk - ln) <= 1e-10 * ln
    masks = mk._workspace(3, 4, True).masks
    assert set(np.unique(masks)) == {0.0, 2.0}  # keep / (1 - p)
    # a second call draws fresh masks, on both backends alike
    lk2 = mk.loss_and_grads(x, y, h0, backend="kernel")[0]
    ln2 = mn.loss_and_grads(x, y, h0, backend="numpy")[0]
    assert lk2 != lk and abs(lk2 - ln2) <= 1e-10 * ln2


@pytest.mark.parametrize("cell", CELLS)
def test_train_false_is_deterministic(cell):
    m = make_model(cell, 2, np.float64, dropout=0.5)
    x, y, h0 = make_chunk(m)
    first = m.loss_and_grads(x, y, h0, train=False)
    second = m.loss_and_grads(x, y, h0, train=False)
    assert first[0] == second[0]
    for name in first[1]:
        np.testing.assert_array_equal(first[1][name], second[1][name])
    np.testing.assert_array_equal(first[2], second[2])
    # and equal to a model without dropout, and to forward-only loss (which never drops)
    plain = CharRNN(m.vocab_size, m.hidden_size, 2, cell, 0.0, seed=0)
    plain.params = {k: v.copy() for k, v in m.params.items()}
    assert plain.loss_and_grads(x, y, h0)[0] == first[0]
    assert m.loss(x, y, h0)[0] == first[0]


def test_dropout_changes_training_loss_only_when_training():
    m = make_model("lstm", 2, np.float64, dropout=0.5)
    x, y, h0 = make_chunk(m)
    assert m.loss(x, y, h0, train=True)[0] != m.loss(x, y, h0)[0]


# ------------------------------------------------------------------ state and behaviour


@pytest.mark.parametrize("cell,L", list(itertools.product(CELLS, (1, 3))))
def test_state_carry_over_two_chunks(cell, L):
    """One chunk of 2T steps = two chunks of T with the state carried (losses average)."""
    m = make_model(cell, L)
    x, y, h0 = make_chunk(m, B=2, T=6)
    loss_all, h_all = m.loss(x, y, h0)
    l1, h1 = m.loss(x[:, :3], y[:, :3], h0)
    l2, h2 = m.loss(x[:, 3:], y[:, 3:], h1)
    assert abs(loss_all - (l1 + l2) / 2) < 1e-12
    np.testing.assert_allclose(h2, h_all, rtol=0, atol=1e-13)


@pytest.mark.parametrize("cell,L", [("rnn", 1), ("rnn", 2), ("lstm", 1), ("lstm", 2), ("gru", 3)])
def test_step_logits_follow_the_chunk_forward(cell, L):
    m = make_model(cell, L)
    x, y, h0 = make_chunk(m, B=2, T=4)
    loss, h_last = m.loss(x, y, h0)
    h, nll = h0, 0.0
    for t in range(x.shape[1]):
        logits, h = m.step_logits(x[:, t], h)
        z = logits - logits.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        nll -= logp[np.arange(2), y[:, t]].sum()
    assert h.shape == h0.shape
    np.testing.assert_allclose(h, h_last, rtol=0, atol=1e-12)
    assert abs(nll / x.size - loss) < 1e-12


def test_single_layer_fast_path_equals_the_stacked_path(monkeypatch):
    """(B, H) and (1, B, H) states give the same numbers, grads['h0'] follows the state's
    shape, and the stacked kernels reproduce the single-layer fast path exactly for L = 1."""
    m = make_model("rnn", 1)
    x, y, h3 = make_chunk(m)
    h2 = h3[0].copy()
    l2, g2, s2 = run_reseeded(m, "kernel", x, y, h2, train=True)
    l3, g3, s3 = run_reseeded(m, "kernel", x, y, h3, train=True)
    assert g2["h0"].shape == h2.shape and s2.shape == h2.shape
    assert g3["h0"].shape == h3.shape and s3.shape == h3.shape
    assert l2 == l3
    np.testing.assert_array_equal(g2["h0"], g3["h0"][0])
    for backend in ("kernel", "numpy"):
        fast = run_reseeded(m, backend, x, y, h2, train=True)
        monkeypatch.setattr(m, "_uses_stack", lambda train: True)
        stacked = run_reseeded(m, backend, x, y, h2, train=True)
        monkeypatch.undo()
        assert abs(fast[0] - stacked[0]) <= 1e-12 * fast[0]
        for name in fast[1]:
            assert rel_err(stacked[1][name], fast[1][name]) <= 1e-10, (backend, name)


def test_kernel_is_compiled_from_this_tree():
    assert fastrnn.backend.kernel is not None
    assert hasattr(fastrnn.backend.kernel, "lstm_layer_forward")
    assert hasattr(reference_cells, "lstm_layer_forward")
