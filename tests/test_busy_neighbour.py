"""The guard's busy-neighbour section and its parts: the spinning process (started, stopped
between rounds, always killed), rounds run in their own settings, the paired ratio and the
verdicts. Nothing here times anything or asserts on speed."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _measure  # noqa: E402
import guard  # noqa: E402
from _configs import BUSY_NEIGHBOUR_CONFIGS, CONFIGS  # noqa: E402

needs_posix = pytest.mark.skipif(
    not _measure.BusyNeighbour.available(), reason="SIGSTOP/SIGCONT needed"
)
needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def process_state(pid: int) -> str:
    """The one-letter state of /proc/<pid>/stat: R running, S sleeping, T stopped, ..."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


def wait_for_state(pid: int, wanted: str, seconds: float = 5.0) -> str:
    deadline = time.monotonic() + seconds
    while (state := process_state(pid)) != wanted and time.monotonic() < deadline:
        time.sleep(0.01)
    return state


def is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@needs_posix
@needs_proc
def test_neighbour_spins_only_inside_spinning_and_dies_on_exit():
    with _measure.BusyNeighbour() as busy:
        pid = busy.process.pid
        assert wait_for_state(pid, "T") == "T"
        with busy.spinning():
            assert wait_for_state(pid, "R") == "R"
        assert wait_for_state(pid, "T") == "T"
    assert is_gone(pid)


@needs_posix
def test_neighbour_is_killed_when_the_block_raises():
    with pytest.raises(RuntimeError, match="inside"):
        with _measure.BusyNeighbour() as busy:
            pid = busy.process.pid
            with busy.spinning():
                raise RuntimeError("inside")
    assert busy.process is None and is_gone(pid)


@needs_posix
def test_spinning_outside_the_context_is_an_error():
    with pytest.raises(RuntimeError, match="outside"):
        with _measure.BusyNeighbour().spinning():
            pass


def test_interleaved_rates_run_each_step_in_its_setting():
    events = []

    def setting(name):
        @contextlib.contextmanager
        def enter():
            events.append(f"enter {name}")
            yield
            events.append(f"leave {name}")

        return enter

    steps = {name: ((lambda name=name: events.append(name)), 1, 2) for name in "ab"}
    _measure.interleaved_rates(steps, rounds=2, settings={"b": setting("b")})
    b_round = ["enter b", "b", "b", "leave b"]
    assert events == ["a", "a", *b_round] + [*b_round, "a", "a"]  # the order alternates


def test_paired_ratio_is_the_median_of_per_round_ratios():
    assert _measure.paired_ratio([1.0, 8.0, 3.0], [2.0, 2.0, 2.0]) == 1.5
    with pytest.raises(ValueError):
        _measure.paired_ratio([1.0, 2.0], [1.0])


def fake_measurements(monkeypatch, ratios):
    """Make guard.measure_beside_busy return the given ratios one call after another."""
    calls = []

    def measure(cfg, rounds, round_seconds, max_seconds):
        calls.append((cfg.name, rounds, max_seconds))
        return {
            "name": cfg.name,
            "alone_chars_per_s": 100.0,
            "one_beside_busy_chars_per_s": 100.0,
            "beside_busy_chars_per_s": 100.0 * ratios[len(calls) - 1],
            "ratio": ratios[len(calls) - 1],
            "neighbour_cost": 1.0,
            "rounds": rounds,
        }

    monkeypatch.setattr(guard, "measure_beside_busy", measure)
    return calls


