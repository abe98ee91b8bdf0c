"""The encoded-corpus cache: hit, miss, stale, verified; atomic writes; memory-mapped reads;
the same indices as the in-memory encoder; several files in their stated order; --val-file."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

from fastrnn import corpus as corpus_module
from fastrnn.corpus import corpus_files, index_dtype, load_corpus, remap_ids
from fastrnn.data import Vocabulary, read_corpus
from fastrnn.errors import CorpusError
from fastrnn.train import Trainer

TEXT = "\ufeffFirst line\r\nsecond\rthird — naïve café ☃\n" * 40 + "last\r"


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Chunks of 37 bytes, so that characters, '\\r\\n' pairs and the BOM straddle them."""
    monkeypatch.setattr(corpus_module, "CHUNK_BYTES", 37)


def write(path, text: str | bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def in_memory(*paths) -> tuple[np.ndarray, Vocabulary]:
    text = "".join(read_corpus(p) for p in paths)
    vocab = Vocabulary.from_text(text)
    return vocab.encode(text), vocab


def cached(paths, tmp_path, **kwargs):
    return load_corpus(paths, cache_dir=tmp_path / "cache", **kwargs)


def test_cached_ids_equal_the_in_memory_encoder(tmp_path):
    path = write(tmp_path / "a.txt", TEXT)
    corpus = cached([path], tmp_path)
    ids, vocab = in_memory(path)
    assert corpus.vocab == vocab
    np.testing.assert_array_equal(corpus.ids, ids)
    assert corpus.vocab.decode(corpus.ids) == read_corpus(path)


def test_miss_then_hit_reads_a_read_only_memory_map(tmp_path):
    path = write(tmp_path / "a.txt", TEXT)
    first = cached([path], tmp_path)
    assert not first.cache_hit and first.cache_path.endswith(".npy")
    stamp = os.stat(first.cache_path).st_mtime_ns
    second = cached([path], tmp_path)
    assert second.cache_hit and os.stat(second.cache_path).st_mtime_ns == stamp
    assert isinstance(second.ids, np.memmap) and not second.ids.flags.writeable
    np.testing.assert_array_equal(second.ids, first.ids)
    assert second.sha256 == first.sha256


def test_a_changed_file_makes_the_cache_stale(tmp_path):
    path = write(tmp_path / "a.txt", TEXT)
    cached([path], tmp_path)
    write(path, TEXT + "more text\n")
    corpus = cached([path], tmp_path)
    assert not corpus.cache_hit
    np.testing.assert_array_equal(corpus.ids, in_memory(path)[0])


def test_touching_the_file_rebuilds(tmp_path):
    path = write(tmp_path / "a.txt", TEXT)
    cached([path], tmp_path)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert not cached([path], tmp_path).cache_hit
    assert cached([path], tmp_path).cache_hit


def test_verify_catches_a_change_that_keeps_size_and_time(tmp_path):
    path = write(tmp_path / "a.txt", "abcabc" * 50)
    cached([path], tmp_path)
    st = os.stat(path)
    write(path, "abcabd" * 50)  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same time
    assert cached([path], tmp_path).cache_hit  # not noticed without hashing
    corpus = cached([path], tmp_path, verify=True)
    assert not corpus.cache_hit
    assert corpus.vocab.decode(corpus.ids) == "abcabd" * 50


def test_a_failed_build_leaves_no_partial_file_and_the_old_cache(tmp_path, monkeypatch):
    path = write(tmp_path / "a.txt", TEXT)
    old = cached([path], tmp_path)
    old_ids = np.array(old.ids)
    write(path, TEXT * 2)

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(corpus_module, "encode_files", fail)
    with pytest.raises(CorpusError, match="No space left on device"):
        cached([path], tmp_path)
    names = sorted(os.listdir(tmp_path / "cache"))
    assert len(names) == 2 and not any(n.endswith(".tmp") for n in names)
    stem = old.cache_path[:-4]
    meta = corpus_module._read_meta(stem)
    np.testing.assert_array_equal(corpus_module._open_ids(stem, meta), old_ids)


def test_cache_files_are_replaced_by_rename(tmp_path, monkeypatch):
    """Both files reach their names through os.replace, never by writing in place."""
    path = write(tmp_path / "a.txt", TEXT)
    replaced = []
    real = os.replace
    monkeypatch.setattr(
        corpus_module.os, "replace", lambda a, b: (replaced.append(os.path.basename(b)), real(a, b))
    )
    corpus = cached([path], tmp_path)
    assert sorted(replaced) == sorted(
        os.path.basename(corpus.cache_path[:-4]) + ext for ext in (".json", ".npy")
    )


def test_smallest_index_dtype():
    assert index_dtype(2) == np.uint8 and index_dtype(256) == np.uint8
    assert index_dtype(257) == np.uint16 and index_dtype(65536) == np.uint16
    assert index_dtype(65537) == np.uint32


def test_large_vocabulary_uses_uint16(tmp_path):
    path = write(tmp_path / "cjk.txt", "".join(chr(0x4E00 + k) for k in range(300)) * 3)
    corpus = cached([path], tmp_path)
    assert corpus.ids.dtype == np.uint16
    np.testing.assert_array_equal(corpus.ids, in_memory(path)[0])


def test_several_files_and_a_directory_in_their_stated_order(tmp_path):
    a = write(tmp_path / "a.txt", "from a\n")
    b = write(tmp_path / "b.txt", "from b\n")
    d = tmp_path / "dir"
    write(d / "z.txt", "z comes last\n")
    write(d / "sub" / "m.txt", "sub/m second\n")
    write(d / "c.txt", "c first\n")
    write(d / ".hidden", "never read\n")
    files = corpus_files([b, d, a])
    assert [os.path.relpath(f, tmp_path) for f in files] == [
        "b.txt",
        os.path.join("dir", "c.txt"),
        os.path.join("dir", "sub", "m.txt"),
        os.path.join("dir", "z.txt"),
        "a.txt",
    ]
    corpus = cached([b, d, a], tmp_path)
    assert corpus.vocab.decode(corpus.ids) == (
        "from b\nc first\nsub/m second\nz comes last\nfrom a\n"
    )
    assert "+ 4 more files" in corpus.name


def test_bad_utf8_is_reported_with_its_offset_across_chunks(tmp_path):
    path = write(tmp_path / "bad.txt", "é" * 30 + "x")
    raw = path.read_bytes()
    path.write_bytes(raw[:42] + b"\xff" + raw[42:])
    with pytest.raises(CorpusError, match="invalid byte 0xff at byte offset 42"):
        cached([path], tmp_path)
    with pytest.raises(CorpusError, match="invalid byte 0xff at byte offset 42"):
        read_corpus(path)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(CorpusError, match="no such file"):
        cached([tmp_path / "nothing.txt"], tmp_path)
    with pytest.raises(CorpusError, match="empty"):
        cached([write(tmp_path / "empty.txt", b"")], tmp_path)


def test_small_corpora_are_not_cached_without_a_cache_dir(tmp_path):
    path = write(tmp_path / "a.txt", TEXT)
    corpus = load_corpus([path])
    assert corpus.cache_path is None and os.listdir(tmp_path) == ["a.txt"]
    np.testing.assert_array_equal(corpus.ids, in_memory(path)[0])


def test_remap_to_a_larger_vocabulary():
    source, target = Vocabulary([ord(c) for c in "bd"]), Vocabulary([ord(c) for c in "abcd"])
    np.testing.assert_array_equal(
        remap_ids(np.array([0, 1, 1, 0]), source, target, chunk=3), [1, 3, 3, 1]
    )


def _trainer(tmp_path, **options) -> Trainer:
    return Trainer(
        {
            "hidden_size": 8,
            "batch_size": 4,
            "seq_length": 8,
            "max_iters": 3,
            "checkpoint": str(tmp_path / "r.npz"),
            "cache_dir": str(tmp_path / "cache"),
            **options,
        },
        text=None,
        out=io.StringIO(),
    )


def test_trainer_reads_batches_from_the_memory_map_without_copying(tmp_path):
    path = write(tmp_path / "a.txt", TEXT * 3)
    trainer = _trainer(tmp_path, corpus=str(path))
    ids = load_corpus([path], cache_dir=tmp_path / "cache").ids
    assert isinstance(trainer.batches.streams.base, np.memmap) or np.shares_memory(
        trainer.batches.streams, trainer.batches.streams.base
    )
    assert not trainer.batches.streams.flags.owndata
    assert trainer.batches.streams.base.size == ids.size  # a view of the whole file
    np.testing.assert_array_equal(
        trainer.batches.streams.reshape(-1), ids[: trainer.batches.streams.size]
    )
    result = trainer.run(handle_signals=False)
    assert result.iterations == 3 and np.isfinite(result.train_loss)


def test_val_file_replaces_the_validation_tail(tmp_path):
    train_path = write(tmp_path / "train.txt", TEXT * 3)
    val_path = write(tmp_path / "val.txt", "second line naïve\n" * 5)
    trainer = _trainer(tmp_path, corpus=str(train_path), val_file=str(val_path))
    assert trainer.data.val_chars == len(read_corpus(val_path))
    assert trainer.batches.streams.size > len(read_corpus(train_path)) - 4  # no tail held out
    x, _ = trainer.data.val_chunks[0]
    assert trainer.vocab.decode(x[0]) == "second l"


def test_val_file_with_unknown_characters_is_refused(tmp_path):
    train_path = write(tmp_path / "train.txt", TEXT * 3)
    val_path = write(tmp_path / "val.txt", "ZZZ unknown QQQ\n")
    with pytest.raises(CorpusError, match="outside the vocabulary"):
        _trainer(tmp_path, corpus=str(train_path), val_file=str(val_path))
