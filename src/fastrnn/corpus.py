"""Corpora on disk: one or more text files encoded once, cached as a .npy, and memory-mapped.

Dimension letters: N characters of the corpus, V vocabulary size.

A corpus is a list of sources (files, or directories expanded to the files under them in sorted
order of their relative paths, hidden names skipped), joined as they are, in the order given.
Each file is decoded as read_corpus does: strict UTF-8, a leading byte-order mark dropped,
'\\r\\n' and lone '\\r' turned into '\\n'.

The encoded corpus is cached as two files, beside the first source (or in ``cache_dir``):
  <stem>.npy   (N,) indices, the smallest unsigned dtype that holds V - 1 (uint8, uint16, uint32)
  <stem>.json  the vocabulary (code points), N, and per file: path, size, mtime_ns, sha256 of
               its bytes; plus the sha256 of the whole normalised text (UTF-8), which is what
               checkpoints record as "corpus_sha256"
Corpora under CACHE_MIN_BYTES are encoded in memory instead, unless a cache directory is given.
The cache is used when every file's size and modification time match the JSON (hashing a
gigabyte on every start would cost seconds; ``verify=True`` checks the hashes too), and rebuilt
otherwise. Both files are written to temporary names and renamed into place, the .npy first, so
a reader never sees a partial file. Building streams each file in chunks of CHUNK_BYTES twice
(vocabulary first, then indices), so memory stays bounded whatever the size of the text.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .data import Vocabulary
from .errors import CorpusError

CHUNK_BYTES = 1 << 22  # bytes read at a time: bounds the temporaries to ~60 MB
CACHE_FORMAT = "fastrnn-corpus-cache"
CACHE_VERSION = 1
MAX_CODEPOINT = 0x110000
CACHE_MIN_BYTES = 1 << 24  # smaller corpora encode in well under a second: not cached


@dataclass
class Corpus:
    """An encoded corpus: ids (N,) read-only (memory-mapped when cached), its vocabulary, a
    display name and the sha256 of its normalised text."""

    ids: np.ndarray
    vocab: Vocabulary
    name: str
    sha256: str
    cache_path: str | None = None
    cache_hit: bool = False


# ---------------------------------------------------------------------------- sources


def corpus_files(sources: Sequence[str | os.PathLike]) -> list[str]:
    """The files of a corpus in their stated order: as given; a directory becomes the files
    under it, sorted by relative path, hidden names (starting with '.') skipped."""
    files: list[str] = []
    for source in (os.fspath(s) for s in sources):
        if os.path.isdir(source):
            found = sorted(_files_under(source))
            if not found:
                raise CorpusError(f"{source}: the directory has no files")
            files.extend(found)
        elif os.path.exists(source):
            files.append(source)
        else:
            raise CorpusError(f"{source}: no such file")
    if not files:
        raise CorpusError("no corpus files given")
    return files


def _files_under(directory: str) -> Iterator[str]:
    for root, dirs, names in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if not name.startswith("."):
                yield os.path.join(root, name)


def describe_sources(files: Sequence[str]) -> str:
    """'a.txt' or 'a.txt + 2 more files' for the start block."""
    return files[0] if len(files) == 1 else f"{files[0]} + {len(files) - 1} more files"


# ---------------------------------------------------------------------------- streaming

BOM = b"\xef\xbb\xbf"


def _boundary(data: bytes) -> int:
    """The length of the longest prefix of data that ends on a whole UTF-8 character and not
    on a '\r' (whose '\n' may come with the next read)."""
    cut = len(data)
    back = 0
    while back < 3 and cut - back > 0 and 0x80 <= data[cut - back - 1] < 0xC0:
        back += 1  # continuation bytes at the end
    if cut - back > 0:
        lead = data[cut - back - 1]
        need = 4 if lead >= 0xF0 else 3 if lead >= 0xE0 else 2 if lead >= 0xC0 else 1
        if need > back + 1:  # the last character is incomplete
            cut -= back + 1
    if cut > 0 and data[cut - 1] == 0x0D:
        cut -= 1
    return cut


def iter_normalized(path: str, chunk_bytes: int | None = None, raw_digest=None) -> Iterator[bytes]:
    """The normalised text of one file as UTF-8 bytes, in pieces of about chunk_bytes that end
    on character boundaries.

    Joined and decoded, the pieces are the text read_corpus returns: strict UTF-8 (CorpusError
    with the byte offset of the first bad byte), leading BOM dropped, '\r\n' and lone '\r'
    turned into '\n'. Working on bytes is exact because '\r' and '\n' never occur inside a
    multi-byte UTF-8 character; a pure-ASCII piece (the common case) is never decoded.
    raw_digest, a hashlib object, is updated with the file's bytes as they are read.
    CorpusError if the file is empty.
    """
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    consumed = 0  # bytes of the file before `data`
    carry = b""  # an incomplete character or a '\r' held for the next read
    produced = False
    try:
        with open(path, "rb") as f:
            while True:
                block = f.read(chunk_bytes)
                if raw_digest is not None:
                    raw_digest.update(block)
                final = not block
                data = carry + block
                cut = len(data) if final else _boundary(data)
                data, carry = data[:cut], data[cut:]
                if not data.isascii():
                    _check_utf8(path, data, consumed)
                piece = data[len(BOM) :] if consumed == 0 and data.startswith(BOM) else data
                consumed += len(data)
                if b"\r" in piece:
                    piece = piece.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
                if piece:
                    produced = True
                    yield piece
                if final:
                    break
    except IsADirectoryError:
        raise CorpusError(f"{path}: is a directory, expected a text file") from None
    except FileNotFoundError:
        raise CorpusError(f"{path}: no such file") from None
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not produced:
        raise CorpusError(f"{path}: the file is empty")


def _check_utf8(path: str, data: bytes, offset: int) -> None:
    """CorpusError naming the first bad byte of data (at file offset offset + its index)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"{path}: not UTF-8 text: invalid byte 0x{data[exc.start]:02x} at "
            f"byte offset {offset + exc.start}"
        ) from None


