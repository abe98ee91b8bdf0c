"""The kernel's vectorised tanh (fastrnn_simd.h) against numpy over its whole range."""

from __future__ import annotations

import numpy as np
import pytest

from fastrnn.backend import kernel as _kernel

# Relative error bounds: a few ulp of each dtype.
ULPS = {np.float64: 8 * np.finfo(np.float64).eps, np.float32: 8 * np.finfo(np.float32).eps}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tanh_is_accurate_everywhere(dtype):
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            rng.uniform(-1, 1, 10_000),
            rng.uniform(-30, 30, 10_000),
            np.logspace(-30, 1.5, 2_000),
            -np.logspace(-30, 1.5, 2_000),
            [0.0, -0.0, 0.34657359, 0.5, 0.55, 1.0, 9.0, 10.0, 19.0, 20.0, 21.0, 1e4, -1e4],
        ]
    ).astype(dtype)
    got = x.copy()
    _kernel.tanh_array(got)
    want = np.tanh(x.astype(np.float64))
    rel = np.abs(got.astype(np.float64) - want) / np.maximum(np.abs(want), np.finfo(dtype).tiny)
    assert rel.max() <= ULPS[dtype], f"max relative error {rel.max():.3g}"
    assert np.array_equal(np.signbit(got), np.signbit(x)), "sign (including -0.0) is kept"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tanh_of_non_finite(dtype):
    x = np.array([np.inf, -np.inf, np.nan], dtype=dtype)
    _kernel.tanh_array(x)
    assert x[0] == 1 and x[1] == -1 and np.isnan(x[2])
