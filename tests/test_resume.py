"""Resume as people mean it: a new budget extends a run from the resume point, a finished run
says so instead of pretending to train, the corpus is found from anywhere, and texts with
characters outside the vocabulary can be used by dropping them."""

import io
import os

import numpy as np
import pytest

import fastrnn
from fastrnn import checkpoint as ckpt
from fastrnn.cli import train_main
from fastrnn.data import default_corpus
from fastrnn.errors import CorpusError
from fastrnn.train import Trainer

pytestmark = pytest.mark.slow  # every test here trains

TEXT = default_corpus()[:3000]
SMALL = dict(hidden_size=16, batch_size=4, seq_length=16, sample_every=0, eval_every=5)
FLAGS = [
    "--hidden-size",
    "16",
    "--batch-size",
    "4",
    "--seq-length",
    "16",
    "--sample-every",
    "0",
    "--eval-every",
    "5",
]


def run(tmp_path, name="run.npz", text=TEXT, **options):
    return fastrnn.train(
        text=text, out=io.StringIO(), **{**SMALL, "checkpoint": str(tmp_path / name), **options}
    )


def resume(path, text=TEXT, **options):
    out = io.StringIO()
    result = fastrnn.train(text=text, resume=str(path), out=out, **options)
    return result, out.getvalue()


# ---------------------------------------------------------------- a budget counts from here


def test_resume_of_a_finished_run_says_it_is_complete_and_writes_nothing(tmp_path):
    run(tmp_path, max_iters=10)
    path = tmp_path / "run.npz"
    before = path.read_bytes()
    result, out = resume(path)
    assert result.stop_reason == "complete" and result.exit_status == 0
    assert result.iterations == 10 and result.wall_time == 0.0
    assert "the run is complete (--max-iters reached at iteration 10)" in out
    assert f"fastrnn-train --resume {path} --max-iters N" in out
    assert "chars/s" not in out and "iter " not in out
    assert path.read_bytes() == before


