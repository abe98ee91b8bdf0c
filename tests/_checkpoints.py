"""Test helper: edit a checkpoint's JSON header in place, as another fastrnn would have
written it (the checksum is recomputed so the file stays valid)."""

import json

import numpy as np

from fastrnn import checkpoint as ckpt


def rewrite_header(path, change):
    """Apply change(header) to the header of the checkpoint at path."""
    arrays = ckpt.read_arrays(path)
    header = ckpt.read_header(arrays, str(path))
    change(header)
    arrays["header"] = np.frombuffer(json.dumps(header, sort_keys=True).encode(), np.uint8).copy()
    arrays["checksum"] = ckpt.checksum(arrays)
    ckpt.write_atomically(str(path), arrays)
