"""Data-parallel training over MPI: real 2- and 3-process jobs on localhost (mpiexec), compared
with one process; stream shares, the flat gradient buffer, dropout masks per stream; signals,
a killed process and a bad input on one process.

The multi-process tests are skipped only when mpi4py or mpiexec is absent
(pip install -e ".[mpi]" provides both).
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fastrnn.checkpoint import load_checkpoint
from fastrnn.distributed import flat_grads, rows, stream_share
from fastrnn.errors import ConfigError
from fastrnn.model import CharRNN

HERE = Path(__file__).parent
JOB = HERE / "mpi_job.py"
SMALL = {
    "hidden_size": 16,
    "batch_size": 6,
    "seq_length": 8,
    "dtype": "float64",
    "max_iters": 50,
    "eval_every": 0,
    "sample_every": 0,
    "learning_rate": 1e-2,
}


def _mpiexec() -> str | None:
    beside = Path(sys.executable).with_name("mpiexec")
    return str(beside) if beside.exists() else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
needs_mpi = pytest.mark.skipif(
    MPIEXEC is None or importlib.util.find_spec("mpi4py") is None,
    reason="mpi4py or mpiexec is not installed (pip install -e '.[mpi]')",
)


def _env() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "PMIX_", "MPI_"))
    }
    env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = "1"
    return env


def _train_command() -> list[str]:
    return [
        sys.executable,
        "-c",
        "import sys; from fastrnn.cli import train_main; sys.exit(train_main())",
    ]


def _mpi(n: int, *args, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MPIEXEC, "-n", str(n), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
        check=False,
        **kwargs,
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from pydoc_data.topics import topics

    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text("".join(topics[k] for k in sorted(topics))[:30000], encoding="utf-8")
    return path


def _load_job_module():
    spec = importlib.util.spec_from_file_location("mpi_job", JOB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _compare_with_one_process(tmp_path: Path, corpus: Path, configs: list[dict], n: int):
    """Run configs on n processes (one mpiexec job) and in this process; assert every step's
    loss and every final parameter agree to 1e-10 relative."""
    configs_path = tmp_path / "configs.json"
    configs_path.write_text(json.dumps(configs))
    out = tmp_path / f"p{n}.npz"
    job = _mpi(n, sys.executable, JOB, corpus, out, configs_path, timeout=120)
    assert job.returncode == 0, job.stderr
    runner = _load_job_module()
    with np.load(out) as parallel:
        for k, options in enumerate(configs):
            losses, params = runner.run(str(corpus), dict(options))
            assert parallel[f"{k}.losses"].shape == losses.shape
            assert _relative_error(parallel[f"{k}.losses"], losses) < 1e-10, options
            for name, p in params.items():
                assert _relative_error(parallel[f"{k}.param.{name}"], p) < 1e-10, (options, name)
            assert np.all(np.diff(losses[:5]) != 0)  # the runs did train


# ---------------------------------------------------------------------------- without MPI


@pytest.mark.parametrize("batch_size", [1, 2, 5, 6, 7, 32])
@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_stream_shares_cover_the_batch_contiguously(batch_size, size):
    if batch_size < size:
        with pytest.raises(ConfigError, match="smaller than the number of processes"):
            stream_share(batch_size, size, 0)
        return
    shares = [stream_share(batch_size, size, r) for r in range(size)]
    assert shares[0][0] == 0 and shares[-1][1] == batch_size
    assert all(a[1] == b[0] for a, b in itertools.pairwise(shares))
    counts = [hi - lo for lo, hi in shares]
    assert max(counts) - min(counts) <= 1 and min(counts) >= 1


def test_rows_may_be_empty_when_fewer_than_processes():
    assert [rows(2, 3, r) for r in range(3)] == [(0, 1), (1, 2), (2, 2)]


def test_flat_grads_are_views_of_one_buffer():
    shapes = {"Wxh": (5, 12), "Whh": (4, 12), "bh": (12,), "Why": (4, 5), "by": (5,)}
    buffer, views, flags = flat_grads(shapes, np.float64, n_flags=4)
    assert buffer.size == sum(int(np.prod(s)) for s in shapes.values()) + 4
    for k, (name, view) in enumerate(views.items()):
        assert view.shape == shapes[name] and view.flags.c_contiguous
        view[...] = k + 1
    flags[:] = -1
    start = 0
    for k, view in enumerate(views.values()):
        assert np.all(buffer[start : start + view.size] == k + 1)
        start += view.size
    assert np.all(buffer[start:] == -1)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_dropout_masks_of_a_stream_do_not_depend_on_the_split(cell):
    model = CharRNN(11, 8, num_layers=2, cell=cell, dropout=0.4, seed=3)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 11, (6, 5)).astype(np.int32)
    y = rng.integers(0, 11, (6, 5)).astype(np.int32)
    whole = model.loss_and_grads(
        x, y, model.initial_state(6), backend="numpy", dropout_key=(7, 12, 0)
    )
    masks = model._workspace(6, 5, True).masks.copy()
    for lo, hi in [(0, 2), (2, 6)]:
        model.loss_and_grads(
            x[lo:hi],
            y[lo:hi],
            model.initial_state(hi - lo),
            backend="numpy",
            dropout_key=(7, 12, lo),
        )
        np.testing.assert_array_equal(model._workspace(hi - lo, 5, True).masks, masks[:, :, lo:hi])
    assert 0 < np.mean(masks == 0) < 1 and np.isfinite(whole[0])


def test_launched_by_mpi_without_mpi4py_says_so(tmp_path, corpus):
    hide = tmp_path / "hide"
    (hide / "mpi4py").mkdir(parents=True)
    (hide / "mpi4py" / "__init__.py").write_text("raise ImportError('no mpi4py here')\n")
    env = {
        **_env(),
        "PMI_SIZE": "2",
        "PMI_RANK": "0",
        "PYTHONPATH": os.pathsep.join([str(hide), os.environ.get("PYTHONPATH", "")]),
    }
    run = subprocess.run(
        [*_train_command(), corpus, "--max-iters", "2", "--checkpoint", tmp_path / "r.npz"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2  # a usage error: the installation does not fit the launch
    assert "mpi4py is not installed" in run.stderr and "2 processes" in run.stderr
    assert not (tmp_path / "r.npz").exists()


# ---------------------------------------------------------------------------- real MPI jobs


def _configs(batch_size: int) -> list[dict]:
    configs = []
    for cell in ("rnn", "lstm", "gru"):
        for dropout in (0.0, 0.3):
            for clip in (
                {"grad_clip": 0.01, "max_grad_norm": 0.0},
                {"grad_clip": 0.0, "max_grad_norm": 0.4},
            ):
                configs.append(
                    {**SMALL, "batch_size": batch_size, "model": cell, "dropout": dropout, **clip}
                )
    return configs


@needs_mpi
def test_two_processes_match_one(tmp_path, corpus):
    """rnn, lstm, gru x dropout 0 / 0.3 x elementwise / global-norm clipping, 50 iterations.
    The clipping thresholds are low enough that they act on most steps."""
    _compare_with_one_process(tmp_path, corpus, _configs(6), 2)


@needs_mpi
def test_three_processes_with_uneven_shares_match_one(tmp_path, corpus):
    configs = [c for c in _configs(7) if c["dropout"] > 0 and c["model"] != "rnn"]
    _compare_with_one_process(tmp_path, corpus, configs, 3)


@needs_mpi
def test_batch_smaller_than_processes_is_refused(tmp_path, corpus):
    job = _mpi(
        3,
        *_train_command(),
        corpus,
        "--batch-size",
        "2",
        "--max-iters",
        "2",
        "--checkpoint",
        tmp_path / "r.npz",
    )
    assert job.returncode == 2  # a usage error, as any invalid option
    assert job.stderr.count("--batch-size 2 is smaller than the number of processes 3") == 1


def _cli_options(checkpoint: Path, iters: int) -> list[str]:
    return [
        "--hidden-size",
        "16",
        "--batch-size",
        "6",
        "--seq-length",
        "8",
        "--dtype",
        "float64",
        "--max-iters",
        str(iters),
        "--eval-every",
        "0",
        "--sample-every",
        "0",
        "--model",
        "lstm",
        "--dropout",
        "0.2",
        "--checkpoint",
        str(checkpoint),
        "--lr-schedule",
        "constant",
    ]  # a schedule to the planned end would differ


@needs_mpi
def test_resume_with_another_number_of_processes(tmp_path, corpus):
    """20 iterations on 2 processes, then 20 more on 1 (--max-iters on resume counts from the
    resume point), equal a 40-iteration single run."""
    first = _mpi(2, *_train_command(), corpus, *_cli_options(tmp_path / "a.npz", 20))
    assert first.returncode == 0, first.stderr
    assert load_checkpoint(tmp_path / "a.npz").header["processes"] == 2
    second = subprocess.run(
        [*_train_command(), "--resume", tmp_path / "a.npz", "--max-iters", "20"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert second.returncode == 0, second.stderr
    assert "saved by 2 processes and continues on 1" in second.stdout
    straight = subprocess.run(
        [*_train_command(), corpus, *_cli_options(tmp_path / "b.npz", 40)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert straight.returncode == 0, straight.stderr
    a, b = load_checkpoint(tmp_path / "a.npz"), load_checkpoint(tmp_path / "b.npz")
    assert a.header["iteration"] == b.header["iteration"] == 40
    for name, p in b.model.params.items():
        assert _relative_error(a.model.params[name], p) < 1e-10, name
    assert _relative_error(a.hidden, b.hidden) < 1e-10


def _start_long_job(tmp_path: Path, corpus: Path) -> tuple[subprocess.Popen, Path]:
    checkpoint = tmp_path / "run.npz"
    options = _cli_options(checkpoint, 10**7)
    options[options.index("--eval-every") + 1] = "25"
    job = subprocess.Popen(
        [MPIEXEC, "-n", "2", *_train_command(), str(corpus), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    deadline = time.monotonic() + 30
    while not checkpoint.exists():
        assert job.poll() is None and time.monotonic() < deadline, job.communicate()
        time.sleep(0.05)
    return job, checkpoint


@needs_mpi
@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_to_mpiexec_stops_every_process_with_one_checkpoint(tmp_path, corpus, sig, status):
    job, checkpoint = _start_long_job(tmp_path, corpus)
    job.send_signal(sig)
    out, err = job.communicate(timeout=30)
    assert job.returncode == status, err
    name = signal.Signals(sig).name
    assert err.count(f"stopped by {name}") == 1  # said once, by rank 0
    stopped_at = int(out.strip().splitlines()[-1].split(":")[1].split()[0].replace(",", ""))
    header = load_checkpoint(checkpoint).header
    assert header["iteration"] == stopped_at > 0 and header["processes"] == 2


def _descendants(pid: int) -> list[int]:
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _rank_pid(mpiexec_pid: int, rank: int) -> int:
    for pid in _descendants(mpiexec_pid):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if f"PMI_RANK={rank}".encode() in env:
            return pid
    raise AssertionError(f"no process of rank {rank} under mpiexec {mpiexec_pid}")


@needs_mpi
def test_killed_process_ends_the_job_and_the_checkpoint_loads(tmp_path, corpus):
    job, checkpoint = _start_long_job(tmp_path, corpus)
    os.kill(_rank_pid(job.pid, 1), signal.SIGKILL)
    started = time.monotonic()
    job.communicate(timeout=30)
    assert job.returncode != 0 and time.monotonic() - started < 30
    assert load_checkpoint(checkpoint).header["iteration"] > 0


@needs_mpi
def test_bad_input_on_one_process_ends_the_job_with_its_message(tmp_path, corpus):
    missing = tmp_path / "missing.txt"
    options = _cli_options(tmp_path / "r.npz", 100)
    job = subprocess.run(
        [
            MPIEXEC,
            "-n",
            "1",
            *_train_command(),
            str(corpus),
            *options,
            ":",
            "-n",
            "1",
            *_train_command(),
            str(missing),
            *options,
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert job.returncode != 0
    assert f"fastrnn-train (process 1 of 2): error: {missing}: no such file" in job.stderr
    assert "(process 0 of 2): error" not in job.stderr


@needs_mpi
def test_resume_with_the_same_number_of_processes_is_bit_exact(tmp_path, corpus):
    first = _mpi(2, *_train_command(), corpus, *_cli_options(tmp_path / "a.npz", 20))
    assert first.returncode == 0, first.stderr
    second = _mpi(2, *_train_command(), "--resume", tmp_path / "a.npz", "--max-iters", "20")
    assert second.returncode == 0, second.stderr
    assert "continues on" not in second.stdout
    straight = _mpi(2, *_train_command(), corpus, *_cli_options(tmp_path / "b.npz", 40))
    assert straight.returncode == 0, straight.stderr
    a, b = load_checkpoint(tmp_path / "a.npz"), load_checkpoint(tmp_path / "b.npz")
    for name, p in b.model.params.items():
        np.testing.assert_array_equal(a.model.params[name], p)
    np.testing.assert_array_equal(a.hidden, b.hidden)
    for key, value in b.optimizer_state.items():
        np.testing.assert_array_equal(a.optimizer_state[key], value)


class RecordingWorld:
    """Rank 0 of a pretend 2-process job whose reduction records its calls (doubling the
    buffer, as a sum of two equal shares would)."""

    rank, size, is_root = 0, 2, True

    def __init__(self):
        self.calls: list[np.ndarray] = []

    def allreduce_sum(self, buffer: np.ndarray) -> None:
        self.calls.append(buffer)
        buffer *= 2

    def barrier(self) -> None:
        pass

    def gather(self, obj):
        return [obj, obj]

    def root_first(self):
        import contextlib

        return contextlib.nullcontext()


def test_one_allreduce_of_one_buffer_holding_every_gradient_per_step(corpus):
    import io

    from fastrnn.train import Trainer

    world = RecordingWorld()
    trainer = Trainer(
        {"corpus": str(corpus), **SMALL, "model": "gru", "checkpoint": None},
        text=None,
        out=io.StringIO(),
        world=world,
    )
    for step in range(3):
        trainer.train_step()
        assert len(world.calls) == step + 1
        buffer = world.calls[-1]
        assert buffer is trainer.grad_buffer and buffer.flags.c_contiguous
    names = list(trainer.model.param_shapes())
    assert all(np.shares_memory(trainer.grads[n], buffer) for n in names)
    assert not np.shares_memory(trainer.grads["h0"], buffer)
    assert buffer.size == trainer.model.num_params + 4
    assert trainer.h.shape[-2] == 3  # rank 0's half of the 6 streams