def test_cli_resume_of_a_finished_run_exits_0_with_the_way_to_extend_it(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    path = tmp_path / "run.npz"
    assert train_main([str(corpus), *FLAGS, "--max-epochs", "0.5", "--checkpoint", str(path)]) == 0
    capsys.readouterr()
    assert train_main(["--resume", str(path)]) == 0
    out = capsys.readouterr().out
    assert "--max-epochs reached" in out and "--max-iters N (or --max-epochs E" in out


@pytest.mark.parametrize("budget,more", [({"max_iters": 7}, 7), ({"max_epochs": 0.5}, None)])
def test_a_new_budget_extends_the_run_from_the_resume_point(tmp_path, budget, more):
    first = run(tmp_path, max_iters=12)
    chunks = Trainer({**SMALL, "checkpoint": None}, TEXT, io.StringIO()).batches.chunks_per_epoch
    more = more if more is not None else int(np.ceil(0.5 * chunks))
    result, _ = resume(tmp_path / "run.npz", **budget)
    assert result.iterations == first.iterations + more
    result, _ = resume(tmp_path / "run.npz")  # the extended run is complete in turn
    assert result.stop_reason == "complete"


def test_a_new_time_limit_counts_from_the_resume_point(tmp_path):
    run(tmp_path, max_iters=10)
    before = ckpt.load_checkpoint(tmp_path / "run.npz").header["train_seconds"]
    result, _ = resume(tmp_path / "run.npz", time_limit=0.3)
    assert result.stop_reason == "time_limit" and result.iterations > 10
    header = ckpt.load_checkpoint(tmp_path / "run.npz").header
    assert header["train_config"]["time_limit"] == pytest.approx(before + 0.3)
    assert header["train_config"]["max_iters"] == 0  # the old run's limit is not a cap
    assert header["train_seconds"] >= before + 0.3


def test_a_run_stopped_early_can_be_extended(tmp_path, monkeypatch):
    losses = iter([3.0, 3.1, 3.2] + [2.0 - i / 100 for i in range(100)])
    monkeypatch.setattr(Trainer, "evaluate", lambda self: next(losses))
    first = run(tmp_path, patience=2, max_iters=1000)
    assert first.stop_reason == "patience" and first.iterations == 15
    assert resume(tmp_path / "run.npz")[0].stop_reason == "complete"
    result, _ = resume(tmp_path / "run.npz", max_iters=10)
    assert result.stop_reason == "max_iters" and result.iterations == 25


# ---------------------------------------------------------------- the corpus from anywhere


def train_file_run(tmp_path, monkeypatch, corpus_dir):
    """A CLI run on a corpus given by a relative path, from corpus_dir's parent."""
    corpus_dir.mkdir(exist_ok=True)
    (corpus_dir / "text.txt").write_text(TEXT, encoding="utf-8")
    monkeypatch.chdir(corpus_dir.parent)
    path = tmp_path / "runs" / "run.npz"
    path.parent.mkdir(exist_ok=True)
    assert (
        train_main(
            [f"{corpus_dir.name}/text.txt", *FLAGS, "--max-iters", "6", "--checkpoint", str(path)]
        )
        == 0
    )
    return path


def test_the_corpus_path_is_stored_absolute(tmp_path, monkeypatch, capsys):
    path = train_file_run(tmp_path, monkeypatch, tmp_path / "data")
    stored = ckpt.load_checkpoint(path).header["train_config"]["corpus"]
    assert stored == str(tmp_path / "data" / "text.txt")
    monkeypatch.chdir(tmp_path / "runs")  # resume from elsewhere
    assert train_main(["--resume", str(path), "--max-iters", "2"]) == 0
    assert ckpt.load_checkpoint(path).header["iteration"] == 8


def test_the_corpus_is_looked_for_beside_the_checkpoint(tmp_path, monkeypatch, capsys):
    path = train_file_run(tmp_path, monkeypatch, tmp_path / "data")
    os.rename(tmp_path / "data" / "text.txt", tmp_path / "runs" / "text.txt")
    assert train_main(["--resume", str(path), "--max-iters", "2"]) == 0
    header = ckpt.load_checkpoint(path).header
    assert header["iteration"] == 8
    assert header["train_config"]["corpus"] == str(tmp_path / "runs" / "text.txt")


def test_a_missing_corpus_names_the_stored_path_and_text_file(tmp_path, monkeypatch, capsys):
    path = train_file_run(tmp_path, monkeypatch, tmp_path / "data")
    os.remove(tmp_path / "data" / "text.txt")
    with pytest.raises(CorpusError) as info:
        fastrnn.train(resume=str(path), max_iters=2, out=io.StringIO())
    message = str(info.value)
    assert str(tmp_path / "data" / "text.txt") in message and "TEXT_FILE" in message
    assert f"fastrnn-train TEXT_FILE --resume {path}" in message


# ---------------------------------------------------------------- characters outside the vocabulary


def test_init_from_drops_unknown_characters_when_asked(tmp_path):
    run(tmp_path, "base.npz", max_iters=2)
    extra = TEXT[:1500] + "ΩΩ☃" + TEXT[1500:] + "Ω"
    with pytest.raises(CorpusError, match="outside the vocabulary.*--unknown-chars drop"):
        run(tmp_path, "t.npz", text=extra, init_from=str(tmp_path / "base.npz"))
    out = io.StringIO()
    result = fastrnn.train(
        text=extra,
        out=out,
        init_from=str(tmp_path / "base.npz"),
        unknown_chars="drop",
        max_iters=3,
        **{**SMALL, "checkpoint": str(tmp_path / "t.npz")},
    )
    assert result.iterations == 3
    assert "dropped 4 occurrences of 2 characters outside the vocabulary" in out.getvalue()
    assert ckpt.load_checkpoint(tmp_path / "t.npz").header["corpus_chars"] == len(TEXT)


def test_a_relative_log_path_is_kept_on_resume_from_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run(tmp_path, max_iters=5, log="run.jsonl")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    resume(tmp_path / "run.npz", max_iters=5)
    lines = (tmp_path / "run.jsonl").read_text().splitlines()
    assert len(lines) == 2 and not (tmp_path / "elsewhere" / "run.jsonl").exists()
