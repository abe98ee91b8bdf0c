"""pytest-benchmark of generation speed: characters/s of CharRNN.generate (one stream, one BLAS
thread, temperature 1, float32) at the two sampling sizes of _configs.py, kernel and numpy backends
side by side (skipped while CharRNN has no generate)."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import _measure
from _configs import SAMPLING_CONFIGS

CHARS = {"S": 4_000, "CJK": 400}  # per benchmarked call


@pytest.mark.parametrize("backend", _measure.BACKENDS[::-1])
@pytest.mark.parametrize("top_k", [None, 10])
@pytest.mark.parametrize("name,V,H,target", SAMPLING_CONFIGS)
def test_generate(benchmark, name, V, H, target, top_k, backend):
    if not _measure.has_generate():
        pytest.skip("CharRNN.generate does not exist")
    benchmark.group = f"sample V={V} H={H} top_k={top_k}"
    model = _measure.fastrnn.CharRNN(vocab_size=V, hidden_size=H, dtype=np.float32, seed=0)
    n = CHARS[name]
    rng = np.random.default_rng(0)

    def run():
        model.generate(
            model.initial_state(1), 0, n, temperature=1.0, top_k=top_k, rng=rng, backend=backend
        )

    with threadpool_limits(1):
        run()
        benchmark(run)
        blas = _measure.blas_info()
    benchmark.extra_info.update(
        V=V,
        H=H,
        top_k=top_k,
        backend=backend,
        chars_per_call=n,
        dtype="float32",
        threads=1,
        target_chars_per_s=target,
        blas=blas,
        blas_summary=_measure.describe_blas(blas),
    )
    if not benchmark.disabled and benchmark.stats is not None:
        benchmark.extra_info["chars_per_s"] = n / benchmark.stats.stats.min


# Every cell through the compiled loop, and many streams at once (kernel only, float32, one
# BLAS thread): name, cell, V, H, streams N, characters per stream per call, target chars/s
# (all streams together; 16 streams at V=6533 aim at 6x the one-stream target).
STREAM_CONFIGS = (
    ("LSTM-S", "lstm", 65, 100, 1, 4_000, 500_000),
    ("CJK", "rnn", 6533, 256, 1, 400, 8_000),
    ("CJK-16", "rnn", 6533, 256, 16, 100, 48_000),
)


@pytest.mark.parametrize("name,cell,V,H,N,n,target", STREAM_CONFIGS)
def test_generate_streams(benchmark, name, cell, V, H, N, n, target):
    benchmark.group = f"sample streams {name}"
    model = _measure.fastrnn.CharRNN(
        vocab_size=V, hidden_size=H, cell=cell, dtype=np.float32, seed=0
    )
    rng = np.random.default_rng(0)
    first = np.zeros(N, dtype=np.int32)

    def run():
        model.generate(model.initial_state(N), first, n, temperature=1.0, rng=rng)

    with threadpool_limits(1):
        run()
        benchmark(run)
        blas = _measure.blas_info()
    benchmark.extra_info.update(
        cell=cell,
        V=V,
        H=H,
        streams=N,
        chars_per_call=N * n,
        dtype="float32",
        threads=1,
        target_chars_per_s=target,
        blas=blas,
        blas_summary=_measure.describe_blas(blas),
    )
    if not benchmark.disabled and benchmark.stats is not None:
        benchmark.extra_info["chars_per_s"] = N * n / benchmark.stats.stats.median
