"""fastrnn.train as a library (no files, no output, clear option errors) and what a run
prints and logs: the smoothed training loss labelled as such, bits/char beside nats/char,
the best validation loss in the summary, the loss curves with --plot."""

import io
import json
import math
import sys
import types

import pytest

import fastrnn
from fastrnn import checkpoint as ckpt
from fastrnn import report
from fastrnn.cli import train_main
from fastrnn.data import default_corpus
from fastrnn.errors import ConfigError
from fastrnn.train import Trainer, best_path

pytestmark = pytest.mark.slow  # every test here trains

TEXT = default_corpus()[:3000]
SMALL = dict(hidden_size=16, batch_size=4, seq_length=16, sample_every=0, eval_every=5)


# ---------------------------------------------------------------- the library


def test_no_checkpoint_writes_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = fastrnn.train(text=TEXT, checkpoint=None, max_iters=12, out=io.StringIO(), **SMALL)
    assert result.iterations == 12 and result.checkpoint is None
    assert result.best_val_loss is not None and result.best_checkpoint is None
    assert list(tmp_path.iterdir()) == []


def test_quiet_prints_nothing(tmp_path, capsys):
    out = io.StringIO()
    fastrnn.train(
        text=TEXT, checkpoint=str(tmp_path / "r.npz"), quiet=True, max_iters=6, out=out, **SMALL
    )
    fastrnn.train(text=TEXT, checkpoint=str(tmp_path / "s.npz"), quiet=True, max_iters=6, **SMALL)
    captured = capsys.readouterr()
    assert out.getvalue() == "" and captured.out == "" and captured.err == ""


