"""The life of a run around its checkpoint: no silent overwrite of another run's files, one run per
checkpoint (a lock that a killed run does not leave behind), a bad path found before the first
iteration with the error a save would give, and files created with the user's umask."""

import errno
import io
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastrnn
from fastrnn import checkpoint as ckpt
from fastrnn.cli import train_main
from fastrnn.data import Vocabulary, default_corpus
from fastrnn.errors import CheckpointError
from fastrnn.train import train

TEXT = default_corpus()[:6000]
SMALL = dict(hidden_size=16, batch_size=4, seq_length=16, sample_every=0, eval_every=5)
FAST = ["--hidden-size", "16", "--batch-size", "4", "--seq-length", "16", "--sample-every", "0"]
SRC = str(Path(fastrnn.__file__).resolve().parents[1])


def run(path, **options):
    return train(
        text=TEXT, out=io.StringIO(), checkpoint=str(path), **{**SMALL, "max_iters": 5, **options}
    )


def cli(args, capsys):
    """(exit status, stderr) of fastrnn-train."""
    try:
        status = train_main([str(a) for a in args])
    except SystemExit as exc:
        status = exc.code
    return status, capsys.readouterr().err


def count_steps(monkeypatch) -> list:
    """The training steps taken from now on (each one fails the test's run at once)."""
    steps = []

    def step(*args, **kwargs):
        steps.append(1)
        raise AssertionError("a training step was taken")

    monkeypatch.setattr(fastrnn.CharRNN, "loss_and_grads", step)
    return steps


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


# ---------------------------------------------------------------- another run's files


def test_a_new_run_refuses_to_replace_a_checkpoint(tmp_path):
    path = tmp_path / "run.npz"
    run(path)
    before = path.read_bytes(), (tmp_path / "run.best.npz").read_bytes()
    with pytest.raises(CheckpointError) as info:
        run(path, seed=1)
    message = str(info.value)
    assert str(path) in message and f"--resume {path}" in message and "--overwrite" in message
    assert (path.read_bytes(), (tmp_path / "run.best.npz").read_bytes()) == before


def test_a_new_run_refuses_to_replace_a_best_checkpoint_alone(tmp_path):
    run(tmp_path / "old.npz")
    os.replace(tmp_path / "old.best.npz", tmp_path / "run.best.npz")
    with pytest.raises(CheckpointError, match="run.best.npz already exists"):
        run(tmp_path / "run.npz")
    assert not (tmp_path / "run.npz").exists()


def test_overwrite_replaces_them(tmp_path):
    path = tmp_path / "run.npz"
    run(path)
    run(path, seed=1, overwrite=True, max_iters=7)
    assert ckpt.load_checkpoint(path).header["iteration"] == 7


def test_a_resume_writes_its_own_files(tmp_path):
    path = tmp_path / "run.npz"
    run(path)
    assert (tmp_path / "run.best.npz").exists()
    train(text=TEXT, out=io.StringIO(), resume=str(path), max_iters=10)
    assert ckpt.load_checkpoint(path).header["iteration"] > 5


def test_a_resume_into_another_existing_file_is_refused(tmp_path):
    run(tmp_path / "a.npz")
    run(tmp_path / "b.npz")
    with pytest.raises(CheckpointError, match="b.npz already exists"):
        train(
            text=TEXT,
            out=io.StringIO(),
            resume=str(tmp_path / "a.npz"),
            checkpoint=str(tmp_path / "b.npz"),
            max_iters=10,
        )


def test_overwrite_is_not_inherited_by_a_resume(tmp_path):
    run(tmp_path / "a.npz", overwrite=True)
    run(tmp_path / "b.npz")
    with pytest.raises(CheckpointError, match="b.npz already exists"):
        train(
            text=TEXT,
            out=io.StringIO(),
            resume=str(tmp_path / "a.npz"),
            checkpoint=str(tmp_path / "b.npz"),
            max_iters=10,
        )


def test_fine_tuning_into_its_source_is_refused(tmp_path):
    path = tmp_path / "run.npz"
    run(path)
    with pytest.raises(CheckpointError, match="already exists"):
        run(path, init_from=str(path))


def test_cli_says_how_to_continue_and_exits_1(corpus, tmp_path, capsys):
    path = tmp_path / "run.npz"
    args = [corpus, *FAST, "--max-iters", 3, "--checkpoint", path]
    assert cli(args, capsys)[0] == 0
    status, err = cli(args, capsys)
    assert status == 1 and len(err.strip().splitlines()) == 1
    assert f"--resume {path}" in err and "--overwrite" in err
    assert cli([*args, "--overwrite"], capsys)[0] == 0


# ---------------------------------------------------------------- one run per checkpoint


def test_a_second_lock_names_the_holder(tmp_path):
    path = str(tmp_path / "run.npz")
    with ckpt.CheckpointLock(path):
        assert os.path.exists(path + ".lock")
        with pytest.raises(CheckpointError) as info:
            ckpt.CheckpointLock(path).acquire()
        assert f"pid {os.getpid()}" in str(info.value) and path in str(info.value)
    assert not os.path.exists(path + ".lock")
    with ckpt.CheckpointLock(path):  # free again
        pass


