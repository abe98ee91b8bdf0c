"""The barrier of the shared recurrences (fastrnn_barrier.h): no thread passes before every
thread has arrived, also when the others have waited long enough to go to sleep (on Linux)
and the last one must wake them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fastrnn.model import _kernel


@pytest.mark.parametrize("threads", [2, 3])
def test_no_thread_passes_before_all_arrive(threads):
    ran, early, _ = _kernel.barrier_probe(threads, 200, 0)
    assert ran == threads and early == 0


@pytest.mark.parametrize("threads", [2, 3])
def test_sleeping_waiters_are_woken_by_the_last_arrival(threads):
    """One thread 2 ms late each round: the others spin, yield, then sleep; all pass together.
    In a child process with a time limit, so that a waiter never woken fails the test instead
    of hanging the suite."""
    code = f"from fastrnn.model import _kernel; print(*_kernel.barrier_probe({threads}, 20, 2000))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    ran, early, sleeps = map(int, done.stdout.split())
    assert ran == threads and early == 0
    if sys.platform.startswith("linux"):
        assert sleeps > 0  # the futex path ran (a 2 ms wait is well past the yielding phase)


def test_probe_refuses_bad_arguments():
    with pytest.raises(ValueError):
        _kernel.barrier_probe(0, 10, 0)
    with pytest.raises(ValueError):
        _kernel.barrier_probe(2, 0, 0)
