"""Sampling: warm the hidden state up on a prime text, then draw characters one at a time.

The per-character loop is CharRNN.generate (compiled in the kernel, with a numpy twin); this
module adds what a user needs around it: the prime, option checks with clear messages, the
vocabulary, and streaming in blocks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np

from .data import Vocabulary, describe_chars
from .errors import ConfigError
from .model import CharRNN

# Characters per call into the compiled loop: the first block is small, so that output appears
# at once; each next one twice as long, up to STREAM_BLOCK_MAX, so that the cost of a call
# (validation, packing the weights: about 40 us for an LSTM at H = 100, 14 characters' worth)
# is spread over many characters while the bursts stay short.
STREAM_BLOCK = 64
STREAM_BLOCK_MAX = 1024


def stream_blocks(length: int) -> Iterator[int]:
    """The lengths of the blocks that generate draws `length` characters in: STREAM_BLOCK,
    then doubling up to STREAM_BLOCK_MAX, the last one what is left; they sum to length."""
    block, done = STREAM_BLOCK, 0
    while done < length:
        n = min(block, length - done)
        yield n
        done += n
        block = min(2 * block, max(STREAM_BLOCK_MAX, STREAM_BLOCK))


def warm_up(model: CharRNN, h: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Feed every index but the last through the model; the last one is the first input of
    generation. Returns the hidden state after them, shaped like h: (1, H) for a
    single-layer rnn, else model.state_shape(1)."""
    for i in indices[:-1]:
        _, h = model.step_logits(np.array([i], dtype=np.int32), h)
    return h


def generate(
    model: CharRNN,
    h: np.ndarray,
    first_index: int,
    length: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    greedy: bool = False,
    rng: np.random.Generator | None = None,
    backend: str = "kernel",
) -> Iterator[int]:
    """Yield length indices: each is drawn from the model's prediction after the previous one.

    h is the state before first_index is read, as CharRNN.generate takes it ((1, H) for a
    single-layer rnn, else model.state_shape(1)). greedy takes the argmax every time;
    otherwise softmax(logits / temperature) restricted to the top_k largest logits is sampled
    with rng. Runs CharRNN.generate in the blocks of stream_blocks; since it takes one rng draw
    per character, the text does not depend on the block sizes.
    """
    rng = rng if rng is not None else np.random.default_rng()
    h = np.array(h, dtype=model.dtype, order="C")  # generate() updates it in place
    x = first_index
    for n in stream_blocks(length):
        block = model.generate(
            h,
            x,
            n,
            temperature,
            top_k,
            greedy,
            rng,
            backend=backend,
        )
        yield from block.tolist()
        x = int(block[-1])


def check_sampling_options(
    vocab_size: int, length: int, temperature: float, top_k: int | None
) -> None:
    """ConfigError for a negative length, temperature <= 0 (or not finite), top_k outside [1, V]."""
    if length < 0:
        raise ConfigError(f"length must be >= 0, got {length}")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    if top_k is not None and not 1 <= top_k <= vocab_size:
        raise ConfigError(f"top-k must be in [1, {vocab_size}] (the vocabulary size), got {top_k}")


def iter_sample(
    model: CharRNN,
    vocab: Vocabulary,
    length: int = 500,
    prime: str = "",
    temperature: float = 1.0,
    top_k: int | None = None,
    greedy: bool = False,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
    backend: str = "kernel",
) -> Iterator[str]:
    """Yield length generated characters (the prime itself is not yielded).

    Without a prime, generation starts after a '\\n' if the vocabulary has one (the start of a
    line), else after a character drawn at random. Same seed, same text.
    """
    rng = rng if rng is not None else np.random.default_rng(seed)
    h, first = primed_state(model, vocab, length, prime, temperature, top_k, rng)
    for i in generate(model, h, first, length, temperature, top_k, greedy, rng, backend):
        yield vocab.chars[i]


def primed_state(
    model: CharRNN,
    vocab: Vocabulary,
    length: int,
    prime: str,
    temperature: float,
    top_k: int | None,
    rng: np.random.Generator,
) -> tuple[np.ndarray, int]:
    """(the one-stream state after the prime but its last character, that character's index):
    where generation starts. Checks the options first (ConfigError)."""
    check_sampling_options(vocab.size, length, temperature, top_k)
    unknown = vocab.unknown_chars(prime)
    if unknown:
        raise ConfigError(
            "prime text has characters outside the model's vocabulary: " + describe_chars(unknown)
        )
    if prime:
        indices = vocab.encode(prime)
    elif "\n" in vocab.chars:
        indices = vocab.encode("\n")
    else:
        indices = np.array([rng.integers(vocab.size)])
    return warm_up(model, model.initial_state(1), indices), int(indices[-1])


def sample_many(
    model: CharRNN,
    vocab: Vocabulary,
    num_samples: int,
    length: int = 500,
    prime: str = "",
    temperature: float = 1.0,
    top_k: int | None = None,
    greedy: bool = False,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
    backend: str = "kernel",
) -> list[str]:
    """num_samples generated texts (without the prime), all continuing the same prime, drawn
    together as num_samples streams of one CharRNN.generate call (the weights are read once per
    character for all of them). Same seed, same texts; with num_samples = 1 the text is
    sample()'s. The streams draw rng.random((length, num_samples)) (see CharRNN.generate), so
    sample k is not the text a one-sample call would give with another seed."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ConfigError(f"the number of samples must be an integer >= 1, got {num_samples}")
    rng = rng if rng is not None else np.random.default_rng(seed)
    h, first = primed_state(model, vocab, length, prime, temperature, top_k, rng)
    shape = model.initial_state(num_samples).shape
    streams = np.ascontiguousarray(
        np.broadcast_to(h, shape) if h.ndim == 2 else np.repeat(h, num_samples, axis=-2)
    )
    out = model.generate(
        streams,
        np.full(num_samples, first),
        length,
        temperature,
        top_k,
        greedy,
        rng,
        backend=backend,
    )
    chars = np.array(list(vocab.chars))
    return ["".join(chars[row]) for row in out]


def sample(
    model: CharRNN,
    vocab: Vocabulary,
    length: int = 500,
    prime: str = "",
    temperature: float = 1.0,
    top_k: int | None = None,
    greedy: bool = False,
    seed: int | None = None,
    on_text: Callable[[str], None] | None = None,
    backend: str = "kernel",
) -> str:
    """The generated text (without the prime); on_text, if given, receives each character as
    soon as its block (stream_blocks) is drawn (for streaming output)."""
    out = []
    for ch in iter_sample(
        model, vocab, length, prime, temperature, top_k, greedy, seed, backend=backend
    ):
        out.append(ch)
        if on_text is not None:
            on_text(ch)
    return "".join(out)
