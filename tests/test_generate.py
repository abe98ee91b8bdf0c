"""The compiled generation loop against its numpy twin, and its contract."""

from __future__ import annotations

import numpy as np
import pytest

import fastrnn
from conftest import make_model
from fastrnn import _kernel  # noqa: F401  (the kernel must be built for these tests)


def sharp_model(V, H, dtype=np.float64, seed=0):
    model = fastrnn.CharRNN(V, H, dtype=dtype, seed=seed)
    for p in model.params.values():
        p *= 3.0  # peakier predictions than the initialisation
    return model


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"top_k": 1},
        {"top_k": 4},
        {"greedy": True},
        {"temperature": 0.3},
        {"temperature": 2.0, "top_k": 9},
    ],
)
def test_kernel_generation_matches_numpy_float64(kw):
    model = sharp_model(9, 7)
    outs, states = [], []
    for backend in ("kernel", "numpy"):
        h = np.full((1, 7), 0.1)
        outs.append(model.generate(h, 2, 200, rng=np.random.default_rng(3), backend=backend, **kw))
        states.append(h)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_allclose(states[0], states[1], rtol=1e-10, atol=1e-12)
    assert outs[0].dtype == np.int32 and outs[0].shape == (200,)
    assert outs[0].min() >= 0 and outs[0].max() < 9


def test_same_seed_same_text_and_state_carries():
    model = sharp_model(30, 8, dtype=np.float32)
    a = model.generate(np.zeros((1, 8), np.float32), 0, 100, rng=np.random.default_rng(1))
    b = model.generate(np.zeros((1, 8), np.float32), 0, 100, rng=np.random.default_rng(1))
    c = model.generate(np.zeros((1, 8), np.float32), 0, 100, rng=np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Generating 100 in two calls of 50, carrying h, equals one call of 100.
    h = np.zeros((1, 8), np.float32)
    rng = np.random.default_rng(1)
    first = model.generate(h, 0, 50, rng=rng)
    second = model.generate(h, int(first[-1]), 50, rng=rng)
    np.testing.assert_array_equal(np.concatenate([first, second]), a)


def test_top_k_keeps_only_the_k_most_likely():
    V = 40
    model = fastrnn.CharRNN(V, 5, seed=2)
    model.params["Why"][:] = 0.0
    model.params["by"][:] = np.linspace(0.0, 1.0, V)  # index V-1 most likely, then V-2, ...
    out = model.generate(np.zeros((1, 5)), 0, 2000, top_k=3, rng=np.random.default_rng(0))
    assert set(out.tolist()) == {V - 1, V - 2, V - 3}
    greedy = model.generate(np.zeros((1, 5)), 0, 10, greedy=True)
    assert (greedy == V - 1).all()


def test_draws_follow_the_softmax():
    V = 4
    model = fastrnn.CharRNN(V, 3, seed=3)
    model.params["Why"][:] = 0.0
    model.params["by"][:] = np.log([0.1, 0.2, 0.3, 0.4])
    out = model.generate(np.zeros((1, 3)), 0, 20000, rng=np.random.default_rng(0))
    freq = np.bincount(out, minlength=V) / out.size
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=0.015)
    # temperature 0.5 squares the odds: p ~ (0.01, 0.04, 0.09, 0.16) / 0.3
    out = model.generate(np.zeros((1, 3)), 0, 20000, temperature=0.5, rng=np.random.default_rng(1))
    freq = np.bincount(out, minlength=V) / out.size
    np.testing.assert_allclose(freq, np.array([1, 4, 9, 16]) / 30, atol=0.015)


@pytest.mark.parametrize(
    "kw,error,words",
    [
        ({"temperature": 0.0}, ValueError, "temperature"),
        ({"temperature": -1.0}, ValueError, "temperature"),
        ({"temperature": float("nan")}, ValueError, "temperature"),
        ({"top_k": 0}, ValueError, "top_k"),
        ({"top_k": 6}, ValueError, "top_k"),
        ({"first_index": 5}, ValueError, "first_index"),
        ({"first_index": -1}, ValueError, "first_index"),
        ({"length": -2}, ValueError, "length"),
        ({"h": np.zeros((2, 4))}, ValueError, "h"),
        ({"h": np.zeros((1, 3), np.float32)}, TypeError, "h"),
        ({"h": np.full((1, 3), np.nan)}, ValueError, "h"),
    ],
)
def test_generation_refuses_bad_options(kw, error, words):
    model = fastrnn.CharRNN(5, 3, seed=0)
    args = {"h": np.zeros((1, 3)), "first_index": 0, "length": 10}
    args.update(kw)
    with pytest.raises(error, match=words):
        model.generate(**args)


@pytest.mark.parametrize("V,top_k", [(50, 1), (50, 7), (50, 49), (300, 64), (300, 65), (300, 200)])
def test_top_k_matches_numpy_on_both_selection_paths(V, top_k):
    """k <= 64 uses a one-pass selection, larger k quickselect: both agree with np.partition."""
    model = sharp_model(V, 6, seed=V + top_k)
    outs = [
        model.generate(
            np.zeros((1, 6)),
            1,
            300,
            top_k=top_k,
            temperature=1.5,
            rng=np.random.default_rng(7),
            backend=b,
        )
        for b in ("kernel", "numpy")
    ]
    np.testing.assert_array_equal(outs[0], outs[1])


# ------------------------------------------------------------------ stacked models


@pytest.mark.parametrize("cell,L", [("lstm", 2), ("gru", 1), ("rnn", 2)])
def test_generate_matches_step_logits(cell, L):
    """generate for the other cells: same draws as stepping step_logits with next_index, on
    the numpy backend exactly and on the kernel to rounding (float64)."""
    from fastrnn.reference import next_index

    m = make_model(cell, L, V=6)
    u = np.random.default_rng(3).random(30)
    g, x, expected = m.initial_state(1), 2, []
    for n in range(30):
        logits, g = m.step_logits(np.array([x]), g)
        x = next_index(logits[0], 0.8, 4, False, u[n])
        expected.append(x)
    for backend in ("numpy", "kernel"):
        h = m.initial_state(1)
        out = m.generate(
            h, 2, 30, temperature=0.8, top_k=4, rng=np.random.default_rng(3), backend=backend
        )
        assert out.tolist() == expected, backend
        np.testing.assert_allclose(h, g, rtol=1e-12, atol=1e-14)
