"""The compiled optimizer updates (UpdatePlan) against their numpy twin (reference.UpdatePlan)."""

from __future__ import annotations

import numpy as np
import pytest

from fastrnn import reference
from fastrnn.backend import kernel as _kernel

TOL = {np.float64: 1e-12, np.float32: 1e-5}
# optimizer: (number of state slots, hyperparameters before clip and scale)
OPTIMIZERS = {
    "sgd": (0, (0.1,)),
    "adagrad": (1, (0.1, 1e-8)),
    "rmsprop": (1, (0.1, 0.95, 1e-8)),
    "adam": (2, (0.01, 0.9, 0.999, 1e-8)),
}
SIZES = [7, 1000, 1]


def _entries(dtype, nslots: int, seed: int = 5) -> list:
    """[(p, g, slots)] 1-D arrays of SIZES, gradients large enough for clipping to bite."""
    rng = np.random.default_rng(seed)
    return [
        (
            rng.standard_normal(n).astype(dtype),
            (3 * rng.standard_normal(n)).astype(dtype),
            tuple(np.abs(rng.standard_normal(n)).astype(dtype) for _ in range(nslots)),
        )
        for n in SIZES
    ]


def _copy(entries: list) -> list:
    return [(p.copy(), g, tuple(s.copy() for s in slots)) for p, g, slots in entries]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("clip,scale", [(np.inf, 1.0), (0.5, 1.0), (5.0, 0.3)])
def test_update_plan_matches_numpy(name, dtype, clip, scale):
    """A few steps (so the state feeds back) of the kernel's plan and of its numpy twin, over
    several arrays at once, leave the same parameters and the same optimizer state."""
    nslots, hyper = OPTIMIZERS[name]
    kernel_entries = _entries(dtype, nslots)
    numpy_entries = _copy(kernel_entries)
    start = [p.copy() for p, _, _ in kernel_entries]
    plans = (
        _kernel.UpdatePlan(kernel_entries, nslots),
        reference.UpdatePlan(numpy_entries, nslots),
    )
    for _ in range(3):
        for plan in plans:
            getattr(plan, name)(*hyper, clip, scale)
    for (pk, _, sk), (pn, _, sn), p0 in zip(kernel_entries, numpy_entries, start):
        np.testing.assert_allclose(pk, pn, rtol=TOL[dtype], atol=TOL[dtype])
        for a, b in zip(sk, sn):
            np.testing.assert_allclose(a, b, rtol=TOL[dtype], atol=TOL[dtype])
        assert not np.array_equal(pk, p0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("clip", [np.inf, 2.0])
def test_plan_clipped_sq_norm_matches_numpy(dtype, clip):
    entries = _entries(dtype, 0)
    expected = reference.UpdatePlan(entries, 0).clipped_sq_norm(clip)
    assert _kernel.UpdatePlan(entries, 0).clipped_sq_norm(clip) == pytest.approx(
        expected, rel=1e-12
    )


@pytest.mark.parametrize("impl", [_kernel, reference], ids=["kernel", "numpy"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_clipped_sq_norm_by_hand(impl, dtype):
    g = np.array([-10.0, 3.0, 0.5, 7.0], dtype=dtype)
    plan = impl.UpdatePlan([(np.zeros(4, dtype), g, ())], 0)
    assert plan.clipped_sq_norm(5.0) == pytest.approx(5.0**2 + 3.0**2 + 0.5**2 + 5.0**2, rel=1e-12)
    assert plan.clipped_sq_norm(np.inf) == pytest.approx(100 + 9 + 0.25 + 49, rel=1e-12)


@pytest.mark.parametrize("impl", [_kernel, reference], ids=["kernel", "numpy"])
def test_sgd_clips_elementwise(impl):
    p = np.zeros(3)
    impl.UpdatePlan([(p, np.array([-9.0, 0.2, 9.0]), ())], 0).sgd(1.0, 5.0, 1.0)
    np.testing.assert_array_equal(p, [5.0, -0.2, -5.0])


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
