"""Optimizers against their textbook formulas, clipping, lr decay, state round trip."""
import tracemalloc

import numpy as np
import pytest

from fastrnn.errors import ConfigError
from fastrnn.optim import (OPTIMIZERS, clip_elementwise, clip_global_norm, decayed_lr,
                           global_norm, make_optimizer)


def make_params(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return {"W": rng.standard_normal((3, 4)).astype(dtype), "b": rng.standard_normal(4).astype(dtype)}


def make_grads(params, seed):
    rng = np.random.default_rng(seed)
    grads = {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in params.items()}
    grads["h0"] = np.full((2, 4), np.nan)  # not a parameter: must be ignored
    return grads


def textbook(name, p, g, state, t, lr):
    """The update rules written the plain way, one parameter at a time."""
    if name == "sgd":
        return p - lr * g
    if name == "adagrad":
        state["s"] = state.get("s", 0) + g * g
        return p - lr * g / np.sqrt(state["s"] + 1e-8)
    if name == "rmsprop":
        state["v"] = 0.95 * state.get("v", 0) + 0.05 * g * g
        return p - lr * g / (np.sqrt(state["v"]) + 1e-8)
    state["m"] = 0.9 * state.get("m", 0) + 0.1 * g
    state["v"] = 0.999 * state.get("v", 0) + 0.001 * g * g
    m_hat, v_hat = state["m"] / (1 - 0.9 ** t), state["v"] / (1 - 0.999 ** t)
    return p - lr * m_hat / (np.sqrt(v_hat) + 1e-8)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_matches_textbook_formula_in_place(name):
    params = make_params()
    expected = {k: v.copy() for k, v in params.items()}
    states = {k: {} for k in params}
    ids = {k: id(v) for k, v in params.items()}
    opt = make_optimizer(name, params, lr=0.05)
    for t in range(1, 5):
        grads = make_grads(params, seed=t)
        opt.step(params, grads)
        for k in expected:
            expected[k] = textbook(name, expected[k], grads[k], states[k], t, 0.05)
    for k in params:
        np.testing.assert_allclose(params[k], expected[k], rtol=1e-12, atol=1e-14)
        assert id(params[k]) == ids[k]  # updated in place, model.params keeps its arrays
    assert opt.step_count == 4


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_float32_stays_float32(name):
    params = make_params(np.float32)
    opt = make_optimizer(name, params, lr=0.01)
    opt.step(params, make_grads(params, 1))
    assert all(v.dtype == np.float32 for v in params.values())
    assert all(v.dtype == np.float32 for v in opt.state_arrays().values())


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_state_round_trip_continues_identically(name):
    a = make_params()
    opt_a = make_optimizer(name, a, lr=0.01)
    for t in range(3):
        opt_a.step(a, make_grads(a, t))
    b = {k: v.copy() for k, v in a.items()}
    opt_b = make_optimizer(name, b, lr=0.01)
    opt_b.load_state({k: v.copy() for k, v in opt_a.state_arrays().items()}, opt_a.step_count)
    for t in range(3, 6):
        opt_a.step(a, make_grads(a, t))
        opt_b.step(b, make_grads(b, t))
    for k in a:
        assert np.array_equal(a[k], b[k])


def test_step_allocates_no_parameter_sized_memory():
    params = {"W": np.zeros((500, 500)), "b": np.zeros(500)}  # W is 2 MB
    grads = {k: np.ones_like(v) for k, v in params.items()}
    opt = make_optimizer("adam", params, lr=0.01)
    opt.step(params, grads)
    tracemalloc.start()
    for _ in range(3):
        opt.step(params, grads)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 100_000


def test_clip_elementwise():
    g = {"a": np.array([-7.0, -1.0, 0.5, 9.0]), "h0": np.array([100.0])}
    clip_elementwise(g, ["a"], 5.0)
    np.testing.assert_array_equal(g["a"], [-5.0, -1.0, 0.5, 5.0])
    assert g["h0"][0] == 100.0


def test_clip_global_norm_scales_only_above_threshold():
    g = {"a": np.array([3.0, 0.0]), "b": np.array([4.0])}
    assert clip_global_norm(g, ["a", "b"], 10.0) == pytest.approx(5.0)
    np.testing.assert_array_equal(g["a"], [3.0, 0.0])
    clip_global_norm(g, ["a", "b"], 1.0)
    assert global_norm(g, ["a", "b"]) == pytest.approx(1.0)
    np.testing.assert_allclose(g["a"] / g["b"][0], [0.75, 0.0])


def test_lr_decay_schedule():
    assert decayed_lr(1.0, 0.5, 10, 0) == 1.0
    assert decayed_lr(1.0, 0.5, 10, 9) == 1.0
    assert decayed_lr(1.0, 0.5, 10, 10) == 0.5
    assert decayed_lr(1.0, 0.5, 10, 35) == 0.125
    assert decayed_lr(2.0, 1.0, 10, 1000) == 2.0


def test_bad_optimizer_and_learning_rate():
    with pytest.raises(ConfigError, match="unknown optimizer"):
        make_optimizer("lbfgs", make_params(), lr=0.1)
    with pytest.raises(ConfigError, match="learning rate"):
        make_optimizer("sgd", make_params(), lr=-1.0)
