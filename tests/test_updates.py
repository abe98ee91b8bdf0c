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


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,nslots,args", [
    ("sgd", 0, (0.1,)), ("adagrad", 1, (0.1, 1e-8)), ("rmsprop", 1, (0.1, 0.95, 1e-8)),
    ("adam", 2, (0.01, 0.9, 0.999, 1e-8))])
def test_update_plan_equals_the_per_array_updates(name, nslots, args, dtype):
    """One UpdatePlan call over several arrays does exactly what the per-array kernel functions
    do one by one (the same loops), for every optimizer and for the clipped norm."""
    rng = np.random.default_rng(5)
    sizes = [7, 130, 1]
    make = lambda: [(rng.standard_normal(n).astype(dtype), (3 * rng.standard_normal(n)).astype(dtype),
                     tuple(np.abs(rng.standard_normal(n)).astype(dtype) for _ in range(nslots)))
                    for n in sizes]
    entries = make()
    copies = [(p.copy(), g, tuple(s.copy() for s in slots)) for p, g, slots in entries]
    plan = _kernel.UpdatePlan(entries, nslots)
    for _ in range(2):
        getattr(plan, name)(*args, 2.0, 0.5)
        for p, g, slots in copies:
            getattr(_kernel, f"{name}_update")(p, g, *slots, *args, 2.0, 0.5)
    for (p, _, slots), (pc, _, sc) in zip(entries, copies):
        np.testing.assert_array_equal(p, pc)
        for a, b in zip(slots, sc):
            np.testing.assert_array_equal(a, b)
    expected = sum(_kernel.clipped_sq_norm(g, 2.0) for _, g, _ in entries)
    assert plan.clipped_sq_norm(2.0) == pytest.approx(expected, rel=1e-12)


def test_update_plan_refuses_mismatched_arrays():
    p, g = np.zeros(4), np.zeros(4)
    with pytest.raises(ValueError):
        _kernel.UpdatePlan([(p, np.zeros(5), ())], 0)
    with pytest.raises(ValueError):
        _kernel.UpdatePlan([(p, g.astype(np.float32), ())], 0)
    with pytest.raises(ValueError):
        _kernel.UpdatePlan([(np.zeros((2, 2)), np.zeros((2, 2)), ())], 0)
    with pytest.raises(ValueError):
        _kernel.UpdatePlan([(p, g, (np.zeros(4),))], 2)
    with pytest.raises(ValueError):
        _kernel.UpdatePlan([(p, g, ()), (np.zeros(3, np.float32), np.zeros(3, np.float32), ())], 0)
    read_only = np.zeros(4)
    read_only.flags.writeable = False
    with pytest.raises(ValueError):
        _kernel.UpdatePlan([(read_only, g, ())], 0)
