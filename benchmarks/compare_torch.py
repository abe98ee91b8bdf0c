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
median over rounds of the per-round ratio of the pair.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import _measure  # noqa: E402  (imports fastrnn: both OpenBLAS copies loaded before limits)
from _configs import BenchConfig, select  # noqa: E402
from fastrnn.train import limit_threads  # noqa: E402
from guard import _si, format_table  # noqa: E402

try:
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    sys.exit("compare_torch: PyTorch is not installed (install a CPU build to run this comparison)")

DEFAULT_CONFIGS = "S,M,L,CJK,LSTM-M,LSTM-L,GRU-L,LSTM2-L"
INPUTS = ("one-hot", "embedding")


class TorchStep:
    """Callable: one PyTorch training step of cfg's model (cell, layers, dtype) with layer 0
    reading `variant` ('one-hot' or 'embedding', see the module docstring), on the next of
    CHUNKS_IN_POOL random chunks; h0 stays zero."""

    def __init__(self, cfg: BenchConfig, variant: str, seed: int = 0):
        if variant not in INPUTS:
            raise ValueError(f"variant must be one of {INPUTS}, got {variant!r}")
        V, H, B, L = cfg.V, cfg.H, cfg.B, cfg.layers
        dtype = getattr(torch, cfg.dtype)
        torch.manual_seed(seed)
        self.V = V
        self.embed = torch.nn.Embedding(V, H, dtype=dtype) if variant == "embedding" else None
        self.rnn = recurrent_module(cfg.cell, H if self.embed is not None else V, H, L, dtype)
        self.head = torch.nn.Linear(H, V, dtype=dtype)
        modules = [m for m in (self.embed, self.rnn, self.head) if m is not None]
        self.params = [p for m in modules for p in m.parameters()]
        self.optimizer = torch.optim.Adam(self.params, lr=_measure.ADAM_LR)
        rng = np.random.default_rng(seed + 1)
        shape = (_measure.CHUNKS_IN_POOL, B, cfg.T)
        self.xs = torch.from_numpy(rng.integers(0, V, shape))
        self.ys = torch.from_numpy(rng.integers(0, V, shape))
        h0 = torch.zeros(L, B, H, dtype=dtype)
        self.state = (h0, torch.zeros_like(h0)) if cfg.cell == "lstm" else h0
        self.dtype = dtype
        self.i = 0

    def layer0_input(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, H) embedding rows or (B, T, V) one-hot rows of the characters x (B, T)."""
        if self.embed is not None:
            return self.embed(x)
        return torch.nn.functional.one_hot(x, self.V).to(self.dtype)

    def __call__(self) -> float:
        k = self.i % _measure.CHUNKS_IN_POOL
        self.i += 1
        self.optimizer.zero_grad(set_to_none=False)
        out, _ = self.rnn(self.layer0_input(self.xs[k]), self.state)  # (B, T, H)
        logits = self.head(out).reshape(-1, self.V)  # (B*T, V)
        loss = torch.nn.functional.cross_entropy(logits, self.ys[k].reshape(-1))
        loss.backward()
        for p in self.params:
            p.grad.clamp_(-_measure.GRAD_CLIP, _measure.GRAD_CLIP)
        self.optimizer.step()
        return loss.item()


def recurrent_module(cell: str, inputs: int, H: int, layers: int, dtype) -> torch.nn.Module:
    """nn.RNN (tanh), nn.LSTM or nn.GRU: `layers` stacked layers of H, batch first."""
    kinds = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
    return kinds[cell](inputs, H, num_layers=layers, batch_first=True, dtype=dtype)


def compare(cfg: BenchConfig, rounds: int, round_seconds: float) -> list[dict]:
    """One row per input variant: best step seconds of fastrnn's kernel step and of PyTorch's,
    and the median paired speed ratio, the four steps alternating in the same rounds at
    cfg.threads."""
    with limit_threads(cfg.threads):
        torch.set_num_threads(cfg.threads)
        steps = {}
        for variant in INPUTS:
            embedding = cfg.H if variant == "embedding" else 0
            steps[("fastrnn", variant)] = _measure.TrainingStep(
                cfg, "kernel", embedding_size=embedding
            )
            steps[("torch", variant)] = TorchStep(cfg, variant)
        n = _measure.steps_per_round(list(steps.values()), round_seconds)
        rates = _measure.interleaved_rates({k: (s, 1, n) for k, s in steps.items()}, rounds)
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
    print(f"PyTorch {torch.__version__}; {_measure.describe_blas(_measure.blas_info())}")
    print(
        "one step: forward + full BPTT over B*T, mean cross-entropy, clip 5, Adam; "
        "input one-hot: the named configuration; embedding: nn.Embedding(V, H) + (H, G*H) "
        "input product on both sides"
    )
    rows, t0 = [], time.perf_counter()
    for cfg in configs:
        for threads in thread_counts or [cfg.threads]:
            run = dataclasses.replace(cfg, threads=threads)
            for r in compare(run, args.rounds, args.round_seconds):
                rows.append(table_row(r, cfg.chars_per_step))
                print("  " + "  ".join(str(c) for c in rows[-1]), flush=True)
    print()
    print(format_table(HEADER, rows))
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
