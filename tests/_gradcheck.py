"""Centred finite differences, shared by the gradient checks of every cell."""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

EPS = 1e-5


def centred_differences(f: Callable[[], float], a: np.ndarray, flat_indices: Iterable[int],
                        eps: float = EPS) -> np.ndarray:
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