def codepoints(piece: bytes) -> np.ndarray:
    """(n,) code points of a normalised UTF-8 piece: uint8 for ASCII (no copy), else uint32."""
    if piece.isascii():
        return np.frombuffer(piece, dtype=np.uint8)
    return np.frombuffer(piece.decode("utf-8").encode("utf-32-le"), dtype=np.uint32)


def index_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds indices 0 .. V-1."""
    for dt in (np.uint8, np.uint16, np.uint32):
        if vocab_size - 1 <= np.iinfo(dt).max:
            return np.dtype(dt)
    raise CorpusError(f"vocabulary of {vocab_size} characters is too large")


def scan_files(
    files: Sequence[str], raw_digests: Sequence | None = None
) -> tuple[Vocabulary, int, str]:
    """First pass: (vocabulary, N, sha256 of the normalised text as UTF-8), in bounded memory.
    raw_digests (one hashlib object per file) receive the files' bytes."""
    seen = np.zeros(MAX_CODEPOINT, dtype=bool)
    n = 0
    digest = hashlib.sha256()
    for k, path in enumerate(files):
        for piece in iter_normalized(path, raw_digest=raw_digests[k] if raw_digests else None):
            cps = codepoints(piece)
            if cps.dtype == np.uint8:
                for start in range(0, cps.size, 1 << 20):  # bounds bincount's intp copy
                    seen[:128] |= np.bincount(cps[start : start + (1 << 20)], minlength=128) > 0
            else:
                seen[cps] = True
            n += cps.size
            digest.update(piece)
    return Vocabulary(np.flatnonzero(seen)), n, digest.hexdigest()


def iter_encoded(files: Sequence[str], vocab: Vocabulary, dtype: np.dtype) -> Iterator[np.ndarray]:
    """Second pass: the indices of the corpus's characters, piece by piece (arrays of dtype)."""
    table = np.zeros(MAX_CODEPOINT, dtype=dtype)  # code point -> index
    table[vocab.codepoints()] = np.arange(vocab.size, dtype=dtype)
    ascii_table = table[:256].astype(np.uint8).tobytes() if dtype == np.uint8 else None
    for path in files:
        for piece in iter_normalized(path):
            cps = codepoints(piece)
            if ascii_table is not None and cps.dtype == np.uint8:
                yield np.frombuffer(piece.translate(ascii_table), dtype=np.uint8)
            else:
                yield table[cps]


