"""The table of cells: everything fastrnn needs to know about a recurrent cell, in one entry.

A cell is one entry of TABLE plus its layer kernels (``<name>_layer_forward`` /
``<name>_layer_backward`` in _cells.pxi, called by number ``code`` from the whole-stack loops
stack_forward / stack_backward (_stack.pxi) and stack_generate (_generate.pxi)) and their numpy
twins (reference_cells.py). The model, its workspace, the initialisation, the reports, the CLI
choices, the benchmarks and the tests read the entry; nothing else asks which cell a model has.

Dimension letters: L layers, T steps, B streams, H hidden, G gate blocks. A layer's input
projection is (.., G*H), the gate blocks in the order of ``gate_names``.
"""

from __future__ import annotations

from dataclasses import dataclass


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
    packed_blocks: tuple[int, ...]  # column blocks of Whh (in units of H) packed apart for the
    # backward and the generation products: the GRU multiplies [r z] and n apart (the training
    # forward packs every gate block apart, so that threads can share a step's units)
    code: int = 0  # the cell's number in the whole-stack loops (stack_forward,
    # stack_backward, stack_generate; both backends): 0 rnn, 1 lstm, 2 gru

    @property
    def gates(self) -> int:
        """G, the number of gate blocks of a layer's projection."""
        return len(self.gate_names)

    @property
    def projects_into_hs(self) -> bool:
        """One gate block: the projection is summed in place into hs (no gates buffer)."""
        return self.gates == 1


# The cells' equations (rnn, LSTM, GRU):
#   rnn:  h_t = tanh(x W + b + h_{t-1} Whh)
#   lstm: [i f g o] = [sig sig tanh sig](x W + b + h_{t-1} Whh); c_t = f c_{t-1} + i g;
#         h_t = o tanh(c_t)
#   gru:  [r z] = sig(x W_rz + b_rz + h_{t-1} Whh_rz); n = tanh(x W_n + b_n + r (h_{t-1} Whh_n
#         + bhn)); h_t = (1 - z) n + z h_{t-1}

TABLE: dict[str, Cell] = {
    c.name: c
    for c in (
        Cell("rnn", "vanilla RNN", "h", (), (), False, None, (1,)),
        Cell(
            "lstm",
            "LSTM",
            "ifgo",
            (),
            ("cs", "tcs"),
            True,
            1,
            (4,),
            code=1,
        ),
        Cell(
            "gru",
            "GRU",
            "rzn",
            ("bhn",),
            ("hns",),
            False,
            None,
            (2, 1),
            code=2,
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
