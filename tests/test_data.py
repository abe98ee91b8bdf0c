"""Corpus reading, vocabulary, stream splitting and the resumable batch iterator."""

import builtins

import numpy as np
import pytest

from fastrnn.data import (
    BatchIterator,
    Position,
    Vocabulary,
    check_length,
    default_corpus,
    minimum_length,
    read_corpus,
    split_train_val,
    validation_chunks,
)
from fastrnn.errors import CorpusError


def write(tmp_path, data: bytes, name="corpus.txt"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- reading


def test_read_normalises_newlines_and_drops_bom(tmp_path):
    path = write(tmp_path, "\ufeffa\r\nb\rc\nd".encode("utf-8"))
    assert read_corpus(path) == "a\nb\nc\nd"


def test_read_missing_file(tmp_path):
    with pytest.raises(CorpusError, match="no such file"):
        read_corpus(tmp_path / "nope.txt")


def test_read_directory(tmp_path):
    with pytest.raises(CorpusError, match="is a directory"):
        read_corpus(tmp_path)


def test_read_empty_file(tmp_path):
    with pytest.raises(CorpusError, match="empty"):
        read_corpus(write(tmp_path, b""))


def test_read_unreadable_file(tmp_path, monkeypatch):
    path = write(tmp_path, b"hello")
    real_open = builtins.open

    def deny(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", deny)
    with pytest.raises(CorpusError, match="cannot read: Permission denied"):
        read_corpus(path)


def test_read_not_utf8_names_byte_offset(tmp_path):
    path = write(tmp_path, "héllo".encode() + b"\xff rest")
    with pytest.raises(CorpusError, match=r"0xff at byte offset 6"):
        read_corpus(path)


def test_default_corpus_is_large_deterministic_and_normalised():
    text = default_corpus()
    assert len(text) > 400_000
    assert "\r" not in text
    assert text == default_corpus()


# ---------------------------------------------------------------- vocabulary


def test_vocabulary_sorted_roundtrip_with_cjk_and_astral_chars():
    text = "三字经 abc\n😀 cab三"
    vocab = Vocabulary.from_text(text)
    assert vocab.chars == "".join(sorted(set(text)))
    ids = vocab.encode(text)
    assert ids.dtype == np.uint16
    assert vocab.decode(ids) == text
    assert Vocabulary(vocab.codepoints()) == vocab


def test_encoding_in_chunks_gives_the_same_result(monkeypatch):
    import fastrnn.data as data

    text = "".join(np.random.default_rng(0).choice(list("ab\nçd三"), 1000))
    whole_vocab = Vocabulary.from_text(text)
    whole = whole_vocab.encode(text)
    monkeypatch.setattr(data, "ENCODE_CHUNK", 7)
    assert Vocabulary.from_text(text) == whole_vocab
    assert np.array_equal(whole_vocab.encode(text), whole)
    assert whole_vocab.unknown_chars(text + "xy") == ["x", "y"]


def test_vocabulary_index_dtype_grows_past_65535():
    assert Vocabulary(np.arange(65535)).index_dtype == np.uint16
    assert Vocabulary(np.arange(65536)).index_dtype == np.uint32


def test_encode_lists_unknown_characters():
    vocab = Vocabulary.from_text("abc")
    assert vocab.unknown_chars("abxzyx") == ["x", "y", "z"]
    with pytest.raises(CorpusError, match="'x', 'y', 'z'"):
        vocab.encode("abxzy")


# ---------------------------------------------------------------- length and splitting


@pytest.mark.parametrize("B,T,f", [(4, 8, 0.0), (4, 8, 0.1), (32, 64, 0.05), (1, 1, 0.5)])
def test_minimum_length_is_exact(B, T, f):
    n = minimum_length(B, T, f)
    check_length(n, B, T, f)
    train, _ = split_train_val(np.zeros(n, dtype=np.uint16), f)
    BatchIterator(train, B, T)  # one chunk fits
    with pytest.raises(CorpusError):
        check_length(n - 1, B, T, f)


def test_too_short_message_says_minimum_and_what_to_change():
    with pytest.raises(CorpusError) as info:
        check_length(100, 8, 16, 0.0)
    msg = str(info.value)
    assert "at least 136" in msg and "--batch-size" in msg and "--seq-length" in msg


def test_validation_is_the_tail():
    ids = np.arange(100, dtype=np.uint16)
    train, val = split_train_val(ids, 0.1)
    assert train.tolist() == list(range(90)) and val.tolist() == list(range(90, 100))


# ---------------------------------------------------------------- batches


def test_batches_are_contiguous_streams_with_shifted_targets():
    ids = np.arange(4 * 25, dtype=np.uint16)  # 4 streams of 25
    it = BatchIterator(ids, batch_size=4, seq_length=6)
    assert it.chunks_per_epoch == 4  # (25 - 1) // 6
    x0, y0, first = next(it)
    x1, y1, second = next(it)
    assert first and not second
    assert x0.dtype == np.int32 and x0.flags.c_contiguous and x0.shape == (4, 6)
    np.testing.assert_array_equal(y0, x0 + 1)
    np.testing.assert_array_equal(x0[:, 0], [0, 25, 50, 75])
    np.testing.assert_array_equal(x1[:, 0], x0[:, -1] + 1)  # the next chunk continues each stream


def test_epoch_wraps_and_flags_the_reset():
    it = BatchIterator(np.arange(40, dtype=np.uint16), batch_size=2, seq_length=4)
    flags = [next(it)[2] for _ in range(2 * it.chunks_per_epoch)]
    assert flags == ([True] + [False] * (it.chunks_per_epoch - 1)) * 2
    assert it.position == Position(epoch=2, step=0)


def test_seek_restores_the_same_batches():
    ids = np.random.default_rng(0).integers(0, 50, 1000).astype(np.uint16)
    a = BatchIterator(ids, 3, 7)
    for _ in range(30):
        next(a)
    b = BatchIterator(ids, 3, 7)
    b.seek(a.position)
    for _ in range(60):
        xa, ya, fa = next(a)
        xb, yb, fb = next(b)
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb) and fa == fb


def test_validation_chunks_cover_the_tail_in_order():
    val = np.arange(50, dtype=np.uint16)
    chunks = validation_chunks(val, batch_size=4, seq_length=5)
    x = np.concatenate([c[0] for c in chunks], axis=1)
    y = np.concatenate([c[1] for c in chunks], axis=1)
    np.testing.assert_array_equal(y, x + 1)
    assert x.size >= val.size - 4 * 5 - 4
    short = validation_chunks(np.arange(3, dtype=np.uint16), batch_size=4, seq_length=64)
    assert [c[0].shape for c in short] == [(1, 2)]
