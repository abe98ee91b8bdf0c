"""Data-parallel training over MPI: P processes (ranks) train one model together.

Dimension letters: B streams of the global batch, P processes, r a rank, B_r its share.

Rank r owns the contiguous streams [lo_r, hi_r) of the B streams (the first B mod P ranks one
more than the others), computes the loss and gradients of its B_r streams, scales them by B_r/B,
and one Allreduce (sum) of one flat buffer makes every rank hold the gradient of the mean loss
over all B*T characters:

    g = sum_r (B_r / B) * g_r,   g_r = d/dparams mean loss over rank r's B_r*T characters

The buffer is laid out as [every parameter's gradient, in param order | FLAGS]: the gradients
live in it (the grads dict holds views), and the FLAGS slots carry the scaled loss and the stop
requests of each rank (signals, time limit), so one Allreduce per step also makes every rank
agree on the loss and on stopping at the same iteration. Every rank then applies the same update
(clipping, including global-norm clipping, happens after the reduction, on the whole gradient),
so the parameters stay identical.

Without mpiexec (and without mpi4py) ``world()`` is a single process whose reduction does
nothing; fastrnn-train then behaves exactly as a plain single process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from .errors import ConfigError

# Environment variables set by MPI launchers (MPICH/hydra, Intel MPI, Open MPI, PMIx, Slurm's
# PMI) that give the size of the job.
LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")

# Flag slots after the gradients in the reduced buffer.
FLAG_LOSS, FLAG_SIGINT, FLAG_SIGTERM, FLAG_TIME = range(4)
N_FLAGS = 4


def launcher_size() -> int:
    """The number of processes an MPI launcher says this job has (1 if not launched by one)."""
    for name in LAUNCHER_SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def launcher_rank() -> int:
    """This process's rank as the MPI launcher set it (0 if not launched by one)."""
    for name in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"):
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def stream_share(batch_size: int, size: int, rank: int) -> tuple[int, int]:
    """[lo, hi): rank's contiguous share of the B streams; the first B mod P ranks get one more.

    ConfigError if B < P: every process must own at least one stream (an idle process would
    only wait for the others), so the message asks for more streams or fewer processes.
    """
    if batch_size < size:
        raise ConfigError(
            f"--batch-size {batch_size} is smaller than the number of processes "
            f"{size}: every process needs at least one stream; use --batch-size "
            f">= {size} or start fewer processes"
        )
    return rows(batch_size, size, rank)


def rows(n: int, size: int, rank: int) -> tuple[int, int]:
    """[lo, hi): rank's contiguous share of n rows, the first n mod P ranks one more (may be
    empty when n < P)."""
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def flat_grads(
    shapes: dict[str, tuple[int, ...]], dtype, n_flags: int = N_FLAGS
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """(buffer (n + n_flags,), {name: view of shape}, flags view (n_flags,)).

    The views are consecutive C-contiguous slices of one buffer, in the order of shapes, so a
    single Allreduce reduces every gradient at once.
    """
    sizes = [int(np.prod(s)) for s in shapes.values()]
    buffer = np.zeros(sum(sizes) + n_flags, dtype=dtype)
    views, start = {}, 0
    for (name, shape), size in zip(shapes.items(), sizes):
        views[name] = buffer[start : start + size].reshape(shape)
        start += size
    return buffer, views, buffer[start:]


class SingleProcess:
    """One process: rank 0 of 1; every collective is the identity."""

    rank = 0
    size = 1
    is_root = True

    def allreduce_sum(self, buffer: np.ndarray) -> None:
        """buffer <- the sum of every rank's buffer (here: unchanged)."""

    def barrier(self) -> None:
        pass

    def gather(self, obj):
        return [obj]

    @contextmanager
    def root_first(self) -> Iterator[None]:
        yield


class MPIWorld(SingleProcess):
    """P processes of MPI.COMM_WORLD (mpi4py)."""

    def __init__(self, comm):
        from mpi4py import MPI

        self._MPI = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.is_root = self.rank == 0

    def allreduce_sum(self, buffer: np.ndarray) -> None:
        """In place, through the buffer protocol (no pickling): one call for the whole buffer."""
        self.comm.Allreduce(self._MPI.IN_PLACE, buffer, op=self._MPI.SUM)

    def barrier(self) -> None:
        self.comm.Barrier()

    def gather(self, obj):
        """To rank 0 (None elsewhere); pickled, so only for rare small objects (checkpoints)."""
        return self.comm.gather(obj, root=0)

    @contextmanager
    def root_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (building a shared cache), then the others do."""
        if not self.is_root:
            self.barrier()
        yield
        if self.is_root:
            self.barrier()


def world() -> SingleProcess:
    """The processes of this job: MPIWorld under an MPI launcher with P > 1, else SingleProcess.

    ConfigError if an MPI launcher started several processes but mpi4py is not installed
    (each would otherwise train alone and overwrite the others' checkpoints).
    """
    size = launcher_size()
    if size <= 1:
        return SingleProcess()
    try:
        from mpi4py import MPI
    except ImportError:
        raise ConfigError(
            f"started by an MPI launcher with {size} processes, but mpi4py is not "
            "installed, so they cannot train together; install it with "
            "pip install 'fastrnn[mpi]' (or run a single process)"
        ) from None
    comm = MPI.COMM_WORLD
    return MPIWorld(comm) if comm.Get_size() > 1 else SingleProcess()
