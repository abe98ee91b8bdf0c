"""What a training run prints: the start block, progress (bar or lines), evaluation lines and
the summary, with the descriptions of the cell and of the BLAS in use.

Nothing here changes the run; train.py calls these with the numbers it has.
"""

from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING, TextIO

from .cells import TABLE
from .model import CharRNN
from .schedule import COSINE_FINAL_FRACTION

if TYPE_CHECKING:
    from .config import TrainConfig
    from .train import TrainData, TrainResult

PLAIN_PROGRESS_SECONDS = 10.0  # interval of progress lines when stdout is not a terminal


def describe_cell(model: CharRNN) -> str:
    """'vanilla RNN', '2-layer LSTM, dropout 0.5', ..."""
    name = TABLE[model.cell].title
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
        owner = (
            "scipy's, used by the kernel"
            if f"scipy.libs{os.sep}" in path or f"{os.sep}scipy{os.sep}" in path
            else "numpy's"
            if "numpy" in path
            else os.path.basename(path)
        )
        n = info.get("num_threads")
        parts.append(
            f"{info.get('internal_api')} {info.get('version') or ''} ({owner}) "
            f"{n} thread{'s' if n != 1 else ''}".replace("  ", " ")
        )
    return "BLAS " + ("; ".join(parts) if parts else "not detected")


def start_block(
    cfg: TrainConfig,
    model: CharRNN,
    data: TrainData,
    iteration: int,
    planned: int | None,
    best_checkpoint: str | None,
) -> list[str]:
    """The lines printed before the first iteration: what will be trained, on what, how long."""
    b = data.batches
    plan = (
        f"{planned:,} iterations ({planned / b.chunks_per_epoch:.2f} epochs)"
        if planned is not None
        else "until the time limit"
    )
    if cfg.time_limit > 0 and planned is not None:
        plan += f" or {cfg.time_limit:g} s, whichever comes first"
    start = (
        f"resuming {cfg.resume} at iteration {iteration}"
        if cfg.resume
        else f"fine-tuning from {cfg.init_from}"
        if cfg.init_from
        else "new run"
    )
    return [
        f"fastrnn-train: {start}",
        f"  corpus      {data.name}: {data.chars:,} characters, "
        f"vocabulary {data.vocab_size}; "
        + (
            f"validation {cfg.val_file}: {data.val_chars:,} characters"
            if cfg.val_file
            else f"validation tail {data.val_chars:,} ({cfg.val_fraction:.1%})"
        ),
        f"  model       {describe_cell(model)}, hidden {model.hidden_size}, "
        f"{model.num_params:,} parameters, {model.dtype.name}",
        f"  batches     {cfg.batch_size} streams x {cfg.seq_length} steps = "
        f"{cfg.batch_size * cfg.seq_length:,} chars/iteration; "
        f"{b.chars_per_epoch:,} chars/epoch = {b.chunks_per_epoch:,} iterations",
        f"  plan        {plan}",
        f"  optimizer   {cfg.optimizer}, lr {cfg.learning_rate:g}{describe_schedule(cfg)}"
        + (f", clip ±{cfg.grad_clip:g}" if cfg.grad_clip > 0 else "")
        + (f", max grad norm {cfg.max_grad_norm:g}" if cfg.max_grad_norm > 0 else ""),
        f"  compute     backend {cfg.backend}; {blas_description()}",
        (
            f"  checkpoint  {cfg.checkpoint} (best: {best_checkpoint})"
            + (f", every {cfg.eval_every} iterations" if cfg.eval_every else ", at the end")
            if cfg.checkpoint
            else "  checkpoint  none (no file is written)"
        )
        + (f"; stop after {cfg.patience} evaluations without improvement" if cfg.patience else ""),
    ]


def describe_schedule(cfg: TrainConfig) -> str:
    """' x0.5 every 1000', ', cosine to 10%', ... and the warmup, for the start block."""
    text = {
        "constant": "",
        "step": f" x{cfg.lr_decay:g} every {cfg.lr_decay_every}",
        "cosine": f", cosine to {COSINE_FINAL_FRACTION:.0%} at the planned end",
        "plateau": f" x{cfg.lr_decay:g} after {cfg.plateau_patience} evaluations without "
        "improvement",
    }[cfg.lr_schedule]
    return text + (f", warmup {cfg.warmup_iters} iterations" if cfg.warmup_iters else "")


