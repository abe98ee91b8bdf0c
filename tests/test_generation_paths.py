"""Every path of the compiled generation loop at odd shapes, against its numpy twin: one stream
(the head through packed panels for small heads and long calls, else through BLAS) and many
(the panel product), every cell, every version of the recurrent product the CPU runs."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from conftest import TOL, make_model

HIDDEN = (1, 3, 17, 100, 257)
VOCAB = (2, 65, 6533)
STREAMS = (1, 3, 16)
CELLS = ("rnn", "lstm", "gru")


@lru_cache(maxsize=32)
def model(cell: str, L: int, dtype: type, V: int, H: int, seed: int):
    """make_model, built once for every stream count and version of the product (generate
    leaves the model unchanged)."""
    return make_model(cell, L, dtype=dtype, V=V, H=H, seed=seed)


def both_backends(m, N: int, length: int, **draw):
    """(indices, final state) of the kernel and of the numpy twin, from the same non-zero
    state, first indices and generator seed."""
    h0 = np.random.default_rng(2).normal(0.0, 0.5, m.state_shape(N)).astype(m.dtype)
    first = np.arange(N) % m.vocab_size
    results = []
    for backend in ("kernel", "numpy"):
        h = h0.copy()
        out = m.generate(h, first, length, rng=np.random.default_rng(7), backend=backend, **draw)
        results.append((out, h))
    return results


@pytest.mark.parametrize("N", STREAMS)
@pytest.mark.parametrize("V", VOCAB)
@pytest.mark.parametrize("H", HIDDEN)
def test_float64_draws_and_states_match_the_twin(H, V, N, isa):
    cell = CELLS[(HIDDEN.index(H) + VOCAB.index(V)) % len(CELLS)]
    m = model(cell, 1, np.float64, V, H, H + V)
    (out, h), (out_ref, h_ref) = both_backends(m, N, 6, temperature=1.5)
    np.testing.assert_array_equal(out, out_ref)
    np.testing.assert_allclose(h, h_ref, rtol=TOL[np.float64], atol=TOL[np.float64])


@pytest.mark.parametrize("N", STREAMS)
@pytest.mark.parametrize("V", VOCAB)
@pytest.mark.parametrize("H", HIDDEN)
def test_float32_greedy_indices_and_states_match_the_twin(H, V, N, isa):
    cell = CELLS[(HIDDEN.index(H) + 2 * VOCAB.index(V)) % len(CELLS)]
    m = model(cell, 1, np.float32, V, H, H + V + 1)
    (out, h), (out_ref, h_ref) = both_backends(m, N, 4, greedy=True)
    np.testing.assert_array_equal(out, out_ref)
    np.testing.assert_allclose(h, h_ref, rtol=TOL[np.float32], atol=TOL[np.float32])


@pytest.mark.parametrize("length", [255, 256])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell", CELLS)
def test_one_stream_of_a_large_head_on_either_side_of_the_long_call(cell, dtype, length, isa):
    """V * H above the small-head bound: BLAS reads Why below 256 steps, packed panels from
    256 on; both give the twin's draws (float64) or its greedy path (float32)."""
    m = model(cell, 2, dtype, 2000, 40, 11)
    draw = {"temperature": 0.8} if dtype == np.float64 else {"greedy": True}
    (out, h), (out_ref, h_ref) = both_backends(m, 1, length, **draw)
    np.testing.assert_array_equal(out, out_ref)
    np.testing.assert_allclose(h, h_ref, rtol=TOL[dtype], atol=TOL[dtype])
    assert len(np.unique(out)) > 1
