"""Data-parallel speed: chars/s of the trainer's step with 1 process x 1 BLAS thread, 1 process x
2 threads, and `mpiexec -n 2` x 1 thread each, plus the time of one Allreduce of each
configuration's gradient buffer. Not a test: run by hand, on an otherwise idle machine.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/parallel.py [--seconds S]

Configurations (float32, one layer): M = rnn V=65 H=100 B=32 T=64, LSTM-M = lstm with the same
sizes, L = rnn V=65 H=512 B=32 T=64. The ways of running, and one process at half the batch
(for a model of two processes on two idle cores: B*T / (step at B/2 + Allreduce)), are
alternated round by round (one job at a time, so that background noise lands on all alike) and
the median round is reported. Each round times Trainer.train_step (next chunk, loss and
gradients, the Allreduce, the clipped Adam update) after a warm-up, on a random 65-character
text.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = {
    "M": {"model": "rnn", "hidden_size": 100},
    "LSTM-M": {"model": "lstm", "hidden_size": 100},
    "L": {"model": "rnn", "hidden_size": 512},
}
COMMON = {
    "batch_size": 32,
    "seq_length": 64,
    "dtype": "float32",
    "val_fraction": 0.0,
    "eval_every": 0,
    "sample_every": 0,
    "max_iters": 10**9,
    "embedding_size": 0,
    "num_layers": 1,
    "lr_schedule": "constant",
}  # the named sizes: one-hot input
MODES = (
    "1 process x 1 thread",
    "1 process x 2 threads",
    "2 processes x 1 thread",
    "1 process x 1 thread, B/2",
)
ALLREDUCE_REPEATS = 200


# ---------------------------------------------------------------------------- worker


def worker(config: str, corpus: str, threads: int, seconds: float, batch: int) -> None:
    """One measurement inside one job (any number of processes): prints JSON from rank 0."""
    import io

    import numpy as np

    from fastrnn.train import Trainer, limit_threads

    trainer = Trainer(
        {"corpus": corpus, **COMMON, **CONFIGS[config], "batch_size": batch, "checkpoint": None},
        text=None,
        out=io.StringIO(),
    )
    world = trainer.world
    with limit_threads(threads):  # BLAS and the kernel's recurrences, as fastrnn-train
        for _ in range(5):
            trainer.train_step()
        steps, start = 0, time.perf_counter()
        while True:  # every rank stops at the same step count
            trainer.train_step()
            steps += 1
            if steps % 10 == 0:
                elapsed = np.array([time.perf_counter() - start])
                world.allreduce_sum(elapsed)
                if elapsed[0] / world.size >= seconds:
                    break
        wall = time.perf_counter() - start
        allreduce = allreduce_seconds(world, trainer.grad_buffer)
    if world.is_root:
        print(
            json.dumps(
                {
                    "chars_per_s": steps * batch * 64 / wall,
                    "step_s": wall / steps,
                    "allreduce_s": allreduce,
                    "num_params": trainer.model.num_params,
                    "buffer_bytes": trainer.grad_buffer.nbytes,
                }
            )
        )


def allreduce_seconds(world, buffer) -> float | None:
    """Median time of one in-place Allreduce of the gradient buffer (after a barrier each)."""
    if world.size == 1:
        return None
    times = []
    for _ in range(ALLREDUCE_REPEATS):
        world.barrier()
        t = time.perf_counter()
        world.allreduce_sum(buffer)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# ---------------------------------------------------------------------------- driver


def random_text(path: Path, chars: int = 2_000_000) -> None:
    import numpy as np

    alphabet = np.frombuffer(
        b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?'\n-()\"", dtype=np.uint8
    )[:65]
    rng = np.random.default_rng(0)
    path.write_bytes(alphabet[rng.integers(0, alphabet.size, chars)].tobytes())


def command(mode: str, config: str, corpus: Path, seconds: float) -> list[str]:
    me = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        config,
        "--corpus",
        str(corpus),
        "--seconds",
        str(seconds),
    ]
    if mode.endswith("B/2"):
        me += ["--batch", str(COMMON["batch_size"] // 2)]
    if mode.startswith("2 processes"):
        mpiexec = Path(sys.executable).with_name("mpiexec")
        return [
            str(mpiexec) if mpiexec.exists() else shutil.which("mpiexec") or "mpiexec",
            "-n",
            "2",
            *me,
            "--threads",
            "1",
        ]
    return [*me, "--threads", "2" if "2 threads" in mode else "1"]


def measure(mode: str, config: str, corpus: Path, seconds: float) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"}
    run = subprocess.run(
        command(mode, config, corpus, seconds), capture_output=True, text=True, env=env, check=True
    )
    return json.loads(run.stdout.strip().splitlines()[-1])


def blas() -> str:
    import fastrnn.train  # noqa: F401  (loads both OpenBLAS copies)
    from fastrnn.report import blas_description

    return blas_description()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=CONFIGS)
    parser.add_argument("--corpus")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=COMMON["batch_size"])
    parser.add_argument("--seconds", type=float, default=4.0, help="per round and mode")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS))
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.corpus, args.threads, args.seconds, args.batch)
    print(
        f"CPU: {os.cpu_count()} cores; {blas()}; OPENBLAS_CORETYPE="
        f"{os.environ.get('OPENBLAS_CORETYPE', '(unset)')}; float32"
    )
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "random65.txt"
        random_text(corpus)
        for config in args.configs:
            rounds: dict[str, list[dict]] = {m: [] for m in MODES}
            for _ in range(args.rounds):
                for mode in MODES:
                    rounds[mode].append(measure(mode, config, corpus, args.seconds))
            report(config, rounds)


def report(config: str, rounds: dict[str, list[dict]]) -> None:
    rate = {m: statistics.median(r["chars_per_s"] for r in rs) for m, rs in rounds.items()}
    one, two_threads, two_procs, _ = (rate[m] for m in MODES)
    mpi = rounds[MODES[2]]
    allreduce = statistics.median(r["allreduce_s"] for r in mpi)
    step = statistics.median(r["step_s"] for r in mpi)
    print(
        f"\n{config}: {mpi[0]['num_params']:,} parameters, gradient buffer "
        f"{mpi[0]['buffer_bytes']:,} bytes"
    )
    for m in MODES:
        print(
            f"  {m:<24} {rate[m]:>12,.0f} chars/s   (rounds: "
            + ", ".join(f"{r['chars_per_s']:,.0f}" for r in rounds[m])
            + ")"
        )
    print(f"  2 processes / 1x1 thread   {two_procs / one:.2f}x")
    print(f"  2 processes / 1x2 threads  {two_procs / two_threads:.2f}x")
    print(
        f"  one Allreduce (2 processes) {allreduce * 1e6:,.1f} us = "
        f"{allreduce / step:.1%} of a {step * 1e3:.2f} ms step"
    )
    half = statistics.median(r["step_s"] for r in rounds[MODES[3]])
    ideal = COMMON["batch_size"] * 64 / (half + allreduce)
    print(
        f"  model of 2 processes on 2 idle cores: B*T / (step at B/2 + Allreduce) = "
        f"{ideal:,.0f} chars/s = {ideal / one:.2f}x 1x1 thread"
    )


if __name__ == "__main__":
    main()
