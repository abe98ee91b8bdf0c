"""Tier 1: the compiled kernel against its numpy twin, on loss, every gradient, h_last and the
intermediate caches, over many shapes and both dtypes."""

from __future__ import annotations

import numpy as np
import pytest

import fastrnn
from conftest import TOL, random_chunk, rel_err
from fastrnn import reference
from fastrnn.backend import kernel as _kernel

# (V, H, B, T): edge sizes, odd sizes, the classic char-RNN size, a large vocabulary.
SHAPES = [
    (2, 1, 1, 1),
    (2, 3, 1, 1),
    (3, 1, 5, 7),
    (5, 4, 1, 40),
    (7, 13, 3, 1),
    (17, 9, 2, 11),
    (65, 100, 1, 40),
    (65, 33, 32, 8),
    (97, 31, 5, 17),
    (3000, 16, 2, 5),
]


def test_kernel_is_built():
    assert _kernel is not None, "the compiled kernel did not import"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("V,H,B,T", SHAPES)
def test_kernel_matches_numpy(V, H, B, T, dtype):
    # The uniform scheme's small weights keep units out of saturation, where float32's
    # 1 - tanh^2 keeps few digits and the comparison would measure rounding, not the kernel.
    model = fastrnn.CharRNN(V, H, dtype=dtype, seed=V + H, init="uniform")
    # Biases are zero at initialisation: make them non-zero so their paths are tested too.
    rng = np.random.default_rng(1)
    model.params["bh"][:] = rng.standard_normal(H) * 0.1
    model.params["by"][:] = rng.standard_normal(V) * 0.1
    x, y, h0 = random_chunk(V, H, B, T, dtype)
    loss_k, grads_k, h_k = model.loss_and_grads(x, y, h0, backend="kernel")
    loss_n, grads_n, h_n = model.loss_and_grads(x, y, h0, backend="numpy")
    tol = TOL[dtype]
    assert isinstance(loss_k, float)
    assert abs(loss_k - loss_n) <= tol * abs(loss_n)
    assert rel_err(h_k, h_n) <= tol
    assert set(grads_k) == {"Wxh", "Whh", "bh", "Why", "by", "h0"}
    for name in grads_k:
        assert grads_k[name].dtype == dtype
        assert grads_k[name].shape == grads_n[name].shape
        assert rel_err(grads_k[name], grads_n[name]) <= tol, name


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_intermediate_buffers_match(dtype):
    """Same caches after forward (hs, probs) and after backward (dhs = dpre, probs - onehot)."""
    V, H, B, T = 11, 6, 3, 5
    model = fastrnn.CharRNN(V, H, dtype=dtype, seed=3)
    p = model.params
    x, y, h0 = random_chunk(V, H, B, T, dtype)
    x = x.astype(np.int32)
    y = y.astype(np.int32)
    bufs = {}
    for name, impl in (("kernel", _kernel), ("numpy", reference)):
        hs = np.empty((T, B, H), dtype)
        probs = np.empty((T * B, V), dtype)
        dhs = np.empty((T, B, H), dtype)
        packed = np.empty(fastrnn.model.packed_recurrent_size("rnn", H, dtype), dtype)
        loss = impl.rnn_forward(
            x, y, h0, p["Wxh"], p["Whh"], p["bh"], p["Why"], p["by"], hs, probs, packed
        )
        fwd = (hs.copy(), probs.copy())
        g = {k: np.empty_like(v) for k, v in p.items()}
        dh0 = np.empty_like(h0)
        impl.rnn_backward(
            x,
            y,
            h0,
            p["Whh"],
            p["Why"],
            hs,
            probs,
            dhs,
            g["Wxh"],
            g["Whh"],
            g["bh"],
            g["Why"],
            g["by"],
            dh0,
            packed,
        )
        bufs[name] = (loss, fwd, probs, dhs)
    tol = TOL[dtype]
    (lk, (hs_k, pr_k), d_k, dhs_k), (ln, (hs_n, pr_n), d_n, dhs_n) = bufs["kernel"], bufs["numpy"]
    assert abs(lk - ln) <= tol * ln
    assert rel_err(hs_k, hs_n) <= tol
    assert rel_err(pr_k, pr_n) <= tol
    np.testing.assert_allclose(pr_k.sum(axis=1), 1.0, rtol=tol)
    assert rel_err(d_k, d_n) <= tol
    assert rel_err(dhs_k, dhs_n) <= tol


