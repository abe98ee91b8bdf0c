"""The compiled draw of generation (next_index through _kernel.sample_index): the index it
returns equals its numpy twin's (reference.next_index) for every dtype, temperature, top_k
path (all, the few-largest scan, quickselect) and greedy, including rows whose weights
underflow and draws near 0 and 1."""

from __future__ import annotations

import numpy as np
import pytest

from fastrnn import _kernel
from fastrnn.reference import next_index


def kernel_draw(logits, temperature, top_k, greedy, u):
    V = logits.shape[0]
    z, scratch = np.empty(V), np.empty(V)
    return _kernel.sample_index(logits, temperature, top_k, greedy, u, z, scratch)


def rows(V, dtype, count, scale, seed):
    rng = np.random.default_rng(seed)
    return (scale * rng.standard_normal((count, V))).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("V", [1, 2, 7, 65, 300])
@pytest.mark.parametrize("temperature", [0.3, 1.0, 1.7])
def test_draw_matches_twin(dtype, V, temperature):
    u = np.random.default_rng(V).random(40)
    for top_k in sorted({1, 3, min(V, 64), min(V, 65), min(V, 100), V}):
        for b, row in enumerate(rows(V, dtype, 40, 3.0, seed=V + top_k)):
            expected = next_index(row, temperature, top_k, False, u[b])
            assert kernel_draw(row, temperature, top_k, False, u[b]) == expected
            if top_k < V:
                kept = np.sort(row)[V - top_k :]
                assert row[expected] >= kept[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_draws_at_the_ends_and_with_underflowing_weights(dtype):
    V = 200
    row = rows(V, dtype, 1, 400.0, seed=3)[0]  # most weights exp(z - max) underflow to 0
    for u in (0.0, 1e-12, 0.5, 1 - 1e-12, np.nextafter(1.0, 0.0)):
        for temperature in (0.05, 1.0, 30.0):
            expected = next_index(row, temperature, V, False, u)
            assert kernel_draw(row, temperature, V, False, u) == expected


def test_greedy_is_the_first_argmax():
    row = np.array([0.5, 2.0, -1.0, 2.0], dtype=np.float32)
    assert kernel_draw(row, 1.0, 4, True, 0.9) == next_index(row, 1.0, 4, True, 0.9) == 1


def test_draw_follows_the_cdf():
    """u sweeps [0, 1): each index comes out for a share of u equal to its probability."""
    logits = np.log(np.array([0.1, 0.2, 0.3, 0.4]))
    us = (np.arange(1000) + 0.5) / 1000
    counts = np.bincount([kernel_draw(logits, 1.0, 4, False, u) for u in us], minlength=4)
    np.testing.assert_array_equal(counts, [100, 200, 300, 400])
