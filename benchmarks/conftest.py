"""Fixtures of the benchmark suite (run only explicitly: `pytest benchmarks/`; the repository's
pytest configuration collects tests/ alone).

_measure is imported here first: it imports fastrnn and scipy.linalg, loading both OpenBLAS
copies before any test enters a threadpool_limits, so that a limit reaches both.
"""

from __future__ import annotations

import pytest

import _measure


@pytest.fixture(scope="session")
def gemm_rates():
    """get(dtype, threads) -> FLOP/s of the limit GEMM: measured at every request, and the best
    of the session's measurements of that key returned (one disturbed measurement would
    otherwise inflate every fraction of the limit computed from it)."""
    best: dict[tuple[str, int], float] = {}

    def get(dtype: str, threads: int) -> float:
        key = (dtype, threads)
        best[key] = max(best.get(key, 0.0), _measure.gemm_rate(dtype, threads, repeats=3))
        return best[key]

    return get


@pytest.fixture(scope="session")
def reference_rates() -> dict[str, float]:
    """Configuration name -> best chars/s of the numpy reference, filled by its benchmarks and
    read by the kernel's (which measure the reference themselves when run alone)."""
    return {}
