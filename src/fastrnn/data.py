"""Corpus, vocabulary and batches: text in, (B, T) index chunks out.

Dimension letters: B streams, T steps per chunk, L characters per stream, N characters of text.

The training text is cut into B contiguous streams (char-rnn style): stream b is characters
[b*L, (b+1)*L) of the training part. Iteration k of an epoch reads columns [k*T, k*T + T] of every
stream, so the hidden state carried from chunk to chunk continues each stream exactly where the
previous chunk stopped. The last ``val_fraction`` of the text is held out for validation.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .errors import CorpusError

DEFAULT_CORPUS_NAME = "pydoc_data.topics (the Python documentation, from the standard library)"


# ---------------------------------------------------------------------------- reading text


def read_corpus(path: str | os.PathLike) -> str:
    """The file's text, decoded as strict UTF-8, with '\\r\\n' and lone '\\r' turned into '\\n'.

    Raises CorpusError naming the problem: missing, a directory, unreadable, not UTF-8 (with the
    byte offset of the first bad byte), or empty. A leading byte-order mark is dropped.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise CorpusError(f"{path}: is a directory, expected a text file")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise CorpusError(f"{path}: no such file") from None
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"{path}: not UTF-8 text: invalid byte 0x{raw[exc.start]:02x} "
            f"at byte offset {exc.start}"
        ) from None
    text = normalize_newlines(text.removeprefix("\ufeff"))
    if not text:
        raise CorpusError(f"{path}: the file is empty")
    return text


def normalize_newlines(text: str) -> str:
    """'\\r\\n' and lone '\\r' become '\\n' so that one line break is one character."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def default_corpus() -> str:
    """The default training text, present in every Python installation: pydoc's topic help.

    The topic texts are joined in sorted key order, so the corpus is the same on every run.
    """
    from pydoc_data.topics import topics

    return normalize_newlines("".join(topics[key] for key in sorted(topics)))


# ---------------------------------------------------------------------------- vocabulary

ENCODE_CHUNK = 1 << 22  # characters converted at a time: bounds the temporaries to ~50 MB


def _codepoints(text: str) -> np.ndarray:
    """(N,) uint32 code points of text, without a Python loop."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _chunks(text: str) -> Iterable[str]:
    for start in range(0, len(text), ENCODE_CHUNK):
        yield text[start : start + ENCODE_CHUNK]


class Vocabulary:
    """The sorted set of characters of a text; index i stands for the i-th character.

    Indices are stored as uint16 when V <= 65535 (every BMP-sized vocabulary), else uint32,
    so an encoded corpus costs 2 bytes per character.
    """

    def __init__(self, codepoints: Iterable[int] | np.ndarray):
        cps = np.unique(np.asarray(codepoints, dtype=np.uint32))
        if cps.size == 0:
            raise CorpusError("the vocabulary is empty")
        self._codepoints = cps  # (V,) sorted, unique
        self.chars = "".join(map(chr, cps.tolist()))

    @classmethod
    def from_text(cls, text: str) -> Vocabulary:
        """The characters of text (read in chunks, so a large text needs little extra memory)."""
        found = [np.unique(_codepoints(part)) for part in _chunks(text)]
        return cls(np.concatenate(found) if found else [])

    @property
    def size(self) -> int:
        return int(self._codepoints.size)

    def __len__(self) -> int:
        return self.size

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.chars == other.chars

    def __repr__(self) -> str:
        return f"Vocabulary(size={self.size})"

    @property
    def index_dtype(self) -> np.dtype:
        return np.dtype(np.uint16 if self.size <= 65535 else np.uint32)

    def codepoints(self) -> np.ndarray:
        """(V,) uint32 code points, the form stored in checkpoints."""
        return self._codepoints.copy()

    def unknown_chars(self, text: str) -> list[str]:
        """The distinct characters of text that are not in the vocabulary, sorted."""
        if not text:
            return []
        cps = np.unique(np.concatenate([np.unique(_codepoints(p)) for p in _chunks(text)]))
        known = np.isin(cps, self._codepoints)
        return [chr(c) for c in cps[~known].tolist()]

    def encode(self, text: str) -> np.ndarray:
        """(N,) indices of text's characters, dtype index_dtype; CorpusError on unknown ones.

        Converted ENCODE_CHUNK characters at a time, so memory beyond the text itself is the
        2 (or 4) bytes per character of the result plus one chunk's temporaries.
        """
        out = np.empty(len(text), dtype=self.index_dtype)
        for k, part in enumerate(_chunks(text)):
            cps = _codepoints(part)
            idx = np.searchsorted(self._codepoints, cps)
            np.minimum(idx, self.size - 1, out=idx)
            if not np.array_equal(self._codepoints[idx], cps):
                raise CorpusError(
                    "text has characters outside the vocabulary: "
                    + describe_chars(self.unknown_chars(text))
                )
            out[k * ENCODE_CHUNK : k * ENCODE_CHUNK + cps.size] = idx
        return out

    def decode(self, indices: Iterable[int] | np.ndarray) -> str:
        """The text whose characters have these indices."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        return self._codepoints[idx].astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")


def describe_chars(chars: list[str], limit: int = 20) -> str:
    """A short printable list such as "'é', '\\t' (2 characters)" for error messages."""
    shown = ", ".join(repr(c) for c in chars[:limit])
    more = f", ... ({len(chars)} in all)" if len(chars) > limit else ""
    return shown + more


# ---------------------------------------------------------------------------- splitting


def validation_length(n: int, val_fraction: float) -> int:
    """Characters held out at the end: floor(n * f), but at least 2 (one input, one target)."""
    if val_fraction <= 0:
        return 0
    return max(2, int(n * val_fraction))


def minimum_length(batch_size: int, seq_length: int, val_fraction: float) -> int:
    """The fewest characters that give one (B, T) training chunk plus a validation tail."""
    need = batch_size * (seq_length + 1)
    n = need
    while n - validation_length(n, val_fraction) < need:
        n = need + validation_length(n, val_fraction)
    return n


def check_length(n: int, batch_size: int, seq_length: int, val_fraction: float) -> None:
    """CorpusError that says the minimum and what to change, if n characters are too few."""
    minimum = minimum_length(batch_size, seq_length, val_fraction)
    if n < minimum:
        raise CorpusError(
            f"the text has {n} characters, too few for --batch-size {batch_size} and "
            f"--seq-length {seq_length}: at least {minimum} are needed (B*(T+1) for training"
            f"{' plus the validation tail' if val_fraction > 0 else ''}); "
            "use a smaller --batch-size or --seq-length"
        )


def split_train_val(ids: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation): the validation part is the tail, so no stream crosses the split."""
    n_val = validation_length(ids.size, val_fraction)
    return ids[: ids.size - n_val], ids[ids.size - n_val :]