@pytest.mark.parametrize("backend", ["kernel", "numpy"])
def test_h_last_is_the_state_after_the_chunk(backend):
    """Two chunks carried one after the other equal the single long chunk (forward)."""
    V, H, B = 9, 5, 2
    model = fastrnn.CharRNN(V, H, seed=4)
    x, y, h0 = random_chunk(V, H, B, 12, np.float64)
    loss_all, _, h_all = model.loss_and_grads(x, y, h0, backend=backend)
    loss_a, _, h_a = model.loss_and_grads(x[:, :5], y[:, :5], h0, backend=backend)
    loss_b, _, h_b = model.loss_and_grads(x[:, 5:], y[:, 5:], h_a, backend=backend)
    np.testing.assert_allclose(h_b, h_all, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose((5 * loss_a + 7 * loss_b) / 12, loss_all, rtol=1e-12)


@pytest.mark.parametrize("backend", ["kernel", "numpy"])
def test_carried_state_changes_loss_and_gradients(backend):
    """A non-zero h0 must reach the loss and dWhh (a state zeroed or dropped at the first step
    would pass the other tests)."""
    V, H, B, T = 7, 4, 2, 3
    model = fastrnn.CharRNN(V, H, seed=5)
    x, y, h0 = random_chunk(V, H, B, T, np.float64, h_scale=0.9)
    loss_h, g_h, _ = model.loss_and_grads(x, y, h0, backend=backend)
    loss_0, g_0, _ = model.loss_and_grads(x, y, np.zeros_like(h0), backend=backend)
    assert loss_h != loss_0
    assert not np.allclose(g_h["Whh"], g_0["Whh"])
    assert np.abs(g_h["h0"]).max() > 0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("backend", ["kernel", "numpy"])
def test_softmax_is_stable_for_huge_logits(backend, dtype):
    V, H, B, T = 4, 3, 2, 3
    model = fastrnn.CharRNN(V, H, dtype=dtype, seed=6)
    model.params["by"][:] = np.array([1e4, -1e4, 0.0, 1e4 - 1], dtype=dtype)
    x = np.zeros((B, T), dtype=np.int64)
    y = np.array([[0, 1, 2], [3, 0, 1]])
    loss, grads, h = model.loss_and_grads(x, y, model.initial_state(B), backend=backend)
    assert np.isfinite(loss)
    for name, g in grads.items():
        assert np.isfinite(g).all(), name
    # Targets 1 and 2 sit ~1e4 below the max: their -log p is ~1e4, and it must be exact-ish.
    assert loss > 1e3


def test_huge_logit_loss_value():
    """-log softmax with logits (1e4, 0): p(second) = exp(-1e4), so the loss is 1e4 exactly-ish."""
    model = fastrnn.CharRNN(2, 1, seed=0)
    model.params["Why"][:] = 0.0
    model.params["by"][:] = [1e4, 0.0]
    for backend in ("kernel", "numpy"):
        loss, _, _ = model.loss_and_grads(
            np.zeros((1, 1), int), np.ones((1, 1), int), model.initial_state(1), backend=backend
        )
        assert loss == pytest.approx(1e4, rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_repeated_calls_are_identical(dtype):
    """Reused workspaces hold no stale state: same inputs, bit-identical outputs, any order."""
    model = fastrnn.CharRNN(13, 8, dtype=dtype, seed=7)
    x, y, h0 = random_chunk(13, 8, 3, 6, dtype)
    x2, y2, h2 = random_chunk(13, 8, 3, 6, dtype, seed=9)
    first = model.loss_and_grads(x, y, h0)
    model.loss_and_grads(x2, y2, h2)  # dirty the workspace in between
    model.loss_and_grads(x[:1, :2], y[:1, :2], h0[:1])  # and another shape
    second = model.loss_and_grads(x, y, h0)
    assert first[0] == second[0]
    for name in first[1]:
        np.testing.assert_array_equal(first[1][name], second[1][name])
    np.testing.assert_array_equal(first[2], second[2])


def test_replaced_params_are_used():
    model = fastrnn.CharRNN(6, 4, seed=8)
    x, y, h0 = random_chunk(6, 4, 2, 3, np.float64)
    before = model.loss_and_grads(x, y, h0)[0]
    other = fastrnn.CharRNN(6, 4, seed=99)
    for name in model.params:
        model.params[name] = other.params[name].copy()
    after = model.loss_and_grads(x, y, h0)[0]
    expected = other.loss_and_grads(x, y, h0)[0]
    assert after != before
    assert after == expected
    model.params["Whh"] *= 2.0  # in-place updates are seen too
    assert model.loss_and_grads(x, y, h0)[0] != after


def test_caller_provided_gradient_buffers_are_filled():
    model = fastrnn.CharRNN(10, 5, seed=10)
    x, y, h0 = random_chunk(10, 5, 3, 4, np.float64)
    _, fresh, _ = model.loss_and_grads(x, y, h0)
    out = {k: np.full_like(v, np.nan) for k, v in fresh.items()}
    _, returned, _ = model.loss_and_grads(x, y, h0, grads=out)
    assert returned is out
    for name in fresh:
        np.testing.assert_array_equal(out[name], fresh[name])


def test_forward_only_loss_matches():
    model = fastrnn.CharRNN(10, 5, seed=11)
    x, y, h0 = random_chunk(10, 5, 3, 4, np.float64)
    for backend in ("kernel", "numpy"):
        loss, _, h_last = model.loss_and_grads(x, y, h0, backend=backend)
        loss_f, h_f = model.loss(x, y, h0, backend=backend)
        assert loss_f == loss
        np.testing.assert_array_equal(h_f, h_last)


def test_step_logits_matches_chunk_forward():
    V, H, B = 8, 5, 2
    model = fastrnn.CharRNN(V, H, seed=12)
    x, y, h0 = random_chunk(V, H, B, 1, np.float64)
    logits, h1 = model.step_logits(x[:, 0], h0)
    loss, h_last = model.loss(x, y, h0)
    np.testing.assert_allclose(h1, h_last, rtol=1e-12)
    logp = logits - logits.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    assert loss == pytest.approx(-logp[np.arange(B), y[:, 0]].mean(), rel=1e-12)


def test_loss_at_initialisation_is_near_uniform():
    """Small initial weights: the first loss is close to log V nats."""
    V = 65
    model = fastrnn.CharRNN(V, 100, seed=0)
    x, y, h0 = random_chunk(V, 100, 4, 20, np.float64, h_scale=0.0)
    loss, _, _ = model.loss_and_grads(x, y, h0)
    assert abs(loss - np.log(V)) < 0.3
