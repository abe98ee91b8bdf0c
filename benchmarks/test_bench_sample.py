"""pytest-benchmark of generation speed: characters/s of fastrnn.sample.generate on one stream
and one BLAS thread, at the two sampling sizes of issue 4 (skipped while fastrnn has no sample.generate)."""
from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import _measure
from _configs import SAMPLING_CONFIGS

CHARS = {"S": 2_000, "CJK": 200}  # per benchmarked call


@pytest.mark.parametrize("top_k", [None, 10])
@pytest.mark.parametrize("name,V,H,target", SAMPLING_CONFIGS)
def test_generate(benchmark, name, V, H, target, top_k):
    generate = _measure.sampling_generator()
    if generate is None:
        pytest.skip("fastrnn.sample.generate does not exist")
    benchmark.group = f"sample V={V} H={H}"
    model = _measure.fastrnn.CharRNN(vocab_size=V, hidden_size=H, dtype=np.float32, seed=0)
    n = CHARS[name]
    rng = np.random.default_rng(0)

    def run():
        for _ in generate(model, model.initial_state(1), 0, n, temperature=1.0, top_k=top_k,
                          rng=rng):
            pass

    with threadpool_limits(1):
        benchmark(run)
        blas = _measure.describe_blas(_measure.blas_info())
    benchmark.extra_info.update(V=V, H=H, top_k=top_k, chars_per_call=n, dtype="float32",
                                threads=1, target_chars_per_s=target, blas_summary=blas)
    if not benchmark.disabled and benchmark.stats is not None:
        benchmark.extra_info["chars_per_s"] = n / benchmark.stats.stats.min
