"""The head bias started at the training text's character frequencies (InitScheme.head_bias
"unigram", the default scheme's): the bias, its validation, that it leaves every other draw
alone, that the trainer counts the training part only, and that checkpoints keep it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fastrnn import CharRNN, init, train
from fastrnn import checkpoint as ckpt
from fastrnn.data import Vocabulary, char_counts, split_train_val
from fastrnn.init import InitScheme


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


@pytest.mark.parametrize("counts", [[10, 0, 3, 2, 1], [1, 1], [0, 0, 0], [5e9, 1, 0, 7]])
def test_the_bias_predicts_the_smoothed_frequencies(counts):
    c = np.asarray(counts, dtype=np.float64)
    bias = init.unigram_bias(c)
    np.testing.assert_allclose(softmax(bias), (c + 1) / (c.sum() + c.size), rtol=1e-12)
    assert abs(bias.mean()) < 1e-12


@pytest.mark.parametrize("cell,L,E", [("rnn", 1, 0), ("lstm", 2, 4), ("gru", 2, 0)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_default_model_starts_at_the_unigram_distribution(cell, L, E, dtype):
    counts = np.array([40, 3, 0, 12, 7, 1], dtype=np.int64)
    m = CharRNN(6, 5, num_layers=L, cell=cell, embedding_size=E, dtype=dtype, char_counts=counts)
    assert m.params["by"].dtype == dtype
    np.testing.assert_allclose(
        m.params["by"], init.unigram_bias(counts), rtol=1e-6 if dtype == np.float32 else 1e-15
    )
    # With Why at 0 the logits are the bias: the model predicts the smoothed unigram.
    m.params["Why"][...] = 0
    probs = softmax(m.step_logits(np.zeros(1, dtype=np.int32), m.initial_state(1))[0][0])
    np.testing.assert_allclose(probs, (counts + 1) / (counts.sum() + 6), rtol=1e-5)


def test_counts_change_the_head_bias_and_nothing_else():
    counts = np.arange(9) ** 2
    plain = CharRNN(9, 4, num_layers=2, cell="lstm", seed=3)
    counted = CharRNN(9, 4, num_layers=2, cell="lstm", seed=3, char_counts=counts)
    assert not plain.params["by"].any() and counted.params["by"].any()
    for name, p in plain.params.items():
        if name != "by":
            np.testing.assert_array_equal(counted.params[name], p, err_msg=name)


def test_a_scheme_with_a_zero_head_bias_ignores_the_counts():
    counts = np.arange(1, 8)
    for scheme in ("uniform", dataclasses.replace(init.SCHEMES["default"], head_bias="zero")):
        m = CharRNN(7, 4, init=scheme, char_counts=counts)
        assert not m.params["by"].any()


@pytest.mark.parametrize(
    "counts,error,match",
    [
        (np.ones(4), ValueError, r"shape \(5,\)"),
        (np.ones((5, 1)), ValueError, "shape"),
        (np.array([1, 2, -1, 0, 0]), ValueError, ">= 0"),
        (np.array([1, 2, np.nan, 0, 0]), ValueError, "finite"),
        (np.array([1, 2, np.inf, 0, 0]), ValueError, "finite"),
        (np.array(["a"] * 5), TypeError, "numbers"),
    ],
)
def test_bad_counts_are_rejected(counts, error, match):
    with pytest.raises(error, match=match):
        CharRNN(5, 4, char_counts=counts)


def test_bad_head_bias_kind_is_rejected():
    with pytest.raises(ValueError, match="head_bias"):
        InitScheme(head_bias="log")


def test_char_counts_counts_every_index_in_blocks(monkeypatch):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 7, size=1001).astype(np.uint16)
    expected = np.array([(ids == v).sum() for v in range(9)])
    monkeypatch.setattr("fastrnn.data._COUNT_BLOCK", 64)
    np.testing.assert_array_equal(char_counts(ids, 9), expected)
    np.testing.assert_array_equal(char_counts(ids[:0], 3), np.zeros(3))


def test_a_spec_recorded_without_a_head_bias_has_a_zero_one():
    spec = init.SCHEMES["default"].to_dict()
    del spec["head_bias"]
    assert init.from_spec(spec).head_bias == "zero"


# ------------------------------------------------------------------ the trainer


def skewed_text() -> str:
    """A training part where 'a' is common and 'z' rare, then a tail of mostly 'z': the
    validation tail's frequencies differ from the training part's."""
    rng = np.random.default_rng(1)
    body = "".join(rng.choice(list("aaaaaaaabbbcz \n"), size=3000))
    return body + "z" * 300 + "a" * 30


def test_a_new_run_counts_the_training_part_only(tmp_path):
    text = skewed_text()
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    result = train(
        str(path),
        hidden_size=6,
        num_layers=1,
        cell="rnn",
        embedding_size=0,
        batch_size=2,
        seq_length=8,
        max_iters=1,
        learning_rate=1e-12,  # one step that leaves the parameters where they started
        val_fraction=0.1,
        checkpoint=str(tmp_path / "run.npz"),
        quiet=True,
    )
    loaded = ckpt.load_checkpoint(result.checkpoint)
    vocab = Vocabulary.from_text(text)
    train_ids, _ = split_train_val(vocab.encode(text), 0.1)
    expected = init.unigram_bias(char_counts(train_ids, vocab.size))
    np.testing.assert_allclose(loaded.model.params["by"], expected, rtol=1e-6)
    assert loaded.header["model"]["init_spec"]["head_bias"] == "unigram"
    whole = init.unigram_bias(char_counts(vocab.encode(text), vocab.size))
    assert not np.allclose(loaded.model.params["by"], whole, rtol=1e-3)
