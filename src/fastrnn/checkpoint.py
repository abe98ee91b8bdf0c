"""Checkpoints: one .npz of plain arrays, read back with allow_pickle=False.

Array names inside the file:
  header        (n,) uint8   UTF-8 JSON: format, version, model config, training config,
                             iteration, data position, RNG state, optimizer counters, ...
  vocab         (V,) uint32  code points of the vocabulary, sorted
  param.<name>  model.params[name]
  optim.<key>   optimizer state arrays (for example 'optim.m.Whh')
  hidden        the carried hidden state, whatever its shape
  checksum      (32,) uint8  sha256 over every other array, in sorted-name order

Writing is atomic: a temporary file in the target directory is written, flushed and fsynced, then
renamed over the target (and the directory fsynced). If anything fails, the temporary file is
removed and the previous checkpoint is left as it was.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from .data import Vocabulary
from .errors import CheckpointError
from .model import CharRNN

FORMAT_NAME = "fastrnn-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """What a checkpoint file holds, rebuilt: the model with its vocabulary and training state."""

    model: CharRNN
    vocab: Vocabulary
    header: dict[str, Any]
    optimizer_state: dict[str, np.ndarray] = field(default_factory=dict)
    hidden: np.ndarray | None = None


# ---------------------------------------------------------------------------- checksum

def checksum(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """(32,) uint8 sha256 of every array's name, dtype, shape and bytes, in sorted-name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(a.tobytes())
    return np.frombuffer(digest.digest(), dtype=np.uint8).copy()


def _header_array(header: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(json.dumps(header, sort_keys=True).encode("utf-8"), dtype=np.uint8).copy()


# ---------------------------------------------------------------------------- saving

def build_arrays(model: CharRNN, vocab: Vocabulary, header: dict[str, Any],
                 optimizer_state: dict[str, np.ndarray] | None = None,
                 hidden: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The named arrays of a checkpoint, checksum included."""
    full_header = {"format": FORMAT_NAME, "version": FORMAT_VERSION,
                   "model": model.config(), **header}
    arrays = {"header": _header_array(full_header), "vocab": vocab.codepoints()}
    arrays.update({f"param.{k}": v for k, v in model.params.items()})
    arrays.update({f"optim.{k}": v for k, v in (optimizer_state or {}).items()})
    if hidden is not None:
        arrays["hidden"] = hidden
    arrays["checksum"] = checksum(arrays)
    return arrays


def _write_arrays(f: BinaryIO, arrays: dict[str, np.ndarray]) -> None:
    """Serialise to an open file (a separate function so tests can simulate a full disk)."""
    np.savez(f, **arrays)


def save_checkpoint(path: str | os.PathLike, model: CharRNN, vocab: Vocabulary,
                    header: dict[str, Any], optimizer_state: dict[str, np.ndarray] | None = None,
                    hidden: np.ndarray | None = None) -> None:
    """Write the checkpoint atomically; CheckpointError (previous file intact) on failure."""
    arrays = build_arrays(model, vocab, header, optimizer_state, hidden)
    write_atomically(os.fspath(path), arrays)


def write_atomically(path: str, arrays: dict[str, np.ndarray]) -> None:
    """temp file in the same directory -> flush -> fsync -> os.replace -> fsync(directory)."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".",
                                   suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            _write_arrays(f, arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_directory(directory)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise CheckpointError(f"cannot write checkpoint {path}: {reason}; "
                              "the previous checkpoint (if any) is unchanged") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX); not possible on Windows, where it is skipped."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_writable(path: str | os.PathLike) -> None:
    """Fail early, before training, if checkpoints could not be written next to path.

    Creates the directory if needed, then creates and removes a probe file in it (os.access
    is not enough: it says yes to root on a read-only mount).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".fastrnn-probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CheckpointError(f"cannot write checkpoints to {directory}: "
                              f"{exc.strerror or exc}") from None
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint path {path} is a directory; give a file name")


# ---------------------------------------------------------------------------- loading

def read_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All arrays of a fastrnn checkpoint, checksum verified; CheckpointError otherwise."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a directory, expected a checkpoint file")
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise CheckpointError(f"{path}: a single .npy array, not a fastrnn checkpoint")
        with loaded as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, EOFError) as exc:
        raise CheckpointError(f"{path}: damaged, truncated or not an .npz checkpoint "
                              f"({exc})") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: damaged or not a fastrnn checkpoint ({exc})") from None
    if "header" not in arrays or "checksum" not in arrays:
        raise CheckpointError(f"{path}: not a fastrnn checkpoint (no header/checksum arrays)")
    stored = arrays.pop("checksum")
    if not np.array_equal(stored, checksum(arrays)):
        raise CheckpointError(f"{path}: checksum mismatch: the file is damaged")
    return arrays


def read_header(arrays: dict[str, np.ndarray], path: str = "checkpoint") -> dict[str, Any]:
    try:
        header = json.loads(arrays["header"].tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: header is not valid JSON") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: not a fastrnn checkpoint")
    if header.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {header.get('version')} "
                              f"is not supported (this fastrnn reads version {FORMAT_VERSION})")
    return header


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """The model (with its vocabulary), header, optimizer state and hidden state of a file."""
    path = os.fspath(path)
    arrays = read_arrays(path)
    header = read_header(arrays, path)
    try:
        model = CharRNN.from_config(header["model"])
        vocab = Vocabulary(arrays["vocab"])
        for name, target in model.params.items():
            src = arrays[f"param.{name}"]
            if src.shape != target.shape or src.dtype != target.dtype:
                raise ValueError(f"parameter {name} is {src.dtype}{src.shape}, "
                                 f"expected {target.dtype}{target.shape}")
            model.params[name] = np.ascontiguousarray(src)
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: inconsistent checkpoint: {exc}") from None
    if vocab.size != model.vocab_size:
        raise CheckpointError(f"{path}: vocabulary has {vocab.size} characters but the model "
                              f"expects {model.vocab_size}")
    optim = {k[len("optim."):]: v for k, v in arrays.items() if k.startswith("optim.")}
    return Checkpoint(model=model, vocab=vocab, header=header, optimizer_state=optim,
                      hidden=arrays.get("hidden"))


def load_model(path: str | os.PathLike) -> tuple[CharRNN, Vocabulary]:
    """Just the trained model and its vocabulary, for sampling."""
    ckpt = load_checkpoint(path)
    return ckpt.model, ckpt.vocab
