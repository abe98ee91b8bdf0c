"""Shared fixtures of the tool tests: a small random model over a small text, and its checkpoint."""

from __future__ import annotations

import numpy as np

from fastrnn import CharRNN, Vocabulary
from fastrnn.checkpoint import save_checkpoint
from fastrnn.data import default_corpus

TEXT = default_corpus()[:3000]


def random_model(
    vocab: Vocabulary,
    cell: str = "rnn",
    num_layers: int = 1,
    hidden: int = 12,
    dtype=np.float64,
    seed: int = 0,
    scale: float = 0.5,
) -> CharRNN:
    """A model with random weights (biases included) large enough for non-trivial dynamics."""
    model = CharRNN(vocab.size, hidden, num_layers=num_layers, cell=cell, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for p in model.params.values():
        p[...] = rng.normal(0.0, scale, size=p.shape)
    return model


def write_checkpoint(path, model: CharRNN, vocab: Vocabulary) -> str:
    save_checkpoint(path, model, vocab, {})
    return str(path)