def encode_files(files: Sequence[str], vocab: Vocabulary, out) -> int:
    """Write the indices of the corpus's characters to out (an open binary file or a (N,)
    array); the number written. CorpusError if the files no longer hold N characters."""
    start = 0
    to_array = isinstance(out, np.ndarray)
    for ids in iter_encoded(files, vocab, out.dtype if to_array else index_dtype(vocab.size)):
        stop = start + ids.size
        if to_array:
            if stop > out.size:
                raise CorpusError(f"{describe_sources(files)} changed while it was being read")
            out[start:stop] = ids
        else:
            out.write(ids.tobytes())
        start = stop
    return start


# ---------------------------------------------------------------------------- the cache


def cache_stem(files: Sequence[str], cache_dir: str | None = None) -> str:
    """Where the cache of these files lives (without .npy / .json): beside the first file as
    '.<name>.fastrnn-cache', or for several files '.fastrnn-cache-<hash of their paths>'."""
    first = os.path.abspath(files[0])
    directory = os.fspath(cache_dir) if cache_dir else os.path.dirname(first)
    if len(files) == 1:
        return os.path.join(directory, f".{os.path.basename(first)}.fastrnn-cache")
    key = hashlib.sha256("\0".join(os.path.abspath(f) for f in files).encode()).hexdigest()
    return os.path.join(directory, f".fastrnn-cache-{key[:16]}")


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(CHUNK_BYTES):
            digest.update(data)
    return digest.hexdigest()


