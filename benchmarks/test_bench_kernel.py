"""pytest-benchmark suite: one training step (loss_and_grads + the clipped Adam update) per named
configuration (_configs.py), kernel and numpy reference side by side (one group per configuration).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE pytest benchmarks/ --benchmark-autosave

Each result's extra_info holds the dtype, threads, the BLAS libraries in use (threadpoolctl),
FLOPs/char, chars/s (from the fastest round), the GEMM limit of the same dtype and threads
measured in this session, the fraction of that limit and, for the kernel, the ratio to the
reference.
"""

from __future__ import annotations

import pytest

import _measure
from _configs import CONFIGS, BenchConfig, fraction_of_limit
from fastrnn.train import limit_threads

REFERENCE_ROUNDS = 3  # when a kernel benchmark runs without its reference's


def _reference_rate(cfg: BenchConfig) -> float:
    """Best chars/s of the numpy reference's step, in a few short rounds (thread limit set by
    the caller)."""
    step = _measure.TrainingStep(cfg, "numpy")
    n = _measure.steps_per_round([step], 0.2)
    rates = _measure.interleaved_rates({"numpy": (step, cfg.chars_per_step, n)}, REFERENCE_ROUNDS)
    return max(rates["numpy"])


@pytest.mark.parametrize("backend", _measure.BACKENDS[::-1])  # the reference first
@pytest.mark.parametrize("name", list(CONFIGS))
def test_training_step(benchmark, name, backend, gemm_rates, reference_rates):
    cfg = CONFIGS[name]
    benchmark.group = f"train {cfg.describe()}"
    gemm = gemm_rates(cfg.dtype, cfg.threads)
    with limit_threads(cfg.threads):  # the BLAS and the kernel's recurrences
        step = _measure.TrainingStep(cfg, backend)
        step()  # warm-up: the workspace for this shape is allocated
        benchmark(step)
        blas = _measure.blas_info()
        if backend == "kernel" and name not in reference_rates:
            reference_rates[name] = _reference_rate(cfg)
    info = benchmark.extra_info
    info.update(
        config=name,
        backend=backend,
        V=cfg.V,
        H=cfg.H,
        B=cfg.B,
        T=cfg.T,
        dtype=cfg.dtype,
        threads=cfg.threads,
        blas=blas,
        blas_summary=_measure.describe_blas(blas),
        flops_per_char=cfg.flops_per_char,
        gemm_flops_per_s=gemm,
    )
    if benchmark.disabled or benchmark.stats is None:  # --benchmark-disable: one plain call
        return
    chars_per_s = cfg.chars_per_step / benchmark.stats.stats.min
    info.update(
        chars_per_s=chars_per_s,
        fraction_of_limit=fraction_of_limit(chars_per_s, cfg.flops_per_char, gemm),
    )
    if backend == "numpy":
        reference_rates[name] = chars_per_s
    else:
        info["ratio_to_reference"] = chars_per_s / reference_rates[name]
