"""The head of the compiled generation loop for one stream: the one-row panel product over Why
packed once per call (a small head, or a long call) and the BLAS gemv (a large head in a short
call) both give the numpy twin's draws and states, in float64 and float32."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_model
from fastrnn import _kernel  # noqa: F401  (the kernel must be built for these tests)

# V * H above and below the kernel's SMALL_HEAD_VALUES (65536); lengths on both sides of its
# LONG_CALL_STEPS (256), so every (head size, call length) pair takes its own path.
HEADS = [(11, 6), (300, 250)]
LENGTHS = [20, 300]


def model(cell, V, H, dtype=np.float64, seed=3):
    """A model whose recurrence contracts (Whh scaled to a small norm), so that rounding
    differences between kernel and twin fade over hundreds of steps instead of growing; the
    small one has peakier predictions, so that its draws depend on the state."""
    m = make_model(cell, 1, dtype=dtype, V=V, H=H, seed=seed)
    Whh = m.params["Whh"]
    Whh *= 0.5 / np.linalg.norm(Whh, 2)
    if V * H < 1000:
        m.params["Why"] *= 3.0
    return m


@pytest.mark.parametrize("V,H", HEADS)
@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_one_stream_head_matches_twin_float64(V, H, length, cell):
    m = model(cell, V, H)
    outs, states = [], []
    for backend in ("kernel", "numpy"):
        h = m.initial_state(1)
        h[...] = np.random.default_rng(1).normal(0.0, 0.5, h.shape)
        outs.append(m.generate(h, 2, length, rng=np.random.default_rng(7), backend=backend))
        states.append(h)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_allclose(states[0], states[1], rtol=1e-10, atol=1e-12)
    assert len(np.unique(outs[0])) > 1


@pytest.mark.parametrize("V,H", HEADS)
def test_one_stream_logits_float32_match_twin(V, H):
    """float32: the final state after greedy calls of both lengths, kernel against twin."""
    m = model("rnn", V, H, dtype=np.float32, seed=4)
    for length in LENGTHS:
        states = []
        for backend in ("kernel", "numpy"):
            h = m.initial_state(1)
            h[...] = np.random.default_rng(2).normal(0.0, 0.5, h.shape)
            m.generate(h, 1, length, greedy=True, backend=backend)
            states.append(h)
        np.testing.assert_allclose(states[0], states[1], rtol=2e-4, atol=2e-5)
