"""Learning per minute: validation loss reached by named configurations in a fixed budget.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/quality.py \
        --corpus ../shared/data/tinyshakespeare.txt --seconds 300 --threads 2 [--torch] \
        [--only rnn-256,lstm-2x256] [--iters 1000 --eval-every 500]

Each configuration trains with ``fastrnn.train`` (the last --val-fraction of the text held out,
evaluated every --eval-every iterations and at the end) for --seconds of wall time, or for
--iters iterations when given (then the loss is compared per iteration, which the machine's
load does not affect). With --torch, the same model is trained by a PyTorch script
(nn.Embedding + nn.RNN/nn.LSTM/nn.GRU + nn.Linear, PyTorch's default initialisation, the same
streams, chunks, carried state, mean cross-entropy, elementwise clipping and Adam), alternating
with fastrnn configuration by configuration, in a process of its own that has the thread
settings PyTorch has without fastrnn (_torch_env). PyTorch is not a dependency of fastrnn: install a
CPU build by hand to use --torch.

The table gives, per run: the final and the best validation loss (nats/char), the validation
loss at each evaluation (per-iteration mode), iterations done and chars/s.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# First, before fastrnn: the environment the PyTorch script's process is started with, so that
# it runs with the thread settings it has on its own (see _torch_env).
import _torch_env  # isort: skip

import fastrnn  # noqa: E402
from fastrnn.data import (  # noqa: E402
    BatchIterator,
    Vocabulary,
    read_corpus,
    split_train_val,
    validation_chunks,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
COMMON = {
    "batch_size": 32,
    "seq_length": 64,
    "learning_rate": 2e-3,
    "grad_clip": 5.0,
    "optimizer": "adam",
}


@dataclass(frozen=True)
class QualityConfig:
    """A named run: fastrnn.train options (beyond COMMON) and the matching PyTorch model."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    defaults: bool = False  # True: no option at all, what `fastrnn-train TEXT` does

    @property
    def cell(self) -> str:
        return self.options.get("cell", self.options.get("model", "rnn"))


def _cell_option(cell: str) -> dict[str, str]:
    """The cell under the name TrainConfig uses for it."""
    names = {f.name for f in dataclasses.fields(fastrnn.TrainConfig)}
    return {"cell": cell} if "cell" in names else {"model": cell}


def named_configs() -> dict[str, QualityConfig]:
    # The named configurations keep the PyTorch script's constant rate ("same settings");
    # everything else is fastrnn's default unless named here.
    same = {"lr_schedule": "constant"}
    configs = [
        QualityConfig(
            "rnn-256",
            {
                **_cell_option("rnn"),
                "hidden_size": 256,
                "num_layers": 1,
                "embedding_size": 0,
                **same,
            },
        ),
        QualityConfig(
            "rnn-256-e256",
            {
                **_cell_option("rnn"),
                "hidden_size": 256,
                "num_layers": 1,
                "embedding_size": 256,
                **same,
            },
        ),
        QualityConfig(
            "lstm-256", {**_cell_option("lstm"), "hidden_size": 256, "num_layers": 1, **same}
        ),
        QualityConfig(
            "lstm-2x256", {**_cell_option("lstm"), "hidden_size": 256, "num_layers": 2, **same}
        ),
        QualityConfig(
            "gru-2x256", {**_cell_option("gru"), "hidden_size": 256, "num_layers": 2, **same}
        ),
        QualityConfig("defaults", {}, defaults=True),
    ]
    return {c.name: c for c in configs}


# ---------------------------------------------------------------------------- fastrnn


def run_fastrnn(
    cfg: QualityConfig, corpus: str, args: argparse.Namespace, extra: dict[str, Any]
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "log.jsonl")
        options: dict[str, Any] = {} if cfg.defaults else {**COMMON, **cfg.options}
        options.update(extra)
        options.update(
            val_fraction=args.val_fraction,
            threads=args.threads,
            log=log,
            checkpoint=os.path.join(tmp, "run.npz"),
            sample_every=0,
            quiet=True,
        )
        if args.iters:
            options.update(max_iters=args.iters, eval_every=args.eval_every)
        else:
            options.update(time_limit=args.seconds, eval_every=args.eval_every)
        started = time.monotonic()
        result = fastrnn.train(corpus, out=io.StringIO(), **options)
        wall = time.monotonic() - started
        vals = [json.loads(line)["val_loss"] for line in open(log, encoding="utf-8")]
    return {
        "final": result.val_loss,
        "best": result.best_val_loss,
        "vals": vals,
        "iters": result.iterations,
        "chars_per_sec": result.chars_per_sec,
        "wall": wall,
    }


# ---------------------------------------------------------------------------- PyTorch


TORCH_SETTINGS = ("threads", "val_fraction", "iters", "seconds", "eval_every")


def run_torch_named(name: str, corpus: str, settings: dict[str, Any]) -> dict[str, Any]:
    """run_torch of the named configuration with the TORCH_SETTINGS of the command line: what
    the PyTorch process (_torch_env.TorchProcess) is asked to run."""
    return run_torch(named_configs()[name], corpus, argparse.Namespace(**settings))


