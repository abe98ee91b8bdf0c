"""pytest-benchmark of generation speed: characters/s of CharRNN.generate (one stream, one BLAS
thread, temperature 1, float32) at the two sampling sizes of _configs.py, kernel and numpy backends
side by side (skipped while CharRNN has no generate)."""

from __future__ import annotations

import pytest
from threadpoolctl import threadpool_limits

import _measure
from _configs import SAMPLING_CONFIGS, STREAM_CONFIGS

CHARS = {"S": 4_000, "CJK": 400}  # per benchmarked call


@pytest.mark.parametrize("backend", _measure.BACKENDS[::-1])
@pytest.mark.parametrize("top_k", [None, 10])
@pytest.mark.parametrize("name,V,H,target", SAMPLING_CONFIGS)
def test_generate(benchmark, name, V, H, target, top_k, backend):
    if not _measure.has_generate():
        pytest.skip("CharRNN.generate does not exist")
    benchmark.group = f"sample V={V} H={H} top_k={top_k}"
    run = _measure.GenerateCall(V, H, length=CHARS[name], top_k=top_k, backend=backend)
    with threadpool_limits(1):
        run()
        benchmark(run)
        blas = _measure.blas_info()
    benchmark.extra_info.update(
        V=V,
        H=H,
        top_k=top_k,
        backend=backend,
        chars_per_call=run.chars,
        dtype="float32",
        threads=1,
        target_chars_per_s=target,
        blas=blas,
        blas_summary=_measure.describe_blas(blas),
    )
    if not benchmark.disabled and benchmark.stats is not None:
        benchmark.extra_info["chars_per_s"] = run.chars / benchmark.stats.stats.min


@pytest.mark.parametrize("cfg", STREAM_CONFIGS, ids=lambda c: c.name)
def test_generate_streams(benchmark, cfg):
    """Every cell through the compiled loop, and many streams at once (kernel only, float32,
    one BLAS thread): chars/s over all streams of the STREAM_CONFIGS of _configs.py."""
    benchmark.group = f"sample streams {cfg.name}"
    run = _measure.GenerateCall(cfg.V, cfg.H, cell=cfg.cell, streams=cfg.streams, length=cfg.length)
    with threadpool_limits(1):
        run()
        benchmark(run)
        blas = _measure.blas_info()
    benchmark.extra_info.update(
        cell=cfg.cell,
        V=cfg.V,
        H=cfg.H,
        streams=cfg.streams,
        chars_per_call=run.chars,
        dtype="float32",
        threads=1,
        target_chars_per_s=cfg.target,
        blas=blas,
        blas_summary=_measure.describe_blas(blas),
    )
    if not benchmark.disabled and benchmark.stats is not None:
        benchmark.extra_info["chars_per_s"] = run.chars / benchmark.stats.stats.median
