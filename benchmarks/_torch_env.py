"""PyTorch beside fastrnn, each with the thread settings it has on its own.

fastrnn sets thread defaults in os.environ when it is imported (fastrnn/backend.py:
OMP_WAIT_POLICY=PASSIVE, OPENBLAS_THREAD_TIMEOUT=4, unless the user has set them), and its
kernel loads the OpenMP runtime then, which reads OMP_WAIT_POLICY once, as it loads. A process
holds one OpenMP runtime: PyTorch's own libgomp and the system's that the kernel links have the
same name (libgomp.so.1), so whichever is loaded first serves both. PyTorch in a process that
has imported fastrnn therefore runs with fastrnn's wait policy, whatever os.environ says by the
time torch is imported; and fastrnn in a process that imported torch first runs with PyTorch's.

So the benchmarks run PyTorch in a process of its own (``TorchProcess``), started with the
thread variables as they were before fastrnn was imported (``BEFORE_FASTRNN``, taken when this
module is first imported: each script imports it before fastrnn), in which torch is imported
before anything else. The parent asks it to call functions by name over a pipe, one JSON line
per request and per answer:

    python benchmarks/_torch_env.py MODULE   # imports torch, then MODULE; serves its TORCH_CALLS

This module imports neither fastrnn nor torch itself.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

# The variables fastrnn gives defaults to when it is imported (fastrnn/backend.py).
THREAD_VARIABLES = ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT")


def thread_variables(environ: Mapping[str, str] = os.environ) -> dict[str, str | None]:
    """The THREAD_VARIABLES in environ, None for those unset."""
    return {name: environ.get(name) for name in THREAD_VARIABLES}


def with_variables(environ: Mapping[str, str], values: Mapping[str, str | None]) -> dict[str, str]:
    """A copy of environ with each of values set, or removed where its value is None."""
    env = dict(environ)
    for name, value in values.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


# Taken at the first import of this module; None when fastrnn was imported before it (too late
# to know what the user had set).
BEFORE_FASTRNN: dict[str, str | None] | None = (
    None if "fastrnn" in sys.modules else thread_variables()
)


def environment_before_fastrnn() -> dict[str, str]:
    """os.environ with the thread variables as they were before fastrnn was imported."""
    if BEFORE_FASTRNN is None:
        raise RuntimeError(
            "_torch_env was first imported after fastrnn, which had set its thread defaults "
            "already: import _torch_env before fastrnn (and before _measure, which imports it)"
        )
    return with_variables(os.environ, BEFORE_FASTRNN)


class TorchProcess:
    """A context: a Python process in which torch is imported first, in the environment before
    fastrnn, then `module` (a module beside this file); ``call(name, *args)`` runs
    module.TORCH_CALLS[name](*args) there and returns its JSON result. An exception there is
    raised here as a RuntimeError with its message; a PyTorch that cannot be imported, as an
    ImportError on entry."""

    def __init__(self, module: str, python: str = sys.executable):
        self.command = [python, str(Path(__file__).resolve()), module]
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> TorchProcess:
        self.process = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=environment_before_fastrnn(),
        )
        try:
            ready = self._answer()
            if "error" in ready:
                raise ImportError(ready["error"])
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def call(self, name: str, *args: Any) -> Any:
        if self.process is None:
            raise RuntimeError("TorchProcess.call outside its context")
        self.process.stdin.write(json.dumps({"call": name, "args": args}) + "\n")
        self.process.stdin.flush()
        answer = self._answer()
        if "error" in answer:
            raise RuntimeError(f"in the PyTorch process, {name}: {answer['error']}")
        return answer["result"]

    def _answer(self) -> dict[str, Any]:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the PyTorch process ended (status {self.process.wait()})")
        return json.loads(line)

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.stdin.close()  # the process ends at the end of its input
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process.stdout.close()
            self.process = None


def serve(calls: Mapping[str, Callable[..., Any]], requests, answers) -> None:
    """Answer each request line of `requests` with one line on `answers`: {"result": ...} or
    {"error": "Type: message"}, until the requests end."""
    for line in requests:
        request = json.loads(line)
        try:
            answer = {"result": calls[request["call"]](*request["args"])}
        except Exception as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


def main(module: str) -> None:
    """The PyTorch process: torch first, then module; the answers go to the real stdout, and
    whatever the code prints goes to stderr, off the channel."""
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr
    try:
        import torch  # noqa: F401  (first: its OpenMP runtime loads with this environment)
    except ImportError as exc:
        answers.write(json.dumps({"error": f"PyTorch is not installed ({exc})"}) + "\n")
        answers.flush()
        return
    calls = importlib.import_module(module).TORCH_CALLS
    answers.write(json.dumps({"ready": True}) + "\n")
    answers.flush()
    serve(calls, sys.stdin, answers)


if __name__ == "__main__":
    main(sys.argv[1])
