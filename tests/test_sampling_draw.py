"""The compiled draw of generation (next_index through _kernel.sample_index): the index it
returns equals its numpy twin's (reference.next_index) for every dtype, temperature, top_k
path (all, the few-largest scan, quickselect) and greedy, including rows whose weights
underflow and draws near 0 and 1."""

from __future__ import annotations

import numpy as np
import pytest

from fastrnn import _kernel
from fastrnn.reference import draw_index, next_index


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


def plain_draw(weights, u):
    """The inverse-CDF draw over one running sum of all weights."""
    cdf = np.cumsum(weights)
    return int(np.searchsorted(cdf, u * cdf[-1], side="right"))


@pytest.mark.parametrize("V", [1, 63, 64, 65, 259, 576, 1000])
def test_block_sums_draw_what_one_running_sum_draws(V):
    """The twin's draw by blocks of DRAW_BLOCK is the plain inverse-CDF draw (apart from
    rounding at a boundary, which these draws do not meet)."""
    rng = np.random.default_rng(V)
    weights = rng.random(V) ** 4
    for u in rng.random(300):
        assert draw_index(weights, u) == plain_draw(weights, u)


@pytest.mark.parametrize("V", [5, 64, 259, 300])
def test_draws_near_one_with_cut_weights_match_twin_and_keep_to_kept_indices(V):
    """top_k cuts all but the first few logits: draws at u -> 1 take the last kept index,
    never a cut one, in kernel and twin (the path where rounding leaves nothing past u *
    total included)."""
    logits = np.linspace(3.0, -3.0, V)
    for top_k in (1, 2, 3):
        for u in (0.999, 1 - 1e-15, np.nextafter(1.0, 0.0), 1.0):
            expected = next_index(logits, 1.0, top_k, False, u)
            assert expected == top_k - 1
            assert kernel_draw(logits, 1.0, top_k, False, u) == expected


def test_fallback_is_the_last_positive_weight():
    """When rounding leaves no running sum past u * total (here u = 1), the draw is the last
    positive weight: in the last block, and past trailing zeros."""
    weights = np.zeros(200)
    weights[[3, 70, 130]] = [0.25, 0.5, 0.25]
    assert draw_index(weights, 1.0) == 130
    assert draw_index(weights, 0.0) == 3