def test_the_cli_quiet_prints_the_summary_line_only(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    assert (
        train_main(
            [
                str(corpus),
                "--quiet",
                "--max-iters",
                "6",
                "--hidden-size",
                "16",
                "--checkpoint",
                str(tmp_path / "r.npz"),
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("done: 6 iterations")


@pytest.mark.parametrize(
    "wrong,right",
    [("max_iter", "max_iters"), ("learning_rte", "learning_rate"), ("hidden", "hidden_size")],
)
def test_a_misspelt_option_is_a_config_error_with_a_suggestion(wrong, right):
    with pytest.raises(
        ConfigError, match=f"unknown training option '{wrong}'; did you mean '{right}'"
    ):
        fastrnn.train(text=TEXT, out=io.StringIO(), **{wrong: 1})
    with pytest.raises(ConfigError, match="unknown training option 'zzz'$"):
        fastrnn.train(text=TEXT, out=io.StringIO(), zzz=1)


# ---------------------------------------------------------------- what a run prints and logs


def test_bits_per_char_in_log_and_output(tmp_path):
    log = tmp_path / "log.jsonl"
    out = io.StringIO()
    result = fastrnn.train(
        text=TEXT, out=out, checkpoint=str(tmp_path / "r.npz"), log=str(log), max_iters=10, **SMALL
    )
    records = [json.loads(line) for line in log.read_text().splitlines()]
    for r in records:
        assert r["train_bpc"] == pytest.approx(r["train_loss"] / math.log(2), rel=1e-12)
        assert r["val_bpc"] == pytest.approx(r["val_loss"] / math.log(2), rel=1e-12)
    text = out.getvalue()
    val = records[-1]["val_loss"]
    assert f"val {val:.4f} ({val / math.log(2):.3f} bits/char)" in text
    assert (
        f"val loss {result.val_loss:.4f} nats/char ({result.val_loss / math.log(2):.3f} "
        "bits/char)" in text
    )


def test_the_smoothed_loss_is_labelled_so_everywhere(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "PLAIN_PROGRESS_SECONDS", 0.0)  # a plain line per iteration
    out = io.StringIO()
    fastrnn.train(text=TEXT, out=out, checkpoint=str(tmp_path / "r.npz"), max_iters=10, **SMALL)
    lines = out.getvalue().splitlines()
    progress = [line for line in lines if line.startswith("iter ")]
    assert len(progress) >= 10
    assert all("smoothed train " in line for line in progress)
    assert not any(
        " loss " in line or " train " in line.replace("smoothed train", "") for line in progress
    )
    assert "smoothed train loss" in lines[-1]


def test_the_summary_gives_the_best_validation_loss(tmp_path, monkeypatch):
    losses = iter([3.0, 2.5, 2.7, 2.8])
    monkeypatch.setattr(Trainer, "evaluate", lambda self: next(losses))
    out = io.StringIO()
    path = str(tmp_path / "r.npz")
    result = fastrnn.train(text=TEXT, out=out, checkpoint=path, max_iters=20, **SMALL)
    assert (result.best_val_loss, result.best_iteration) == (2.5, 10)
    assert result.best_checkpoint == best_path(path)
    summary = out.getvalue().splitlines()[-1]
    assert (
        f"best val loss 2.5000 nats/char ({2.5 / math.log(2):.3f} bits/char) at "
        f"iteration 10 in {best_path(path)}" in summary
    )


# ---------------------------------------------------------------- --plot


def test_plot_without_matplotlib_refuses_at_start(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    hint = r"--plot needs matplotlib: pip install 'fastrnn\[plot\]'"
    with pytest.raises(ConfigError, match=hint):
        fastrnn.train(
            text=TEXT,
            out=io.StringIO(),
            checkpoint=str(tmp_path / "r.npz"),
            plot=True,
            max_iters=5,
            **SMALL,
        )
    assert not (tmp_path / "r.npz").exists()


def test_plot_draws_the_curves_after_each_evaluation(tmp_path, monkeypatch):
    calls = []
    fake_plot = types.ModuleType("fastrnn.plot")
    fake_plot.write_curves = lambda logs, output, names=None: calls.append((logs, output))
    monkeypatch.setitem(sys.modules, "matplotlib", types.ModuleType("matplotlib"))
    monkeypatch.setitem(sys.modules, "fastrnn.plot", fake_plot)
    monkeypatch.setattr(fastrnn, "plot", fake_plot, raising=False)
    fastrnn.train(
        text=TEXT,
        out=io.StringIO(),
        checkpoint=str(tmp_path / "run.npz"),
        plot=True,
        max_iters=12,
        **SMALL,
    )
    log, png = str(tmp_path / "run.jsonl"), str(tmp_path / "run.png")
    assert calls == [([log], png)] * 3  # iterations 5, 10 and the end at 12
    assert len((tmp_path / "run.jsonl").read_text().splitlines()) == 3
    with pytest.raises(ConfigError, match="--plot writes the curves beside the checkpoint"):
        fastrnn.train(text=TEXT, out=io.StringIO(), checkpoint=None, plot=True, **SMALL)


def test_quiet_and_overwrite_are_not_inherited_on_resume(tmp_path):
    path = tmp_path / "r.npz"
    fastrnn.train(
        text=TEXT,
        checkpoint=str(path),
        quiet=True,
        overwrite=True,
        max_iters=6,
        out=io.StringIO(),
        **SMALL,
    )
    out = io.StringIO()
    fastrnn.train(text=TEXT, resume=str(path), max_iters=2, out=out)
    assert "done: 8 iterations" in out.getvalue()
    config = ckpt.load_checkpoint(path).header["train_config"]
    assert config["quiet"] is False and config["overwrite"] is False


def test_plot_writes_the_picture_beside_the_checkpoint(tmp_path):
    pytest.importorskip("matplotlib")
    fastrnn.train(
        text=TEXT,
        out=io.StringIO(),
        checkpoint=str(tmp_path / "run.npz"),
        plot=True,
        max_iters=10,
        **SMALL,
    )
    png = tmp_path / "run.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((tmp_path / "run.jsonl").read_text().splitlines()) == 2
