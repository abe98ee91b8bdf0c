"""Training-step speed of LSTM and GRU models at --threads 1 against --threads 2, in one run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/cell_threads.py

With 2 threads the BLAS products run on two threads and so does every LSTM and GRU layer's
recurrence (each thread owns a range of hidden units, one barrier per step: _cells.pxi).
Sizes (float32, V=65, B=32, T=64): the trainer's default model, 2 layers of LSTM with H=256
and an embedding of 256 ("LSTM2x256-E256"), and the guard's LSTM-L and GRU-L (one layer,
H=512, one-hot input). A step is loss_and_grads on the next of a pool of random chunks plus
the clipped Adam update. The two thread counts alternate round by round (train.limit_threads
around each round), so background noise lands on both; the median round is reported, with the
best. On a machine that others are using, 2 threads can be slower than 1: the README says why.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

import _measure  # noqa: F401  (imports fastrnn first, as every benchmark does)
import fastrnn
from _measure import (
    ADAM_LR,
    CHUNKS_IN_POOL,
    GRAD_CLIP,
    blas_info,
    describe_blas,
    interleaved_rates,
    steps_per_round,
)
from fastrnn.optim import make_optimizer
from fastrnn.train import limit_threads

# name: (cell, layers, H, E)
SIZES = {
    "LSTM2x256-E256": ("lstm", 2, 256, 256),
    "LSTM-L": ("lstm", 1, 512, 0),
    "GRU-L": ("gru", 1, 512, 0),
}
V, B, T = 65, 32, 64
THREADS = (1, 2)


class TrainingStepAt:
    """Callable: one training step of the model `name` with `threads` threads (BLAS and
    recurrence); the models of both thread counts start from the same seed."""

    def __init__(self, name: str, threads: int, seed: int = 0):
        cell, layers, H, E = SIZES[name]
        self.threads = threads
        self.model = fastrnn.CharRNN(
            V, H, num_layers=layers, cell=cell, dtype=np.float32, seed=seed, embedding_size=E
        )
        rng = np.random.default_rng(seed + 1)
        self.xs = rng.integers(0, V, size=(CHUNKS_IN_POOL, B, T), dtype=np.int32)
        self.ys = rng.integers(0, V, size=(CHUNKS_IN_POOL, B, T), dtype=np.int32)
        self.h0 = self.model.initial_state(B)
        params = self.model.params
        self.grads = {n: np.empty_like(p) for n, p in params.items()} | {
            "h0": np.empty_like(self.h0)
        }
        self.optimizer = make_optimizer("adam", params, ADAM_LR)
        self.i = 0

    def __call__(self) -> float:
        k = self.i % CHUNKS_IN_POOL
        self.i += 1
        with limit_threads(self.threads):
            loss, grads, _ = self.model.loss_and_grads(
                self.xs[k], self.ys[k], self.h0, grads=self.grads
            )
            self.optimizer.step(self.model.params, grads, clip=GRAD_CLIP)
        return loss


def compare(name: str, rounds: int, seconds_per_round: float) -> dict[str, float]:
    """chars/s of each thread count (median and best round) and the median ratio 2 / 1."""
    steps = {str(threads): TrainingStepAt(name, threads) for threads in THREADS}
    n = steps_per_round(list(steps.values()), seconds_per_round)
    rates = interleaved_rates({t: (step, B * T, n) for t, step in steps.items()}, rounds)
    out = {f"{t} median": statistics.median(rates[t]) for t in steps}
    out |= {f"{t} best": max(rates[t]) for t in steps}
    out["2/1"] = statistics.median(b / a for a, b in zip(rates["1"], rates["2"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=2.0, help="per round and thread count")
    parser.add_argument("--sizes", nargs="*", default=list(SIZES), choices=list(SIZES))
    args = parser.parse_args()
    print(f"float32, V={V} B={B} T={T}; {describe_blas(blas_info())}")
    print("size | 1 thread median (best) | 2 threads median (best) | 2/1 (median of rounds)")
    for name in args.sizes:
        r = compare(name, args.rounds, args.seconds)
        print(
            f"{name} | {r['1 median']:,.0f} ({r['1 best']:,.0f}) chars/s | "
            f"{r['2 median']:,.0f} ({r['2 best']:,.0f}) chars/s | {r['2/1']:.2f}"
        )


if __name__ == "__main__":
    main()
