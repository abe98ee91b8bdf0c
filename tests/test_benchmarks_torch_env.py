"""benchmarks/_torch_env: the thread variables as they were before fastrnn's import, and the
process PyTorch runs in with them (torch imported there before fastrnn). PyTorch itself is not
needed: a stand-in `torch` module records what it found when it was imported."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastrnn

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SRC = Path(fastrnn.__file__).resolve().parents[1]
sys.path.insert(0, str(BENCH))

import _measure  # noqa: E402


def fresh_torch_env():
    """A new copy of benchmarks/_torch_env, imported now (fastrnn is imported already)."""
    spec = importlib.util.spec_from_file_location("_torch_env_copy", BENCH / "_torch_env.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_with_variables_sets_and_removes_without_touching_the_original():
    environ = {"OMP_WAIT_POLICY": "PASSIVE", "HOME": "/h"}
    got = fresh_torch_env().with_variables(
        environ, {"OMP_WAIT_POLICY": None, "OPENBLAS_THREAD_TIMEOUT": "28"}
    )
    assert got == {"HOME": "/h", "OPENBLAS_THREAD_TIMEOUT": "28"}
    assert environ == {"OMP_WAIT_POLICY": "PASSIVE", "HOME": "/h"}


def test_thread_variables_reads_each_name():
    env = fresh_torch_env()
    got = env.thread_variables({"OMP_WAIT_POLICY": "ACTIVE", "PATH": "/bin"})
    assert got == {name: None for name in env.THREAD_VARIABLES} | {"OMP_WAIT_POLICY": "ACTIVE"}


def test_imported_after_fastrnn_it_refuses_to_guess():
    env = fresh_torch_env()
    assert env.BEFORE_FASTRNN is None
    with pytest.raises(RuntimeError, match="before fastrnn"):
        env.environment_before_fastrnn()


def clean_environment(**given: str) -> dict[str, str]:
    """os.environ without the thread variables, then `given`, fastrnn's src on the path."""
    names = fresh_torch_env().THREAD_VARIABLES
    env = {k: v for k, v in os.environ.items() if k not in names}
    return {**env, **given, "PYTHONPATH": str(SRC)}


@pytest.mark.slow
def test_the_variables_cover_what_importing_fastrnn_sets():
    code = (
        "import json, os; before = dict(os.environ); import fastrnn; "
        "print(json.dumps(sorted(k for k, v in os.environ.items() if before.get(k) != v)))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        env=clean_environment(),
        capture_output=True,
        text=True,
        check=True,
    )
    changed = json.loads(run.stdout)
    assert changed and set(changed) <= set(fresh_torch_env().THREAD_VARIABLES)


@pytest.mark.slow
@pytest.mark.parametrize("given", [{}, {"OMP_WAIT_POLICY": "ACTIVE"}])
def test_imported_before_fastrnn_it_keeps_the_environment_as_it_was(given):
    code = (
        f"import sys, json, os; sys.path.insert(0, {str(BENCH)!r}); import _torch_env, fastrnn; "
        "print(json.dumps([os.environ.get('OMP_WAIT_POLICY'), "
        "_torch_env.environment_before_fastrnn().get('OMP_WAIT_POLICY')]))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        env=clean_environment(**given),
        capture_output=True,
        text=True,
        check=True,
    )
    after_import, before = json.loads(run.stdout)
    assert after_import == given.get(
        "OMP_WAIT_POLICY", "PASSIVE"
    )  # fastrnn's default or the user's
    assert before == given.get("OMP_WAIT_POLICY")


def test_serve_answers_each_request_with_a_result_or_an_error():
    calls = {"add": lambda a, b: a + b, "fail": lambda: int("x")}
    requests = io.StringIO(
        "".join(
            json.dumps({"call": c, "args": a}) + "\n" for c, a in [("add", [2, 3]), ("fail", [])]
        )
    )
    answers = io.StringIO()
    fresh_torch_env().serve(calls, requests, answers)
    first, second = [json.loads(line) for line in answers.getvalue().splitlines()]
    assert first == {"result": 5}
    assert second["error"].startswith("ValueError: invalid literal")


# A stand-in for torch: what the environment and sys.modules held when it was imported.
FAKE_TORCH = """
import os, sys
FASTRNN_BEFORE = "fastrnn" in sys.modules
ENV = {name: os.environ.get(name) for name in ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT")}
"""
PROBE = """
import fastrnn  # before torch here: the process has imported torch already, first
import torch

def seen():
    return {"fastrnn_before_torch": torch.FASTRNN_BEFORE, "env_at_torch_import": torch.ENV,
            "fastrnn_loaded": "fastrnn" in __import__("sys").modules}

def fail():
    raise ValueError("as asked")

TORCH_CALLS = {"seen": seen, "fail": fail}
"""


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    """_torch_env whose 'before fastrnn' is OMP_WAIT_POLICY unset, OPENBLAS_THREAD_TIMEOUT=28,
    with the stand-in torch and a probe module on the PyTorch process's path."""
    (tmp_path / "torch.py").write_text(FAKE_TORCH)
    (tmp_path / "probe.py").write_text(PROBE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), str(SRC)]))
    env = fresh_torch_env()
    monkeypatch.setattr(
        env, "BEFORE_FASTRNN", {"OMP_WAIT_POLICY": None, "OPENBLAS_THREAD_TIMEOUT": "28"}
    )
    return env, tmp_path


@pytest.mark.slow
def test_torch_process_imports_torch_first_in_the_environment_before_fastrnn(stand_in):
    env, _ = stand_in
    with env.TorchProcess("probe") as process:
        assert process.call("seen") == {
            "fastrnn_before_torch": False,
            "env_at_torch_import": {"OMP_WAIT_POLICY": None, "OPENBLAS_THREAD_TIMEOUT": "28"},
            "fastrnn_loaded": True,
        }
        with pytest.raises(RuntimeError, match="fail: ValueError: as asked"):
            process.call("fail")
        assert process.call("seen")["fastrnn_loaded"]  # still serving after an error
    assert process.process is None


def test_torch_process_without_torch_raises_import_error(stand_in):
    env, tmp_path = stand_in
    (tmp_path / "torch.py").write_text("raise ImportError('no torch here')\n")
    with pytest.raises(ImportError, match="PyTorch is not installed .*no torch here"):
        with env.TorchProcess("probe"):
            pass


def test_time_steps_lets_a_step_elsewhere_time_itself():
    class Elsewhere:
        def __call__(self):
            raise AssertionError("called here")

        def time_steps(self, n):
            return 0.25 * n

    assert _measure.time_steps(Elsewhere(), 4) == 1.0


@pytest.mark.parametrize(
    "name,threads,fastrnn_limited", [("M", 2, True), ("L", 2, False), ("M", 1, False)]
)
def test_compare_torch_rounds_run_as_a_run_of_that_thread_count(name, threads, fastrnn_limited):
    """fastrnn's steps get a thread limit where a run given `threads` uses fewer (M at 2: 1);
    PyTorch's rounds at more than one thread are followed by a pause."""
    import dataclasses

    import compare_torch
    from _configs import CONFIGS

    cfg = dataclasses.replace(CONFIGS[name], threads=threads)
    settings = compare_torch.step_settings(cfg)
    for variant in compare_torch.INPUTS:
        assert (("fastrnn", variant) in settings) == fastrnn_limited
        assert (("torch", variant) in settings) == (threads > 1)
