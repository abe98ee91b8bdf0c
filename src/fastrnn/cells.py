"""The table of cells: everything fastrnn needs to know about a recurrent cell, in one entry.

A cell is one entry of TABLE plus its layer kernels (``<name>_layer_forward`` /
``<name>_layer_backward`` in _cells.pxi) and their numpy twins (reference_cells.py). The model,
its workspace, the initialisation, the reports, the CLI choices, the benchmarks and the tests
read the entry; nothing else asks which cell a model has.

Dimension letters: L layers, T steps, B streams, H hidden, G gate blocks. A layer's input
projection is (.., G*H), the gate blocks in the order of ``gate_names``.

``forward(kernels, ws, layer, p, k, h0, c0)`` runs one layer over the chunk: ws.gates[layer]
holds the input projection x W + b on entry; the layer's outputs go to ws.hs[layer] and its
caches to the buffers the entry names; ws.packed is the recurrent product's scratch (see
``packed_blocks``). ``backward(kernels, ws, layer, p, k, h0, c0, g, dh0,
dc0)`` differentiates it from ws.dhs[layer] = dL/dh and returns the buffer that then holds
dL/d(input projection). ``kernels`` is the compiled module or reference_cells (both have every
layer kernel); ``p`` and ``g`` are the parameters and gradients, ``k`` the layer's name suffix
('' for layer 0, then '1', '2', ...); c0 and dc0 are None for cells without a cell state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Cell:
    """One recurrent cell (see the module docstring)."""

    name: str  # what the CLI, configs and checkpoints call it
    title: str  # how reports call it
    gate_names: str  # one letter per gate block, in the projection's order
    layer_vectors: tuple[str, ...]  # per-layer (H,) parameters beyond Wxh, Whh and bh
    layer_buffers: tuple[str, ...]  # per-layer (L, T, B, H) caches beyond hs and dhs
    cell_state: bool  # the state carries c beside h: (2, L, B, H), else (L, B, H)
    forget_block: int | None  # the gate block whose bias starts at forget_bias
    forward: Callable[..., None]
    backward: Callable[..., Any]
    packed_blocks: tuple[int, ...]  # column blocks of Whh (in units of H) packed apart for the
    # backward and the generation products: the GRU multiplies [r z] and n apart (the training
    # forward packs every gate block apart, so that threads can share a step's units)
    generate_code: int = 0  # the cell's number in the compiled generation loop
    # (stack_generate: 0 rnn, 1 lstm, 2 gru)

    @property
    def gates(self) -> int:
        """G, the number of gate blocks of a layer's projection."""
        return len(self.gate_names)

    @property
    def projects_into_hs(self) -> bool:
        """One gate block: the projection is summed in place into hs (no gates buffer)."""
        return self.gates == 1


# ---------------------------------------------------------------------- rnn
# h_t = tanh(x W + b + h_{t-1} Whh)


def _rnn_forward(kernels, ws, layer: int, p, k: str, h0, c0) -> None:
    kernels.rnn_layer_forward(h0, p[f"Whh{k}"], ws.hs[layer], ws.packed)


def _rnn_backward(kernels, ws, layer: int, p, k: str, h0, c0, g, dh0, dc0):
    kernels.rnn_layer_backward(
        h0, p[f"Whh{k}"], ws.hs[layer], ws.dhs[layer], g[f"Whh{k}"], dh0, ws.packed
    )
    return ws.dhs[layer]  # the rnn's dL/dpre lives in dhs


# ---------------------------------------------------------------------- lstm
# [i f g o] = [sig sig tanh sig](x W + b + h_{t-1} Whh); c_t = f c_{t-1} + i g; h_t = o tanh(c_t)


def _lstm_forward(kernels, ws, layer: int, p, k: str, h0, c0) -> None:
    kernels.lstm_layer_forward(
        h0, c0, p[f"Whh{k}"], ws.gates[layer], ws.hs[layer], ws.cs[layer], ws.tcs[layer], ws.packed
    )


def _lstm_backward(kernels, ws, layer: int, p, k: str, h0, c0, g, dh0, dc0):
    kernels.lstm_layer_backward(
        h0,
        c0,
        p[f"Whh{k}"],
        ws.gates[layer],
        ws.hs[layer],
        ws.cs[layer],
        ws.tcs[layer],
        ws.dhs[layer],
        ws.dc,
        g[f"Whh{k}"],
        dh0,
        dc0,
        ws.packed,
    )
    return ws.gates[layer]


# ---------------------------------------------------------------------- gru
# [r z] = sig(x W_rz + b_rz + h_{t-1} Whh_rz); n = tanh(x W_n + b_n + r (h_{t-1} Whh_n + bhn));
# h_t = (1 - z) n + z h_{t-1}


def _gru_forward(kernels, ws, layer: int, p, k: str, h0, c0) -> None:
    kernels.gru_layer_forward(
        h0, p[f"Whh{k}"], p[f"bhn{k}"], ws.gates[layer], ws.hns[layer], ws.hs[layer], ws.packed
    )


def _gru_backward(kernels, ws, layer: int, p, k: str, h0, c0, g, dh0, dc0):
    kernels.gru_layer_backward(
        h0,
        p[f"Whh{k}"],
        ws.gates[layer],
        ws.hns[layer],
        ws.hs[layer],
        ws.dhs[layer],
        g[f"Whh{k}"],
        g[f"bhn{k}"],
        dh0,
        ws.packed,
    )
    return ws.gates[layer]


TABLE: dict[str, Cell] = {
    c.name: c
    for c in (
        Cell("rnn", "vanilla RNN", "h", (), (), False, None, _rnn_forward, _rnn_backward, (1,)),
        Cell(
            "lstm",
            "LSTM",
            "ifgo",
            (),
            ("cs", "tcs"),
            True,
            1,
            _lstm_forward,
            _lstm_backward,
            (4,),
            generate_code=1,
        ),
        Cell(
            "gru",
            "GRU",
            "rzn",
            ("bhn",),
            ("hns",),
            False,
            None,
            _gru_forward,
            _gru_backward,
            (2, 1),
            generate_code=2,
        ),
    )
}
NAMES = tuple(TABLE)
# Every per-layer cache some cell keeps: a workspace sets the others to None.
LAYER_BUFFERS = tuple(dict.fromkeys(b for c in TABLE.values() for b in c.layer_buffers))


def cell(name: str) -> Cell:
    """The entry called name, or ValueError listing the cells."""
    if not isinstance(name, str) or name not in TABLE:
        raise ValueError(f"cell must be one of {NAMES}, got {name!r}")
    return TABLE[name]
