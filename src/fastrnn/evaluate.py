"""Evaluation: the model's loss on any text, in nats/char, bits/char and perplexity per character.

    result = fastrnn.evaluate(model, vocab, text)
    print(result.bits_per_char)

The text is read as training's validation reads its tail: cut into B contiguous streams, each
read from a zero state with the state carried from chunk to chunk (data.validation_chunks), so
every character but the first of each stream is predicted from everything before it in its stream.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .data import Vocabulary, describe_chars, make_streams, validation_chunks
from .errors import CorpusError
from .model import CharRNN

LN2 = math.log(2.0)
DEFAULT_BATCH_SIZE = 32  # streams: enough rows for BLAS, few enough that each stream is long
DEFAULT_SEQ_LENGTH = 100  # steps per chunk: only sets the workspace size, not the result


@dataclass(frozen=True)
class EvalResult:
    """The loss on a text. nats_per_char is the mean of -ln p(next char) over chars_scored
    predictions; chars_skipped counts the characters dropped as outside the vocabulary."""

    nats_per_char: float
    chars_scored: int
    chars_skipped: int
    seconds: float

    @property
    def bits_per_char(self) -> float:
        """nats / ln 2."""
        return self.nats_per_char / LN2

    @property
    def perplexity(self) -> float:
        """exp(nats/char): the number of equally likely characters the model hesitates among."""
        return math.exp(self.nats_per_char)

    @property
    def chars_per_sec(self) -> float:
        return self.chars_scored / self.seconds if self.seconds > 0 else math.inf

    def to_dict(self) -> dict[str, float | int]:
        return {
            "nats_per_char": self.nats_per_char,
            "bits_per_char": self.bits_per_char,
            "perplexity": self.perplexity,
            "chars_scored": self.chars_scored,
            "chars_skipped": self.chars_skipped,
            "seconds": self.seconds,
            "chars_per_sec": self.chars_per_sec,
        }


def combine(results: Iterable[EvalResult]) -> EvalResult:
    """The results of several texts as one: the loss weighted by the characters scored."""
    results = list(results)
    scored = sum(r.chars_scored for r in results)
    nats = sum(r.nats_per_char * r.chars_scored for r in results) / scored if scored else math.nan
    return EvalResult(
        nats, scored, sum(r.chars_skipped for r in results), sum(r.seconds for r in results)
    )


def known_text(vocab: Vocabulary, text: str, skip_unknown: bool) -> tuple[str, int]:
    """(text without the characters outside the vocabulary, how many were dropped); with
    skip_unknown False, CorpusError naming those characters instead."""
    unknown = vocab.unknown_chars(text)
    if not unknown:
        return text, 0
    if not skip_unknown:
        raise CorpusError(
            f"the text has {len(unknown)} distinct characters outside the model's "
            f"vocabulary: {describe_chars(unknown)} (skip them with --skip-unknown "
            "or skip_unknown=True)"
        )
    kept = text.translate(dict.fromkeys(map(ord, unknown)))
    return kept, len(text) - len(kept)


def _slice_streams(state: np.ndarray, rows: slice) -> np.ndarray:
    """The state of some streams (B is the second-to-last axis of every state shape)."""
    return np.ascontiguousarray(state[..., rows, :])


def eval_chunks(
    ids: np.ndarray, batch_size: int, seq_length: int
) -> Iterator[tuple[np.ndarray, np.ndarray, bool]]:
    """(inputs, targets, continues) chunks that score every character of ids but the first
    of each stream; continues=False means "start from the state of the last stream only".

    1. validation_chunks: equal (Bv, Tv) chunks over Bv streams of Lv = N // Bv characters;
    2. the tail of the streams that does not fill a chunk: one (Bv, r) chunk, r < Tv, that
       continues every stream with its carried state;
    3. the N - Bv*Lv (< Bv) characters after the last stream: one (1, N - Bv*Lv) chunk that
       continues the last stream with its state, so the last stream simply runs to the end.
    """
    if ids.size < 2:
        return
    chunks = validation_chunks(ids, batch_size, seq_length)
    yield from ((x, y, True) for x, y in chunks)
    # validation_chunks gives no chunk when its streams are shorter than Tv + 1 (a text of
    # fewer than about 3 * seq_length characters): then one stream is read in one chunk.
    Bv, Tv = chunks[0][0].shape if chunks else (1, 0)
    streams = make_streams(ids, Bv)  # (Bv, Lv)
    done = len(chunks) * Tv  # columns already used as inputs
    if streams.shape[1] - 1 > done:
        window = streams[:, done:]
        yield (
            np.ascontiguousarray(window[:, :-1], dtype=np.int32),
            np.ascontiguousarray(window[:, 1:], dtype=np.int32),
            True,
        )
    rest = ids[streams.size - 1 :]
    if rest.size > 1:
        yield (
            np.ascontiguousarray(rest[None, :-1], dtype=np.int32),
            np.ascontiguousarray(rest[None, 1:], dtype=np.int32),
            False,
        )


def mean_loss(
    model: CharRNN, ids: np.ndarray, batch_size: int, seq_length: int, backend: str = "kernel"
) -> tuple[float, int]:
    """(mean nats per scored character, characters scored) over the chunks of eval_chunks."""
    total, count, h = 0.0, 0, None
    for x, y, continues in eval_chunks(ids, batch_size, seq_length):
        if h is None:
            h = model.initial_state(x.shape[0])
        elif not continues:
            h = _slice_streams(h, slice(-1, None))
        loss, h = model.loss(x, y, h, backend=backend)
        total += loss * y.size  # model.loss is the mean over the chunk's B*T targets
        count += y.size
    return (total / count if count else math.nan), count


def evaluate(
    model: CharRNN,
    vocab: Vocabulary,
    text: str,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seq_length: int = DEFAULT_SEQ_LENGTH,
    skip_unknown: bool = False,
    backend: str = "kernel",
) -> EvalResult:
    """The model's loss on text, with the state carried through B = batch_size streams.

    The text of N characters is read as B streams of N // B characters (fewer streams for a
    short text), the last one running to the end of the text; each stream starts from a zero
    state and every character but its first is scored, so chars_scored = N - B. The streams are
    read seq_length characters at a time; the part that does not fill a whole chunk is scored
    by one smaller chunk that carries the same state (see eval_chunks), so no character is
    dropped. Characters outside the vocabulary raise CorpusError naming them, or with
    skip_unknown are removed before reading (the text closes up around them).
    """
    if vocab.size != model.vocab_size:
        raise ValueError(
            f"the vocabulary has {vocab.size} characters, the model {model.vocab_size}"
        )
    started = time.perf_counter()
    text, skipped = known_text(vocab, text, skip_unknown)
    if len(text) < 2:
        raise CorpusError(
            f"the text has {len(text)} character(s) in the vocabulary; at least 2 "
            "are needed (one to read, one to predict)"
        )
    nats, scored = mean_loss(model, vocab.encode(text), batch_size, seq_length, backend)
    return EvalResult(nats, scored, skipped, time.perf_counter() - started)
