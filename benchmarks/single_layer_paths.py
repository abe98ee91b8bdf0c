"""The two paths that compute a single-layer rnn, timed against each other in one run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/single_layer_paths.py

CharRNN takes the single-layer fast path (Workspace, rnn_forward / rnn_backward) for a one-layer
rnn without active dropout; every other model takes the stacked path (StackWorkspace and
stack_forward / stack_backward of _stack.pxi). Here the same model and chunks run loss_and_grads
on both, the stacked one forced, in rounds that alternate between them (float32, one BLAS thread
unless --threads), at the named sizes S, M and L of _configs.py. What model.py's ``_uses_stack``
says about the choice comes from this script.
"""

from __future__ import annotations

import argparse
import platform
import statistics

import numpy as np
from threadpoolctl import threadpool_limits

import _measure  # noqa: F401  (imports fastrnn first, as every benchmark does)
import fastrnn
from _configs import CONFIGS, BenchConfig
from _measure import CHUNKS_IN_POOL, blas_info, describe_blas, interleaved_rates, steps_per_round


class ForwardBackward:
    """Callable: loss_and_grads of a one-layer rnn at cfg on the next of a pool of chunks,
    through the stacked path when stacked is True, else through the fast path."""

    def __init__(self, cfg: BenchConfig, stacked: bool, seed: int = 0):
        self.model = fastrnn.CharRNN(cfg.V, cfg.H, dtype=np.dtype(cfg.dtype), seed=seed)
        if stacked:
            self.model._uses_stack = lambda train: True
        rng = np.random.default_rng(seed + 1)
        self.xs = rng.integers(0, cfg.V, size=(CHUNKS_IN_POOL, cfg.B, cfg.T), dtype=np.int32)
        self.ys = rng.integers(0, cfg.V, size=(CHUNKS_IN_POOL, cfg.B, cfg.T), dtype=np.int32)
        self.h0 = (0.1 * rng.standard_normal((cfg.B, cfg.H))).astype(cfg.dtype)
        self.grads = {n: np.empty_like(p) for n, p in self.model.params.items()}
        self.grads["h0"] = np.empty_like(self.h0)
        self.i = 0

    def __call__(self) -> float:
        k = self.i % CHUNKS_IN_POOL
        self.i += 1
        return self.model.loss_and_grads(self.xs[k], self.ys[k], self.h0, grads=self.grads)[0]


def compare(cfg: BenchConfig, rounds: int, seconds_per_round: float) -> dict:
    fast, stacked = ForwardBackward(cfg, False), ForwardBackward(cfg, True)
    assert abs(fast() - stacked()) <= 1e-4 * abs(fast())  # the same numbers on both paths
    n = steps_per_round([fast, stacked], seconds_per_round)
    chars = cfg.B * cfg.T
    rates = interleaved_rates({"fast": (fast, chars, n), "stacked": (stacked, chars, n)}, rounds)
    return {
        "name": cfg.name,
        "fast": max(rates["fast"]),
        "stacked": max(rates["stacked"]),
        "ratio": statistics.median(f / s for f, s in zip(rates["fast"], rates["stacked"])),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="S,M,L", help="configurations (default S,M,L)")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--seconds", type=float, default=0.3, help="seconds per round and path")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    names = args.only.split(",")
    with threadpool_limits(args.threads):
        print(
            f"{platform.processor() or platform.machine()}; {describe_blas(blas_info())}; "
            f"float32; loss_and_grads only; best of {args.rounds} alternating rounds, "
            "ratio = median of the per-round ratios fast/stacked"
        )
        print(
            f"{'name':6} {'V':>5} {'H':>5} {'B':>3} {'T':>3} {'fast chars/s':>14} "
            f"{'stacked chars/s':>16} {'fast/stacked':>13}"
        )
        for name in names:
            cfg = CONFIGS[name]
            r = compare(cfg, args.rounds, args.seconds)
            print(
                f"{name:6} {cfg.V:5} {cfg.H:5} {cfg.B:3} {cfg.T:3} {r['fast']:14,.0f} "
                f"{r['stacked']:16,.0f} {r['ratio']:13.3f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
