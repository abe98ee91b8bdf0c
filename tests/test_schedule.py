"""Learning-rate schedules, warmup, early stopping: the pure functions, and every schedule
resumed exactly (2N iterations straight == N, stop, resume, N more, in float64)."""

import io
import json
import math
import os
import signal

import numpy as np
import pytest

from _checkpoints import rewrite_header
from fastrnn import checkpoint as ckpt
from fastrnn.config import default, resolve_config
from fastrnn.data import default_corpus
from fastrnn.errors import ConfigError
from fastrnn.optim import decayed_lr
from fastrnn.schedule import (
    COSINE_FINAL_FRACTION,
    SCHEDULES,
    LossWatch,
    cosine_factor,
    cosine_progress,
    learning_rate,
    warmup_factor,
)
from fastrnn.train import Trainer, best_path, train

TEXT = default_corpus()[:3000]
SMALL = dict(hidden_size=16, batch_size=4, seq_length=16, sample_every=0, dtype="float64")


# ---------------------------------------------------------------- the pure functions


def test_warmup_rises_linearly_to_the_base_rate():
    assert [warmup_factor(i, 4) for i in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0


def test_cosine_goes_from_one_to_the_final_fraction():
    assert cosine_factor(0.0) == 1.0
    assert cosine_factor(1.0) == pytest.approx(COSINE_FINAL_FRACTION)
    assert cosine_factor(0.5) == pytest.approx((1 + COSINE_FINAL_FRACTION) / 2)
    assert cosine_factor(2.0) == cosine_factor(1.0) and cosine_factor(-1.0) == 1.0
    values = [cosine_factor(p / 10) for p in range(11)]
    assert all(a > b for a, b in zip(values[:-1], values[1:], strict=True))


def test_cosine_progress_from_iterations_or_time():
    assert cosine_progress(10, 0, 40, 99.0, 5.0) == 0.25  # the iteration budget wins
    assert cosine_progress(30, 10, 50, 0.0, 0.0) == 0.5  # counted after the warmup
    assert cosine_progress(5, 10, 50, 0.0, 0.0) < 0  # still warming up: factor 1
    assert cosine_progress(10, 0, None, 30.0, 120.0) == 0.25  # only a time budget
    assert cosine_progress(10, 0, None, 30.0, 0.0) == 0.0


def test_learning_rate_of_each_schedule():
    base = 0.1
    assert learning_rate("constant", base, 500) == base
    for it in (0, 99, 100, 250, 1000):
        assert learning_rate("step", base, it, decay=0.5, decay_every=100) == decayed_lr(
            base, 0.5, 100, it
        )
    assert learning_rate("cosine", base, 7, progress=1.0) == pytest.approx(
        base * COSINE_FINAL_FRACTION
    )
    assert learning_rate("plateau", base, 7, plateau_scale=0.25) == base * 0.25
    assert learning_rate("cosine", base, 1, warmup_iters=4, progress=0.0) == base * 0.5
    with pytest.raises(ValueError, match="unknown learning-rate schedule"):
        learning_rate("linear", base, 0)


def test_loss_watch_counts_evaluations_without_improvement():
    watch = LossWatch()
    improved = [
        watch.observe(v, plateau_patience=2, decay=0.5)
        for v in (3.0, 2.5, 2.6, 2.7, 2.8, 2.4, 2.45)
    ]
    assert improved == [True, True, False, False, False, True, False]
    assert watch.best == 2.4 and watch.since_best == 1 and watch.since_change == 1
    assert watch.scale == 0.5  # one reduction, after 2.6 and 2.7
    assert LossWatch.from_dict(json.loads(json.dumps(watch.as_dict()))) == watch
    assert LossWatch.from_dict(None) == LossWatch()


def test_schedule_options_are_checked():
    assert resolve_config({"lr_decay": 0.5}).lr_schedule == "step"  # --lr-decay alone
    with pytest.raises(ConfigError, match="plateau needs --lr-decay < 1"):
        resolve_config({"lr_schedule": "plateau"})
    with pytest.raises(ConfigError, match="--lr-decay needs --lr-schedule step or plateau"):
        resolve_config({"lr_schedule": "constant", "lr_decay": 0.5})
    with pytest.raises(ConfigError, match="--patience watches the validation loss"):
        resolve_config({"patience": 3, "eval_every": 0})
    with pytest.raises(ConfigError, match="plateau watches the validation loss"):
        resolve_config({"lr_schedule": "plateau", "lr_decay": 0.5, "val_fraction": 0.0})
    with pytest.raises(ConfigError, match="cosine decays to the planned end of the run"):
        resolve_config({"lr_schedule": "cosine", "max_iters": 0})
    with pytest.raises(ConfigError, match="--lr-schedule must be one of"):
        resolve_config({"lr_schedule": "linear"})


# ---------------------------------------------------------------- in a run


def run(tmp_path, name, **options):
    return train(
        text=TEXT, out=io.StringIO(), **{**SMALL, "checkpoint": str(tmp_path / name), **options}
    )


def interrupted_at(monkeypatch, iteration):
    """Make the next run receive SIGINT right after the given iteration."""
    real = Trainer.train_step

    def step_then_signal(self):
        loss = real(self)
        if self.iteration == iteration:
            os.kill(os.getpid(), signal.SIGINT)
        return loss

    monkeypatch.setattr(Trainer, "train_step", step_then_signal)
    return lambda: monkeypatch.setattr(Trainer, "train_step", real)


def logged_rates(path):
    return [json.loads(line)["lr"] for line in path.read_text().splitlines()]


SCHEDULE_OPTIONS = {
    "constant": dict(warmup_iters=10),
    "step": dict(lr_decay=0.7, lr_decay_every=6, warmup_iters=5),
    "cosine": dict(warmup_iters=8),
    "plateau": dict(lr_decay=0.5, plateau_patience=1, learning_rate=0.05, init="uniform"),
}


@pytest.mark.slow
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_schedule_resumes_exactly(tmp_path, monkeypatch, schedule):
    N = 26  # not a multiple of eval_every: the stop adds an evaluation the straight run lacks
    opts = dict(
        lr_schedule=schedule,
        max_iters=2 * N,
        eval_every=4,
        sample_every=9,
        sample_length=10,
        **SCHEDULE_OPTIONS[schedule],
    )
    straight = run(tmp_path, "straight.npz", log=str(tmp_path / "straight.jsonl"), **opts)
    restore = interrupted_at(monkeypatch, N)
    first = run(tmp_path, "split.npz", **opts)
    restore()
    assert (first.stop_reason, first.iterations) == ("sigint", N)
    resumed = train(text=TEXT, resume=str(tmp_path / "split.npz"), out=io.StringIO())
    assert resumed.iterations == straight.iterations == 2 * N

    a = ckpt.load_checkpoint(tmp_path / "straight.npz")
    b = ckpt.load_checkpoint(tmp_path / "split.npz")
    for k in a.model.params:
        assert np.array_equal(a.model.params[k], b.model.params[k]), k
    for k in a.optimizer_state:
        assert np.array_equal(a.optimizer_state[k], b.optimizer_state[k]), k
    for key in ("iteration", "position", "rng_state", "optimizer", "loss_watch"):
        assert a.header[key] == b.header[key], key
    rates = logged_rates(tmp_path / "straight.jsonl")
    if schedule == "constant":  # the rate of the last update before each evaluation
        base = default("learning_rate")
        assert rates[:3] == pytest.approx([base * 0.4, base * 0.8, base])
        assert set(rates[2:]) == {base}
    else:
        assert len(set(rates)) > 3, rates  # the schedule moved the rate
    if schedule == "plateau":
        assert a.header["loss_watch"]["scale"] < 1


@pytest.mark.slow
def test_cosine_ends_near_its_final_fraction(tmp_path):
    run(
        tmp_path,
        "c.npz",
        lr_schedule="cosine",
        max_iters=40,
        eval_every=10,
        log=str(tmp_path / "c.jsonl"),
    )
    rates = logged_rates(tmp_path / "c.jsonl")
    base = default("learning_rate")
    assert rates[-1] == pytest.approx(base * cosine_factor(39 / 40), rel=1e-12)
    assert rates == sorted(rates, reverse=True)


@pytest.mark.slow
def test_training_time_is_stored_and_continued(tmp_path):
    run(tmp_path, "t.npz", max_iters=10, eval_every=5)
    stored = ckpt.load_checkpoint(tmp_path / "t.npz").header["train_seconds"]
    assert stored > 0
    trainer = Trainer({"resume": str(tmp_path / "t.npz")}, TEXT, io.StringIO())
    assert trainer.seconds_before == stored
    assert trainer.train_seconds() >= stored


@pytest.mark.slow
def test_time_limit_counts_the_whole_run(tmp_path, monkeypatch):
    restore = interrupted_at(monkeypatch, 3)
    run(tmp_path, "t.npz", time_limit=30.0, eval_every=0)
    restore()
    path = tmp_path / "t.npz"
    cut = ckpt.load_checkpoint(path)
    assert cut.header["iteration"] == 3

    def as_if_29_seconds(header):
        header["train_seconds"] = 29.95

    rewrite_header(path, as_if_29_seconds)
    result = train(text=TEXT, resume=str(path), out=io.StringIO())
    assert result.stop_reason == "time_limit" and result.wall_time < 5


@pytest.mark.slow
def test_patience_stops_and_keeps_the_best(tmp_path, monkeypatch):
    losses = iter([3.0, 2.9, 2.95, 2.91, 2.99, 2.8])
    monkeypatch.setattr(Trainer, "evaluate", lambda self: next(losses))
    result = run(tmp_path, "p.npz", patience=3, max_iters=1000, eval_every=5)
    assert result.stop_reason == "patience" and result.iterations == 25
    assert result.best_val_loss == 2.9
    assert ckpt.load_checkpoint(best_path(str(tmp_path / "p.npz"))).header["iteration"] == 10
    assert math.isfinite(result.train_loss)


def test_the_default_schedule_is_cosine_unless_the_run_has_no_planned_end():
    assert resolve_config({}).lr_schedule == "cosine"  # the default 300 s budget
    assert resolve_config({"max_iters": 50}).lr_schedule == "cosine"
    assert resolve_config({"time_limit": 0}).lr_schedule == "constant"  # no end to decay to
    assert resolve_config({"lr_decay": 0.5}).lr_schedule == "step"
    with pytest.raises(ConfigError, match="cosine decays to the planned end"):
        resolve_config({"lr_schedule": "cosine", "time_limit": 0})
