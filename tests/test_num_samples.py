"""Many samples at once: sample_many (N streams of one CharRNN.generate call) and
fastrnn-sample --num-samples N (numbered blocks on stdout or in -o FILE)."""

import numpy as np
import pytest

from _tools import random_model, write_checkpoint
from fastrnn import Vocabulary
from fastrnn.cli import sample_blocks, sample_main
from fastrnn.errors import ConfigError
from fastrnn.sample import sample, sample_many

VOCAB = Vocabulary.from_text("hello world, the quick brown fox\n")


def by_hand(model, vocab, prime, length, uniforms, temperature=1.0):
    """Each sample stepped with step_logits from the shared primed state, sample b drawing its
    n-th character with uniforms[n, b]."""
    from fastrnn.reference import next_index

    N = uniforms.shape[1]
    h = model.initial_state(1)
    for ch in prime[:-1]:
        _, h = model.step_logits(vocab.encode(ch), h)
    state = np.repeat(h, N, axis=-2) if h.ndim > 2 else np.repeat(h, N, axis=0)
    x = np.full(N, vocab.encode(prime[-1])[0])
    rows = []
    for n in range(length):
        logits, state = model.step_logits(x, state)
        x = np.array(
            [
                next_index(logits[b], temperature, vocab.size, False, uniforms[n, b])
                for b in range(N)
            ]
        )
        rows.append(x)
    return ["".join(vocab.chars[i] for i in col) for col in np.array(rows).T]


@pytest.mark.parametrize("cell,layers", [("rnn", 1), ("lstm", 2), ("gru", 1)])
def test_samples_are_the_streams_stepped_by_hand(cell, layers):
    model = random_model(VOCAB, cell, layers, hidden=8, scale=0.8)
    texts = sample_many(model, VOCAB, 4, 30, prime="the ", temperature=0.8, seed=5)
    uniforms = np.random.default_rng(5).random((30, 4))
    assert texts == by_hand(model, VOCAB, "the ", 30, uniforms, temperature=0.8)
    assert len(set(texts)) > 1


def test_one_sample_is_the_text_of_sample():
    model = random_model(VOCAB, "lstm", 2, hidden=8, scale=0.8)
    assert sample_many(model, VOCAB, 1, 150, prime="he", seed=3) == [
        sample(model, VOCAB, 150, prime="he", seed=3)
    ]


def test_samples_are_reproducible_and_refuse_bad_options():
    model = random_model(VOCAB, "gru", 1, hidden=8)
    assert sample_many(model, VOCAB, 3, 20, seed=1) == sample_many(model, VOCAB, 3, 20, seed=1)
    assert sample_many(model, VOCAB, 3, 0, seed=1) == ["", "", ""]
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ConfigError, match="number of samples"):
            sample_many(model, VOCAB, bad, 10)
    with pytest.raises(ConfigError, match="vocabulary"):
        sample_many(model, VOCAB, 2, 10, prime="XYZ")


def test_cli_prints_numbered_samples(tmp_path, capsys):
    model = random_model(VOCAB, "lstm", 1, hidden=8, scale=0.8)
    ckpt = write_checkpoint(tmp_path / "m.npz", model, VOCAB)
    args = [ckpt, "--num-samples", "3", "--length", "25", "--prime", "he", "--seed", "7"]
    assert sample_main(args) == 0
    out = capsys.readouterr().out
    texts = sample_many(model, VOCAB, 3, 25, prime="he", seed=7)
    assert out == sample_blocks(texts, "he") + "\n"
    for k, text in enumerate(texts, 1):
        assert f"--- sample {k} ---\nhe{text}" in out
    assert "--- sample 4 ---" not in out


def test_cli_writes_numbered_samples_to_a_file(tmp_path, capsys):
    model = random_model(VOCAB, "rnn", 1, hidden=8, scale=0.8)
    ckpt = write_checkpoint(tmp_path / "m.npz", model, VOCAB)
    target = tmp_path / "samples.txt"
    assert (
        sample_main(
            [ckpt, "--num-samples", "2", "--length", "40", "--seed", "2", "-o", str(target)]
        )
        == 0
    )
    assert capsys.readouterr().out == ""
    written = target.read_text(encoding="utf-8")
    assert written == sample_blocks(sample_many(model, VOCAB, 2, 40, seed=2), "") + "\n"
    assert written.startswith("--- sample 1 ---\n") and "\n--- sample 2 ---\n" in written


def test_cli_one_sample_keeps_its_plain_output(tmp_path, capsys):
    model = random_model(VOCAB, "gru", 1, hidden=8)
    ckpt = write_checkpoint(tmp_path / "m.npz", model, VOCAB)
    assert sample_main([ckpt, "--length", "30", "--prime", "he", "--seed", "4"]) == 0
    out = capsys.readouterr().out
    assert out == "he" + sample(model, VOCAB, 30, prime="he", seed=4) + "\n"
    with pytest.raises(SystemExit) as exc:
        sample_main([ckpt, "--num-samples", "0"])
    assert exc.value.code == 2
    assert "--num-samples" in capsys.readouterr().err


def test_cli_refuses_num_samples_with_beam(tmp_path, capsys):
    model = random_model(VOCAB, "rnn", 1, hidden=8)
    ckpt = write_checkpoint(tmp_path / "m.npz", model, VOCAB)
    assert sample_main([ckpt, "--beam", "2", "--num-samples", "3"]) == 2
    assert "--num-samples does not apply to --beam" in capsys.readouterr().err
