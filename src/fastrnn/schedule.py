"""Learning-rate schedules and the watch on the validation loss, as pure functions of the
run's counters, so a resumed run (which restores the counters) follows the same rates.

    lr = base * warmup_factor(iteration) * schedule factor

  constant  1
  step      decay ** (iteration // decay_every)
  cosine    FINAL + (1 - FINAL) * (1 + cos(pi * progress)) / 2, progress in [0, 1] being the
            fraction of the planned run done after warmup (from the iteration budget, or
            else the time budget)
  plateau   the product of the reductions so far: the rate is multiplied by decay each time
            the validation loss has not improved for plateau_patience evaluations

``iteration`` is the number of updates already taken, so the first update (iteration 0) of a
warmup of W iterations uses base / W and update W - 1 the full base rate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from .optim import decayed_lr

SCHEDULES = ("constant", "step", "cosine", "plateau")
# The cosine schedule ends at this fraction of the base rate rather than at 0, so that the last
# iterations of a run still learn (a common choice for language models).
COSINE_FINAL_FRACTION = 0.1


def warmup_factor(iteration: int, warmup_iters: int) -> float:
    """(iteration + 1) / warmup_iters during the warmup, then 1."""
    if warmup_iters <= 0 or iteration >= warmup_iters:
        return 1.0
    return (iteration + 1) / warmup_iters


def cosine_factor(progress: float, final: float = COSINE_FINAL_FRACTION) -> float:
    """final + (1 - final) * (1 + cos(pi * p)) / 2 with p = progress clipped to [0, 1]:
    1 at the start, final at the end."""
    p = min(max(progress, 0.0), 1.0)
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * p))


def cosine_progress(
    iteration: int,
    warmup_iters: int,
    planned_iterations: int | None,
    train_seconds: float,
    time_limit: float,
) -> float:
    """The fraction of the planned run done, for the cosine schedule: from the iteration budget
    when there is one, (iteration - warmup) / (planned - warmup); else from the time budget,
    train_seconds / time_limit; 0 when the run has neither."""
    if planned_iterations is not None:
        span = planned_iterations - warmup_iters
        return (iteration - warmup_iters) / span if span > 0 else 1.0
    if time_limit > 0:
        return train_seconds / time_limit
    return 0.0


def learning_rate(
    schedule: str,
    base: float,
    iteration: int,
    *,
    warmup_iters: int = 0,
    decay: float = 1.0,
    decay_every: int = 1,
    progress: float = 0.0,
    plateau_scale: float = 1.0,
) -> float:
    """The rate of the update after ``iteration`` updates (see the module docstring)."""
    if schedule == "constant":
        rate = base
    elif schedule == "step":
        rate = decayed_lr(base, decay, decay_every, iteration)
    elif schedule == "cosine":
        rate = base * cosine_factor(progress)
    elif schedule == "plateau":
        rate = base * plateau_scale
    else:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; one of {SCHEDULES}")
    return rate * warmup_factor(iteration, warmup_iters)


@dataclass
class LossWatch:
    """The validation losses seen so far, as early stopping and the plateau schedule need them.

    best: lowest loss seen; since_best: evaluations since it (early stopping compares it with
    --patience); since_change: evaluations since the best or the last reduction of the rate
    (the plateau schedule compares it with --plateau-patience); scale: the product of the
    reductions. Stored in checkpoints (as_dict / from_dict).
    """

    best: float | None = None
    since_best: int = 0
    since_change: int = 0
    scale: float = 1.0

    def observe(self, loss: float, plateau_patience: int = 0, decay: float = 1.0) -> bool:
        """Count one evaluation; with plateau_patience > 0, multiply scale by decay after that
        many evaluations without improvement. Returns whether loss is a new best."""
        if self.best is None or loss < self.best:
            self.best, self.since_best, self.since_change = loss, 0, 0
            return True
        self.since_best += 1
        self.since_change += 1
        if plateau_patience > 0 and self.since_change >= plateau_patience:
            self.scale *= decay
            self.since_change = 0
        return False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> LossWatch:
        """The watch stored by as_dict; a fresh one for checkpoints without it."""
        return cls(**data) if data else cls()
