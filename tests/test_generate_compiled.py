"""The compiled generation loop (stack_generate) for every cell, depth and embedding, one or many
streams: against its numpy twin, against stepping step_logits, and its N-stream contract."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_model
from fastrnn import _kernel  # noqa: F401  (the kernel must be built for these tests)
from fastrnn.reference import next_index

CELLS = ("rnn", "lstm", "gru")
DRAWS = {
    "temperature": {"temperature": 0.7},
    "top_k": {"top_k": 3, "temperature": 1.3},
    "greedy": {"greedy": True},
}


class FixedUniforms:
    """Stands for a numpy Generator whose random(shape) returns prescribed draws."""

    def __init__(self, uniforms: np.ndarray):
        self.uniforms = uniforms

    def random(self, shape):
        assert tuple(np.atleast_1d(shape)) == self.uniforms.shape
        return self.uniforms.copy()


def sharp(m):
    """Peakier predictions than the initialisation, so that draws depend on the state."""
    for p in m.params.values():
        p *= 2.0
    return m


def random_state(m, N, seed=5):
    """A non-zero state of N streams."""
    h = m.initial_state(N)
    h[...] = np.random.default_rng(seed).normal(0.0, 0.5, h.shape)
    return h


@pytest.mark.parametrize("draw", DRAWS)
@pytest.mark.parametrize("E", [0, 3])
@pytest.mark.parametrize("L", [1, 2, 3])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("N", [1, 3])
def test_kernel_matches_numpy_twin_float64(cell, L, E, draw, N):
    m = sharp(make_model(cell, L, V=11, H=6, E=E, seed=L))
    outs, states = [], []
    for backend in ("kernel", "numpy"):
        h = random_state(m, N)
        first = np.arange(N) % m.vocab_size if N > 1 else 4
        outs.append(
            m.generate(h, first, 60, rng=np.random.default_rng(9), backend=backend, **DRAWS[draw])
        )
        states.append(h)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_allclose(states[0], states[1], rtol=1e-10, atol=1e-12)
    assert len(np.unique(outs[0])) > 1 or draw == "greedy"


@pytest.mark.parametrize("E", [0, 3])
@pytest.mark.parametrize("L", [1, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_streams_match_stepping_step_logits(cell, L, E):
    """An independent oracle: stream b steps like step_logits on a batch of N, drawing its
    n-th character with uniforms[n, b] where uniforms = rng.random((length, N))."""
    m = sharp(make_model(cell, L, V=9, H=5, E=E))
    N, length = 4, 25
    start = np.array([0, 3, 3, 8])
    u = np.random.default_rng(2).random((length, N))
    g, x, expected = random_state(m, N), start.copy(), []
    h = g.copy()
    for n in range(length):
        logits, g = m.step_logits(x, g)
        x = np.array([next_index(logits[b], 0.9, 5, False, u[n, b]) for b in range(N)])
        expected.append(x)
    out = m.generate(h, start, length, temperature=0.9, top_k=5, rng=np.random.default_rng(2))
    assert out.shape == (N, length) and out.dtype == np.int32
    np.testing.assert_array_equal(out, np.array(expected).T)
    np.testing.assert_allclose(h, g, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell,L,E", [("rnn", 1, 0), ("lstm", 2, 3), ("gru", 3, 0)])
def test_each_stream_is_a_single_stream_call_with_its_column_of_draws(cell, L, E):
    m = sharp(make_model(cell, L, V=13, H=7, E=E))
    N, length = 5, 40
    u = np.random.default_rng(4).random((length, N))
    h = random_state(m, N)
    h_each = h.copy()
    first = np.array([1, 2, 3, 4, 5])
    together = m.generate(h, first, length, rng=FixedUniforms(u))
    for b in range(N):
        hb = np.ascontiguousarray(h_each[..., b : b + 1, :])
        alone = m.generate(hb, int(first[b]), length, rng=FixedUniforms(u[:, b : b + 1]))
        np.testing.assert_array_equal(together[b], alone)
        np.testing.assert_allclose(h[..., b : b + 1, :], hb, rtol=1e-10, atol=1e-12)


def test_single_stream_call_keeps_its_1d_result_and_its_draws():
    """An int first_index and one stream: (length,) indices, from rng.random(length)."""
    m = sharp(make_model("lstm", 2, V=8, H=5))
    a = m.generate(m.initial_state(1), 2, 30, rng=np.random.default_rng(1))
    b = m.generate(m.initial_state(1), np.array([2]), 30, rng=np.random.default_rng(1))
    c = m.generate(
        m.initial_state(1),
        2,
        30,
        rng=FixedUniforms(np.random.default_rng(1).random(30).reshape(30, 1)),
    )
    assert a.shape == (30,) and b.shape == (1, 30)
    np.testing.assert_array_equal(a, b[0])
    np.testing.assert_array_equal(a, c)


def test_int_first_index_starts_every_stream_and_plain_rnn_takes_n_by_h():
    m = sharp(make_model("rnn", 1, V=8, H=5))
    h2 = np.zeros((3, 5))
    h3 = np.zeros((1, 3, 5))
    a = m.generate(h2, 6, 20, rng=np.random.default_rng(0))
    b = m.generate(h3, np.array([6, 6, 6]), 20, rng=np.random.default_rng(0))
    assert a.shape == (3, 20)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(h2, h3[0])


def test_float32_greedy_agrees_with_numpy_twin():
    m = sharp(make_model("gru", 2, dtype=np.float32, V=10, H=6, E=3))
    outs, states = [], []
    for backend in ("kernel", "numpy"):
        h = random_state(m, 4).astype(np.float32)
        outs.append(m.generate(h, np.array([0, 1, 2, 3]), 15, greedy=True, backend=backend))
        states.append(h)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_allclose(states[0], states[1], rtol=1e-4, atol=1e-5)


def test_scratch_is_allocated_once_per_stream_count():
    m = make_model("lstm", 2, V=8, H=5)
    m.generate(m.initial_state(3), 0, 5, rng=np.random.default_rng(0))
    ws = m._generate_workspace(3)
    m.generate(m.initial_state(3), 0, 5, rng=np.random.default_rng(0))
    assert m._generate_workspace(3) is ws


@pytest.mark.parametrize(
    "first,error,words",
    [
        (np.array([0, 1]), ValueError, "shape"),
        (np.array([0, 1, 8]), ValueError, r"\[0, 8\)"),
        (np.array([0, -1, 2]), ValueError, r"\[0, 8\)"),
        (np.array([0.0, 1.0, 2.0]), TypeError, "integer"),
        (8, ValueError, "first_index"),
    ],
)
def test_first_index_is_checked(first, error, words):
    m = make_model("gru", 2, V=8, H=5)
    with pytest.raises(error, match=words):
        m.generate(m.initial_state(3), first, 5)


def test_state_of_the_wrong_shape_is_refused():
    m = make_model("lstm", 2, V=8, H=5)
    with pytest.raises(ValueError, match="h"):
        m.generate(np.zeros((2, 2, 3, 4)), 0, 5)
    with pytest.raises(ValueError, match="h"):
        m.generate(np.zeros((2, 3, 5)), 0, 5)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
@pytest.mark.parametrize("V", [7, 8, 16, 17, 70])
@pytest.mark.parametrize("N", [2, 4, 5, 9])
def test_head_of_many_streams_matches_numpy_at_every_panel_edge(N, V, dtype, rtol):
    """For N > 1 the head reads Why in column panels of 64 bytes (16 floats, 8 doubles), the
    last one padded, in blocks of 4 streams: logits of every shape agree with numpy."""
    m = make_model("rnn", 1, dtype=dtype, V=V, H=6, seed=V)
    h0 = random_state(m, N).astype(dtype)
    out = m.generate(h0.copy(), np.arange(N) % V, 1, greedy=True)
    h1 = h0.copy()
    logits, _ = m.step_logits(np.arange(N) % V, h1)
    np.testing.assert_array_equal(out[:, 0], np.argmax(logits, axis=1))
    ws = m._generate_workspace(N)
    np.testing.assert_allclose(ws.logits, logits, rtol=rtol, atol=rtol)
