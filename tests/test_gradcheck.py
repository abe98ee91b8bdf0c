"""Tier 2: every gradient of both backends against centred finite differences in float64,
including the gradient of a non-zero carried hidden state h0, for the single-layer fast path
and for stacked layers of every cell."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import fastrnn
from conftest import CELLS, centred_differences, make_chunk, make_model, run_reseeded

MAX_REL_ERR = 1e-6


def numerical_gradient(f, a: np.ndarray) -> np.ndarray:
    """Centred differences of the scalar f() with respect to every entry of a."""
    return centred_differences(f, a, range(a.size)).reshape(a.shape)


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """max |a - n| / max(|a| + |n|) over entries: insensitive to entries that are ~0."""
    denom = np.maximum(np.abs(analytic) + np.abs(numeric), 1e-8)
    return float((np.abs(analytic - numeric) / denom).max())


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["kernel", "numpy"])
@pytest.mark.parametrize("V,H,B,T", [(5, 4, 1, 6), (7, 3, 3, 4), (4, 6, 2, 1)])
def test_gradients_match_finite_differences(backend, V, H, B, T):
    model = fastrnn.CharRNN(V, H, dtype=np.float64, seed=V * H)
    rng = np.random.default_rng(T)
    # Larger weights than the initialisation so tanh is well into its non-linear range.
    for p in model.params.values():
        p[:] = rng.standard_normal(p.shape) * 0.5
    x = rng.integers(0, V, size=(B, T))
    y = rng.integers(0, V, size=(B, T))
    h0 = rng.uniform(-0.9, 0.9, size=(B, H))

    _, grads, _ = model.loss_and_grads(x, y, h0, backend=backend)

    def loss():
        return model.loss(x, y, h0, backend=backend)[0]

    for name in model.params:
        numeric = numerical_gradient(loss, model.params[name])
        assert relative_error(grads[name], numeric) < MAX_REL_ERR, name
    numeric_h0 = numerical_gradient(loss, h0)
    assert relative_error(grads["h0"], numeric_h0) < MAX_REL_ERR
    assert np.abs(grads["h0"]).max() > 1e-6, "h0 gradient should not vanish here"


def test_finite_differences_detect_a_wrong_gradient():
    """The check itself can fail: a gradient with one entry perturbed is caught."""
    model = fastrnn.CharRNN(4, 3, seed=1)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, size=(2, 3))
    y = rng.integers(0, 4, size=(2, 3))
    h0 = rng.uniform(-0.5, 0.5, size=(2, 3))
    _, grads, _ = model.loss_and_grads(x, y, h0)
    wrong = grads["Whh"].copy()
    wrong[1, 2] += 1e-4
    numeric = numerical_gradient(lambda: model.loss(x, y, h0)[0], model.params["Whh"])
    assert relative_error(grads["Whh"], numeric) < MAX_REL_ERR
    assert relative_error(wrong, numeric) > MAX_REL_ERR


# ------------------------------------------------------------------ stacked layers


@pytest.mark.slow
@pytest.mark.parametrize("cell,L", list(itertools.product(CELLS, (1, 2, 3))))
def test_stacked_layers_match_finite_differences(cell, L):
    """Centred differences (float64, kernel) on every parameter and on the initial state, with
    dropout active (masks fixed by reseeding), every entry. Per array, the error is relative to
    the array's largest gradient."""
    m = make_model(cell, L, np.float64, dropout=0.3, V=5, H=4, jitter=0.5)
    x, y, h0 = make_chunk(m, B=2, T=4, state_scale=0.8)
    _, grads, _ = run_reseeded(m, "kernel", x, y, h0, train=True)

    def loss():
        m.rng = np.random.default_rng(7)
        return m.loss(x, y, h0, backend="kernel", train=True)[0]

    for name, arr in [*m.params.items(), ("h0", h0)]:
        g = grads[name].ravel()
        numeric = centred_differences(loss, arr, range(g.size))
        worst = np.abs(numeric - g).max()
        assert worst / np.abs(g).max() < 1e-6, (name, worst / np.abs(g).max())
