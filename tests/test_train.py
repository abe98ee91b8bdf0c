"""Training: learning (synthetic corpus, 三字经), kernel/numpy agreement, exact resume,
fine-tuning, divergence, signals, checkpoints and logs."""

import io
import json
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest

import fastrnn
from fastrnn import checkpoint as ckpt
from fastrnn.config import DEFAULT_TIME_LIMIT, resolve_config
from fastrnn.data import default_corpus
from fastrnn.errors import CheckpointError, ConfigError, CorpusError, DivergedError
from fastrnn.sample import sample
from fastrnn.train import Trainer, best_path, train

# Every test here trains, however briefly.
pytestmark = pytest.mark.slow

SANZIJING = Path(__file__).resolve().parents[2] / "shared" / "data" / "sanzijing.txt"
TEXT = default_corpus()[:12_000]
SHORT = TEXT[:2500]  # about 37 chunks per epoch at SMALL: short runs cross epoch ends
SMALL = dict(
    hidden_size=24,
    batch_size=4,
    seq_length=16,
    sample_every=0,
    eval_every=0,
    lr_schedule="constant",
)  # a rate independent of the budget and the clock


def run(tmp_path, name="run.npz", text=TEXT, **options):
    options = {**SMALL, "checkpoint": str(tmp_path / name), **options}
    return train(text=text, out=io.StringIO(), **options)