# The training loss shown is a running mean over about the last 50 iterations (train.SMOOTHING);
# every line that shows it says so with this word.
SMOOTHED = "smoothed train"


def bits(nats: float | None) -> float | None:
    """Bits per character from nats per character: nats / ln 2."""
    return None if nats is None else nats / math.log(2)


def loss_text(nats: float | None, unit: str = "") -> str:
    """'1.2345 (1.781 bits/char)' (unit ' nats/char': '1.2345 nats/char (1.781 bits/char)'),
    or 'n/a'."""
    if nats is None or not math.isfinite(nats):
        return "n/a"
    return f"{nats:.4f}{unit} ({bits(nats):.3f} bits/char)"


def eval_line(
    iteration: int, epoch: float, smoothed: float | None, val: float | None, rate: float
) -> str:
    """One line per evaluation; losses in nats/char with bits/char beside them."""
    return (
        f"iter {iteration:>7}  epoch {epoch:6.2f}  {SMOOTHED} {loss_text(smoothed)}  "
        f"val {loss_text(val)}  {rate:,.0f} chars/s"
    )


STOP_WORDS = {
    "sigint": "interrupted (SIGINT)",
    "sigterm": "terminated (SIGTERM)",
    "time_limit": "time limit reached",
    "max_iters": "done",
    "max_epochs": "done",
    "patience": "stopped early (the validation loss stopped improving)",
}
LIMIT_FLAGS = {
    "max_iters": "--max-iters",
    "max_epochs": "--max-epochs",
    "time_limit": "--time-limit",
    "patience": "--patience",
}


def summary(r: TrainResult) -> str:
    """The last line of a run: how it ended, where it got to, the losses (nats/char and
    bits/char), the best validation loss and where its checkpoint is."""
    if r.stop_reason == "complete":
        return complete(r)
    how = STOP_WORDS.get(r.stop_reason, r.stop_reason)
    best = ""
    if r.best_val_loss is not None:
        best = f"; best val loss {loss_text(r.best_val_loss, ' nats/char')}"
        best += f" at iteration {r.best_iteration}" if r.best_iteration is not None else ""
        best += f" in {r.best_checkpoint}" if r.best_checkpoint else ""
    where = f"checkpoint {r.checkpoint}" if r.checkpoint else "no checkpoint written"
    return (
        f"{how}: {r.iterations:,} iterations, {r.chars_seen:,} characters seen, "
        f"{r.wall_time:.1f} s, {r.chars_per_sec:,.0f} chars/s; {SMOOTHED} loss "
        f"{loss_text(r.train_loss, ' nats/char')}, val loss "
        f"{loss_text(r.val_loss, ' nats/char')}{best}; "
        f"{where}"
    )


def complete(r: TrainResult) -> str:
    """What a resume of a run that had already reached its limit says instead of training."""
    limit = LIMIT_FLAGS.get(r.done_by or "", r.done_by)
    return (
        f"{r.resumed}: the run is complete ({limit} reached at iteration {r.iterations:,}); "
        f"nothing to train. To extend it, resume with a new budget counted from here: "
        f"fastrnn-train --resume {r.resumed} --max-iters N (or --max-epochs E, "
        f"--time-limit SECONDS)"
    )


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

            self.bar = tqdm(
                total=total,
                initial=initial,
                file=self.out,
                unit="it",
                dynamic_ncols=True,
                smoothing=0.1,
            )

    def update(
        self, iteration: int, epoch: float, loss: float, val: float | None, rate: float
    ) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.n = iteration
            self.bar.set_description(f"epoch {epoch:.2f}", refresh=False)
            self.bar.set_postfix_str(
                f"{SMOOTHED} {loss:.3f}"
                + (f" val {val:.3f}" if val else "")
                + f" {rate:,.0f} chars/s",
                refresh=False,
            )
            self.bar.update(0)
        elif time.monotonic() - self.last_line >= PLAIN_PROGRESS_SECONDS:
            self.last_line = time.monotonic()
            print(
                f"iter {iteration:>7}  epoch {epoch:6.2f}  {SMOOTHED} {loss:.4f}  "
                f"{rate:,.0f} chars/s",
                file=self.out,
                flush=True,
            )

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
