"""Loss curves: training and validation loss of one or more runs, from their JSON logs.

    fastrnn.plot.write_curves(["lstm.jsonl", "rnn.jsonl"], "curves.png")

Two panels: loss against iteration and against wall-clock time; each run in its own colour,
training loss (already smoothed by the trainer) as a thin line, validation loss as a thick line
with markers. Everything in bits per character: a log record's "train_bpc" / "val_bpc" when
present, else its "train_loss" / "val_loss" (nats) divided by ln 2. matplotlib is an optional
dependency (pip install "fastrnn[plot]"), drawn with the Agg backend (no display needed).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

INSTALL_HINT = 'plotting needs matplotlib: pip install "fastrnn[plot]"'
LN2 = math.log(2.0)


@dataclass
class Curves:
    """One run's points, in bits/char; a None loss (no validation yet) is left out of its line."""

    name: str
    iteration: list[int]
    elapsed: list[float]
    train_bpc: list[float | None]
    val_bpc: list[float | None]


def _bits(record: dict[str, Any], kind: str) -> float | None:
    """record's kind ("train" or "val") loss in bits/char, or None if it has none."""
    bpc = record.get(f"{kind}_bpc")
    if bpc is not None:
        return float(bpc)
    nats = record.get(f"{kind}_loss")
    return None if nats is None else float(nats) / LN2


def read_log(path: str | os.PathLike, name: str | None = None) -> Curves:
    """The curves of one JSON-lines training log (one record per evaluation)."""
    path = os.fspath(path)
    name = name if name is not None else os.path.splitext(os.path.basename(path))[0]
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line for line in f if line.strip()]
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the log: {exc.strerror or exc}") from None
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
            records.append((int(record["iteration"]), float(record["elapsed"]), record))
        except (ValueError, KeyError, TypeError):
            raise ConfigError(
                f"{path}: line {number} is not a fastrnn log record (JSON with "
                "iteration, elapsed and losses)"
            ) from None
    if not records:
        raise ConfigError(f"{path}: the log is empty")
    return Curves(
        name,
        [r[0] for r in records],
        [r[1] for r in records],
        [_bits(r[2], "train") for r in records],
        [_bits(r[2], "val") for r in records],
    )


def _points(xs: Sequence[float], ys: Sequence[float | None]) -> tuple[list[float], list[float]]:
    kept = [(x, y) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
    return [x for x, _ in kept], [y for _, y in kept]


def _require_matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure


def curves_figure(runs: Sequence[Curves]):
    """The matplotlib Figure: left loss/iteration, right loss/seconds; for each run, in order,
    the lines "<name> train" and "<name> validation" in both panels."""
    Figure = _require_matplotlib()
    fig = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    ax_it, ax_time = fig.subplots(1, 2, sharey=True)
    for k, run in enumerate(runs):
        colour = f"C{k % 10}"
        for ax, xs in ((ax_it, run.iteration), (ax_time, run.elapsed)):
            ax.plot(
                *_points(xs, run.train_bpc),
                color=colour,
                linewidth=1,
                alpha=0.7,
                label=f"{run.name} train",
            )
            ax.plot(
                *_points(xs, run.val_bpc),
                color=colour,
                linewidth=2,
                marker="o",
                markersize=3,
                label=f"{run.name} validation",
            )
    ax_it.set_xlabel("iteration")
    ax_time.set_xlabel("wall-clock time (s)")
    ax_it.set_ylabel("loss (bits/char)")
    for ax in (ax_it, ax_time):
        ax.grid(True, alpha=0.3)
    ax_it.set_title("against iteration")
    ax_time.set_title("against time")
    ax_time.legend(fontsize=8)
    return fig


def write_curves(
    log_paths: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    names: Sequence[str] | None = None,
) -> None:
    """Plot the runs of log_paths (named by names, default each file's stem) into output (the
    format from its extension, e.g. .png, .svg, .pdf). ConfigError with the install hint when
    matplotlib is missing, or naming an unreadable log."""
    if names is not None and len(names) != len(log_paths):
        raise ConfigError(f"{len(names)} names given for {len(log_paths)} logs")
    _require_matplotlib()  # before reading the logs: the hint is the first thing to fix
    runs = [read_log(p, None if names is None else names[k]) for k, p in enumerate(log_paths)]
    fig = curves_figure(runs)
    try:
        fig.savefig(os.fspath(output))
    except OSError as exc:
        raise ConfigError(f"cannot write {os.fspath(output)}: {exc.strerror or exc}") from None
    except ValueError as exc:  # an extension matplotlib has no writer for
        raise ConfigError(f"cannot write {os.fspath(output)}: {exc}") from None