def rigid_corpus(units: int, seed: int = 0) -> str:
    """'abc,def.' repeated with random letters: punctuation is fully predictable."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdef"))
    return "".join(
        "".join(rng.choice(letters, 3)) + "," + "".join(rng.choice(letters, 3)) + "."
        for _ in range(units)
    )


# ---------------------------------------------------------------- proof of learning


def test_learns_a_rigid_structure(tmp_path):
    text = rigid_corpus(2500)
    result = run(
        tmp_path,
        text=text,
        hidden_size=32,
        batch_size=16,
        seq_length=32,
        learning_rate=1e-2,
        max_iters=300,
        eval_every=100,
    )
    assert result.val_loss < 1.6  # the floor is 6 of 8 chars at ln 6 = 1.34 nats/char
    generated = sample(result.model, result.vocab, 800, prime=text[:8], seed=1)
    units = generated.split(".")[:-1]
    good = sum(bool(re.fullmatch(r"[a-f]{3},[a-f]{3}", u)) for u in units)
    assert len(units) >= 90 and good / len(units) >= 0.95


@pytest.mark.skipif(not SANZIJING.exists(), reason="../shared/data/sanzijing.txt is absent")
def test_sanzijing_three_character_rhythm(tmp_path):
    text = SANZIJING.read_text(encoding="utf-8")
    result = run(
        tmp_path,
        text=text,
        hidden_size=64,
        batch_size=4,
        seq_length=32,
        val_fraction=0.0,
        learning_rate=1e-2,
        max_iters=400,
    )
    generated = sample(result.model, result.vocab, 600, seed=1)
    clauses = [c for c in re.split(r"[，。？\n]", generated) if c]
    assert len(clauses) >= 50
    assert sum(len(c) == 3 for c in clauses) / len(clauses) >= 0.75


def test_kernel_and_numpy_backends_follow_the_same_trajectory(tmp_path):
    losses, params = {}, {}
    for backend in ("kernel", "numpy"):
        trainer = Trainer(
            {
                **SMALL,
                "dtype": "float64",
                "backend": backend,
                "checkpoint": str(tmp_path / "x.npz"),
            },
            SHORT,
            io.StringIO(),
        )
        assert trainer.batches.chunks_per_epoch < 50  # the 50 iterations cross an epoch end
        losses[backend] = [trainer.train_step() for _ in range(50)]
        params[backend] = trainer.model.params
    np.testing.assert_allclose(losses["kernel"], losses["numpy"], rtol=1e-9)
    for k in params["kernel"]:
        np.testing.assert_allclose(params["kernel"][k], params["numpy"][k], rtol=1e-7, atol=1e-9)
    # It learns: the head starts at the unigram frequencies, and 50 steps go below them.
    assert losses["kernel"][-1] < losses["kernel"][0] - 0.05


# ---------------------------------------------------------------- resume and fine-tuning


def test_resume_is_bit_exact(tmp_path):
    opts = dict(
        text=SHORT,
        dtype="float64",
        eval_every=7,
        sample_every=5,
        sample_length=20,
        lr_schedule="constant",
    )
    straight = run(tmp_path, "straight.npz", max_iters=60, **opts)
    first = run(tmp_path, "split.npz", max_iters=30, **opts)
    assert first.iterations == 30 and straight.iterations == 60
    resumed = train(
        text=SHORT, resume=str(tmp_path / "split.npz"), max_iters=30, out=io.StringIO()
    )  # 30 more
    assert resumed.iterations == 60
    assert ckpt.load_checkpoint(tmp_path / "split.npz").header["position"]["epoch"] == 1
    a = ckpt.load_checkpoint(tmp_path / "straight.npz")
    b = ckpt.load_checkpoint(tmp_path / "split.npz")
    for k in a.model.params:
        assert np.array_equal(a.model.params[k], b.model.params[k]), k
    for k in a.optimizer_state:
        assert np.array_equal(a.optimizer_state[k], b.optimizer_state[k]), k
    assert np.array_equal(a.hidden, b.hidden)
    for key in ("iteration", "position", "rng_state", "optimizer"):
        assert a.header[key] == b.header[key], key


def test_resume_keeps_writing_the_resumed_file(tmp_path):
    run(tmp_path, "first.npz", max_iters=3)
    os.rename(tmp_path / "first.npz", tmp_path / "moved.npz")
    train(text=TEXT, resume=str(tmp_path / "moved.npz"), max_iters=2, out=io.StringIO())
    assert ckpt.load_checkpoint(tmp_path / "moved.npz").header["iteration"] == 5
    assert not (tmp_path / "first.npz").exists()


def test_resume_refuses_to_change_the_run(tmp_path):
    run(tmp_path, max_iters=3)
    with pytest.raises(ConfigError, match="--batch-size cannot change on --resume"):
        train(text=TEXT, resume=str(tmp_path / "run.npz"), batch_size=8, out=io.StringIO())


def test_resume_with_characters_outside_the_vocabulary(tmp_path):
    run(tmp_path, max_iters=3)
    with pytest.raises(CorpusError, match="outside the vocabulary.*'☃'"):
        train(text=TEXT + "☃", resume=str(tmp_path / "run.npz"), out=io.StringIO())


def test_init_from_fine_tunes_on_new_text(tmp_path):
    base = run(tmp_path, "base.npz", max_iters=20)
    new_text = TEXT[6000:] * 2
    tuned = run(
        tmp_path,
        "tuned.npz",
        text=new_text,
        init_from=str(tmp_path / "base.npz"),
        max_iters=5,
        learning_rate=1e-3,
    )
    assert tuned.iterations == 5 and tuned.vocab == base.vocab
    loaded = ckpt.load_checkpoint(tmp_path / "tuned.npz")
    assert loaded.header["train_config"]["init_from"] == str(tmp_path / "base.npz")
    assert not np.array_equal(loaded.model.params["Whh"], base.model.params["Whh"])
    start = ckpt.load_checkpoint(tmp_path / "base.npz").model.params["Whh"]
    assert np.abs(loaded.model.params["Whh"] - start).max() < 0.05  # started from, not afresh


def test_init_from_rejects_new_characters_and_other_sizes(tmp_path):
    run(tmp_path, "base.npz", max_iters=2)
    with pytest.raises(CorpusError, match="'Ω'"):
        run(tmp_path, "t.npz", text=TEXT + "Ω", init_from=str(tmp_path / "base.npz"))
    with pytest.raises(ConfigError, match="--hidden-size 50 contradicts"):
        run(tmp_path, "t.npz", init_from=str(tmp_path / "base.npz"), hidden_size=50)


# ---------------------------------------------------------------- stopping


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real = fastrnn.CharRNN.loss_and_grads
    calls = []

    def diverging(self, *args, **kwargs):
        loss, grads, h = real(self, *args, **kwargs)
        calls.append(1)
        return (float("nan") if len(calls) == 13 else loss), grads, h

    monkeypatch.setattr(fastrnn.CharRNN, "loss_and_grads", diverging)
    with pytest.raises(DivergedError, match=r"nan at iteration 13.*run.npz \(iteration 10\)"):
        run(tmp_path, max_iters=40, eval_every=5)
    assert ckpt.load_checkpoint(tmp_path / "run.npz").header["iteration"] == 10


@pytest.mark.parametrize(
    "sig,reason,status", [(signal.SIGINT, "sigint", 130), (signal.SIGTERM, "sigterm", 143)]
)
def test_signal_finishes_the_iteration_and_saves(tmp_path, monkeypatch, sig, reason, status):
    real = Trainer.train_step

    def step_then_signal(self):
        loss = real(self)
        if self.iteration == 5:
            os.kill(os.getpid(), sig)
        return loss

    monkeypatch.setattr(Trainer, "train_step", step_then_signal)
    before = signal.getsignal(sig)
    result = run(tmp_path, max_iters=1000)
    assert (result.stop_reason, result.exit_status, result.iterations) == (reason, status, 5)
    assert ckpt.load_checkpoint(tmp_path / "run.npz").header["iteration"] == 5
    assert signal.getsignal(sig) is before


def test_time_limit_and_epoch_limit(tmp_path):
    assert run(tmp_path, time_limit=0.2).stop_reason == "time_limit"
    result = run(tmp_path, "epochs.npz", max_epochs=1.5)
    chunks = Trainer(
        {**SMALL, "checkpoint": str(tmp_path / "x")}, TEXT, io.StringIO()
    ).batches.chunks_per_epoch
    assert (result.stop_reason, result.iterations) == ("max_epochs", int(np.ceil(1.5 * chunks)))


def test_a_run_without_limits_gets_the_default_epochs():
    assert resolve_config({}).time_limit == DEFAULT_TIME_LIMIT
    assert resolve_config({"max_iters": 10}).max_epochs == 0


def test_hidden_state_is_carried_and_reset_at_epoch_start(tmp_path, monkeypatch):
    real = fastrnn.CharRNN.loss_and_grads
    h0_norms = []

    def spy(self, inputs, targets, h0, **kwargs):
        h0_norms.append(float(np.abs(h0).sum()))
        return real(self, inputs, targets, h0, **kwargs)

    monkeypatch.setattr(fastrnn.CharRNN, "loss_and_grads", spy)
    trainer = Trainer({**SMALL, "checkpoint": str(tmp_path / "x")}, TEXT, io.StringIO())
    n = trainer.batches.chunks_per_epoch
    for _ in range(n + 2):
        trainer.train_step()
    assert h0_norms[0] == 0 and h0_norms[n] == 0
    assert all(v > 0 for v in h0_norms[1:n] + h0_norms[n + 1 :])


# ---------------------------------------------------------------- checkpoints and log


def test_checkpoints_best_and_log(tmp_path):
    log = tmp_path / "log.jsonl"
    result = run(tmp_path, max_iters=30, eval_every=10, log=str(log))
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["iteration"] for r in records] == [10, 20, 30]
    assert {"train_loss", "val_loss", "chars_per_sec", "epoch"} <= set(records[0])
    best = ckpt.load_checkpoint(best_path(str(tmp_path / "run.npz")))
    assert best.header["val_loss"] == min(r["val_loss"] for r in records) == result.best_val_loss
    assert ckpt.load_checkpoint(tmp_path / "run.npz").header["iteration"] == 30


def test_unwritable_checkpoint_directory_fails_before_training(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="cannot write checkpoint .*: Not a directory"):
        run(tmp_path, "file/run.npz", max_iters=5)


def test_full_disk_mid_run_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    real = ckpt._write_arrays
    writes = []

    def fill_up(f, arrays):
        writes.append(1)
        if len(writes) > 2:  # run.npz and run.best.npz at iteration 5, then the disk is full
            raise OSError(28, "No space left on device")
        real(f, arrays)

    monkeypatch.setattr(ckpt, "_write_arrays", fill_up)
    with pytest.raises(CheckpointError, match="No space left on device"):
        run(tmp_path, max_iters=20, eval_every=5)
    assert ckpt.load_checkpoint(tmp_path / "run.npz").header["iteration"] == 5
    assert sorted(os.listdir(tmp_path)) == ["run.best.npz", "run.npz"]


def test_start_block_and_summary(tmp_path):
    out = io.StringIO()
    train(text=TEXT, out=out, checkpoint=str(tmp_path / "r.npz"), max_iters=4, **SMALL)
    text = out.getvalue()
    for words in (
        "12,000 characters",
        "parameters",
        "chars/epoch",
        "4 iterations",
        "float32",
        "backend kernel",
        "BLAS",
        "thread",
    ):
        assert words in text, words
    assert re.search(
        r"done: 4 iterations, .* chars/s; smoothed train loss .*; "
        r"checkpoint .*r\.npz",
        text,
    )


def test_nan_validation_loss_is_never_saved(tmp_path, monkeypatch):
    real = fastrnn.CharRNN.loss

    def nan_loss(self, *args, **kwargs):  # the forward-only path, used for validation
        _, h = real(self, *args, **kwargs)
        return float("nan"), h

    monkeypatch.setattr(fastrnn.CharRNN, "loss", nan_loss)
    with pytest.raises(DivergedError, match="validation loss became nan at iteration 5"):
        run(tmp_path, max_iters=20, eval_every=5)
    assert not (tmp_path / "run.npz").exists()


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_on_a_terminal(tmp_path):
    out = FakeTerminal()
    train(
        text=TEXT,
        out=out,
        checkpoint=str(tmp_path / "r.npz"),
        **{**SMALL, "max_iters": 30, "eval_every": 10},
    )
    text = out.getvalue()
    assert "\r" in text and "30/30" in text and "chars/s" in text and "epoch" in text
    assert "val " in text and "done: 30 iterations" in text


def test_resume_from_a_model_only_checkpoint(tmp_path):
    from fastrnn.data import Vocabulary

    vocab = Vocabulary.from_text(TEXT)
    model = fastrnn.CharRNN(vocab.size, SMALL["hidden_size"], dtype=np.float32)
    ckpt.save_checkpoint(tmp_path / "bare.npz", model, vocab, {})
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        train(text=TEXT, resume=str(tmp_path / "bare.npz"), out=io.StringIO())


# ------------------------------------------------------------------ stacked models


@pytest.mark.parametrize("cell,L,dropout", [("lstm", 2, 0.3), ("gru", 1, 0.0)])
def test_train_and_sample_other_cells(tmp_path, cell, L, dropout):
    """fastrnn.train with model/num_layers/dropout; the checkpoint records them and sampling
    needs nothing else; the loss goes down."""
    text = "the quick brown fox jumps over the lazy dog. " * 40
    ck = str(tmp_path / "m.npz")
    result = fastrnn.train(
        text=text,
        model=cell,
        num_layers=L,
        dropout=dropout,
        hidden_size=16,
        batch_size=4,
        seq_length=16,
        max_iters=60,
        eval_every=0,
        sample_every=0,
        checkpoint=ck,
        quiet=True,
        out=io.StringIO(),
        handle_signals=False,
    )
    model, vocab = fastrnn.load_model(ck)
    assert (model.cell, model.num_layers, model.dropout) == (cell, L, dropout)
    assert result.train_loss < np.log(vocab.size)
    text_out = fastrnn.sample(model, vocab, length=20, seed=1)
    assert len(text_out) == 20 and set(text_out) <= set(vocab.chars)
