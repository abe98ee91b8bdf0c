"""Which code computes: the compiled kernel or its numpy twin, chosen by name.

Every module that runs a kernel asks here: ``ops(backend)`` for the single-layer rnn, generation
and the optimizer updates (_kernel or reference.py), ``cells(backend)`` for the stacked layers
(_kernel or reference_cells.py). No silent fallback: asking for the kernel of a build without it
raises with the way to build it; the numpy twin is used only when asked for by name.

``SameArrays`` remembers a set of arrays that passed the checks of the one door, so that a
training loop that passes the same arrays every call is not checked again every call: the
kernel's (in C) when it is built, else its numpy-backend twin in reference.py.
"""

from __future__ import annotations

import os
from types import ModuleType

from . import reference, reference_cells

# The kernel's parallel regions (recurrences shared among threads, set_recurrent_threads) wait
# at their own barrier, which yields the CPU; between regions OpenMP's idle threads should sleep
# too rather than spin against the BLAS threads. OMP_WAIT_POLICY is read once, when the OpenMP
# runtime loads with the kernel; a value the user has set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# OpenBLAS's worker threads spin after every product until OPENBLAS_THREAD_TIMEOUT (2^n cycles;
# 2^28 by default, about 0.1 s) before they sleep: at --threads 2 the worker then holds the
# second core through the recurrence that follows each product, and the kernel's own threads
# get one core between them. 2^4 cycles lets it sleep at once (default LSTM 2x256, 2 threads:
# 19.3k chars/s against 14.6k; rnn H=512: 71k against 39k). Read once, when scipy's OpenBLAS
# loads with the kernel (numpy's, loaded before, keeps its own); a value the user has set is kept.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

try:
    from . import _kernel
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    kernel: ModuleType | None = None
    _KERNEL_IMPORT_ERROR: Exception | None = exc
else:
    kernel = _kernel
    _KERNEL_IMPORT_ERROR = None

BACKENDS = ("kernel", "numpy")

SameArrays = kernel.SameArrays if kernel is not None else reference.SameArrays


def require_kernel() -> ModuleType:
    """The compiled kernel, or ImportError saying how to build it."""
    if kernel is None:
        raise ImportError(
            "the compiled fastrnn kernel is not built "
            f"({_KERNEL_IMPORT_ERROR}); build it with `pip install -e .` from the source tree, "
            "or pass backend='numpy' to use the numpy reference explicitly"
        )
    return kernel


def _check_name(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def ops(backend: str) -> ModuleType:
    """The single-layer rnn, generation and optimizer updates: _kernel or reference."""
    _check_name(backend)
    return require_kernel() if backend == "kernel" else reference


def cells(backend: str) -> ModuleType:
    """The stacked-layer kernels: _cells.pxi (compiled into _kernel) or reference_cells."""
    _check_name(backend)
    return require_kernel() if backend == "kernel" else reference_cells