def _file_key(path: str) -> dict:
    st = os.stat(path)
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read_meta(stem: str) -> dict | None:
    try:
        with open(stem + ".json", encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    if (
        not isinstance(meta, dict)
        or meta.get("format") != CACHE_FORMAT
        or meta.get("version") != CACHE_VERSION
    ):
        return None
    return meta


def cache_is_fresh(meta: dict | None, files: Sequence[str], verify: bool = False) -> bool:
    """True if the cache describes exactly these files, unchanged (size and mtime; with verify,
    the sha256 of their bytes too)."""
    if meta is None or len(meta.get("files", [])) != len(files):
        return False
    for path, saved in zip(files, meta["files"]):
        key = _file_key(path)
        if any(saved.get(k) != v for k, v in key.items()):
            return False
        if verify and saved.get("sha256") != file_sha256(path):
            return False
    return True


def _open_ids(stem: str, meta: dict) -> np.ndarray | None:
    """The cached ids, memory-mapped read-only; None if the .npy does not match the JSON."""
    try:
        ids = np.load(stem + ".npy", mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    if ids.ndim != 1 or ids.size != meta.get("chars") or ids.dtype != np.dtype(meta.get("dtype")):
        return None
    return ids


def build_cache(files: Sequence[str], stem: str) -> dict:
    """Encode the files into stem.npy and write stem.json, both atomically; the JSON's dict."""
    keys = [_file_key(p) for p in files]
    raw = [hashlib.sha256() for _ in files]
    vocab, n, text_sha = scan_files(files, raw)
    if n == 0:
        raise CorpusError("the corpus is empty")
    dtype = index_dtype(vocab.size)
    directory = os.path.dirname(stem) or "."
    os.makedirs(directory, exist_ok=True)
    base = os.path.basename(stem)
    tmp_npy: str | None
    fd, tmp_npy = tempfile.mkstemp(dir=directory, prefix=base + ".", suffix=".npy.tmp")
    try:
        # Written with plain writes, not through a memory map, so that the pages written do not
        # count in this process's memory.
        with os.fdopen(fd, "wb") as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": dtype.str, "fortran_order": False, "shape": (n,)}
            )
            if encode_files(files, vocab, f) != n:
                raise CorpusError(f"{describe_sources(files)} changed while it was being read")
            f.flush()
            os.fsync(f.fileno())
        for key, digest in zip(keys, raw):
            key["sha256"] = digest.hexdigest()
        meta = {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "chars": n,
            "dtype": dtype.name,
            "text_sha256": text_sha,
            "files": keys,
            "vocab": vocab.codepoints().tolist(),
        }
        os.replace(tmp_npy, stem + ".npy")
        tmp_npy = None
        _write_json_atomically(stem + ".json", meta)
    finally:
        if tmp_npy is not None and os.path.exists(tmp_npy):
            os.unlink(tmp_npy)
    return meta


def _write_json_atomically(path: str, obj: dict) -> None:
    fd, tmp = tempfile.mkstemp(
        dir=os.path.dirname(path) or ".", prefix=os.path.basename(path) + ".", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_corpus(
    sources: Sequence[str | os.PathLike],
    cache_dir: str | None = None,
    verify: bool = False,
    rebuild: bool = True,
    min_cache_bytes: int = CACHE_MIN_BYTES,
) -> Corpus:
    """The corpus of these sources, from its cache (memory-mapped) or encoded and cached now.

    Texts smaller than min_cache_bytes in all are encoded in memory (milliseconds) unless a
    cache_dir is given; so are texts in a directory where no cache may be written. verify: also
    compare the files' sha256 with the cache's. rebuild=False: raise CorpusError instead of
    building (for processes that must only read a cache another one built).
    """
    files = corpus_files(sources)
    if not cache_dir and sum(os.path.getsize(f) for f in files) < min_cache_bytes:
        return encode_in_memory(files)
    stem = cache_stem(files, cache_dir)
    meta = _read_meta(stem)
    hit = cache_is_fresh(meta, files, verify)
    ids = _open_ids(stem, meta) if hit and meta is not None else None
    hit = ids is not None
    if not hit:
        if not rebuild:
            raise CorpusError(f"no up-to-date cache {stem}.npy for {describe_sources(files)}")
        try:
            meta = build_cache(files, stem)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and not cache_dir:
                return encode_in_memory(files)  # a read-only corpus: encode it each time
            raise CorpusError(
                f"cannot write the corpus cache {stem}.npy: "
                f"{exc.strerror or exc}; give a writable --cache-dir"
            ) from None
        ids = _open_ids(stem, meta)
        if ids is None:
            raise CorpusError(f"{stem}.npy changed while it was being written")
    assert ids is not None and meta is not None  # a fresh cache, or one just built
    vocab = Vocabulary(np.asarray(meta["vocab"], dtype=np.uint32))
    return Corpus(
        ids=ids,
        vocab=vocab,
        name=describe_sources(files),
        sha256=meta["text_sha256"],
        cache_path=stem + ".npy",
        cache_hit=hit,
    )


def encode_in_memory(files: Sequence[str]) -> Corpus:
    """The corpus encoded into memory, for a directory where no cache may be written."""
    vocab, n, text_sha = scan_files(files)
    ids = np.empty(n, dtype=index_dtype(vocab.size))
    if encode_files(files, vocab, ids) != n:
        raise CorpusError(f"{describe_sources(files)} changed while it was being read")
    return Corpus(ids=ids, vocab=vocab, name=describe_sources(files), sha256=text_sha)


def text_corpus(text: str, name: str) -> Corpus:
    """A corpus given as a string (the default corpus, or train(text=...)), encoded in memory."""
    if not text:
        raise CorpusError("the training text is empty")
    vocab = Vocabulary.from_text(text)
    return Corpus(
        ids=vocab.encode(text),
        vocab=vocab,
        name=name,
        sha256=hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(),
    )


def chars_outside(vocab: Vocabulary, known: Vocabulary) -> list[str]:
    """The characters of vocab that known lacks, sorted."""
    return [c for c in vocab.chars if c not in set(known.chars)]


def remap_ids(
    ids: np.ndarray, source: Vocabulary, target: Vocabulary, chunk: int = 1 << 23
) -> np.ndarray:
    """ids over source's vocabulary as indices of target's (every character of source must be
    in target); ids itself when the vocabularies are equal, else a new array, made in chunks."""
    if source == target:
        return ids
    table = np.searchsorted(target.codepoints(), source.codepoints()).astype(
        target.index_dtype
    )  # source index -> target index
    out = np.empty(ids.size, dtype=target.index_dtype)
    for start in range(0, ids.size, chunk):
        np.take(table, ids[start : start + chunk], out=out[start : start + chunk])
    return out
