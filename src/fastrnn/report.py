"""What a training run prints: the start block, progress (bar or lines), evaluation lines and
the summary, with the descriptions of the cell and of the BLAS in use.

Nothing here changes the run; train.py calls these with the numbers it has.
"""
from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, TextIO

from .model import CharRNN

if TYPE_CHECKING:
    from .config import TrainConfig
    from .train import TrainData, TrainResult

PLAIN_PROGRESS_SECONDS = 10.0  # interval of progress lines when stdout is not a terminal


def describe_cell(model: CharRNN) -> str:
    """'vanilla RNN', '2-layer LSTM, dropout 0.5', ..."""
    name = {"rnn": "vanilla RNN", "lstm": "LSTM", "gru": "GRU"}[model.cell]
    layers = f"{model.num_layers}-layer " if model.num_layers > 1 else ""
    return layers + name + (f", dropout {model.dropout:g}" if model.dropout else "")


def blas_description() -> str:
    """'BLAS openblas 0.3.28 (scipy), 1 thread; ...' from threadpoolctl, for the start block."""
    from threadpoolctl import threadpool_info

    parts = []
    for info in threadpool_info():
        if info.get("user_api") != "blas":
            continue
        path = info.get("filepath", "")
        owner = ("scipy's, used by the kernel" if f"scipy.libs{os.sep}" in path
                 or f"{os.sep}scipy{os.sep}" in path else "numpy's" if "numpy" in path
                 else os.path.basename(path))
        n = info.get("num_threads")
        parts.append(f"{info.get('internal_api')} {info.get('version') or ''} ({owner}) "
                     f"{n} thread{'s' if n != 1 else ''}".replace("  ", " "))
    return "BLAS " + ("; ".join(parts) if parts else "not detected")


def start_block(cfg: TrainConfig, model: CharRNN, data: TrainData, iteration: int,
                planned: int | None, best_checkpoint: str) -> list[str]:
    """The lines printed before the first iteration: what will be trained, on what, how long."""
    b = data.batches
    plan = (f"{planned:,} iterations ({planned / b.chunks_per_epoch:.2f} epochs)"
            if planned is not None else "until the time limit")
    if cfg.time_limit > 0 and planned is not None:
        plan += f" or {cfg.time_limit:g} s, whichever comes first"
    start = (f"resuming {cfg.resume} at iteration {iteration}" if cfg.resume else
             f"fine-tuning from {cfg.init_from}" if cfg.init_from else "new run")
    return [
        f"fastrnn-train: {start}",
        f"  corpus      {data.name}: {data.chars:,} characters, "
        f"vocabulary {data.vocab_size}; "
        + (f"validation {cfg.val_file}: {data.val_chars:,} characters" if cfg.val_file else
           f"validation tail {data.val_chars:,} ({cfg.val_fraction:.1%})"),
        f"  model       {describe_cell(model)}, hidden {model.hidden_size}, "
        f"{model.num_params:,} parameters, {model.dtype.name}",
        f"  batches     {cfg.batch_size} streams x {cfg.seq_length} steps = "
        f"{cfg.batch_size * cfg.seq_length:,} chars/iteration; "
        f"{b.chars_per_epoch:,} chars/epoch = {b.chunks_per_epoch:,} iterations",
        f"  plan        {plan}",
        f"  optimizer   {cfg.optimizer}, lr {cfg.learning_rate:g}"
        + (f" x{cfg.lr_decay:g} every {cfg.lr_decay_every}" if cfg.lr_decay < 1 else "")
        + (f", clip ±{cfg.grad_clip:g}" if cfg.grad_clip > 0 else "")
        + (f", max grad norm {cfg.max_grad_norm:g}" if cfg.max_grad_norm > 0 else ""),
        f"  compute     backend {cfg.backend}; {blas_description()}",
        f"  checkpoint  {cfg.checkpoint} (best: {best_checkpoint})"
        + (f", every {cfg.eval_every} iterations" if cfg.eval_every else ", at the end"),
    ]


def eval_line(iteration: int, epoch: float, smoothed: float | None, val: float | None,
              rate: float) -> str:
    """One line per evaluation."""
    val_text = "n/a" if val is None else f"{val:.4f}"
    train = "n/a" if smoothed is None else f"{smoothed:.4f}"
    return (f"iter {iteration:>7}  epoch {epoch:6.2f}  train {train}  "
            f"val {val_text}  {rate:,.0f} chars/s")


STOP_WORDS = {"sigint": "interrupted (SIGINT)", "sigterm": "terminated (SIGTERM)",
              "time_limit": "time limit reached", "max_iters": "done", "max_epochs": "done"}


def summary(r: TrainResult) -> str:
    """The last line of a run: how it ended, where it got to, where the checkpoint is."""
    val = "n/a" if r.val_loss is None else f"{r.val_loss:.4f}"
    how = STOP_WORDS.get(r.stop_reason, r.stop_reason)
    return (f"{how}: {r.iterations:,} iterations, {r.chars_seen:,} characters seen, "
            f"train loss {r.train_loss:.4f}, val loss {val} nats/char, "
            f"{r.wall_time:.1f} s, {r.chars_per_sec:,.0f} chars/s; checkpoint {r.checkpoint}")


class Progress:
    """The run's console: ``say`` prints a line; after ``start``, a tqdm bar on a terminal, or
    plain lines every PLAIN_PROGRESS_SECONDS otherwise. Nothing at all when quiet."""

    def __init__(self, out: TextIO, quiet: bool):
        self.out = out
        self.quiet = quiet
        self.bar = None
        self.last_line = time.monotonic()

    def start(self, total: int | None, initial: int) -> None:
        """Begin showing progress (a bar on a terminal) from iteration initial of total."""
        self.last_line = time.monotonic()
        isatty = getattr(self.out, "isatty", lambda: False)()
        if not self.quiet and isatty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, file=self.out, unit="it",
                            dynamic_ncols=True, smoothing=0.1)

    def update(self, iteration: int, epoch: float, loss: float, val: float | None,
               rate: float) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.n = iteration
            self.bar.set_description(f"epoch {epoch:.2f}", refresh=False)
            self.bar.set_postfix_str(f"loss {loss:.3f}" + (f" val {val:.3f}" if val else "")
                                     + f" {rate:,.0f} chars/s", refresh=False)
            self.bar.update(0)
        elif time.monotonic() - self.last_line >= PLAIN_PROGRESS_SECONDS:
            self.last_line = time.monotonic()
            print(f"iter {iteration:>7}  epoch {epoch:6.2f}  loss {loss:.4f}  "
                  f"{rate:,.0f} chars/s", file=self.out, flush=True)

    def say(self, line: str) -> None:
        """Print a line (without breaking the bar)."""
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(line, file=self.out)
        else:
            print(line, file=self.out, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
