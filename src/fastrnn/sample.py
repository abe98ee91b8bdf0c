"""Sampling: warm the hidden state up on a prime text, then draw characters one at a time.

The per-character loop lives in ``generate`` alone, so that it can later be replaced by a
compiled loop without touching the rest.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator

import numpy as np

from .data import Vocabulary, describe_chars
from .errors import ConfigError
from .model import CharRNN


def next_char_probs(logits: np.ndarray, temperature: float, top_k: int | None) -> np.ndarray:
    """(V,) float64 softmax(logits / temperature), restricted to the top_k largest logits.

    Stable: the maximum is subtracted before exp, so logits of 1e4 give no inf or nan.
    """
    z = np.asarray(logits, dtype=np.float64) / temperature
    if top_k is not None and top_k < z.size:
        cutoff = np.partition(z, z.size - top_k)[z.size - top_k]
        z = np.where(z >= cutoff, z, -np.inf)
    z -= z.max()
    p = np.exp(z)
    p /= p.sum()
    return p


def draw(probs: np.ndarray, rng: np.random.Generator) -> int:
    """Index i with probability probs[i], from one uniform draw (inverse CDF)."""
    cdf = np.cumsum(probs)
    i = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    return min(i, probs.size - 1)


def warm_up(model: CharRNN, h: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Feed every index but the last through the model; the last one is the first input of
    generation. Returns the hidden state after them, (1, H)."""
    for i in indices[:-1]:
        _, h = model.step_logits(np.array([i], dtype=np.int32), h)
    return h


def generate(model: CharRNN, h: np.ndarray, first_index: int, length: int,
             temperature: float = 1.0, top_k: int | None = None, greedy: bool = False,
             rng: np.random.Generator | None = None) -> Iterator[int]:
    """Yield length indices: each is drawn from the model's prediction after the previous one.

    h is the (1, H) state before first_index is read. greedy takes the argmax every time
    (temperature and top_k then do not matter); otherwise draws from next_char_probs with rng.
    """
    rng = rng if rng is not None else np.random.default_rng()
    x = np.array([first_index], dtype=np.int32)
    for _ in range(length):
        logits, h = model.step_logits(x, h)
        i = int(np.argmax(logits[0])) if greedy else draw(
            next_char_probs(logits[0], temperature, top_k), rng)
        x[0] = i
        yield i


def check_sampling_options(vocab_size: int, length: int, temperature: float,
                           top_k: int | None) -> None:
    """ConfigError for a negative length, temperature <= 0 (or not finite), top_k outside [1, V]."""
    if length < 0:
        raise ConfigError(f"length must be >= 0, got {length}")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    if top_k is not None and not 1 <= top_k <= vocab_size:
        raise ConfigError(f"top-k must be in [1, {vocab_size}] (the vocabulary size), got {top_k}")


def iter_sample(model: CharRNN, vocab: Vocabulary, length: int = 500, prime: str = "",
                temperature: float = 1.0, top_k: int | None = None, greedy: bool = False,
                seed: int | None = None, rng: np.random.Generator | None = None) -> Iterator[str]:
    """Yield length generated characters one by one (the prime itself is not yielded).

    Without a prime, generation starts after a '\\n' if the vocabulary has one (the start of a
    line), else after a character drawn at random. Same seed, same text.
    """
    check_sampling_options(vocab.size, length, temperature, top_k)
    unknown = vocab.unknown_chars(prime)
    if unknown:
        raise ConfigError("prime text has characters outside the model's vocabulary: "
                          + describe_chars(unknown))
    rng = rng if rng is not None else np.random.default_rng(seed)
    if prime:
        indices = vocab.encode(prime)
    elif "\n" in vocab.chars:
        indices = vocab.encode("\n")
    else:
        indices = np.array([rng.integers(vocab.size)])
    h = warm_up(model, model.initial_state(1), indices)
    for i in generate(model, h, int(indices[-1]), length, temperature, top_k, greedy, rng):
        yield vocab.chars[i]


def sample(model: CharRNN, vocab: Vocabulary, length: int = 500, prime: str = "",
           temperature: float = 1.0, top_k: int | None = None, greedy: bool = False,
           seed: int | None = None, on_text: Callable[[str], None] | None = None) -> str:
    """The generated text (without the prime); on_text, if given, receives each character as
    soon as it is drawn (for streaming output)."""
    out = []
    for ch in iter_sample(model, vocab, length, prime, temperature, top_k, greedy, seed):
        out.append(ch)
        if on_text is not None:
            on_text(ch)
    return "".join(out)
