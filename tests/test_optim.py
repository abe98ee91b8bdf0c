"""Optimizers against their textbook formulas (both backends), clipping, lr decay, state."""

import math
import tracemalloc

import numpy as np
import pytest

from fastrnn.errors import ConfigError
from fastrnn.optim import OPTIMIZERS, decayed_lr, make_optimizer

BACKENDS = ("kernel", "numpy")


def make_params(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "W": rng.standard_normal((3, 4)).astype(dtype),
        "b": rng.standard_normal(4).astype(dtype),
    }


def make_grads(params, seed, size=1.0):
    rng = np.random.default_rng(seed)
    grads = {k: (size * rng.standard_normal(v.shape)).astype(v.dtype) for k, v in params.items()}
    grads["h0"] = np.full((2, 4), np.nan)  # not a parameter: must be ignored
    return grads


def textbook(name, p, g, state, t, lr):
    """The update rules written the plain way, one parameter at a time."""
    if name == "sgd":
        return p - lr * g
    if name == "adagrad":
        state["s"] = state.get("s", 0) + g * g
        return p - lr * g / (np.sqrt(state["s"]) + 1e-8)
    if name == "rmsprop":
        state["v"] = 0.95 * state.get("v", 0) + 0.05 * g * g
        return p - lr * g / (np.sqrt(state["v"]) + 1e-8)
    state["m"] = 0.9 * state.get("m", 0) + 0.1 * g
    state["v"] = 0.999 * state.get("v", 0) + 0.001 * g * g
    m_hat, v_hat = state["m"] / (1 - 0.9**t), state["v"] / (1 - 0.999**t)
    return p - lr * m_hat / (np.sqrt(v_hat) + 1e-8)


def clipped_textbook_grads(grads, names, clip, max_norm):
    g = {k: np.clip(grads[k], -clip, clip) if clip else grads[k].copy() for k in names}
    norm = math.sqrt(sum(float((v**2).sum()) for v in g.values()))
    if max_norm and norm > max_norm:
        g = {k: v * (max_norm / norm) for k, v in g.items()}
    return g


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("clip,max_norm", [(0.0, 0.0), (0.5, 0.0), (0.0, 1.0), (2.0, 1.5)])
def test_matches_textbook_formula_in_place(name, backend, clip, max_norm):
    params = make_params()
    expected = {k: v.copy() for k, v in params.items()}
    states = {k: {} for k in params}
    ids = {k: id(v) for k, v in params.items()}
    opt = make_optimizer(name, params, lr=0.05, backend=backend)
    for t in range(1, 5):
        grads = make_grads(params, seed=t, size=2.0)
        before = {k: v.copy() for k, v in grads.items()}
        opt.step(params, grads, clip=clip, max_norm=max_norm)
        for k in params:
            assert np.array_equal(grads[k], before[k])  # gradients are read, not changed
        g = clipped_textbook_grads(grads, list(params), clip, max_norm)
        for k in expected:
            expected[k] = textbook(name, expected[k], g[k], states[k], t, 0.05)
    for k in params:
        np.testing.assert_allclose(params[k], expected[k], rtol=1e-12, atol=1e-14)
        assert id(params[k]) == ids[k]  # updated in place, model.params keeps its arrays
    assert opt.step_count == 4


def test_step_reports_the_global_norm_of_clipped_gradients():
    params = {"a": np.zeros(2), "b": np.zeros(1)}
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([40.0])}
    opt = make_optimizer("sgd", params, lr=1.0)
    assert opt.step(params, grads, clip=4.0, max_norm=1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(params["a"], [-0.6, 0.0])
    np.testing.assert_allclose(params["b"], [-0.8])
    assert opt.step(params, grads) is None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_float32_stays_float32_and_agrees_with_float64(name, backend):
    p32, p64 = make_params(np.float32), make_params(np.float64)
    o32 = make_optimizer(name, p32, lr=0.01, backend=backend)
    o64 = make_optimizer(name, p64, lr=0.01, backend=backend)
    for t in range(3):
        o32.step(p32, make_grads(p32, t), clip=5.0)
        o64.step(p64, make_grads(p64, t), clip=5.0)
    for k in p32:
        assert p32[k].dtype == np.float32
        np.testing.assert_allclose(p32[k], p64[k], rtol=1e-5, atol=1e-6)
    assert all(v.dtype == np.float32 for v in o32.state_arrays().values())


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


def test_load_state_rejects_missing_or_misshapen_arrays():
    opt = make_optimizer("adam", make_params(), lr=0.01)
    with pytest.raises(ConfigError, match="missing"):
        opt.load_state({}, 3)
    bad = {k: np.zeros(1) for k in opt.state_arrays()}
    with pytest.raises(ConfigError, match="shape"):
        opt.load_state(bad, 3)


def test_kernel_step_allocates_nothing_parameter_sized():
    params = {"W": np.zeros((500, 500)), "b": np.zeros(500)}  # W is 2 MB
    grads = {k: np.ones_like(v) for k, v in params.items()}
    opt = make_optimizer("adam", params, lr=0.01, backend="kernel")
    opt.step(params, grads, clip=5.0, max_norm=1.0)
    tracemalloc.start()
    for _ in range(3):
        opt.step(params, grads, clip=5.0, max_norm=1.0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 50_000


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


@pytest.mark.parametrize("backend", ["kernel", "numpy"])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_step_refuses_mismatched_arrays_before_the_update(name, backend):
    """The update loops are unchecked: a gradient of the wrong size, dtype or layout is refused
    in Python (also after a first good step has cached the views), and nothing changes."""
    params = {"W": np.ones((3, 4)), "b": np.zeros(4)}
    opt = make_optimizer(name, params, 0.1, backend=backend)
    good = {"W": np.full((3, 4), 0.5), "b": np.full(4, 0.5)}
    opt.step(params, good)
    before = {k: v.copy() for k, v in params.items()}
    for bad in (
        {"W": np.ones((3, 5)), "b": good["b"]},
        {"W": np.ones((3, 4), np.float32), "b": good["b"]},
        {"W": np.ones((4, 3)).T, "b": good["b"]},
        {"W": good["W"], "b": np.ones(40)},
    ):
        with pytest.raises(ConfigError):
            opt.step(params, bad)
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
    read_only = {"W": params["W"].copy(), "b": params["b"]}
    read_only["W"].flags.writeable = False
    with pytest.raises(ConfigError, match="read-only"):
        opt.step(read_only, good)
