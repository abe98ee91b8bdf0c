"""fastrnn against a PyTorch script of the same model, one training step each.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_torch.py \\
        [--only M,LSTM-L] [--threads 1,2] [--rounds 5]

PyTorch is not a dependency of fastrnn: install a CPU build of it yourself to run this (or run
this file with a Python that has PyTorch and fastrnn's built src/ on PYTHONPATH). Every named
configuration of benchmarks/_configs.py can be compared: rnn, lstm and gru cells, L stacked
layers (nn.RNN / nn.LSTM / nn.GRU with num_layers=L), in the configuration's dtype, at the
configuration's thread count or at each count of --threads (the BLAS, fastrnn's recurrences and
torch.set_num_threads alike). Both sides do what fastrnn's training step does
(benchmarks/_measure.TrainingStep): the forward and full BPTT over the (B, T) chunk, the mean
cross-entropy over B*T targets, elementwise clipping of every gradient at 5, then Adam.
PyTorch's side (_torch_steps.py) runs in a process of its own, with the thread settings it has
without fastrnn (_torch_env.py says why); each side's settings are printed above the table.

Two pairs are timed, each pair the same model on both sides (G gate blocks: 1 rnn, 4 lstm,
3 gru):
  one-hot    the named configuration as it is: fastrnn's layer 0 reads one-hot rows, so its
             input product is a gather of rows of Wxh (V, G*H); PyTorch feeds one-hot rows to
             nn.RNN/LSTM/GRU(V, H), the same model (W_ih is Wxh^T, b_ih + b_hh is bh, the gru's
             b_hn is bhn) whose input product is a dense (T*B, V) @ (V, G*H) GEMM, costly at
             large V;
  embedding  the usual PyTorch char-RNN script, nn.Embedding(V, H) into nn.RNN/LSTM/GRU(H, H),
             against fastrnn with embedding_size=H (Wemb (V, H), layer 0's Wxh (H, G*H)): both
             gather an embedding row and then compute an (H, G*H) input product that the
             one-hot model of the named configuration does not have.
The head is nn.Linear(H, V) on the PyTorch side, Why (H, V) + by on fastrnn's. PyTorch keeps two
bias vectors per layer (b_ih, b_hh) where fastrnn keeps one: a few G*H more values to update.

The four steps run in rounds that alternate between them (_measure.interleaved_rates); a step
time is the best round's, and the speed ratio fastrnn/PyTorch (above 1: fastrnn faster) is the
median over rounds of the per-round ratio of the pair. At more than one thread, fastrnn's step
runs on the threads a run given that count uses (1 where a recurrent step is too small to
share: train.step_threads), and each PyTorch round is followed by a pause, outside the clock,
in which its spinning OpenMP threads go to sleep.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# First, before fastrnn: the environment PyTorch's process is started with (see _torch_env).
import _torch_env  # noqa: E402  isort: skip

import _measure  # noqa: E402  (imports fastrnn: both OpenBLAS copies loaded before limits)
from _configs import TORCH_INPUTS as INPUTS  # noqa: E402
from _configs import BenchConfig, select  # noqa: E402
from fastrnn.train import limit_threads  # noqa: E402
from guard import _si, format_table  # noqa: E402

DEFAULT_CONFIGS = "S,M,L,CJK,LSTM-M,LSTM-L,GRU-L,LSTM2-L"


class TorchStep:
    """Callable: one PyTorch training step of cfg's model with layer 0 reading `variant` (see
    the module docstring), made and run in the PyTorch process (_torch_steps.TorchStep);
    ``time_steps(n)`` times n of them there, without the pipe's round trips
    (_measure.time_steps)."""

    def __init__(self, process: _torch_env.TorchProcess, cfg: BenchConfig, variant: str):
        self.process = process
        self.key = process.call("make", dataclasses.asdict(cfg), variant)

    def __call__(self) -> float:
        return self.process.call("step", self.key)

    def time_steps(self, n: int) -> float:
        return self.process.call("time_steps", self.key, n)


# After a PyTorch round at more than one thread its OpenMP threads, in their own process, spin
# a while before they sleep; the next round starts after this pause (outside the clock).
TORCH_SETTLE_SECONDS = 0.25


def step_settings(cfg: BenchConfig) -> dict:
    """interleaved_rates settings at cfg.threads: fastrnn's step on the threads a run given
    cfg.threads uses (train.step_threads: 1 where a recurrent step is too small to share),
    and a pause after each PyTorch round at more than one thread."""
    settings: dict = {}
    used = cfg.threads_used(cfg.threads)
    for variant in INPUTS:
        if used != cfg.threads:
            settings[("fastrnn", variant)] = lambda: limit_threads(used)
        if cfg.threads > 1:
            settings[("torch", variant)] = lambda: _measure.settling(TORCH_SETTLE_SECONDS)
    return settings


def compare(
    cfg: BenchConfig, rounds: int, round_seconds: float, torch_process: _torch_env.TorchProcess
) -> list[dict]:
    """One row per input variant: best step seconds of fastrnn's kernel step and of PyTorch's
    (in its process), and the median paired speed ratio, the four steps alternating in the same
    rounds at cfg.threads."""
    torch_process.call("set_threads", cfg.threads)
    settings = step_settings(cfg)
    with limit_threads(cfg.threads):
        steps: dict[tuple[str, str], _measure.TrainingStep | TorchStep] = {}
        for variant in INPUTS:
            embedding = cfg.H if variant == "embedding" else 0
            steps[("fastrnn", variant)] = _measure.TrainingStep(
                cfg, "kernel", embedding_size=embedding
            )
            steps[("torch", variant)] = TorchStep(torch_process, cfg, variant)
        n = _measure.steps_per_round(list(steps.values()), round_seconds)
        rates = _measure.interleaved_rates(
            {k: (s, 1, n) for k, s in steps.items()}, rounds, settings=settings
        )
    torch_process.call("drop")
    return [
        {
            "config": cfg.name,
            "cell": f"{cfg.layers}x{cfg.cell}",
            "threads": cfg.threads,
            "input": variant,
            "fastrnn_seconds": 1 / max(rates[("fastrnn", variant)]),
            "torch_seconds": 1 / max(rates[("torch", variant)]),
            "speed_ratio": _measure.paired_ratio(
                rates[("fastrnn", variant)], rates[("torch", variant)]
            ),
            "steps_per_round": n,
        }
        for variant in INPUTS
    ]


def table_row(r: dict, chars_per_step: int) -> list[str]:
    return [
        r["config"],
        r["cell"],
        r["threads"],
        r["input"],
        f"{r['fastrnn_seconds'] * 1e3:.2f}",
        f"{r['torch_seconds'] * 1e3:.2f}",
        _si(chars_per_step / r["fastrnn_seconds"]),
        _si(chars_per_step / r["torch_seconds"]),
        f"{r['speed_ratio']:.2f}",
    ]


HEADER = [
    "config",
    "cell",
    "threads",
    "input",
    "fastrnn ms",
    "torch ms",
    "fastrnn chars/s",
    "torch chars/s",
    "fastrnn/torch",
]


def parse_threads(text: str | None) -> list[int] | None:
    """'1,2' -> [1, 2]; None or '' -> None (each configuration's own thread count)."""
    if not text:
        return None
    counts = [int(t) for t in text.split(",") if t.strip()]
    if not counts or min(counts) < 1:
        raise ValueError(f"--threads wants positive counts such as 1,2, got {text!r}")
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--only", default=DEFAULT_CONFIGS, help=f"configurations ({DEFAULT_CONFIGS})")
    p.add_argument(
        "--threads",
        default=None,
        metavar="COUNTS",
        help="thread counts to run every configuration at, e.g. 1,2 (default: its own)",
    )
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    p.add_argument(
        "--round-seconds", type=float, default=0.3, help="seconds per step per round (0.3)"
    )
    args = p.parse_args(argv)
    try:
        configs = select([n.strip() for n in args.only.split(",") if n.strip()])
        thread_counts = parse_threads(args.threads)
    except ValueError as exc:
        print(f"compare_torch: {exc}", file=sys.stderr)
        return 2
    try:
        with _torch_env.TorchProcess("_torch_steps") as torch_process:
            return run_all(configs, thread_counts, args, torch_process)
    except ImportError as exc:
        print(f"compare_torch: {exc}; install a CPU build to run this comparison", file=sys.stderr)
        return 1


def thread_settings(values: dict[str, str | None]) -> str:
    """'OMP_WAIT_POLICY=PASSIVE, OPENBLAS_THREAD_TIMEOUT unset' and the like."""
    return ", ".join(f"{k}={v}" if v is not None else f"{k} unset" for k, v in values.items())


def run_all(
    configs: list[BenchConfig],
    thread_counts: list[int] | None,
    args: argparse.Namespace,
    torch_process: _torch_env.TorchProcess,
) -> int:
    """The comparison of every configuration at each thread count, printed row by row, then
    as a table."""
    print(f"fastrnn: {_measure.describe_blas(_measure.blas_info())}")
    print(f"  {thread_settings(_torch_env.thread_variables())}")
    print(f"PyTorch {torch_process.call('version')}, in a process of its own:")
    print(f"  {thread_settings(_torch_env.BEFORE_FASTRNN or {})}")
    print(
        "one step: forward + full BPTT over B*T, mean cross-entropy, clip 5, Adam; "
        "input one-hot: the named configuration; embedding: nn.Embedding(V, H) + (H, G*H) "
        "input product on both sides"
    )
    rows, t0 = [], time.perf_counter()
    for cfg in configs:
        for threads in thread_counts or [cfg.threads]:
            run = dataclasses.replace(cfg, threads=threads)
            for r in compare(run, args.rounds, args.round_seconds, torch_process):
                rows.append(table_row(r, cfg.chars_per_step))
                print("  " + "  ".join(str(c) for c in rows[-1]), flush=True)
    print()
    print(format_table(HEADER, rows))
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
