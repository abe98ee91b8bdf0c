"""The model's structure: parameter names and shapes per cell, initial states, the
configuration round trip, and reuse of the caller's gradient buffers."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_chunk, make_model
from fastrnn import CharRNN


def test_parameter_names_and_shapes():
    V, H = 9, 4
    lstm = CharRNN(V, H, num_layers=2, cell="lstm", init="uniform")
    assert list(lstm.params) == ["Wxh", "Whh", "bh", "Wxh1", "Whh1", "bh1", "Why", "by"]
    assert lstm.params["Wxh"].shape == (V, 4 * H) and lstm.params["Wxh1"].shape == (H, 4 * H)
    for b in ("bh", "bh1"):  # "uniform": the forget gate (second block) open, the others at 0
        np.testing.assert_array_equal(
            lstm.params[b], np.r_[np.zeros(H), np.ones(H), np.zeros(2 * H)]
        )
    default = CharRNN(V, H, num_layers=2, cell="lstm")  # "default": every bias at 0
    for b in ("bh", "bh1"):
        np.testing.assert_array_equal(default.params[b], np.zeros(4 * H))
    gru = CharRNN(V, H, num_layers=2, cell="gru")
    assert list(gru.params) == [
        "Wxh",
        "Whh",
        "bh",
        "bhn",
        "Wxh1",
        "Whh1",
        "bh1",
        "bhn1",
        "Why",
        "by",
    ]
    assert gru.params["Whh1"].shape == (H, 3 * H) and gru.params["bhn"].shape == (H,)
    rnn = CharRNN(V, H)
    assert list(rnn.params) == ["Wxh", "Whh", "bh", "Why", "by"]
    assert rnn.params["Whh"].shape == (H, H)


@pytest.mark.parametrize("cell,L", [("rnn", 1), ("lstm", 2), ("gru", 2)])
def test_initial_state_and_config_round_trip(cell, L):
    m = CharRNN(11, 6, num_layers=L, cell=cell, dropout=0.2, dtype=np.float32, seed=4)
    state = m.initial_state(3)
    assert state.shape == ((3, 6) if (cell, L) == ("rnn", 1) else m.state_shape(3))
    assert state.dtype == np.float32 and not state.any()
    again = CharRNN.from_config(m.config(), seed=4)
    assert again.config() == m.config()
    for name in m.params:
        np.testing.assert_array_equal(again.params[name], m.params[name])
    x = np.zeros((3, 2), dtype=np.int64)
    loss, grads, h = m.loss_and_grads(x, x, state)
    assert np.isfinite(loss) and h.shape == state.shape and grads["h0"].shape == state.shape


def test_grads_buffers_are_reused():
    m = make_model("gru", 2)
    x, y, h0 = make_chunk(m)
    grads = {k: np.empty_like(v) for k, v in m.params.items()}
    grads["h0"] = np.empty_like(h0)
    _, out, _ = m.loss_and_grads(x, y, h0, grads=grads)
    assert out is grads
    expected = m.loss_and_grads(x, y, h0)[1]
    for name in expected:
        np.testing.assert_array_equal(grads[name], expected[name])
