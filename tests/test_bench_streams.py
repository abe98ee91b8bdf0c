"""Unit tests of the generation-stream measurements of benchmarks/ (StreamConfig, the partner
lookup, GenerateCall, the guard's table). Nothing here times anything or asserts on speed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _measure  # noqa: E402
import guard  # noqa: E402
from _configs import STREAM_CONFIGS, StreamConfig, one_stream_partner  # noqa: E402


def test_stream_configs_cover_lstm_one_stream_and_cjk_sixteen_streams():
    got = {(c.cell, c.V, c.H, c.streams) for c in STREAM_CONFIGS}
    assert {("lstm", 65, 100, 1), ("rnn", 6533, 256, 1), ("rnn", 6533, 256, 16)} <= got


def test_one_stream_partner_is_the_same_model_with_one_stream():
    a = StreamConfig("a", "rnn", 10, 4, 1, 5, 1.0)
    b = StreamConfig("b", "lstm", 10, 4, 1, 5, 1.0)
    many = StreamConfig("many", "lstm", 10, 4, 8, 5, 1.0)
    lonely = StreamConfig("lonely", "gru", 10, 4, 8, 5, 1.0)
    configs = (a, b, many, lonely)
    assert one_stream_partner(many, configs) is b
    assert one_stream_partner(a, configs) is None
    assert one_stream_partner(lonely, configs) is None
    for cfg in STREAM_CONFIGS:
        if cfg.streams > 1:
            assert one_stream_partner(cfg) is not None


def test_generate_call_generates_length_chars_per_stream():
    call = _measure.GenerateCall(7, 5, cell="gru", streams=3, length=11)
    out = call()
    assert out.shape == (3, 11) and call.chars == 33
    assert ((out >= 0) & (out < 7)).all()
    one = _measure.GenerateCall(7, 5, length=4)
    assert one().shape == (4,) and one.chars == 4


def test_stream_table_shows_the_ratio_only_for_several_streams():
    rows = [
        {
            "name": n,
            "cell": "rnn",
            "V": 9,
            "H": 4,
            "streams": s,
            "kernel_chars_per_s": rate,
            "ratio_to_one_stream": ratio,
            "target": 1.0,
            "meets_target": True,
        }
        for n, s, rate, ratio in (("one", 1, 1000.0, None), ("many", 16, 2500.0, 2.5))
    ]
    lines = guard.stream_sampling_table(rows).splitlines()
    assert lines[2].split()[6] == "-"
    assert lines[3].split()[6] == "2.50"
    assert np.isclose(float(lines[3].split()[6]), 2.5)
