"""Beam search: against exhaustive search on a tiny model (V = 3, length 4), against greedy
decoding for a beam of 1, and through fastrnn-sample --beam."""

import itertools
import math

import numpy as np
import pytest

from _tools import random_model, write_checkpoint
from fastrnn import Vocabulary
from fastrnn.beam import beam_indices, beam_search, bits_per_char
from fastrnn.cli import sample_main

TINY = Vocabulary.from_text("abc")
LENGTH = 4


def sequence_logp(model, state, first, seq):
    """log p(seq | first, state), stepping one character at a time."""
    total, x, h = 0.0, first, state
    for c in seq:
        logits, h = model.step_logits(np.array([x], dtype=np.int32), h)
        z = logits[0] - logits[0].max()
        total += z[c] - np.log(np.exp(z).sum())
        x = c
    return total


@pytest.mark.parametrize("cell,layers", [("rnn", 1), ("lstm", 2), ("gru", 1)])
def test_wide_beam_equals_exhaustive_search(cell, layers):
    model = random_model(TINY, cell, layers, hidden=5, scale=1.5, seed=3)
    state = model.initial_state(1)
    every = [
        (sequence_logp(model, state, 0, s), s) for s in itertools.product(range(3), repeat=LENGTH)
    ]
    every.sort(key=lambda e: -e[0])
    # a beam of V**(LENGTH-1) = 27 keeps every prefix: the search is exhaustive
    seqs, scores = beam_indices(model, state, 0, LENGTH, beam=27)
    assert [tuple(s) for s in seqs.tolist()] == [s for _, s in every[:27]]
    np.testing.assert_allclose(scores, [p for p, _ in every[:27]], rtol=1e-10)
    assert len(set(np.round(scores, 9))) > 20  # distinct scores: the order is meaningful


@pytest.mark.parametrize("beam", [2, 4])
def test_narrow_beam_reports_true_probabilities(beam):
    model = random_model(TINY, "rnn", hidden=5, scale=1.5, seed=4)
    state = model.initial_state(1)
    best = max(
        sequence_logp(model, state, 1, s) for s in itertools.product(range(3), repeat=LENGTH)
    )
    seqs, scores = beam_indices(model, state, 1, LENGTH, beam=beam)
    assert seqs.shape == (beam, LENGTH) and np.all(np.diff(scores) <= 0)
    for s, p in zip(seqs, scores):
        assert p == pytest.approx(sequence_logp(model, state, 1, s.tolist()), rel=1e-10)
        assert p <= best + 1e-12


def test_beam_of_one_is_greedy_decoding():
    vocab = Vocabulary.from_text("abcdefgh \n")
    model = random_model(vocab, "gru", hidden=8, scale=1.0)
    text, logp = beam_search(model, vocab, 30, prime="ab", beam=1)[0]
    h = model.initial_state(1)
    _, h = model.step_logits(np.array([vocab.chars.index("a")]), h)
    x, expected = vocab.chars.index("b"), []
    for _ in range(30):
        logits, h = model.step_logits(np.array([x]), h)
        x = int(np.argmax(logits[0]))
        expected.append(vocab.chars[x])
    assert text == "".join(expected)
    assert bits_per_char(logp, 30) == pytest.approx(-logp / 30 / math.log(2))


def test_cli_beam(tmp_path, capsys):
    vocab = Vocabulary.from_text("hello world\n")
    model = random_model(vocab, "lstm", hidden=6, scale=1.0)
    ckpt = write_checkpoint(tmp_path / "m.npz", model, vocab)
    assert sample_main([ckpt, "--beam", "3", "--length", "12", "--prime", "he"]) == 0
    out = capsys.readouterr().out.splitlines()
    found = beam_search(model, vocab, 12, prime="he", beam=3)
    headers = [line for line in out if line.startswith("# beam ")]
    assert len(headers) == 3
    for k, (_text, logp) in enumerate(found):
        assert headers[k].startswith(f"# beam {k + 1}: {bits_per_char(logp, 12):.4f} bits/char")
    assert ("he" + found[0][0]).splitlines()[0] in out
    assert sample_main([ckpt, "--beam", "2", "--prime", "xyz"]) == 2  # usage error
    assert "outside the model's vocabulary" in capsys.readouterr().err