def test_a_run_on_a_locked_checkpoint_is_refused_at_start(tmp_path, monkeypatch):
    path = tmp_path / "run.npz"
    steps = count_steps(monkeypatch)
    with ckpt.CheckpointLock(path):
        with pytest.raises(CheckpointError, match="in use by another run"):
            run(path, overwrite=True)
    assert steps == [] and not path.exists()


def test_the_lock_file_goes_with_the_run(tmp_path, monkeypatch):
    run(tmp_path / "run.npz")
    assert sorted(os.listdir(tmp_path)) == ["run.best.npz", "run.npz"]

    def disk_full(f, arrays):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt, "_write_arrays", disk_full)
    with pytest.raises(CheckpointError):
        run(tmp_path / "other.npz")
    assert not (tmp_path / "other.npz.lock").exists()


HOLD_LOCK = """
import sys, time
from fastrnn.checkpoint import CheckpointLock
lock = CheckpointLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(120)
"""


def test_a_killed_run_does_not_block_the_next(tmp_path, corpus, capsys):
    path = str(tmp_path / "run.npz")
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, path], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(CheckpointError, match=f"pid {proc.pid}"):
            ckpt.CheckpointLock(path).acquire()
        status, err = cli([corpus, *FAST, "--max-iters", 2, "--checkpoint", path], capsys)
        assert status == 1 and f"in use by another run (pid {proc.pid} on " in err
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.stdout.close()
    assert os.path.exists(path + ".lock")  # left behind, but no longer locked
    with ckpt.CheckpointLock(path), open(path + ".lock") as f:
        assert f"pid {os.getpid()}" in f.read()
    assert cli([corpus, *FAST, "--max-iters", 2, "--checkpoint", path], capsys)[0] == 0
    assert not os.path.exists(path + ".lock")


# ---------------------------------------------------------------- bad paths, found before training


def save_error(path: str) -> str:
    """The message the first save would give, without its note about the previous file."""
    vocab = Vocabulary.from_text("ab")
    with pytest.raises(CheckpointError) as info:
        ckpt.save_checkpoint(path, fastrnn.CharRNN(2, 3), vocab, {})
    return str(info.value).split("; the previous checkpoint")[0]


def bad_paths(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    (tmp_path / "dir").mkdir()
    (tmp_path / "taken.best.npz").mkdir()
    return {
        "under a file": (str(tmp_path / "file" / "run.npz"), "Not a directory"),
        "trailing slash": (str(tmp_path / "out") + os.sep, "directory name"),
        "file then slash": (str(tmp_path / "file") + os.sep, "directory name"),
        "empty": ("", "empty path"),
        "a directory": (str(tmp_path / "dir"), "Is a directory"),
        "best is a directory": (str(tmp_path / "taken.npz"), "Is a directory"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "under a file",
        "trailing slash",
        "file then slash",
        "empty",
        "a directory",
        "best is a directory",
    ],
)
def test_bad_path_is_found_before_training(tmp_path, case, capsys, corpus, monkeypatch):
    path, words = bad_paths(tmp_path)[case]
    with pytest.raises(CheckpointError) as info:
        ckpt.check_writable(path)
    assert words in str(info.value)
    target = ckpt.best_path(path) if case == "best is a directory" else path
    assert str(info.value) == save_error(target)
    steps = count_steps(monkeypatch)
    status, err = cli([corpus, *FAST, "--max-iters", 5, "--checkpoint", path], capsys)
    assert status == 1 and err.strip() == f"fastrnn-train: error: {info.value}"
    assert steps == []


def test_no_write_permission_is_found_before_training(tmp_path, corpus, capsys, monkeypatch):
    path = str(tmp_path / "ro" / "run.npz")

    def denied(*args, **kwargs):  # as a read-only directory answers (tests run as root)
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(ckpt, "_create_temp", denied)
    with pytest.raises(CheckpointError) as info:
        ckpt.check_writable(path)
    start = str(info.value)
    assert start == save_error(path) == f"cannot write checkpoint {path}: Permission denied"
    status, err = cli([corpus, *FAST, "--max-iters", 5, "--checkpoint", path], capsys)
    assert status == 1 and err.strip() == f"fastrnn-train: error: {start}"


# ---------------------------------------------------------------- file mode


def save_small(path) -> None:
    vocab = Vocabulary.from_text("abc")
    ckpt.save_checkpoint(path, fastrnn.CharRNN(3, 4), vocab, {})


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_checkpoints_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        save_small(tmp_path / "a.npz")
        run(tmp_path / "run.npz")
    finally:
        os.umask(old)
    for name in ("a.npz", "run.npz", "run.best.npz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_a_rewritten_checkpoint_keeps_its_mode(tmp_path):
    path = tmp_path / "a.npz"
    save_small(path)
    path.chmod(0o640)
    save_small(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert np.array_equal(ckpt.load_checkpoint(path).vocab.codepoints(), [97, 98, 99])


def test_a_run_without_a_checkpoint_writes_and_locks_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train(text=TEXT, out=io.StringIO(), checkpoint=None, **{**SMALL, "max_iters": 5})
    assert os.listdir(tmp_path) == []
