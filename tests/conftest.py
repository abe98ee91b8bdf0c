"""Helpers shared by the test modules, imported as ``from conftest import ...``: the relative
error and the tolerances by dtype that compare the kernel with its numpy twin, factories of
models and chunks, centred finite differences, and the versions of the packed recurrent product
with the ``isa`` fixture that runs a test under each. Also the ``slow`` marker's documentation:
``pytest -m "not slow"`` skips subprocess, training and every-entry finite-difference tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pytest

from fastrnn import CharRNN
from fastrnn.cells import NAMES
from fastrnn.model import _kernel

CELLS = NAMES  # every cell of the table of cells
# Kernel against numpy twin, relative to the reference's largest magnitude.
TOL = {np.float64: 1e-10, np.float32: 1e-4}
FD_EPS = 1e-5  # the step of centred differences (float64)

# The packed recurrent product against numpy: every version this CPU runs, the tolerance by
# dtype (relative to the operands' scale), and the sizes that cover the edges of its blocking.
RECURRENT_ISAS = _kernel.supported_recurrent_isas()
RECURRENT_RTOL = {np.float64: 1e-12, np.float32: 1e-5}
RECURRENT_SIZES = (1, 3, 17, 100, 257, 700)


@pytest.fixture(params=RECURRENT_ISAS)
def isa(request):
    """Run the test with one version of the product, then restore the one chosen at import."""
    before = _kernel.set_recurrent_isa(request.param)
    yield request.param
    _kernel.set_recurrent_isa(before)


def rel_err(a, b) -> float:
    """max |a - b| relative to the scale max |b| of the reference b."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(np.abs(b).max(), np.finfo(np.float64).tiny)
    return float(np.abs(a - b).max() / scale)


def make_model(
    cell: str = "rnn",
    L: int = 1,
    dtype=np.float64,
    dropout: float = 0.0,
    V: int = 7,
    H: int = 5,
    seed: int = 0,
    jitter: float = 0.3,
    E: int = 0,
) -> CharRNN:
    """A model (with an embedding of size E > 0 if asked) whose biases and weights are perturbed
    away from their initial values, so that every gate is exercised (zero biases would hide
    bias-gradient bugs)."""
    m = CharRNN(
        V, H, num_layers=L, cell=cell, dropout=dropout, dtype=dtype, seed=seed, embedding_size=E
    )
    r = np.random.default_rng(seed + 100)
    for p in m.params.values():
        p += r.normal(0.0, jitter, p.shape).astype(dtype)
    return m


def make_chunk(m: CharRNN, B: int = 3, T: int = 4, seed: int = 1, state_scale: float = 0.5):
    """(x, y, h0) for model m: random indices and a non-zero carried state of m's shape."""
    r = np.random.default_rng(seed)
    x = r.integers(0, m.vocab_size, (B, T))
    y = r.integers(0, m.vocab_size, (B, T))
    h0 = (r.normal(0.0, state_scale, m.state_shape(B))).astype(m.dtype)
    return x, y, h0


def random_chunk(V: int, H: int, B: int, T: int, dtype, seed: int = 0, h_scale: float = 0.5):
    """(x, y, h0) for a single-layer rnn without building a model: h0 is (B, H)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, V, size=(B, T))
    y = rng.integers(0, V, size=(B, T))
    h0 = (h_scale * rng.standard_normal((B, H))).astype(dtype)
    return x, y, h0


def run_reseeded(m: CharRNN, backend: str, x, y, h0, train: bool, mask_seed: int = 7):
    """loss_and_grads with the model's generator reset, so both backends draw the same dropout
    masks; the gradients are copied out of the reused buffers."""
    m.rng = np.random.default_rng(mask_seed)
    loss, grads, h_last = m.loss_and_grads(x, y, h0, backend=backend, train=train)
    return loss, {k: v.copy() for k, v in grads.items()}, h_last


def centred_differences(
    f: Callable[[], float], a: np.ndarray, flat_indices: Iterable[int], eps: float = FD_EPS
) -> np.ndarray:
    """(f() with a[i] + eps  -  f() with a[i] - eps) / (2 eps) for each flat index i of a,
    which is changed in place and restored."""
    flat = a.reshape(-1)
    out = []
    for i in flat_indices:
        orig = flat[i]
        flat[i] = orig + eps
        plus = f()
        flat[i] = orig - eps
        minus = f()
        flat[i] = orig
        out.append((plus - minus) / (2 * eps))
    return np.array(out)
