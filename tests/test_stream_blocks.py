"""The blocks sample.generate draws its characters in: a short first block, then growing ones,
and the text independent of them."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from conftest import make_model
from fastrnn.sample import STREAM_BLOCK, STREAM_BLOCK_MAX, stream_blocks

sample_module = importlib.import_module("fastrnn.sample")  # fastrnn.sample is also a function


@pytest.mark.parametrize("length", [0, 1, 63, 64, 65, 191, 192, 1000, 5000, 20_000])
def test_blocks_sum_to_the_length_start_short_and_grow_to_the_cap(length):
    blocks = list(stream_blocks(length))
    assert sum(blocks) == length
    assert all(b >= 1 for b in blocks)
    if length:
        assert blocks[0] == min(STREAM_BLOCK, length)
    for before, after in zip(blocks[:-2], blocks[1:-1]):
        assert after == min(2 * before, STREAM_BLOCK_MAX)
    assert max(blocks, default=0) <= STREAM_BLOCK_MAX


def test_a_long_text_is_drawn_in_few_calls():
    # 20,000 characters: 64 + 128 + ... + 512 + 1024 * k
    assert len(list(stream_blocks(20_000))) == 4 + -(-(20_000 - 960) // STREAM_BLOCK_MAX)


@pytest.mark.parametrize("first,cap", [(7, 30), (64, 64), (5, 5)])
def test_generated_indices_do_not_depend_on_the_blocks(first, cap, monkeypatch):
    m = make_model("lstm", 2, V=9, H=5, seed=3)
    h = m.initial_state(1)
    whole = list(sample_module.generate(m, h, 2, 300, rng=np.random.default_rng(8)))
    monkeypatch.setattr(sample_module, "STREAM_BLOCK", first)
    monkeypatch.setattr(sample_module, "STREAM_BLOCK_MAX", cap)
    calls = []
    generate = m.generate

    def counted(*args, **kwargs):
        calls.append(args[2])
        return generate(*args, **kwargs)

    monkeypatch.setattr(m, "generate", counted)
    again = list(sample_module.generate(m, h, 2, 300, rng=np.random.default_rng(8)))
    assert again == whole
    assert calls == list(stream_blocks(300)) and calls[0] == first
