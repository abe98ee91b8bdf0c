"""The named benchmark configurations and the arithmetic that goes with them.

Dimension letters as everywhere in fastrnn: V vocabulary, H hidden, B streams, T steps.
Pure Python: fastrnn (for its table of cells) is imported only when a configuration's gate
count is asked for, so the unit tests of the helpers import this module for free.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BenchConfig:
    """One named size: the model (V, H, dtype), the chunk (B, T) and the BLAS thread count."""

    name: str
    V: int
    H: int
    B: int
    T: int
    threads: int = 1
    dtype: str = "float32"
    note: str = ""
    cell: str = "rnn"  # rnn, lstm or gru
    layers: int = 1  # stacked layers of that cell

    @property
    def chars_per_step(self) -> int:
        """Characters (targets) consumed by one training step: B*T."""
        return self.B * self.T

    @property
    def gates(self) -> int:
        """G, the gate blocks of the cell: 1 rnn, 4 lstm, 3 gru."""
        from fastrnn.cells import TABLE

        return TABLE[self.cell].gates

    def threads_used(self, threads: int) -> int:
        """The threads this step runs on in a run given `threads` (train.step_threads: 1 where
        a recurrent step is too small to share)."""
        from fastrnn.train import step_threads

        return step_threads(threads, self.B, self.gates, self.H)

    @property
    def flops_per_char(self) -> int:
        """6*(G*H*H*(2L-1) + H*V): the multiply-adds of forward (h@Whh of every layer and the
        input projection h@Wxh of layers >= 1, G blocks wide, and h@Why) times 2 FLOPs, times 3
        for forward plus a backward of twice its cost. The embedding gather and the gate
        nonlinearities are not counted."""
        return flops_per_char(self.V, self.H, self.gates, self.layers)

    @property
    def num_params(self) -> int:
        """Wxh (V,G*H) + per layer Whh (H,G*H) + bh (G*H,) + the cell's (H,) vectors (the
        gru's bhn), Wxh{l} (H,G*H) for layers l >= 1, and Why (H,V) + by (V,)."""
        from fastrnn.cells import TABLE

        V, H, GH = self.V, self.H, self.gates * self.H
        per_layer = H * GH + GH + len(TABLE[self.cell].layer_vectors) * H
        return V * GH + (self.layers - 1) * H * GH + self.layers * per_layer + H * V + V

    def packed_values(self, itemsize: int) -> int:
        """Values of the workspace buffer the recurrent product packs Whh into (the rnn's
        model.packed_recurrent_size): H rows of H rounded up to whole 128-byte panels, plus
        64 bytes to align them (fastrnn_recurrent.h). Counted for the rnn configurations,
        the ones whose memory is checked."""
        panel = 128 // itemsize
        return self.H * (-(-self.H // panel) * panel) + 64 // itemsize

    def describe(self) -> str:
        return (
            f"{self.name}: {self.layers}x{self.cell} V={self.V} H={self.H} B={self.B} "
            f"T={self.T} threads={self.threads} {self.dtype}"
        )


def flops_per_char(V: int, H: int, gates: int = 1, layers: int = 1) -> int:
    """FLOPs of one training step per character: 6*(G*H*H*(2L-1) + H*V)."""
    return 6 * (gates * H * H * (2 * layers - 1) + H * V)


def fraction_of_limit(chars_per_s: float, flops_per_char: float, gemm_flops_per_s: float) -> float:
    """chars/s * FLOPs/char / gemm FLOP/s: 1.0 would be a step that runs entirely at the speed
    of a large square GEMM of the same dtype on the same threads."""
    if gemm_flops_per_s <= 0:
        raise ValueError(f"gemm rate must be positive, got {gemm_flops_per_s}")
    return chars_per_s * flops_per_char / gemm_flops_per_s


# Scratch of O(B*H) the memory bound allows on top of the activations and the gradients:
# dh0 (returned), the copy of h_last (returned), the finiteness mask of h0, and room for a few
# more (B, H) temporaries.
SCRATCH_BH = 8


def activation_bound_values(cfg: BenchConfig) -> int:
    """Values kept for backward that the memory bound allows: T*B*(2H + V) (hs, dhs, probs)."""
    return cfg.T * cfg.B * (2 * cfg.H + cfg.V)


def memory_bound_bytes(cfg: BenchConfig, itemsize: int) -> int:
    """Peak bytes one training step may allocate (from a fresh model, so it includes the
    workspace): activations T*B*(2H+V) + the returned gradients (every parameter and h0)
    + SCRATCH_BH*B*H scratch + the packed copy of Whh the recurrent product streams through
    (about H*H, independent of B and T), all in the model dtype."""
    values = (
        activation_bound_values(cfg)
        + cfg.num_params
        + SCRATCH_BH * cfg.B * cfg.H
        + cfg.packed_values(itemsize)
    )
    return values * itemsize


CONFIGS: dict[str, BenchConfig] = {
    c.name: c
    for c in (
        BenchConfig("S", 65, 100, 1, 40, note="the classic char-RNN size"),
        BenchConfig(
            "S64", 65, 100, 1, 40, dtype="float64", note="the classic char-RNN size in float64"
        ),
        BenchConfig("M", 65, 100, 32, 40),
        BenchConfig("L", 65, 512, 32, 64),
        BenchConfig("L2", 65, 512, 32, 64, threads=2),
        BenchConfig("CJK", 6533, 256, 32, 64, note="Tang poems"),
        BenchConfig("LSTM-M", 65, 100, 32, 40, cell="lstm"),
        BenchConfig("LSTM-L", 65, 512, 32, 64, cell="lstm"),
        BenchConfig("GRU-L", 65, 512, 32, 64, cell="gru"),
        BenchConfig("LSTM2-L", 65, 512, 32, 64, cell="lstm", layers=2),
    )
}

# The configurations whose training-step memory is measured against the memory bound.
MEMORY_CONFIGS = ("L", "CJK")

# The configurations the guard also runs at 2 threads beside a busy neighbour (a process
# spinning on one core), against 1 thread without it.
BUSY_NEIGHBOUR_CONFIGS = ("M", "L", "LSTM-L")

# What layer 0 of compare_torch's models reads: one-hot rows (the named configuration) or an
# embedding of H (nn.Embedding, embedding_size=H); see compare_torch's docstring.
TORCH_INPUTS = ("one-hot", "embedding")

# Sampling sizes and their speed targets: (name, V, H, target chars/s).
SAMPLING_CONFIGS = (("S", 65, 100, 300_000), ("CJK", 6533, 256, 8_000))


@dataclass(frozen=True)
class StreamConfig:
    """A generation size for every cell and N streams at once: the model (cell, V, H, float32),
    the streams N, the characters per stream of one timed call, and a target in chars/s
    counted over all N streams."""

    name: str
    cell: str
    V: int
    H: int
    streams: int
    length: int
    target: float


# Generation through the compiled loop (kernel, one thread): 16 streams at V=6533 aim at 6x
# the one-stream target. Lengths make one call last some tens of milliseconds.
STREAM_CONFIGS = (
    StreamConfig("LSTM-S", "lstm", 65, 100, 1, 16_000, 500_000),
    StreamConfig("CJK", "rnn", 6533, 256, 1, 400, 8_000),
    StreamConfig("CJK-16", "rnn", 6533, 256, 16, 100, 48_000),
)


def one_stream_partner(cfg: StreamConfig, configs=STREAM_CONFIGS) -> StreamConfig | None:
    """The one-stream configuration of the same model (cell, V, H) as cfg, for cfg with more
    than one stream; None for a one-stream cfg or when configs hold no such partner."""
    if cfg.streams == 1:
        return None
    for c in configs:
        if c.streams == 1 and (c.cell, c.V, c.H) == (cfg.cell, cfg.V, cfg.H):
            return c
    return None


# The hidden sizes of the plot (V=65, B=32, T=64, float32, one thread).
PLOT_HIDDEN_SIZES = (32, 64, 128, 256, 384, 512, 768, 1024)


def select(names: list[str] | None) -> list[BenchConfig]:
    """The configurations named (in CONFIGS order), all of them for None; ValueError on an
    unknown name."""
    if not names:
        return list(CONFIGS.values())
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise ValueError(f"unknown configuration(s) {unknown}; known: {list(CONFIGS)}")
    return [c for c in CONFIGS.values() if c.name in names]
