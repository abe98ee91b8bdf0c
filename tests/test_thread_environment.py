"""The thread settings fastrnn gives the OpenMP and OpenBLAS runtimes when it loads: defaults
that let waiting threads sleep, never overriding a value the user has set."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

NAMES = ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT")


def environment_after_import(**given: str) -> dict[str, str | None]:
    """The two variables as a fresh interpreter sees them after `import fastrnn`."""
    env = {k: v for k, v in os.environ.items() if k not in NAMES}
    env.update(given)
    code = f"import json, os, fastrnn; print(json.dumps({{n: os.environ.get(n) for n in {NAMES}}}))"
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(run.stdout)


@pytest.mark.slow
def test_defaults_let_waiting_threads_sleep():
    assert environment_after_import() == {
        "OMP_WAIT_POLICY": "PASSIVE",
        "OPENBLAS_THREAD_TIMEOUT": "4",
    }


@pytest.mark.slow
def test_values_the_user_set_are_kept():
    given = {"OMP_WAIT_POLICY": "ACTIVE", "OPENBLAS_THREAD_TIMEOUT": "28"}
    assert environment_after_import(**given) == given
