"""A corpus larger than memory should be: encoding time and peak memory of a 1 GB text, peak
memory while training from its memory-mapped cache, and the time to the first iteration on a
second start. Not a test: run by hand (it writes ~2 GB to a temporary directory, deleted after).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/big_corpus.py [--gigabytes G]

Targets: peak RSS under 300 MB per process at the default sizes (H=100, B=32, T=64, float32);
the first iteration of a second start within 2 s (the cache is mapped, not re-encoded).
Peak RSS is the kernel's ru_maxrss of each child process; it counts the pages of the mapped
cache that the process touched (clean, shared, reclaimable page cache), which for training is
the few chunks read so far plus the validation tail.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BLOCK_CHARS = 1 << 22


def write_text(path: Path, size: int) -> None:
    """size bytes of random words over a 65-character alphabet, with line breaks."""
    import numpy as np

    letters = np.frombuffer(
        b"etaoinshrdlucmfwypvbgkjqxz" * 3 + b"ETAOINSHRDLUCMFWYPVBGKJQXZ" + b",.;:'!?-()\"0123",
        dtype=np.uint8,
    )
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        written = 0
        while written < size:
            n = min(BLOCK_CHARS, size - written)
            block = letters[rng.integers(0, letters.size, n)]
            block[rng.random(n) < 0.17] = ord(" ")
            block[rng.random(n) < 0.015] = ord("\n")
            f.write(block.tobytes())
            written += n


def run_child(args: list[str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in bytes, stdout) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{args} failed ({proc.returncode}):\n{out}")
    return wall, usage.ru_maxrss * 1024, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--iters", type=int, default=200, help="training iterations measured")
    args = parser.parse_args()
    size = int(args.gigabytes * 1e9)
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        text = Path(tmp) / "big.txt"
        t = time.perf_counter()
        write_text(text, size)
        print(f"generated {size / 1e9:.2f} GB of text in {time.perf_counter() - t:.1f} s")
        script = (
            "import sys; from fastrnn.corpus import load_corpus; "
            "c = load_corpus([sys.argv[1]]); print(c.ids.size, c.vocab.size, c.cache_hit)"
        )
        encode = [sys.executable, "-c", script, str(text)]
        wall, rss, out = run_child(encode)
        print(
            f"first start, encoding: {wall:.1f} s ({size / wall / 1e6:.0f} MB/s), "
            f"peak RSS {rss / 2**20:.0f} MiB  [{out.strip()}]"
        )
        cache = sorted(p.name for p in Path(tmp).iterdir() if p.name.startswith("."))
        print(f"cache files: {cache}")
        wall, rss, out = run_child(encode)
        print(
            f"second start, mapping the cache: {wall:.2f} s, peak RSS {rss / 2**20:.0f} MiB "
            f"[{out.strip()}]"
        )
        first = (
            "import io, sys; from fastrnn.train import Trainer; "
            "t = Trainer({'corpus': sys.argv[1], 'checkpoint': sys.argv[2]}, None, "
            "io.StringIO()); t.train_step(); print('first iteration done', flush=True)"
        )
        wall, rss, out = run_child(
            [sys.executable, "-c", first, str(text), str(Path(tmp) / "f.npz")]
        )
        print(
            f"second start to the end of the first iteration at the defaults (start "
            f"Python, import, map the cache, build model and batches, one step): "
            f"{wall:.2f} s, peak RSS {rss / 2**20:.0f} MiB"
        )
        train = [
            "fastrnn-train",
            str(text),
            "--sample-every",
            "0",
            "--eval-every",
            "0",
            "--val-fraction",
            "0.001",
            "--checkpoint",
            str(Path(tmp) / "r.npz"),
        ]
        wall, rss, out = run_child([*train, "--max-iters", str(args.iters)])
        print(
            f"training {args.iters} iterations at the defaults (H=100 B=32 T=64 float32, "
            f"validation tail 0.1%): peak RSS {rss / 2**20:.0f} MiB, {wall:.1f} s"
        )
        print(out.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
