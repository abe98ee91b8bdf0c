"""--threads 0, the default: the threads a run chooses from its model and the cores it may
use (train.auto_threads), and that the trainer runs with them."""

from __future__ import annotations

import contextlib
import importlib
import io

import pytest

from fastrnn.cli import train_parser
from fastrnn.config import TrainConfig
from fastrnn.errors import ConfigError
from fastrnn.model import _kernel
from fastrnn.train import (
    AUTO_THREAD_MADDS,
    SHARED_STEP_MADDS,
    Trainer,
    auto_threads,
    step_threads,
    usable_cores,
)

train_module = importlib.import_module("fastrnn.train")  # the module, not fastrnn.train()
TEXT = "the cat sat on the mat; the dog sat on the log.\n" * 40


@pytest.mark.parametrize(
    "B,G,H,cores,expected",
    [
        (1, 1, 100, 2, 1),  # the classic rnn: one stream
        (32, 1, 100, 2, 1),  # M: steps too short to share
        (32, 3, 100, 2, 1),  # GRU at H = 100: under SHARED_STEP_MADDS
        (32, 4, 100, 2, 2),  # LSTM at H = 100: shared, 1.4x faster on two cores
        (32, 1, 256, 2, 2),  # rnn 256
        (32, 4, 256, 2, 2),  # the default LSTM
        (32, 4, 256, 1, 1),  # one core
        (32, 4, 256, 64, 16),  # one thread per AUTO_THREAD_MADDS
        (32, 4, 512, 4, 4),
    ],
)
def test_threads_follow_the_step_and_the_cores(B, G, H, cores, expected):
    assert auto_threads(B, G, H, processes=1, cores=cores) == expected


def test_a_thread_has_at_least_auto_thread_madds():
    for B, G, H in [(32, 4, 256), (64, 3, 512), (8, 1, 700), (32, 4, 100)]:
        n = auto_threads(B, G, H, processes=1, cores=1000)
        assert n == 1 or B * G * H * H // n >= AUTO_THREAD_MADDS


def test_more_than_one_thread_only_where_the_kernel_shares_the_recurrence():
    for B, G, H in [(32, 1, 100), (32, 3, 100), (32, 1, 181), (32, 4, 100), (1, 4, 512)]:
        n = auto_threads(B, G, H, processes=1, cores=2)
        assert (n > 1) == (B * G * H * H >= SHARED_STEP_MADDS), (B, G, H, n)
        assert n == step_threads(2, B, G, H), (B, G, H)


def test_mpi_processes_get_one_thread_each():
    assert auto_threads(32, 4, 512, processes=2, cores=64) == 1


def test_usable_cores_is_positive():
    assert usable_cores() >= 1


def one_iteration(tmp_path, **options) -> dict:
    """Options of a one-iteration rnn run without evaluation or samples, plus `options`."""
    base = dict(
        cell="rnn",
        num_layers=1,
        embedding_size=0,
        seq_length=4,
        max_iters=1,
        eval_every=0,
        sample_every=0,
        checkpoint=str(tmp_path / "run.npz"),
    )
    return base | options


@pytest.mark.parametrize("given,cores,expected", [(0, 2, 2), (0, 1, 1), (3, 2, 3), (1, 8, 1)])
def test_the_trainer_runs_with_the_chosen_threads(monkeypatch, tmp_path, given, cores, expected):
    monkeypatch.setattr(train_module, "usable_cores", lambda: cores)
    used = []

    @contextlib.contextmanager
    def record(threads: int):
        used.append(threads)
        yield

    monkeypatch.setattr(train_module, "limit_threads", record)
    options = one_iteration(tmp_path, hidden_size=256, batch_size=32, threads=given, quiet=True)
    trainer = Trainer(options, TEXT, io.StringIO())
    assert trainer.threads == expected
    trainer.run(handle_signals=False)
    assert used == [expected]


@pytest.mark.parametrize(
    "threads,B,G,H,expected",
    [
        (2, 32, 1, 100, 1),  # M: the recurrence stays on one thread, so does the step
        (2, 1, 1, 100, 1),  # the classic rnn
        (2, 32, 4, 100, 2),  # LSTM at H = 100: 1.28 million multiply-adds, shared
        (4, 32, 1, 512, 4),
        (1, 32, 4, 512, 1),
    ],
)
def test_a_given_count_is_the_most_a_run_uses(threads, B, G, H, expected):
    assert step_threads(threads, B, G, H) == expected


@pytest.mark.parametrize("B,G,H", [(32, 1, 181), (32, 1, 182), (8, 4, 181), (8, 4, 182)])
def test_a_step_uses_threads_where_the_kernel_shares_its_recurrence(B, G, H):
    """step_threads' threshold is the kernel's: around B*G*H*H = SHARED_STEP_MADDS."""
    before = _kernel.set_recurrent_threads(2)
    try:
        shared = _kernel.recurrence_threads_for(B, H, G * H, "float32") > 1
    finally:
        _kernel.set_recurrent_threads(before)
    assert (B * G * H * H >= SHARED_STEP_MADDS) == shared
    assert step_threads(2, B, G, H) == (2 if shared else 1)


def test_a_run_says_when_it_uses_fewer_threads_than_given(tmp_path):
    out = io.StringIO()
    trainer = Trainer(one_iteration(tmp_path, hidden_size=64, batch_size=8, threads=2), TEXT, out)
    assert trainer.threads == 1
    assert "--threads 2" in out.getvalue() and "1 thread" in out.getvalue()


def test_threads_must_not_be_negative():
    assert TrainConfig().threads == 0
    with pytest.raises(ConfigError, match="threads"):
        TrainConfig(threads=-1).validate()
    assert train_parser().parse_args(["--threads", "0"]).threads == 0
    with pytest.raises(SystemExit):
        train_parser().parse_args(["--threads", "-2"])