class FakeNeighbour:
    """BusyNeighbour's interface without a process."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    @contextlib.contextmanager
    def spinning(self):
        yield


@pytest.mark.parametrize("name,two_threads_use", [("M", 1), ("L", 2)])
def test_beside_busy_compares_threads_beside_the_neighbour(monkeypatch, name, two_threads_use):
    """ratio: 2 threads / 1 thread, both beside the neighbour; neighbour_cost: 1 thread beside
    it / alone; the 2-thread step runs on the threads a run given 2 uses (1 at M)."""
    rates = {"alone": [10.0, 12.0, 11.0], "1 beside busy": [5.0, 6.0, 6.0]}
    rates["2 beside busy"] = [4.0, 9.0, 4.5]
    built = {}

    class Step:
        def __init__(self, cfg, backend):
            built.setdefault(cfg.threads, 0)
            built[cfg.threads] += 1

    monkeypatch.setattr(_measure, "BusyNeighbour", FakeNeighbour)
    monkeypatch.setattr(_measure, "TrainingStep", Step)
    monkeypatch.setattr(_measure, "steps_per_round", lambda steps, seconds: 3)
    monkeypatch.setattr(_measure, "interleaved_rates", lambda steps, rounds, **kw: rates)
    r = guard.measure_beside_busy(CONFIGS[name], 3, 0.1, 1.0)
    assert r["ratio"] == pytest.approx(0.8)  # median of 4/5, 9/6, 4.5/6
    assert r["neighbour_cost"] == pytest.approx(0.5)  # median of 5/10, 6/12, 6/11
    assert r["alone_chars_per_s"] == 12.0 and r["beside_busy_chars_per_s"] == 9.0
    assert r["one_beside_busy_chars_per_s"] == 6.0
    assert built == ({1: 3} if two_threads_use == 1 else {1: 2, 2: 1})


def test_enforced_floor_measures_again_then_fails(monkeypatch):
    calls = fake_measurements(monkeypatch, [0.5, 0.6])
    [r] = guard.run_busy_neighbour([CONFIGS["M"]], {"ratio": 0.67, "enforced": True}, 5, 0.1, 3.0)
    assert len(calls) == 2 and calls[1][1] > calls[0][1] and calls[1][2] > calls[0][2]
    assert r["verdict"] == "FAIL" and r["ratio"] == 0.6


def test_enforced_floor_passes_on_the_second_look(monkeypatch):
    fake_measurements(monkeypatch, [0.5, 0.9])
    [r] = guard.run_busy_neighbour([CONFIGS["M"]], {"ratio": 0.67, "enforced": True}, 5, 0.1, 3.0)
    assert r["verdict"] == "ok"


def test_floor_not_enforced_is_information(monkeypatch):
    calls = fake_measurements(monkeypatch, [0.3, 0.9])
    [r] = guard.run_busy_neighbour([CONFIGS["L"]], {"ratio": 0.67, "enforced": False}, 5, 0.1, 3.0)
    assert len(calls) == 1 and r["verdict"] == "info" and r["below"]


def test_committed_busy_neighbour_floor():
    busy = guard.load_floors()["busy_neighbour"]
    assert busy["target_ratio"] == pytest.approx(1 / 1.5, abs=0.005)  # at most 1.5x slower
    assert 0 < busy["ratio"] <= busy["target_ratio"] and busy["enforced"] is True
    assert set(BUSY_NEIGHBOUR_CONFIGS) <= set(CONFIGS)


def test_the_busy_target_is_information_beside_the_floor(monkeypatch):
    fake_measurements(monkeypatch, [0.6])
    floor = {"ratio": 0.5, "target_ratio": 0.67, "enforced": True}
    [r] = guard.run_busy_neighbour([CONFIGS["L"]], floor, 5, 0.1, 3.0)
    assert r["verdict"] == "ok" and r["meets_target"] is False and r["target"] == 0.67


def test_load_floors_rejects_a_malformed_busy_neighbour_entry(tmp_path):
    floors = json.loads(guard.FLOORS_PATH.read_text())
    floors["busy_neighbour"] = {"ratio": 0.67, "enforced": "yes"}
    path = tmp_path / "floors.json"
    path.write_text(json.dumps(floors))
    with pytest.raises(ValueError, match="busy_neighbour"):
        guard.load_floors(path)


def test_two_thread_fraction_uses_the_two_thread_limit():
    cfg = CONFIGS["L"]
    best_gemm = {("float32", 1): 50e9, ("float32", 2): 100e9}
    r = guard.add_two_thread_fraction({}, cfg, 20_000.0, best_gemm)
    assert r["two_threads_chars_per_s"] == 20_000.0
    assert r["two_threads_fraction"] == pytest.approx(20_000.0 * cfg.flops_per_char / 100e9)


def test_settling_pauses_after_its_round_outside_the_clock(monkeypatch):
    events = []
    monkeypatch.setattr(_measure.time, "sleep", lambda s: events.append(("sleep", s)))
    steps = {"a": ((lambda: events.append("a")), 1, 1)}
    _measure.interleaved_rates(steps, rounds=2, settings={"a": lambda: _measure.settling(0.25)})
    assert events == ["a", ("sleep", 0.25), "a", ("sleep", 0.25)]


def test_the_reference_at_two_threads_is_followed_by_a_pause(monkeypatch):
    """At more than one thread the numpy rounds get guard.NUMPY_BLAS_SETTLE_SECONDS after
    them; at one thread no round pauses."""
    seen = {}

    def fake_rates(steps, rounds, max_seconds=None, settings=None):
        seen[len(seen)] = settings or {}
        return {name: [1.0] for name in steps}

    class Step:
        def __init__(self, cfg, backend):
            pass

    monkeypatch.setattr(_measure, "interleaved_rates", fake_rates)
    monkeypatch.setattr(_measure, "TrainingStep", Step)
    monkeypatch.setattr(_measure, "steps_per_round", lambda steps, seconds: 1)

    class Gemm:
        flops = 1.0

        def __init__(self, dtype):
            pass

        def __call__(self):
            return None

    monkeypatch.setattr(_measure, "GemmStep", Gemm)
    guard.interleaved_steps(CONFIGS["L2"], ("kernel", "numpy"), 3, 0.1, 1.0)
    guard.interleaved_steps(CONFIGS["L"], ("kernel", "numpy"), 3, 0.1, 1.0)
    assert "numpy" in seen[0] and "kernel" not in seen[0]
    assert "numpy" not in seen[1]