def char_counts(ids: np.ndarray, V: int) -> np.ndarray:
    """(V,) int64 occurrences of each index 0..V-1 in ids, counted a block at a time so that a
    memory-mapped corpus of any length needs no intp copy of the whole."""
    counts = np.zeros(V, dtype=np.int64)
    for start in range(0, ids.size, _COUNT_BLOCK):
        counts += np.bincount(ids[start : start + _COUNT_BLOCK], minlength=V)[:V]
    return counts


_COUNT_BLOCK = 1 << 22


def make_streams(ids: np.ndarray, batch_size: int) -> np.ndarray:
    """(B, L) view of the first B*L characters, L = N // B; the remainder (< B chars) is dropped."""
    L = ids.size // batch_size
    return ids[: batch_size * L].reshape(batch_size, L)


# ---------------------------------------------------------------------------- batches


@dataclass(frozen=True)
class Position:
    """Where the next chunk starts: epoch number and chunk number within the epoch."""

    epoch: int = 0
    step: int = 0


class BatchIterator:
    """Yields (inputs, targets, starts_epoch) for consecutive (B, T) chunks of the streams, forever.

    inputs = streams[:, k*T : k*T+T], targets = the same shifted by one character; both
    C-contiguous int32, ready for the kernel. starts_epoch tells the caller to reset the hidden
    state. ``position`` is saved in checkpoints and given back to ``seek`` to continue exactly.
    """

    def __init__(self, train_ids: np.ndarray, batch_size: int, seq_length: int):
        check_length(train_ids.size, batch_size, seq_length, 0.0)
        self.streams = make_streams(train_ids, batch_size)  # (B, L)
        self.batch_size = batch_size
        self.seq_length = seq_length
        L = self.streams.shape[1]
        self.chunks_per_epoch = (L - 1) // seq_length  # each chunk needs T inputs + 1 target
        self.position = Position()

    @property
    def chars_per_epoch(self) -> int:
        return self.chunks_per_epoch * self.batch_size * self.seq_length

    def seek(self, position: Position) -> None:
        if not 0 <= position.step < self.chunks_per_epoch or position.epoch < 0:
            raise CorpusError(
                f"data position {position} is outside this corpus "
                f"({self.chunks_per_epoch} chunks per epoch)"
            )
        self.position = position

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray, bool]:
        pos = self.position
        start = pos.step * self.seq_length
        window = self.streams[:, start : start + self.seq_length + 1]  # (B, T+1)
        inputs = np.ascontiguousarray(window[:, :-1], dtype=np.int32)
        targets = np.ascontiguousarray(window[:, 1:], dtype=np.int32)
        step = pos.step + 1
        self.position = (
            Position(pos.epoch, step)
            if step < self.chunks_per_epoch
            else Position(pos.epoch + 1, 0)
        )
        return inputs, targets, pos.step == 0


class ValidationChunks:
    """The validation tail as equal (Bv, Tv) chunks covering it in stream order, made on demand.

    A sequence of (inputs, targets) int32 pairs; only the chunk asked for is copied out of the
    ids, so a memory-mapped tail of any length costs one chunk of memory.
    """

    def __init__(self, streams: np.ndarray, Tv: int):
        self.streams = streams  # (Bv, Lv) view of the tail
        self.Tv = Tv
        self.n_chunks = (streams.shape[1] - 1) // Tv if streams.shape[1] > 0 else 0

    def __len__(self) -> int:
        return self.n_chunks

    def __getitem__(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if not -self.n_chunks <= k < self.n_chunks:
            raise IndexError(k)
        k %= self.n_chunks
        window = self.streams[:, k * self.Tv : k * self.Tv + self.Tv + 1]  # (Bv, Tv+1)
        return (
            np.ascontiguousarray(window[:, :-1], dtype=np.int32),
            np.ascontiguousarray(window[:, 1:], dtype=np.int32),
        )

    def __iter__(self):
        return (self[k] for k in range(self.n_chunks))


def validation_chunks(val_ids: np.ndarray, batch_size: int, seq_length: int) -> ValidationChunks:
    """The validation tail as equal (Bv, Tv) chunks covering it in stream order.

    Bv <= B and Tv <= T shrink for a short tail so that every held-out character (but the
    remainder of at most Bv*Tv) is scored; equal chunk sizes make the mean of chunk losses
    the mean loss per character.
    """
    if val_ids.size < 2:
        return ValidationChunks(np.empty((1, 0), dtype=val_ids.dtype), 1)
    Tv = min(seq_length, val_ids.size - 1)
    Bv = max(1, min(batch_size, (val_ids.size - 1) // Tv))
    return ValidationChunks(make_streams(val_ids, Bv), Tv)
