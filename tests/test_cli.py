"""fastrnn-train and fastrnn-sample: every bad input gives one clear line on stderr and a
non-zero status (no traceback, nothing lost); a real train -> sample round trip; signals end a
run cleanly."""

import builtins
import errno
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastrnn
from fastrnn import checkpoint as ckpt
from fastrnn.cli import sample_main, train_main
from fastrnn.data import default_corpus

TEXT = default_corpus()[:6000]
FAST = ["--hidden-size", "16", "--batch-size", "4", "--seq-length", "16", "--sample-every", "0"]


def call(main, args):
    try:
        return main([str(a) for a in args])
    except SystemExit as exc:  # argparse exits for option errors
        return exc.code


def one_error_line(capsys, prog="fastrnn-train"):
    """The single stderr line of a failed command (asserting there is exactly one)."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    return lines[0]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture
def trained(tmp_path, corpus, capsys):
    """A checkpoint from a short real run, and the previous output cleared."""
    path = tmp_path / "run.npz"
    assert (
        call(
            train_main, [corpus, *FAST, "--max-iters", 20, "--eval-every", 10, "--checkpoint", path]
        )
        == 0
    )
    capsys.readouterr()
    return path


def train_error(capsys, args):
    assert call(train_main, args) != 0
    return one_error_line(capsys)


# ---------------------------------------------------------------- the corpus file


def test_missing_file(tmp_path, capsys):
    assert "no such file" in train_error(capsys, [tmp_path / "nope.txt"])


def test_unreadable_file(corpus, capsys, monkeypatch, tmp_path):
    real_open = builtins.open

    def deny(file, *args, **kwargs):
        if str(file) == str(corpus):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", deny)
    line = train_error(capsys, [corpus, "--checkpoint", tmp_path / "r.npz"])
    assert "cannot read: Permission denied" in line


def test_empty_directory(tmp_path, capsys):
    # a directory is a corpus of the files under it; an empty one is an error
    assert "has no files" in train_error(capsys, [tmp_path])


def test_empty_file(tmp_path, capsys):
    (tmp_path / "empty.txt").write_bytes(b"")
    assert "empty" in train_error(capsys, [tmp_path / "empty.txt"])


def test_text_too_short(tmp_path, capsys):
    (tmp_path / "short.txt").write_text("a short text\n" * 10)
    line = train_error(
        capsys,
        [
            tmp_path / "short.txt",
            "--batch-size",
            32,
            "--seq-length",
            64,
            "--checkpoint",
            tmp_path / "r.npz",
        ],
    )
    assert "at least 2189" in line and "--batch-size" in line and "--seq-length" in line


def test_not_utf8(tmp_path, capsys):
    (tmp_path / "latin1.txt").write_bytes("caf\u00e9 au lait".encode("latin-1"))
    assert "byte offset 3" in train_error(capsys, [tmp_path / "latin1.txt"])


# ---------------------------------------------------------------- option values


@pytest.mark.parametrize(
    "args,words",
    [
        (["--batch-size", "-3"], "--batch-size: must be a positive integer, got '-3'"),
        (["--seq-length", "0"], "--seq-length: must be a positive integer"),
        (["--hidden-size", "-100"], "--hidden-size: must be a positive integer"),
        (["--val-fraction", "1"], "--val-fraction: must be a number in [0, 1)"),
        (["--val-fraction", "-0.1"], "--val-fraction: must be a number in [0, 1)"),
        (["--learning-rate", "0"], "--learning-rate: must be a number > 0"),
        (["--max-iters", "-1"], "--max-iters: must be an integer >= 0"),
        (["--optimizer", "lbfgs"], "--optimizer: invalid choice"),
        (["--resume", "a.npz", "--init-from", "b.npz"], "exclude each other"),
    ],
)
def test_invalid_train_options(corpus, capsys, args, words, tmp_path):
    assert words in train_error(capsys, [corpus, *args, "--checkpoint", tmp_path / "r.npz"])


@pytest.mark.parametrize(
    "args,words",
    [
        (["--temperature", "0"], "--temperature: must be a number > 0"),
        (["--temperature", "-1"], "--temperature: must be a number > 0"),
        (["--top-k", "0"], "--top-k: must be a positive integer"),
        (["--length", "-5"], "--length: must be an integer >= 0"),
    ],
)
def test_invalid_sample_options(trained, capsys, args, words):
    assert call(sample_main, [trained, *args]) != 0
    assert words in one_error_line(capsys, "fastrnn-sample")


def test_top_k_above_vocabulary_size(trained, capsys):
    V = ckpt.load_checkpoint(trained).vocab.size
    assert call(sample_main, [trained, "--top-k", V + 1]) != 0
    assert f"top-k must be in [1, {V}]" in one_error_line(capsys, "fastrnn-sample")
    assert call(sample_main, [trained, "--top-k", V, "--length", 5]) == 0


# ---------------------------------------------------------------- checkpoints


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 3])
    elif how == "corrupt":
        buf = bytearray(data)
        buf[len(buf) // 2] ^= 0xFF
        path.write_bytes(bytes(buf))
    elif how == "foreign":
        np.savez(path, weights=np.ones(4))
    elif how == "not_npz":
        path.write_text("hello\n")


@pytest.mark.parametrize("how", ["missing", "truncated", "corrupt", "foreign", "not_npz"])
def test_resume_from_a_bad_checkpoint(trained, corpus, capsys, how):
    if how == "missing":
        trained.unlink()
    else:
        damage(trained, how)
    line = train_error(capsys, [corpus, "--resume", trained])
    assert str(trained) in line


@pytest.mark.parametrize("how", ["missing", "truncated", "corrupt", "foreign"])
def test_sample_from_a_bad_checkpoint(trained, capsys, how):
    if how == "missing":
        trained.unlink()
    else:
        damage(trained, how)
    assert call(sample_main, [trained]) != 0
    assert str(trained) in one_error_line(capsys, "fastrnn-sample")


def test_resume_corpus_outside_vocabulary(trained, tmp_path, capsys):
    other = tmp_path / "other.txt"
    other.write_text(TEXT + "Ж€", encoding="utf-8")
    line = train_error(capsys, [other, "--resume", trained])
    assert "outside the vocabulary" in line and "'Ж'" in line and "'€'" in line


def test_prime_outside_vocabulary(trained, capsys):
    assert call(sample_main, [trained, "--prime", "Ж and €"]) != 0
    line = one_error_line(capsys, "fastrnn-sample")
    assert "'Ж'" in line and "'€'" in line


def test_checkpoint_directory_not_writable(corpus, tmp_path, capsys):
    (tmp_path / "blocker").write_text("a file, not a directory")
    line = train_error(
        capsys, [corpus, *FAST, "--max-iters", 2, "--checkpoint", tmp_path / "blocker" / "run.npz"]
    )
    assert "cannot write checkpoint" in line and "Not a directory" in line


@pytest.mark.slow
def test_full_disk_at_save_keeps_previous(trained, corpus, capsys, monkeypatch):
    before = trained.read_bytes()

    def disk_full(f, arrays):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt, "_write_arrays", disk_full)
    line = train_error(capsys, [corpus, "--resume", trained, "--max-iters", 30])
    assert "No space left on device" in line and "unchanged" in line
    assert trained.read_bytes() == before
    assert ckpt.load_checkpoint(trained).header["iteration"] == 20


# ---------------------------------------------------------------- normal use


@pytest.mark.slow
def test_train_then_sample_round_trip(trained, corpus, tmp_path, capsys):
    assert call(sample_main, [trained, "--length", 80, "--seed", 4]) == 0
    first = capsys.readouterr().out
    assert call(sample_main, [trained, "--length", 80, "--seed", 4]) == 0
    assert capsys.readouterr().out == first and len(first) == 81
    out = tmp_path / "s.txt"
    assert (
        call(
            sample_main,
            [trained, "--length", 80, "--seed", 4, "--prime", "The ", "--top-k", 5, "-o", out],
        )
        == 0
    )
    text = out.read_text(encoding="utf-8")
    assert text.startswith("The ") and len(text) == 4 + 80 + 1
    assert call(train_main, [corpus, "--resume", trained, "--max-iters", 5]) == 0
    assert ckpt.load_checkpoint(trained).header["iteration"] == 25  # 5 more than 20


@pytest.mark.slow
def test_classic_configuration_trains(corpus, tmp_path, capsys):
    from fastrnn.cli import CLASSIC_CONFIG

    path = tmp_path / "classic.npz"
    assert (
        call(
            train_main,
            [
                corpus,
                *CLASSIC_CONFIG.split(),
                "--max-iters",
                400,
                "--eval-every",
                0,
                "--sample-every",
                0,
                "--checkpoint",
                path,
            ],
        )
        == 0
    )
    loaded = ckpt.load_checkpoint(path)
    header, V = loaded.header, loaded.vocab.size
    assert header["train_config"]["batch_size"] == 1 and header["optimizer"]["name"] == "sgd"
    assert header["val_loss"] < np.log(V) - 0.8  # learning, not diverging


def test_help_groups_options(capsys):
    assert call(train_main, ["--help"]) == 0
    text = capsys.readouterr().out
    for group in (
        "data:",
        "model:",
        "optimization:",
        "checkpoints:",
        "output:",
        "--learning-rate 0.4",
    ):
        assert group in text


def test_nan_exits_non_zero_with_one_line(corpus, tmp_path, capsys, monkeypatch):
    real = fastrnn.CharRNN.loss_and_grads

    def nan_after_7(self, *args, **kwargs):
        loss, grads, h = real(self, *args, **kwargs)
        nan_after_7.calls += 1
        return (float("inf") if nan_after_7.calls > 7 else loss), grads, h

    nan_after_7.calls = 0
    monkeypatch.setattr(fastrnn.CharRNN, "loss_and_grads", nan_after_7)
    line = train_error(
        capsys,
        [corpus, *FAST, "--max-iters", 50, "--eval-every", 5, "--checkpoint", tmp_path / "r.npz"],
    )
    assert "became inf at iteration 8" in line and "(iteration 5)" in line


# ---------------------------------------------------------------- signals, in a real process


@pytest.mark.slow
@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_and_exits(corpus, tmp_path, sig, status):
    path = tmp_path / "run.npz"
    env = {**os.environ, "PYTHONPATH": str(Path(fastrnn.__file__).resolve().parents[1])}
    code = "from fastrnn.cli import train_main; raise SystemExit(train_main())"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            str(corpus),
            *FAST,
            "--time-limit",
            "60",
            "--checkpoint",
            str(path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        for line in proc.stdout:  # the start block ends with the checkpoint line
            if line.lstrip().startswith("checkpoint"):
                break
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == status, err
    assert "Traceback" not in err and str(path) in err
    assert f"stopped by {sig.name}" in err
    # the checkpoint holds the state of the iteration the run stopped at, as the summary says
    done = re.search(r": ([\d,]+) iterations", out)
    assert done is not None, out
    assert ckpt.load_checkpoint(path).header["iteration"] == int(done.group(1).replace(",", ""))


@pytest.mark.slow
def test_sample_into_a_closed_pipe_is_quiet(trained):
    env = {**os.environ, "PYTHONPATH": str(Path(fastrnn.__file__).resolve().parents[1])}
    code = "from fastrnn.cli import sample_main; raise SystemExit(sample_main())"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(trained), "--length", "200000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    proc.stdout.read(10)
    proc.stdout.close()  # like `fastrnn-sample ... | head -c 10`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert err == ""


# ------------------------------------------------------------------ stacked models


@pytest.mark.slow
def test_cli_flags_and_sample_without_extra_flags(tmp_path, capsys):
    from fastrnn.cli import sample_main, train_main

    corpus = tmp_path / "c.txt"
    corpus.write_text("abcabd abcabd, a cab. " * 50, encoding="utf-8")
    ck = tmp_path / "m.npz"
    argv = [
        str(corpus),
        "--model",
        "lstm",
        "--num-layers",
        "2",
        "--dropout",
        "0.25",
        "--hidden-size",
        "12",
        "--batch-size",
        "4",
        "--seq-length",
        "8",
        "--max-iters",
        "20",
        "--sample-every",
        "0",
        "--eval-every",
        "0",
        "--checkpoint",
        str(ck),
        "--quiet",
    ]
    assert train_main(argv) == 0
    model, _ = fastrnn.load_model(ck)
    assert model.config()["cell"] == "lstm" and model.num_layers == 2 and model.dropout == 0.25
    capsys.readouterr()
    assert sample_main([str(ck), "--length", "15", "--seed", "2"]) == 0
    assert len(capsys.readouterr().out.strip()) >= 10
    # a resumed run cannot change the architecture
    assert train_main(argv[:1] + ["--resume", str(ck), "--model", "gru"]) != 0


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--model", "transformer"], "--model"),
        (["--num-layers", "0"], "--num-layers"),
        (["--dropout", "1"], "--dropout"),
    ],
)
def test_cli_rejects_bad_model_flags(tmp_path, capsys, flags, message):
    from fastrnn.cli import train_main

    try:
        status = train_main(["x.txt", *flags])
    except SystemExit as exc:
        status = exc.code
    assert status != 0
    assert message in capsys.readouterr().err
