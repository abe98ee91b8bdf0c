"""The compiled one-pass optimizer updates against their numpy twins (reference.py)."""
from __future__ import annotations

import numpy as np
import pytest

from fastrnn import reference
from fastrnn.model import _kernel

TOL = {np.float64: 1e-12, np.float32: 1e-5}
CASES = {
    "sgd_update": lambda p, g, s, clip, scale: ((p, g, 0.1, clip, scale), ()),
    "adagrad_update": lambda p, g, s, clip, scale: ((p, g, s[0], 0.1, 1e-8, clip, scale), (0,)),
    "rmsprop_update": lambda p, g, s, clip, scale: ((p, g, s[0], 0.1, 0.95, 1e-8, clip, scale),
                                                    (0,)),
    "adam_update": lambda p, g, s, clip, scale: ((p, g, s[0], s[1], 0.01, 0.9, 0.999, 1e-8,
                                                  clip, scale), (0, 1)),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("clip,scale", [(np.inf, 1.0), (0.5, 1.0), (5.0, 0.3)])
@pytest.mark.parametrize("n", [1, 7, 1000])
def test_update_matches_numpy(name, dtype, clip, scale, n):
    rng = np.random.default_rng(n)
    p0 = rng.standard_normal(n).astype(dtype)
    g = (2 * rng.standard_normal(n)).astype(dtype)
    state0 = [np.abs(rng.standard_normal(n)).astype(dtype) for _ in range(2)]
    results = []
    for impl in (_kernel, reference):
        p, s = p0.copy(), [a.copy() for a in state0]
        args, _ = CASES[name](p, g, s, clip, scale)
        for _ in range(3):                      # a few steps, so state feeds back
            getattr(impl, name)(*args)
        results.append((p, s))
    (pk, sk), (pn, sn) = results
    np.testing.assert_allclose(pk, pn, rtol=TOL[dtype], atol=TOL[dtype])
    for a, b in zip(sk, sn):
        np.testing.assert_allclose(a, b, rtol=TOL[dtype], atol=TOL[dtype])
    assert not np.array_equal(pk, p0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_clipped_sq_norm(dtype):
    g = np.array([-10.0, 3.0, 0.5, 7.0], dtype=dtype)
    expected = 5.0**2 + 3.0**2 + 0.5**2 + 5.0**2
    assert _kernel.clipped_sq_norm(g, 5.0) == pytest.approx(expected, rel=1e-12)
    assert reference.clipped_sq_norm(g, 5.0) == pytest.approx(expected, rel=1e-12)
    assert _kernel.clipped_sq_norm(g, np.inf) == pytest.approx(100 + 9 + 0.25 + 49, rel=1e-12)


def test_sgd_clips_elementwise():
    p = np.zeros(3)
    _kernel.sgd_update(p, np.array([-9.0, 0.2, 9.0]), 1.0, 5.0, 1.0)
    np.testing.assert_array_equal(p, [5.0, -0.2, -5.0])
