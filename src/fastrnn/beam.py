"""Beam search: the likeliest continuations of a prime, rather than random ones.

    for text, logp in fastrnn.beam.beam_search(model, vocab, 200, prime="ROMEO:", beam=8):
        ...

Every step extends each of the K <= beam kept sequences by every character (K*V candidates,
scored by total log-probability) and keeps the best `beam`. The K sequences advance together:
one batched model.step_logits call over B = K rows per character. With a beam as wide as
V**(length-1) the search is exhaustive; a narrower one may miss the overall best sequences.
"""

from __future__ import annotations

import math

import numpy as np

from .data import Vocabulary, describe_chars
from .errors import ConfigError
from .model import CharRNN
from .sample import warm_up


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """(K, V) log-probabilities of each row."""
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _rows(state: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The states of the chosen rows (B is the second-to-last axis of every state shape)."""
    return np.ascontiguousarray(state[..., rows, :])


def _prime_indices(vocab: Vocabulary, prime: str) -> np.ndarray:
    """The prime's indices; without a prime, a newline (or the first character)."""
    unknown = vocab.unknown_chars(prime)
    if unknown:
        raise ConfigError(
            "prime text has characters outside the model's vocabulary: " + describe_chars(unknown)
        )
    if prime:
        return vocab.encode(prime)
    return vocab.encode("\n") if "\n" in vocab.chars else np.array([0])


def beam_indices(
    model: CharRNN, state: np.ndarray, first_index: int, length: int, beam: int
) -> tuple[np.ndarray, np.ndarray]:
    """((K, length) indices, (K,) total log-probabilities in nats) of the K = min(beam,
    V**length) best sequences found, best first. state is the (batch 1) state before
    first_index is read."""
    V = model.vocab_size
    seqs = np.empty((1, length), dtype=np.int64)  # (K, length) the kept sequences
    scores = np.zeros(1)  # (K,) their log-probabilities
    last = np.array([first_index], dtype=np.int32)  # (K,) the character each will read next
    h = state
    for t in range(length):
        logits, h_next = model.step_logits(last, h)  # (K, V)
        cand = (scores[:, None] + log_softmax(logits)).ravel()  # (K*V,)
        keep = np.argsort(-cand, kind="stable")[:beam]
        parent, char = np.divmod(keep, V)
        seqs = seqs[parent]
        seqs[:, t] = char
        scores = cand[keep]
        last = char.astype(np.int32)
        h = _rows(h_next, parent)
    return seqs, scores


def beam_search(
    model: CharRNN, vocab: Vocabulary, length: int, prime: str = "", beam: int = 8
) -> list[tuple[str, float]]:
    """The top `beam` continuations of prime of `length` characters, as (text without the
    prime, total log-probability in nats), best first. bits/char = -logp / (length ln 2)."""
    if beam < 1:
        raise ConfigError(f"beam must be >= 1, got {beam}")
    if length < 1:
        raise ConfigError(f"length must be >= 1 for a beam search, got {length}")
    indices = _prime_indices(vocab, prime)
    h = warm_up(model, model.initial_state(1), indices)
    seqs, scores = beam_indices(model, h, int(indices[-1]), length, beam)
    return [(vocab.decode(s), float(p)) for s, p in zip(seqs, scores)]


def bits_per_char(logp: float, length: int) -> float:
    """-logp / (length ln 2): the mean surprisal of a sequence's characters in bits."""
    return -logp / (length * math.log(2.0))
