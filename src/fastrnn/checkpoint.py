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
removed and the previous checkpoint is left as it was. A new checkpoint gets the mode of any file
the user creates (0666 minus the umask); a rewritten one keeps the mode it had.

The life of a run around its checkpoint (``claim_checkpoint``): before the first iteration the path
is checked as the first save would find it (``check_writable``), a lock beside it keeps a second
run off the same files (``CheckpointLock``), and a new run refuses to replace the files of another
run unless told to (``refuse_to_overwrite``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import secrets
import socket
import stat
import sys
import zipfile
from collections.abc import Iterator
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


def build_arrays(
    model: CharRNN,
    vocab: Vocabulary,
    header: dict[str, Any],
    optimizer_state: dict[str, np.ndarray] | None = None,
    hidden: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The named arrays of a checkpoint, checksum included."""
    full_header = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "model": model.config(),
        **header,
    }
    arrays = {"header": _header_array(full_header), "vocab": vocab.codepoints()}
    arrays.update({f"param.{k}": v for k, v in model.params.items()})
    arrays.update({f"optim.{k}": v for k, v in (optimizer_state or {}).items()})
    if hidden is not None:
        arrays["hidden"] = hidden
    arrays["checksum"] = checksum(arrays)
    return arrays


def _write_arrays(f: BinaryIO, arrays: dict[str, np.ndarray]) -> None:
    """Serialise to an open file (a separate function so tests can simulate a full disk)."""
    np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as its flags


def save_checkpoint(
    path: str | os.PathLike,
    model: CharRNN,
    vocab: Vocabulary,
    header: dict[str, Any],
    optimizer_state: dict[str, np.ndarray] | None = None,
    hidden: np.ndarray | None = None,
) -> None:
    """Write the checkpoint atomically; CheckpointError (previous file intact) on failure."""
    arrays = build_arrays(model, vocab, header, optimizer_state, hidden)
    write_atomically(os.fspath(path), arrays)


def write_atomically(path: str, arrays: dict[str, np.ndarray]) -> None:
    """temp file in the same directory -> flush -> fsync -> os.replace -> fsync(directory)."""
    directory = _directory_of(path)
    tmp = None
    try:
        _check_file_name(path)
        fd, tmp = _create_temp(directory, os.path.basename(path))
        with os.fdopen(fd, "wb") as f:
            _keep_mode(f.fileno(), path)
            _write_arrays(f, arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_directory(directory)
    except OSError as exc:
        raise write_error(path, exc, "; the previous checkpoint (if any) is unchanged") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


_SEPARATORS = tuple(sep for sep in (os.sep, os.altsep) if sep)


def _check_file_name(path: str) -> None:
    """IsADirectoryError unless path can name a file: not empty, not ending in a separator
    ('out/'), not an existing directory."""
    if not path:
        raise IsADirectoryError(errno.EISDIR, "empty path (give a file name such as run.npz)")
    if path.endswith(_SEPARATORS):
        raise IsADirectoryError(
            errno.EISDIR, f"ends with {path[-1]!r}, a directory name (give a file name)"
        )
    if os.path.isdir(path):
        raise IsADirectoryError(
            errno.EISDIR,
            f"Is a directory (give a file name such as {os.path.join(path, 'run.npz')})",
        )


def write_error(path: str, exc: OSError, tail: str = "") -> CheckpointError:
    """The one-line error for a checkpoint that cannot be written, at the start or at a save."""
    shown = path if path else "''"
    return CheckpointError(f"cannot write checkpoint {shown}: {exc.strerror or exc}{tail}")


def _directory_of(path: str) -> str:
    """The directory a checkpoint path names, as written (abspath would turn 'out/' into 'out'
    and '' into the working directory, hiding what the save will find)."""
    return os.path.dirname(path) or os.curdir


def _create_temp(directory: str, name: str) -> tuple[int, str]:
    """A new file beside the target, opened for writing: (descriptor, path).

    Created by os.open with mode 0666 so the umask applies, as to any file the user writes
    (tempfile.mkstemp would make it 0600 whatever the umask); O_EXCL makes the name ours.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


def _keep_mode(fd: int, path: str) -> None:
    """A rewritten checkpoint keeps the permissions its owner gave it."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return  # a new file: the umask has decided
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX); not possible on Windows, where it is skipped."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def best_path(path: str) -> str:
    """Where the best-validation checkpoint goes: beside path, 'run.npz' -> 'run.best.npz'."""
    root, ext = os.path.splitext(path)
    return f"{root}.best{ext or '.npz'}"


# ---------------------------------------------------------------------------- the life of a run


def check_writable(path: str | os.PathLike) -> None:
    """Fail before training, with the error the first save would give, if the checkpoint or its
    best could not be written: an empty path, a directory name ('out/'), a path that is a
    directory, a parent that is a file, or a directory without write permission.

    Creates the directory if needed, then creates and removes a probe file in it the way a save
    creates its temporary file (os.access is not enough: it says yes to root on a read-only
    mount).
    """
    path = os.fspath(path)
    for target in (path, best_path(path)) if path else (path,):
        try:
            _check_file_name(target)
            directory = _directory_of(target)
            os.makedirs(directory, exist_ok=True)
            fd, probe = _create_temp(directory, os.path.basename(target))
            os.close(fd)
            os.unlink(probe)
        except FileExistsError:  # makedirs: the parent exists and is not a directory
            not_a_directory = NotADirectoryError(errno.ENOTDIR, "Not a directory")
            raise write_error(target, not_a_directory) from None
        except OSError as exc:
            raise write_error(target, exc) from None


def refuse_to_overwrite(
    path: str | os.PathLike, overwrite: bool, resume: str | os.PathLike | None = None
) -> None:
    """CheckpointError if a new run would replace the checkpoint (or best) of another run.

    Allowed: overwrite=True, or a resumed run writing to the file it resumed (and its best).
    """
    path = os.fspath(path)
    if overwrite or (resume is not None and _same_file(path, os.fspath(resume))):
        return
    if os.path.exists(path):
        raise CheckpointError(
            f"{path} already exists (a checkpoint of another run); continue "
            f"that run with --resume {path}, choose another --checkpoint, or "
            "give --overwrite to replace it"
        )
    best = best_path(path)
    if os.path.exists(best):
        raise CheckpointError(
            f"{best} already exists (the best checkpoint of another run); "
            "choose another --checkpoint, or give --overwrite to replace it"
        )


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def lock_path(path: str) -> str:
    """The lock file of a checkpoint: 'run.npz' -> 'run.npz.lock'."""
    return path + ".lock"


class CheckpointLock:
    """An exclusive lock on a checkpoint and its best for the life of a run.

    The lock is an OS lock (flock on POSIX, msvcrt.locking on Windows) on the file PATH.lock,
    which holds the holder's pid and host. The kernel releases it when the process ends, however
    it ends, so the file left by a killed run does not block the next one. A clean exit removes
    the file. On a file system without locks (ENOLCK) the run goes on unlocked; on a network
    file system a lock may be seen by one machine only.

        with CheckpointLock("run.npz"):
            ...  # no other fastrnn run writes run.npz or run.best.npz meanwhile
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self.lock_file = lock_path(self.path)
        self._fd: int | None = None

    def acquire(self) -> CheckpointLock:
        """Take the lock, or raise CheckpointError naming the run that holds it."""
        while self._fd is None:
            fd = self._open()
            if not _try_lock(fd):
                holder = _read_holder(fd)
                os.close(fd)
                raise CheckpointError(
                    f"{self.path} is in use by another run ({holder}, lock file "
                    f"{self.lock_file}); wait for it to end or choose another --checkpoint"
                )
            if _is_current(fd, self.lock_file):
                self._fd = fd
            else:  # removed by its previous holder after we opened it: lock the new file
                os.close(fd)
        try:
            _write_holder(self._fd)
        except OSError as exc:
            self.release()
            raise write_error(self.path, exc) from None
        return self

    def release(self) -> None:
        """Remove the lock file and drop the lock (removed first, so nobody locks a file that
        is about to disappear; _is_current catches anyone who opened it before)."""
        if self._fd is None:
            return
        try:
            os.unlink(self.lock_file)
        except OSError:
            pass
        try:
            os.close(self._fd)  # closing releases the lock
        finally:
            self._fd = None
        if os.name == "nt":  # an open file cannot be removed on Windows: remove it now
            with contextlib.suppress(OSError):
                os.unlink(self.lock_file)

    def __enter__(self) -> CheckpointLock:
        return self.acquire()

    def __exit__(self, *exc_info: Any) -> None:
        self.release()

    def _open(self) -> int:
        try:
            return os.open(
                self.lock_file, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666
            )
        except OSError as exc:
            raise write_error(self.path, exc) from None


def _try_lock(fd: int) -> bool:
    """Lock fd exclusively without waiting; False if another process holds it. Where the file
    system has no locks (ENOLCK on some network mounts), True: the run goes on unlocked."""
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
    return True


def _is_current(fd: int, name: str) -> bool:
    """Whether fd is still the file called name (not one unlinked since it was opened)."""
    try:
        a, b = os.fstat(fd), os.stat(name)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


_HOLDER_OFFSET = 1  # after the byte msvcrt locks, which other processes cannot read


def _write_holder(fd: int) -> None:
    """' pid N on HOST' into the lock file: a space in the locked byte, then who holds it."""
    text = f"pid {os.getpid()} on {socket.gethostname()}\n".encode()
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, b" " + text)


def _read_holder(fd: int) -> str:
    """'pid N on HOST' of the lock file's holder, or 'pid unknown'."""
    try:
        os.lseek(fd, _HOLDER_OFFSET, os.SEEK_SET)
        text = os.read(fd, 200).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "pid unknown"


@contextlib.contextmanager
def claim_checkpoint(
    path: str | os.PathLike | None, overwrite: bool = False, resume: str | os.PathLike | None = None
) -> Iterator[None]:
    """Everything a run checks and holds about its checkpoint, before its first iteration:
    the path is writable, no other run holds it, and it is not another run's file (unless
    overwrite). The lock is held until the block ends. path None: no file, nothing to do."""
    if path is None:
        yield
        return
    check_writable(path)
    with CheckpointLock(path):
        refuse_to_overwrite(path, overwrite, resume)
        yield


# ---------------------------------------------------------------------------- loading

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # an .npz is a zip archive (empty: end record)
NPY_MAGIC = b"\x93NUMPY"


def read_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All arrays of a fastrnn checkpoint, checksum verified; CheckpointError otherwise.

    The file's first bytes are checked before numpy reads it: numpy would take any other file
    for a pickle and answer with advice about allow_pickle, which is not the user's problem.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a directory, expected a checkpoint file")
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    not_ours = f"{path} is not a fastrnn checkpoint"
    try:
        with open(path, "rb") as f:
            magic = f.read(len(NPY_MAGIC))
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if magic.startswith(NPY_MAGIC):
        raise CheckpointError(f"{not_ours} (it is a single .npy array)")
    if not magic.startswith(ZIP_MAGIC):
        raise CheckpointError(f"{not_ours} (a checkpoint is an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):  # numpy's advice to load it unsafely: not for users
            raise CheckpointError(
                f"{not_ours} (an array holds pickled Python objects, which fastrnn never writes)"
            ) from None
        raise CheckpointError(f"{not_ours}, or it is damaged ({exc})") from None
    except (zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise CheckpointError(
            f"{not_ours}, or it is damaged (truncated or corrupt: {exc or type(exc).__name__})"
        ) from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if "header" not in arrays or "checksum" not in arrays:
        raise CheckpointError(f"{not_ours} (no header/checksum arrays)")
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
        raise CheckpointError(f"{path} is not a fastrnn checkpoint (its header is not fastrnn's)")
    if header.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {header.get('version')} "
            f"is not supported (this fastrnn reads version {FORMAT_VERSION})"
        )
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
                raise ValueError(
                    f"parameter {name} is {src.dtype}{src.shape}, "
                    f"expected {target.dtype}{target.shape}"
                )
            model.params[name] = np.ascontiguousarray(src)
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: inconsistent checkpoint: {exc}") from None
    if vocab.size != model.vocab_size:
        raise CheckpointError(
            f"{path}: vocabulary has {vocab.size} characters but the model "
            f"expects {model.vocab_size}"
        )
    optim = {k[len("optim.") :]: v for k, v in arrays.items() if k.startswith("optim.")}
    return Checkpoint(
        model=model, vocab=vocab, header=header, optimizer_state=optim, hidden=arrays.get("hidden")
    )


def load_model(path: str | os.PathLike) -> tuple[CharRNN, Vocabulary]:
    """The pair (model, vocab) of a checkpoint: what sampling needs."""
    ckpt = load_checkpoint(path)
    return ckpt.model, ckpt.vocab


# ---------------------------------------------------------------------------- description

VOCAB_SAMPLE = 60  # characters of the vocabulary shown by describe()


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """What a checkpoint holds, as JSON-able values (None where the file does not say):

    model (cell, layers, hidden and embedding size, parameters, dtype), vocabulary (size and
    its first VOCAB_SAMPLE characters), corpus (path, characters, sha256), position (iteration,
    epochs completed and chunks into the next), validation losses (best and last, in nats and
    bits per character), optimizer and learning rate. Reads the arrays and the header only, so
    it also describes checkpoints this version could not load as a model.
    """
    path = os.fspath(path)
    arrays = read_arrays(path)
    header = read_header(arrays, path)
    model = header.get("model") or {}
    config = header.get("train_config") or {}
    params = {k: v for k, v in arrays.items() if k.startswith("param.")}
    chars = [chr(c) for c in arrays["vocab"].tolist()] if "vocab" in arrays else []
    position = header.get("position") or {}
    optimizer = header.get("optimizer") or {}
    return {
        "path": path,
        "format_version": header.get("version"),
        "model": {
            "cell": model.get("cell"),
            "num_layers": model.get("num_layers"),
            "hidden_size": model.get("hidden_size"),
            "embedding_size": model.get("embedding_size"),
            "vocab_size": model.get("vocab_size"),
            "dtype": model.get("dtype"),
            "parameters": int(sum(a.size for a in params.values())),
            "init": model.get("init"),
        },
        "vocabulary": {"size": len(chars), "sample": "".join(chars[:VOCAB_SAMPLE])},
        "corpus": {
            "path": header.get("corpus"),
            "chars": header.get("corpus_chars"),
            "sha256": header.get("corpus_sha256"),
        },
        "iteration": header.get("iteration"),
        "epoch": position.get("epoch"),
        "epoch_step": position.get("step"),
        "chars_seen": header.get("chars_seen"),
        "batch_size": config.get("batch_size"),
        "seq_length": config.get("seq_length"),
        "best_val_loss": _loss(header.get("best_val_loss")),
        "val_loss": _loss(header.get("val_loss")),
        "optimizer": optimizer.get("name", config.get("optimizer")),
        "learning_rate": optimizer.get("lr", config.get("learning_rate")),
        "optimizer_step": optimizer.get("step"),
    }


def _loss(nats: float | None) -> dict[str, float] | None:
    """A loss per character in nats and in bits (nats / ln 2)."""
    if nats is None:
        return None
    return {"nats": nats, "bits": nats / math.log(2)}
