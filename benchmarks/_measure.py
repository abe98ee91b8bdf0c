"""Measurement helpers shared by the pytest-benchmark suite, the guard and the plot.

- ``TrainingStep``: one training iteration (loss_and_grads + the clipped Adam update) of one
  backend on a named configuration, allocating nothing per call but what the model allocates.
- ``GemmStep``, ``gemm_rate``: FLOP/s of a large square GEMM in scipy's OpenBLAS (the copy the
  kernel calls through ``scipy.linalg.cython_blas``), the denominator of "fraction of limit".
- ``interleaved_rates``: rates of several steps (training steps, a GEMM) measured in
  alternating rounds, each in its own setting (thread count, a busy neighbour), so that machine
  noise lands on all of them alike; ``summarize_rounds`` and ``paired_ratio`` reduce the rounds.
- ``BusyNeighbour``: a process of ours spinning on one core, switched on and off round by round.
- ``blas_info``: the BLAS libraries in use, as threadpoolctl reports them.
- ``training_step_peak``: tracemalloc peak of one training step.
- ``GenerateCall``, ``sampling_rate``, ``stream_sampling_rates``: characters/s of
  ``CharRNN.generate`` where it exists, one stream or N at once.

fastrnn is imported first, so that both OpenBLAS copies (numpy's and scipy's) are loaded before
any ``threadpool_limits`` is entered: a limit only reaches the libraries loaded at that time.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import signal
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

try:
    import fastrnn
except ImportError:  # a source tree without `pip install -e .`: use its src/ directly
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import fastrnn

import numpy as np
import scipy.linalg  # noqa: F401  (loads scipy's OpenBLAS before any thread limit)
from scipy.linalg import blas as scipy_blas
from threadpoolctl import threadpool_info, threadpool_limits

from _configs import BenchConfig
from fastrnn.backend import BACKENDS
from fastrnn.optim import make_optimizer

CHUNKS_IN_POOL = 8  # distinct random chunks a TrainingStep cycles through
ADAM_LR = 1e-3
GRAD_CLIP = 5.0
GEMM_N = 1536  # square GEMM of the limit: large enough for OpenBLAS's peak, ~0.1 s per call


# ------------------------------------------------------------------------- the BLAS in use


def blas_info() -> list[dict]:
    """One dict per BLAS library loaded: whose copy it is ('scipy' for the one the kernel
    calls, 'numpy' for the reference's matmul), internal_api, version, architecture (the core
    type OpenBLAS picked, which OPENBLAS_CORETYPE overrides) and num_threads right now."""
    out = []
    for lib in threadpool_info():
        if lib.get("user_api") != "blas":
            continue
        path = Path(lib.get("filepath", ""))
        owner = path.parent.name.removesuffix(".libs") or lib.get("prefix", "?")
        out.append(
            {
                "owner": owner,
                "internal_api": lib.get("internal_api"),
                "version": lib.get("version"),
                "architecture": lib.get("architecture"),
                "num_threads": lib.get("num_threads"),
                "file": path.name,
            }
        )
    return out


def describe_blas(info: list[dict]) -> str:
    """'scipy: openblas 0.3.30 SkylakeX 1 thread(s); numpy: ...' for a table header."""
    return (
        "; ".join(
            f"{d['owner']}: {d['internal_api']} {d['version']} {d['architecture']} "
            f"{d['num_threads']} thread(s)"
            for d in info
        )
        or "no BLAS found"
    )


# ------------------------------------------------------------------------- the GEMM limit


class GemmStep:
    """Callable: C = A @ B, n x n, in scipy's OpenBLAS sgemm/dgemm (the copy the kernel calls).
    Fortran-ordered operands and a reused output, so a call copies and allocates nothing.
    ``flops`` = 2*n**3 per call."""

    def __init__(self, dtype: str, n: int = GEMM_N):
        dt = np.dtype(dtype)
        self.gemm = scipy_blas.sgemm if dt == np.float32 else scipy_blas.dgemm
        rng = np.random.default_rng(0)
        self.a = np.asfortranarray(rng.standard_normal((n, n)), dtype=dt)
        self.b = np.asfortranarray(rng.standard_normal((n, n)), dtype=dt)
        self.c = np.zeros((n, n), dtype=dt, order="F")
        self.flops = 2 * n**3

    def __call__(self) -> None:
        self.gemm(1.0, self.a, self.b, beta=0.0, c=self.c, overwrite_c=1)


def gemm_rate(dtype: str, threads: int, n: int = GEMM_N, repeats: int = 5) -> float:
    """Best FLOP/s of GemmStep(dtype, n) over `repeats` calls on `threads` threads, after one
    warm-up call."""
    step = GemmStep(dtype, n)
    with threadpool_limits(threads):
        step()
        best = min(time_steps(step, 1) for _ in range(repeats))
    return step.flops / best


# ------------------------------------------------------------------------- a training step


class TrainingStep:
    """Callable: one training iteration of `backend` at `cfg`.

    loss_and_grads on the next of CHUNKS_IN_POOL pregenerated random chunks (so the model
    cannot overfit one chunk and drift into a different numeric regime over thousands of
    timed steps), written into preallocated gradients, then the trainer's own update: Adam with
    elementwise clipping at 5 (fastrnn-train's defaults), compiled for the kernel and in numpy
    for the reference. h0 stays zero. Layer 0 reads one-hot rows, as every named
    configuration, unless embedding_size E > 0 gives the model an (V, E) embedding.
    """

    def __init__(
        self,
        cfg: BenchConfig,
        backend: str,
        seed: int = 0,
        preallocate_grads: bool = True,
        embedding_size: int = 0,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.cfg, self.backend = cfg, backend
        self.model = fastrnn.CharRNN(
            vocab_size=cfg.V,
            hidden_size=cfg.H,
            cell=cfg.cell,
            num_layers=cfg.layers,
            dtype=np.dtype(cfg.dtype),
            seed=seed,
            embedding_size=embedding_size,
        )
        rng = np.random.default_rng(seed + 1)
        shape = (CHUNKS_IN_POOL, cfg.B, cfg.T)
        self.xs = rng.integers(0, cfg.V, size=shape, dtype=np.int32)
        self.ys = rng.integers(0, cfg.V, size=shape, dtype=np.int32)
        self.h0 = self.model.initial_state(cfg.B)
        params = self.model.params
        self.grads = (
            ({n: np.empty_like(p) for n, p in params.items()} | {"h0": np.empty_like(self.h0)})
            if preallocate_grads
            else None
        )
        self.optimizer = make_optimizer("adam", params, ADAM_LR, backend=backend)
        self.i = 0

    def __call__(self) -> float:
        k = self.i % CHUNKS_IN_POOL
        self.i += 1
        loss, grads, _ = self.model.loss_and_grads(
            self.xs[k], self.ys[k], self.h0, backend=self.backend, grads=self.grads
        )
        self.optimizer.step(self.model.params, grads, clip=GRAD_CLIP)
        return loss


def time_steps(step: Callable[[], object], n: int) -> float:
    """Seconds for n calls of step, the garbage collector off (as pytest-benchmark can). A step
    that runs in another process (compare_torch's PyTorch steps) times itself there: its
    ``time_steps(n)``, without the round trips to it."""
    elsewhere = getattr(step, "time_steps", None)
    if elsewhere is not None:
        return elsewhere(n)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        return time.perf_counter() - t0
    finally:
        if gc_was_enabled:
            gc.enable()


def steps_per_round(
    steps: list[Callable[[], object]], target_seconds: float, max_steps: int = 100_000
) -> int:
    """How many calls of the slowest step fill target_seconds (at least 1); each step is
    warmed up (workspaces allocated, caches filled) by the calibration itself."""
    slowest = 0.0
    for step in steps:
        step()
        n, t = 1, time_steps(step, 1)
        while t < 0.02 and n < max_steps:  # time enough calls to trust the clock
            n *= 4
            t = time_steps(step, n)
        slowest = max(slowest, t / n)
    return max(1, min(max_steps, round(target_seconds / slowest)))


def interleaved_rates(
    steps: dict[str, tuple[Callable[[], object], int, int]],
    rounds: int,
    max_seconds: float = float("inf"),
    min_rounds: int = 3,
    settings: dict[str, Callable[[], AbstractContextManager]] | None = None,
) -> dict[str, list[float]]:
    """Rate of each step in each round: steps maps a name to (callable, units per call, calls
    per round) and the rate is units/s (chars/s for a training step, FLOP/s for a GEMM). The
    order alternates from round to round (ABC.., then ..CBA), so a burst of machine noise hits
    all of them rather than one. Stops after `rounds` rounds, or earlier once max_seconds have
    passed and min_rounds are done (a crowded machine then costs bounded time). settings maps
    a name to a context (a thread limit, a busy neighbour) that each of its rounds runs in,
    entered before the clock starts and left after it stops."""
    names = list(steps)
    settings = settings or {}
    rates: dict[str, list[float]] = {name: [] for name in names}
    t0 = time.perf_counter()
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            step, units, n = steps[name]
            with settings.get(name, contextlib.nullcontext)():
                rates[name].append(units * n / time_steps(step, n))
        if r + 1 >= min_rounds and time.perf_counter() - t0 > max_seconds:
            break
    return rates


@contextlib.contextmanager
def settling(seconds: float) -> Iterator[None]:
    """A setting for interleaved_rates: a pause of `seconds` after the round (outside the clock),
    so that threads the round left spinning go to sleep before the next round starts."""
    try:
        yield
    finally:
        time.sleep(seconds)


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of a[r] / b[r]: rates measured in the same round are paired, so a
    slow moment of the machine slows both halves of a pair."""
    if not a or len(a) != len(b):
        raise ValueError("need the same positive number of rounds for both rates")
    return statistics.median(x / y for x, y in zip(a, b))


def summarize_rounds(kernel: list[float], numpy: list[float]) -> dict[str, float]:
    """Best chars/s of each (the least disturbed round) and the median of the per-round ratios
    kernel/numpy (paired_ratio)."""
    ratio = paired_ratio(kernel, numpy)  # first: it checks the rounds
    return {"kernel_chars_per_s": max(kernel), "numpy_chars_per_s": max(numpy), "ratio": ratio}


# ------------------------------------------------------------------------- a busy neighbour

# The neighbour's program: spin on one core until the parent is gone (checked every few
# milliseconds). On Linux it also asks to be killed with its parent (PR_SET_PDEATHSIG), which
# reaches it even while it is stopped.
_SPIN_PROGRAM = """
import os, sys
parent = os.getppid()
try:
    import ctypes
    ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
except (OSError, AttributeError):
    pass
print("spinning", flush=True)
while os.getppid() == parent:
    for _ in range(100_000):
        pass
"""


class BusyNeighbour:
    """A context: a process of ours that spins on one core (`while True: pass`), as another
    program holding a core would. It is started on entry, held stopped (SIGSTOP) except inside
    ``spinning()`` (SIGCONT ... SIGSTOP), so that rounds with and without it can alternate, and
    killed on exit, whatever happened inside. POSIX only (``available()``)."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        return hasattr(signal, "SIGSTOP") and hasattr(signal, "SIGCONT")

    def __enter__(self) -> BusyNeighbour:
        if not self.available():
            raise OSError("a busy neighbour needs SIGSTOP and SIGCONT (POSIX)")
        self.process = subprocess.Popen(
            [sys.executable, "-c", _SPIN_PROGRAM], stdout=subprocess.PIPE, text=True
        )
        try:
            if self.process.stdout.readline().strip() != "spinning":
                raise RuntimeError("the busy neighbour did not start")
            os.kill(self.process.pid, signal.SIGSTOP)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    @contextlib.contextmanager
    def spinning(self) -> Iterator[None]:
        """The neighbour spins inside this context and is stopped again on leaving it."""
        if self.process is None:
            raise RuntimeError("spinning() outside the BusyNeighbour context")
        os.kill(self.process.pid, signal.SIGCONT)
        try:
            yield
        finally:
            os.kill(self.process.pid, signal.SIGSTOP)

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            self.process.kill()  # SIGKILL ends a stopped process too
            self.process.wait()
            self.process.stdout.close()
            self.process = None


# ------------------------------------------------------------------------- memory


def training_step_peak(cfg: BenchConfig, backend: str) -> dict[str, int]:
    """tracemalloc peak bytes, above what was allocated before, of one training step whose
    gradients are returned (grads=None, so they count): 'first' on a fresh model (includes
    allocating the workspace, the activations kept for backward) and 'steady' on the step
    after it (the workspace reused)."""
    step = TrainingStep(cfg, backend, preallocate_grads=False)
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        peaks = {}
        for phase in ("first", "steady"):
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            step()
            peaks[phase] = tracemalloc.get_traced_memory()[1] - before
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return peaks


# ------------------------------------------------------------------------- sampling


def has_generate() -> bool:
    """Whether CharRNN has the generation loop (CharRNN.generate)."""
    return callable(getattr(fastrnn.CharRNN, "generate", None))


class GenerateCall:
    """Callable: one CharRNN.generate call of `length` characters for each of `streams`
    streams (a single-stream call for 1), from a zero state and index 0, temperature 1, on a
    fresh model seeded `seed`; one seeded generator serves every call. ``chars`` = streams *
    length per call; ``length`` may be changed between calls."""

    def __init__(
        self,
        V: int,
        H: int,
        cell: str = "rnn",
        streams: int = 1,
        length: int = 64,
        top_k: int | None = None,
        backend: str = "kernel",
        dtype: str = "float32",
        seed: int = 0,
    ):
        self.model = fastrnn.CharRNN(
            vocab_size=V, hidden_size=H, cell=cell, dtype=np.dtype(dtype), seed=seed
        )
        self.streams, self.length, self.top_k, self.backend = streams, length, top_k, backend
        self.first = np.zeros(streams, dtype=np.int32) if streams > 1 else 0
        self.rng = np.random.default_rng(seed)

    @property
    def chars(self) -> int:
        return self.streams * self.length

    def __call__(self) -> np.ndarray:
        return self.model.generate(
            self.model.initial_state(self.streams),
            self.first,
            self.length,
            temperature=1.0,
            top_k=self.top_k,
            rng=self.rng,
            backend=self.backend,
        )


def sampling_rate(
    V: int,
    H: int,
    top_k: int | None = None,
    backend: str = "kernel",
    dtype: str = "float32",
    repeats: int = 3,
    call_seconds: float = 0.05,
    max_length: int = 1 << 20,
) -> float | None:
    """Best characters/s of a one-stream GenerateCall(V, H, top_k=top_k, backend=backend), or
    None if there is no CharRNN.generate. length is grown (x4 from 64) until one call takes
    call_seconds, then the best of `repeats` calls."""
    if not has_generate():
        return None
    call = GenerateCall(V, H, top_k=top_k, backend=backend, dtype=dtype)
    time_steps(call, 1)  # warm-up
    while time_steps(call, 1) < call_seconds and call.length < max_length:
        call.length *= 4
    return call.chars / min(time_steps(call, 1) for _ in range(repeats))


def stream_sampling_rates(
    configs, rounds: int, round_seconds: float, max_seconds: float = float("inf")
) -> dict[str, list[float]]:
    """chars/s over all streams of GenerateCall at each StreamConfig (kernel backend, the
    caller's thread limit), per round of interleaved_rates, so that a configuration and its
    one-stream partner see the same machine."""
    calls = {
        c.name: GenerateCall(c.V, c.H, cell=c.cell, streams=c.streams, length=c.length)
        for c in configs
    }
    n = steps_per_round(list(calls.values()), round_seconds)
    return interleaved_rates(
        {name: (call, call.chars, n) for name, call in calls.items()}, rounds, max_seconds
    )


# ------------------------------------------------------------------------- design probes

TANH_PROBE_SIZE = 32 * 512  # one step of the recurrence at L


def tanh_throughputs(dtype: str, rounds: int = 5, calls: int = 300) -> tuple[float, float]:
    """(kernel, numpy) elements/s of tanh over TANH_PROBE_SIZE values, best of alternating
    rounds. numpy's tanh is SIMD code, so a kernel that fell back to a scalar libm call per
    element would show here as a ratio of a few percent."""
    from fastrnn import _kernel

    x = np.random.default_rng(0).uniform(-3, 3, TANH_PROBE_SIZE).astype(dtype)
    work, out = x.copy(), np.empty_like(x)
    best = {"kernel": 0.0, "numpy": 0.0}
    calls_of = {"kernel": lambda: _kernel.tanh_array(work), "numpy": lambda: np.tanh(x, out=out)}
    for r in range(rounds):
        for name in ("kernel", "numpy") if r % 2 == 0 else ("numpy", "kernel"):
            work[:] = x
            seconds = time_steps(calls_of[name], calls)
            best[name] = max(best[name], calls * x.size / seconds)
    return best["kernel"], best["numpy"]


def recurrent_step_seconds(
    B: int, H: int, dtype: str = "float32", rounds: int = 5
) -> tuple[float, float]:
    """(packed, BLAS) seconds of one recurrent step h (B, H) @ Whh (H, H): the kernel's packed
    recurrent product (Whh packed once) and the scipy OpenBLAS call it replaces (GEMV at B = 1,
    GEMM else), best of alternating rounds, one thread."""
    from fastrnn import _kernel

    rng = np.random.default_rng(0)
    A = (0.1 * rng.standard_normal((B, H))).astype(dtype)
    W = (0.1 * rng.standard_normal((H, H))).astype(dtype)
    C = np.zeros((B, H), dtype=dtype)
    packed = np.empty(_kernel.packed_size(H, H, dtype), dtype=dtype)
    best = {True: math.inf, False: math.inf}
    with threadpool_limits(1):
        for r in range(rounds):
            for blas in (False, True) if r % 2 == 0 else (True, False):
                best[blas] = min(
                    best[blas], _kernel.recurrent_step_seconds(A, W, C, packed, 1, blas)
                )
    return best[False], best[True]


def fixed_cost_fraction(
    cfg: BenchConfig, rounds: int = 7, calls: int = 1000
) -> tuple[float, float]:
    """(fixed cost in seconds, its fraction of the iteration) of one training step: the time of
    TrainingStep minus the time of the bare compiled calls it makes (rnn_forward, rnn_backward
    and one UpdatePlan.adam, called directly on prepared buffers). Alternating rounds, best of
    each. Single-layer rnn configurations only."""
    from fastrnn import _kernel

    step = TrainingStep(cfg, "kernel")
    step()  # workspace, optimizer views and plan exist now
    m, opt, g = step.model, step.optimizer, step.grads
    p, ws = m.params, m._workspaces[next(reversed(m._workspaces))]
    x, y, h0 = step.xs[0], step.ys[0], step.h0
    plan = opt._plan(p, g)
    args = opt._args

    def bare():
        _kernel.rnn_forward(
            x, y, h0, p["Wxh"], p["Whh"], p["bh"], p["Why"], p["by"], ws.hs, ws.probs, ws.packed
        )
        _kernel.rnn_backward(
            x,
            y,
            h0,
            p["Whh"],
            p["Why"],
            ws.hs,
            ws.probs,
            ws.dhs,
            g["Wxh"],
            g["Whh"],
            g["bh"],
            g["Why"],
            g["by"],
            g["h0"],
            ws.packed,
        )
        plan.adam(*args, GRAD_CLIP, 1.0)

    best = {"bare": math.inf, "step": math.inf}
    for r in range(rounds):
        for name in ("bare", "step") if r % 2 == 0 else ("step", "bare"):
            seconds = time_steps(bare if name == "bare" else step, calls) / calls
            best[name] = min(best[name], seconds)
    fixed = best["step"] - best["bare"]
    return fixed, fixed / best["step"]
