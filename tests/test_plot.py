"""Loss curves: the figure's lines hold the log's values in bits/char, the PNG is written, and a
missing matplotlib gives the install hint."""

import builtins
import json
import math

import pytest

from fastrnn.cli import plot_main
from fastrnn.errors import ConfigError
from fastrnn.plot import curves_figure, read_log, write_curves

pytest.importorskip("matplotlib")


def write_log(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


RUN_A = [
    {
        "iteration": 100 * k,
        "elapsed": 1.5 * k,
        "train_loss": 3.0 - 0.1 * k,
        "val_loss": None if k == 1 else 3.1 - 0.1 * k,
        "chars_per_sec": 1000.0,
    }
    for k in range(1, 6)
]
RUN_B = [
    {
        "iteration": 50 * k,
        "elapsed": 0.5 * k,
        "train_loss": 2.0,
        "train_bpc": 2.5 + k,
        "val_loss": 2.0,
        "val_bpc": 2.7 + k,
    }
    for k in range(1, 4)
]


def line_data(fig):
    """{(panel, label): (xs, ys)} of every line of the figure."""
    out = {}
    for panel, ax in enumerate(fig.axes):
        for line in ax.get_lines():
            out[(panel, line.get_label())] = (list(line.get_xdata()), list(line.get_ydata()))
    return out


def test_lines_hold_the_logs_values_in_bits(tmp_path):
    a = write_log(tmp_path / "lstm-run.jsonl", RUN_A)
    b = write_log(tmp_path / "b.jsonl", RUN_B)
    lines = line_data(curves_figure([read_log(a), read_log(b, "other")]))
    assert len(lines) == 8
    xs, ys = lines[(0, "lstm-run train")]
    assert xs == [r["iteration"] for r in RUN_A]
    assert ys == pytest.approx([r["train_loss"] / math.log(2) for r in RUN_A], rel=1e-12)
    xs, ys = lines[(1, "lstm-run validation")]  # the record without validation is left out
    assert xs == [r["elapsed"] for r in RUN_A[1:]]
    assert ys == pytest.approx([r["val_loss"] / math.log(2) for r in RUN_A[1:]], rel=1e-12)
    # bits/char recorded by the trainer are taken as they are
    assert lines[(0, "other validation")][1] == pytest.approx([r["val_bpc"] for r in RUN_B])
    assert lines[(1, "other train")] == ([0.5, 1.0, 1.5], pytest.approx([3.5, 4.5, 5.5]))


def test_png_written_by_the_cli(tmp_path, capsys):
    a = write_log(tmp_path / "a.jsonl", RUN_A)
    b = write_log(tmp_path / "b.jsonl", RUN_B)
    out = tmp_path / "curves.png"
    assert plot_main([a, b, "-o", str(out), "--names", "first", "second"]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert plot_main([a, b, "-o", str(out), "--names", "one"]) == 2  # a usage error
    assert "1 names given for 2 logs" in capsys.readouterr().err


def test_bad_logs(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"iteration": 1, "elapsed": 0.1}\nnot json\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="line 2 is not a fastrnn log record"):
        write_curves([str(bad)], tmp_path / "x.png")
    with pytest.raises(ConfigError, match="cannot read the log"):
        write_curves([str(tmp_path / "missing.jsonl")], tmp_path / "x.png")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="empty"):
        write_curves([str(empty)], tmp_path / "x.png")


def test_missing_matplotlib_gives_the_install_hint(tmp_path, monkeypatch):
    a = write_log(tmp_path / "a.jsonl", RUN_A)
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ConfigError, match=r'pip install "fastrnn\[plot\]"'):
        write_curves([a], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
