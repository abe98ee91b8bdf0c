"""Unit tests of the pure logic behind benchmarks/ (configurations, arithmetic, floors, tables,
round bookkeeping). Nothing here times anything or asserts on speed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _configs  # noqa: E402
import _measure  # noqa: E402
import guard  # noqa: E402
from _configs import CONFIGS, BenchConfig  # noqa: E402


def test_named_configurations():
    got = {n: (c.V, c.H, c.B, c.T, c.threads, c.dtype) for n, c in CONFIGS.items()}
    assert got == {
        "S": (65, 100, 1, 40, 1, "float32"),
        "S64": (65, 100, 1, 40, 1, "float64"),
        "M": (65, 100, 32, 40, 1, "float32"),
        "L": (65, 512, 32, 64, 1, "float32"),
        "L2": (65, 512, 32, 64, 2, "float32"),
        "CJK": (6533, 256, 32, 64, 1, "float32"),
        "LSTM-M": (65, 100, 32, 40, 1, "float32"),
        "LSTM-L": (65, 512, 32, 64, 1, "float32"),
        "GRU-L": (65, 512, 32, 64, 1, "float32"),
        "LSTM2-L": (65, 512, 32, 64, 1, "float32"),
    }
    assert {n for n, c in CONFIGS.items() if c.cell == "lstm"} == {"LSTM-M", "LSTM-L", "LSTM2-L"}
    assert CONFIGS["GRU-L"].cell == "gru" and CONFIGS["LSTM2-L"].layers == 2
    assert CONFIGS["LSTM-L"].flops_per_char == 6 * (4 * 512 * 512 + 512 * 65)
    # two layers: two recurrences and layer 1's input projection, each 4H wide
    assert CONFIGS["LSTM2-L"].flops_per_char == 6 * (3 * 4 * 512 * 512 + 512 * 65)


def test_flops_per_char_is_six_times_the_multiply_adds():
    assert _configs.flops_per_char(65, 100) == 6 * (100 * 100 + 100 * 65)
    assert CONFIGS["CJK"].flops_per_char == 6 * (256 * 256 + 256 * 6533)
    assert CONFIGS["M"].chars_per_step == 32 * 40


def test_fraction_of_limit():
    assert _configs.fraction_of_limit(1e5, 1e5, 1e11) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        _configs.fraction_of_limit(1.0, 1.0, 0.0)


def test_memory_bound_counts_activations_gradients_and_scratch():
    cfg = BenchConfig("x", V=5, H=3, B=2, T=4)
    assert _configs.activation_bound_values(cfg) == 4 * 2 * (2 * 3 + 5)
    assert cfg.num_params == 5 * 3 + 3 * 3 + 3 + 3 * 5 + 5
    packed = 3 * 32 + 16  # H rows of one 128-byte panel, 64 bytes of alignment slack
    assert cfg.packed_values(4) == packed
    expected = (4 * 2 * 11 + cfg.num_params + _configs.SCRATCH_BH * 2 * 3 + packed) * 4
    assert _configs.memory_bound_bytes(cfg, 4) == expected


@pytest.mark.parametrize("H", [3, 100, 512])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_memory_bound_counts_the_workspace_packing_buffer(H, dtype):
    from fastrnn.model import packed_recurrent_size

    cfg = BenchConfig("x", V=5, H=H, B=2, T=4)
    assert cfg.packed_values(np.dtype(dtype).itemsize) == packed_recurrent_size("rnn", H, dtype)


def test_parameter_count_of_stacked_configurations():
    import fastrnn

    for name in ("LSTM-M", "GRU-L", "LSTM2-L"):
        c = CONFIGS[name]
        model = fastrnn.CharRNN(c.V, c.H, num_layers=c.layers, cell=c.cell, dtype=c.dtype)
        assert c.num_params == model.num_params


def test_select():
    assert [c.name for c in _configs.select(None)] == list(CONFIGS)
    assert [c.name for c in _configs.select(["CJK", "S"])] == ["S", "CJK"]
    with pytest.raises(ValueError, match="unknown"):
        _configs.select(["XL"])


def test_committed_floors_cover_every_configuration_below_its_target():
    floors = guard.load_floors()
    for name in CONFIGS:
        f = floors["configs"][name]
        assert 0 < f["ratio"] <= f.get("target_ratio", f["ratio"])
        assert 0 < f["fraction"] <= f.get("target_fraction", f["fraction"])
    assert floors["memory_bound_factor"] >= 1.0


def test_load_floors_rejects_a_missing_configuration(tmp_path):
    path = tmp_path / "floors.json"
    path.write_text(json.dumps({"configs": {"S": {"ratio": 1, "fraction": 0.1}}}))
    with pytest.raises(ValueError, match="S64"):
        guard.load_floors(path)


def test_below_floor_and_target():
    floor = {"ratio": 2.0, "fraction": 0.2, "target_ratio": 6, "target_fraction": 0.45}
    assert guard.below_floor({"ratio": 2.5, "fraction": 0.3}, floor) == []
    misses = guard.below_floor({"ratio": 1.0, "fraction": 0.1}, floor)
    assert len(misses) == 2 and misses[0].startswith("ratio")
    assert guard.meets_target({"ratio": 6.1, "fraction": 0.5}, floor) is True
    assert guard.meets_target({"ratio": 6.1, "fraction": 0.4}, floor) is False
    assert guard.meets_target({"ratio": 1, "fraction": 1}, {"ratio": 1, "fraction": 1}) is None
    fraction_only = {"ratio": 1, "fraction": 0.2, "target_fraction": 0.78}
    assert guard.meets_target({"ratio": 0.9, "fraction": 0.8}, fraction_only) is True
    assert guard.meets_target({"ratio": 9, "fraction": 0.7}, fraction_only) is False


def test_memory_verdict():
    assert guard.memory_verdict(100, 100, 1.0) == "ok"
    assert guard.memory_verdict(101, 100, 1.0) == "FAIL"
    assert guard.memory_verdict(101, 100, 1.05) == "ok"


def test_format_table_aligns_columns():
    text = guard.format_table(["name", "chars/s"], [["S", "330k"], ["CJK", "7.1k"]])
    lines = text.splitlines()
    assert len(lines) == 4 and len({len(l) for l in lines[:2]}) == 1
    assert lines[2].endswith(" 330k") and lines[3].endswith(" 7.1k")


def test_si_suffixes():
    assert guard._si(330_000) == "330k"
    assert guard._si(1_400_000) == "1.4M"
    assert guard._si(7_030) == "7.03k"


def test_guard_rejects_unknown_configuration(capsys):
    assert guard.main(["--only", "XL"]) == 2
    assert "unknown" in capsys.readouterr().err


# ---------------------------------------------------------------- helpers that import fastrnn


def test_summarize_rounds_takes_best_rates_and_median_paired_ratio():
    s = _measure.summarize_rounds([10.0, 20.0, 30.0], [10.0, 5.0, 10.0])
    assert s["kernel_chars_per_s"] == 30.0 and s["numpy_chars_per_s"] == 10.0
    assert s["ratio"] == 3.0  # median of 1, 4, 3
    with pytest.raises(ValueError):
        _measure.summarize_rounds([1.0], [])


def test_interleaved_rates_alternate_the_order():
    calls = []
    steps = {name: ((lambda name=name: calls.append(name)), 10, 2) for name in "abc"}
    rates = _measure.interleaved_rates(steps, rounds=2)
    assert calls == list("aabbcc") + list("ccbbaa")
    assert all(len(r) == 2 and all(x > 0 for x in r) for r in rates.values())


def test_training_step_runs_both_backends_alike():
    cfg = BenchConfig("tiny", V=7, H=5, B=2, T=3)
    steps = [_measure.TrainingStep(cfg, b) for b in _measure.BACKENDS]
    for _ in range(3):  # the optimizer steps agree too
        losses = [step() for step in steps]
        assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    for name, p in steps[0].model.params.items():
        np.testing.assert_allclose(p, steps[1].model.params[name], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError):
        _measure.TrainingStep(cfg, "torch")
