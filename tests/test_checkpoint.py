"""Checkpoint files: round trip, plain arrays only, damage detection, atomic writes."""

import errno
import json
import os

import numpy as np
import pytest

import fastrnn
from fastrnn import checkpoint as ckpt
from fastrnn.data import Vocabulary
from fastrnn.errors import CheckpointError


def save_example(path, seed=0):
    vocab = Vocabulary.from_text("hello, world\n")
    model = fastrnn.CharRNN(vocab.size, 8, dtype=np.float64, seed=seed)
    optim = {"m.Whh": np.full((8, 8), 0.5), "v.Whh": np.full((8, 8), 0.25)}
    hidden = np.linspace(-1, 1, 3 * 8).reshape(3, 8)
    header = {"iteration": 7, "rng_state": np.random.default_rng(1).bit_generator.state}
    ckpt.save_checkpoint(path, model, vocab, header, optim, hidden)
    return model, vocab, optim, hidden


def test_round_trip(tmp_path):
    path = tmp_path / "run.npz"
    model, vocab, optim, hidden = save_example(path)
    loaded = ckpt.load_checkpoint(path)
    assert isinstance(loaded.model, fastrnn.CharRNN)
    assert loaded.vocab == vocab
    assert loaded.model.config() == model.config()
    for k in model.params:
        assert np.array_equal(loaded.model.params[k], model.params[k])
        assert loaded.model.params[k].flags.c_contiguous
    assert set(loaded.optimizer_state) == set(optim)
    assert np.array_equal(loaded.hidden, hidden)
    assert loaded.header["iteration"] == 7
    assert loaded.header["format"] == "fastrnn-checkpoint" and loaded.header["version"] == 1
    rng = np.random.default_rng()
    rng.bit_generator.state = loaded.header["rng_state"]
    assert rng.random() == np.random.default_rng(1).random()
    assert os.listdir(tmp_path) == ["run.npz"]  # no temporary file left behind


def test_file_is_plain_arrays(tmp_path):
    path = tmp_path / "run.npz"
    save_example(path)
    with np.load(path, allow_pickle=False) as npz:
        names = set(npz.files)
        assert npz["vocab"].dtype == np.uint32 and npz["header"].dtype == np.uint8
        json.loads(npz["header"].tobytes())
    assert {"header", "vocab", "checksum", "hidden", "param.Wxh", "optim.m.Whh"} <= names


def test_missing(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        ckpt.load_checkpoint(tmp_path / "none.npz")


def test_truncated(tmp_path):
    path = tmp_path / "run.npz"
    save_example(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated|damaged"):
        ckpt.load_checkpoint(path)


def test_corrupt_byte_is_detected(tmp_path):
    path = tmp_path / "run.npz"
    save_example(path)
    data = bytearray(path.read_bytes())
    with np.load(path) as npz:  # find the bytes of one parameter inside the archive
        needle = npz["param.Why"].tobytes()[:16]
    at = data.find(needle)
    assert at > 0
    data[at + 3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged|checksum"):
        ckpt.load_checkpoint(path)


def test_checksum_mismatch_is_detected(tmp_path):
    path = tmp_path / "run.npz"
    save_example(path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["param.by"] = arrays["param.by"] + 1.0  # a valid zip whose arrays changed
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        ckpt.load_checkpoint(path)


@pytest.mark.parametrize("kind", ["text", "foreign_npz", "npy", "directory"])
def test_not_a_fastrnn_checkpoint(tmp_path, kind):
    path = tmp_path / "x.npz"
    if kind == "text":
        path.write_text("just some text\n")
    elif kind == "foreign_npz":
        np.savez(path, weights=np.ones(3))
    elif kind == "npy":
        with open(path, "wb") as f:
            np.save(f, np.ones(3))
    else:
        path.mkdir()
    with pytest.raises(CheckpointError):
        ckpt.load_checkpoint(path)


def test_unwritable_directory_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "run.npz"
    save_example(path, seed=0)
    before = path.read_bytes()

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(ckpt, "_create_temp", denied)
    with pytest.raises(CheckpointError, match="Permission denied.*unchanged"):
        save_example(path, seed=1)
    assert path.read_bytes() == before


def test_full_disk_keeps_previous_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "run.npz"
    model, *_ = save_example(path, seed=0)

    def disk_full(f, arrays):
        f.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt, "_write_arrays", disk_full)
    with pytest.raises(CheckpointError, match="No space left on device"):
        save_example(path, seed=1)
    loaded = ckpt.load_checkpoint(path)
    assert np.array_equal(loaded.model.params["Whh"], model.params["Whh"])
    assert os.listdir(tmp_path) == ["run.npz"]


def test_check_writable_rejects_a_path_under_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CheckpointError, match="cannot write checkpoint .*: Not a directory"):
        ckpt.check_writable(blocker / "run.npz")