TORCH_CALLS = {"run_torch": run_torch_named}


def run_torch(cfg: QualityConfig, corpus: str, args: argparse.Namespace) -> dict[str, Any]:
    """The usual PyTorch char-RNN script of the same size, on the same chunks. Run it in the
    PyTorch process (run_torch_named), where torch was imported before fastrnn."""
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    text = read_corpus(corpus)
    vocab = Vocabulary.from_text(text)
    train_ids, val_ids = split_train_val(vocab.encode(text), args.val_fraction)
    B, T = COMMON["batch_size"], COMMON["seq_length"]
    batches = BatchIterator(train_ids, B, T)
    val = validation_chunks(val_ids, B, T)
    V, H = vocab.size, cfg.options.get("hidden_size", 256)
    L = cfg.options.get("num_layers", 1)
    rnn_class = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cfg.cell]
    embed = torch.nn.Embedding(V, H)
    rnn = rnn_class(H, H, num_layers=L, batch_first=True)
    head = torch.nn.Linear(H, V)
    params = [*embed.parameters(), *rnn.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=COMMON["learning_rate"])

    def zero_state(b: int):
        h = torch.zeros(L, b, H)
        return (h, torch.zeros(L, b, H)) if cfg.cell == "lstm" else h

    def detach(state):
        return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()

    def forward(x, state):
        out, state = rnn(embed(torch.from_numpy(x).long()), state)
        return head(out), state

    def evaluate() -> float:
        with torch.no_grad():
            state, total = zero_state(val[0][0].shape[0]), 0.0
            for x, y in val:
                logits, state = forward(x, state)
                total += torch.nn.functional.cross_entropy(
                    logits.reshape(-1, V), torch.from_numpy(y).long().reshape(-1)
                ).item()
        return total / len(val)

    vals: list[float] = []
    state = zero_state(B)
    iteration = 0
    started = time.monotonic()
    while True:
        if args.iters and iteration >= args.iters:
            break
        if not args.iters and time.monotonic() - started >= args.seconds:
            break
        x, y, starts_epoch = next(batches)
        if starts_epoch:
            state = zero_state(B)
        opt.zero_grad(set_to_none=False)
        logits, state = forward(x, state)
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, V), torch.from_numpy(y).long().reshape(-1)
        )
        loss.backward()
        torch.nn.utils.clip_grad_value_(params, COMMON["grad_clip"])
        opt.step()
        state = detach(state)
        iteration += 1
        if iteration % args.eval_every == 0:
            vals.append(evaluate())
    if not vals or iteration % args.eval_every:
        vals.append(evaluate())
    wall = time.monotonic() - started
    return {
        "final": vals[-1],
        "best": min(vals),
        "vals": vals,
        "iters": iteration,
        "chars_per_sec": iteration * B * T / wall,
        "wall": wall,
    }


# ---------------------------------------------------------------------------- table


def row(name: str, r: dict[str, Any]) -> str:
    vals = " ".join(f"{v:.3f}" for v in r["vals"] if v is not None and math.isfinite(v))
    return (
        f"| {name} | {r['final']:.4f} | {r['best']:.4f} | {r['iters']:,} | "
        f"{r['chars_per_sec'] / 1000:.1f}k | {vals} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--corpus", default=str(SHARED / "tinyshakespeare.txt"))
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--iters", type=int, default=0, help="iterations instead of seconds")
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--only", default="", help="comma-separated configuration names")
    parser.add_argument("--torch", action="store_true", help="also run the PyTorch script")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="an extra fastrnn.train option for every fastrnn run",
    )
    args = parser.parse_args(argv)
    if not Path(args.corpus).is_file():
        print(f"quality: {args.corpus}: no such file", file=sys.stderr)
        return 2
    configs = named_configs()
    names = [n for n in args.only.split(",") if n] or list(configs)
    extra = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    budget = f"{args.iters} iterations" if args.iters else f"{args.seconds:g} s"
    print(
        f"# {Path(args.corpus).name}, {budget}, {args.threads} thread(s), "
        f"last {args.val_fraction:.0%} held out; fastrnn {fastrnn.__version__}"
        + (f"; extra options {extra}" if extra else "")
    )
    print("| run | final val | best val | iterations | chars/s | val at each evaluation |")
    print("| --- | --- | --- | --- | --- | --- |")
    settings = {k: getattr(args, k) for k in TORCH_SETTINGS}
    with contextlib.ExitStack() as stack:
        try:
            torch_process = (
                stack.enter_context(_torch_env.TorchProcess("quality")) if args.torch else None
            )
        except ImportError as exc:
            print(f"quality: {exc}; install a CPU build to use --torch", file=sys.stderr)
            return 1
        for name in names:
            cfg = configs[name]
            if torch_process is not None and not cfg.defaults:
                result = torch_process.call("run_torch", name, args.corpus, settings)
                print(row(f"PyTorch {name}", result), flush=True)
            print(row(f"fastrnn {name}", run_fastrnn(cfg, args.corpus, args, extra)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
