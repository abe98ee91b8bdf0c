"""The table of cells (fastrnn.cells): every entry has its kernels on both backends, the model's
parameters, state and workspace follow the entry, and a new cell is one entry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import make_chunk, make_model
from fastrnn import CharRNN, reference_cells
from fastrnn.backend import kernel
from fastrnn.cells import LAYER_BUFFERS, NAMES, TABLE, cell


@pytest.mark.parametrize("name", NAMES)
def test_every_cell_has_its_kernels_and_twins(name):
    for impl in (kernel, reference_cells):
        assert callable(getattr(impl, f"{name}_layer_forward"))
        assert callable(getattr(impl, f"{name}_layer_backward"))


@pytest.mark.parametrize("name", NAMES)
def test_model_follows_the_entry(name):
    entry, V, H, L = TABLE[name], 6, 4, 2
    m = CharRNN(V, H, num_layers=L, cell=name, init="uniform")
    assert m.cell_spec is entry
    assert m.gates == entry.gates == len(entry.gate_names)
    for k in ("", "1"):
        assert m.params[f"Whh{k}"].shape == (H, entry.gates * H)
        for vector in entry.layer_vectors:
            assert m.params[f"{vector}{k}"].shape == (H,)
        bias = m.params[f"bh{k}"].reshape(entry.gates, H)
        for block in range(entry.gates):
            expected = 1.0 if block == entry.forget_block else 0.0
            np.testing.assert_array_equal(bias[block], expected)
    assert m.state_shape(3) == ((2, L, 3, H) if entry.cell_state else (L, 3, H))
    ws = m._workspace(3, 5, True)
    for buffer in LAYER_BUFFERS:
        assert (getattr(ws, buffer) is not None) == (buffer in entry.layer_buffers)
    assert (ws.gates is ws.hs) == entry.projects_into_hs


def test_unknown_cell_is_refused():
    with pytest.raises(ValueError, match="cell must be one of"):
        cell("transformer")


def test_a_new_cell_is_one_entry(monkeypatch):
    """An entry that reuses the rnn's kernels under another name gives a working model with
    the rnn's numbers on the stacked path: nothing outside the table asks for the cell."""
    monkeypatch.setitem(TABLE, "rnn_copy", dataclasses.replace(TABLE["rnn"], name="rnn_copy"))
    reference = make_model("rnn", 2)
    copy = make_model("rnn_copy", 2)
    x, y, h0 = make_chunk(reference)
    for backend in ("kernel", "numpy"):
        loss, grads, h = reference.loss_and_grads(x, y, h0, backend=backend)
        loss_c, grads_c, h_c = copy.loss_and_grads(x, y, h0, backend=backend)
        assert loss_c == loss
        np.testing.assert_array_equal(h_c, h)
        for name in grads:
            np.testing.assert_array_equal(grads_c[name], grads[name])
