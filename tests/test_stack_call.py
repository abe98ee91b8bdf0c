"""The whole stack in one call per chunk: stack_forward / stack_backward of the kernel against
their numpy twins (every cell, depth, embedding and dropout, both dtypes, every buffer they
write), and the model's training step making exactly those calls."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import CELLS, TOL, make_chunk, make_model, rel_err
from fastrnn import reference_cells
from fastrnn.backend import kernel
from fastrnn.model import StackWorkspace, layer_suffix

CASES = [
    (cell, L, E, dropout)
    for cell in CELLS
    for L in (1, 2, 3)
    for E in (0, 3)
    for dropout in (0.0, 0.3)
]
# The validation aids of model.py's one door, which it may call before the computation.
VALIDATION_AIDS = {"index_bounds", "all_finite"}


def stack_call(impl, m, x, y, h0, masks) -> tuple[float, dict[str, np.ndarray]]:
    """One stack_forward and one stack_backward of impl (the kernel or its numpy twin) on fresh
    buffers, as the docstring of _stack.pxi describes them (stand-ins where the model has no
    such buffer); returns the loss and a copy of every buffer written, the forward's caches as
    they were before the backward. Gradients start as nan, so that one left unwritten shows."""
    B, T = x.shape
    L, spec = m.num_layers, m.cell_spec
    ws = StackWorkspace(
        m.cell, L, B, T, m.hidden_size, m.vocab_size, m.dropout, m.dtype, m.embedding_size
    )
    dropping = masks is not None
    if dropping:
        ws.masks[...] = masks
    p = m.params
    g = {name: np.full_like(a, np.nan) for name, a in p.items()}
    dh = np.full_like(h0, np.nan)
    state, dstate = h0.reshape(m.state_shape(B)), dh.reshape(m.state_shape(B))
    h, c = (state[0], state[1]) if spec.cell_state else (state, state)
    dh0, dc0 = (dstate[0], dstate[1]) if spec.cell_state else (dstate, dstate)
    bhn = "bhn" if "bhn" in spec.layer_vectors else "bh"

    def per_layer(arrays, name):
        return [arrays[f"{name}{layer_suffix(layer)}"] for layer in range(L)]

    def given(buffer, stand_in):
        return buffer if buffer is not None else stand_in

    no_embedding = np.zeros((1, 1), dtype=m.dtype)
    emb = given(ws.emb, ws.hs[0])
    cs, tcs, hns = (given(b, ws.hs) for b in (ws.cs, ws.tcs, ws.hns))
    masks_in, drops = given(ws.masks, ws.hs), given(ws.drops, ws.hs)
    args = (spec.code, dropping, x, y, h, c, p.get("Wemb", no_embedding))
    loss = impl.stack_forward(
        *args,
        per_layer(p, "Wxh"),
        per_layer(p, "Whh"),
        per_layer(p, "bh"),
        per_layer(p, bhn),
        p["Why"],
        p["by"],
        masks_in,
        emb,
        ws.gates,
        ws.hs,
        cs,
        tcs,
        hns,
        drops,
        ws.probs,
        ws.packed,
    )
    out = {"hs": ws.hs.copy(), "gates": ws.gates.copy(), "probs": ws.probs.copy()}
    for name in ("emb", "cs", "tcs", "hns", "drops"):
        if getattr(ws, name) is not None:
            out[name] = getattr(ws, name).copy()
    impl.stack_backward(
        *args,
        per_layer(p, "Wxh"),
        per_layer(p, "Whh"),
        p["Why"],
        masks_in,
        emb,
        ws.gates,
        ws.hs,
        cs,
        tcs,
        hns,
        drops,
        ws.probs,
        ws.dhs,
        given(ws.dc, ws.dhs[0, 0]),
        given(ws.demb, ws.dhs[0]),
        ws.packed,
        g.get("Wemb", no_embedding),
        per_layer(g, "Wxh"),
        per_layer(g, "Whh"),
        per_layer(g, "bh"),
        per_layer(g, bhn),
        g["Why"],
        g["by"],
        dh0,
        dc0,
    )
    out.update({f"d{name}": a for name, a in g.items()})
    out.update(dh0=dh, dgates=ws.gates.copy(), dprobs=ws.probs.copy(), dhs=ws.dhs.copy())
    if ws.hns is not None:
        out["dhns"] = ws.hns.copy()
    return loss, out


def keep_masks(m, B: int, T: int, seed: int = 5) -> np.ndarray:
    """(L, T, B, H) inverted-dropout masks keep / (1 - p), drawn as model.py draws them."""
    shape = (m.num_layers, T, B, m.hidden_size)
    u = np.random.default_rng(seed).random(shape)
    return ((u >= m.dropout) / (1.0 - m.dropout)).astype(m.dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("cell", "L", "E", "dropout"), CASES)
def test_stack_call_matches_numpy_twin(cell, L, E, dropout, dtype):
    m = make_model(cell, L, dtype=dtype, dropout=dropout, E=E)
    x, y, h0 = make_chunk(m)
    x, y = x.astype(np.int32), y.astype(np.int32)
    assert np.abs(h0).max() > 0  # a carried state that is not zero
    masks = keep_masks(m, *x.shape) if dropout > 0 else None
    loss_k, out_k = stack_call(kernel, m, x, y, h0, masks)
    loss_n, out_n = stack_call(reference_cells, m, x, y, h0, masks)
    tol = TOL[dtype]
    assert abs(loss_k - loss_n) <= tol * abs(loss_n)
    assert out_k.keys() == out_n.keys()
    for name in out_n:
        assert np.isfinite(out_k[name]).all(), name
        assert rel_err(out_k[name], out_n[name]) <= tol, name


def counted_calls(monkeypatch, module) -> list[str]:
    """Replace every public function of module by one that records its name on each call;
    returns the list the names go to."""
    calls: list[str] = []

    def counting(name, f):
        def call(*args, **kwargs):
            calls.append(name)
            return f(*args, **kwargs)

        return call

    for name in dir(module):
        f = getattr(module, name)
        if not name.startswith("_") and callable(f) and not isinstance(f, type):
            monkeypatch.setattr(module, name, counting(name, f))
    return calls


STACKED = [
    ("lstm", 1, 0, 0.0),
    ("lstm", 2, 0, 0.3),
    ("gru", 2, 3, 0.0),
    ("gru", 3, 0, 0.3),
    ("rnn", 2, 0, 0.0),
    ("rnn", 1, 0, 0.3),
    ("rnn", 1, 3, 0.0),
]


@pytest.mark.parametrize(("cell", "L", "E", "dropout"), STACKED)
def test_training_step_is_one_compiled_call_each_way(monkeypatch, cell, L, E, dropout):
    m = make_model(cell, L, dropout=dropout, E=E)
    x, y, h0 = make_chunk(m)
    grads = {name: np.empty_like(a) for name, a in m.params.items()}
    grads["h0"] = np.empty_like(h0)
    m.loss_and_grads(x, y, h0, grads=grads)  # the workspace exists before counting
    calls = counted_calls(monkeypatch, kernel)
    m.loss_and_grads(x, y, h0, grads=grads)
    assert [c for c in calls if c not in VALIDATION_AIDS] == ["stack_forward", "stack_backward"]
    calls.clear()
    m.loss(x, y, h0, train=True)  # dropout, if any, as in training: the stacked path
    assert [c for c in calls if c not in VALIDATION_AIDS] == ["stack_forward"]


@pytest.mark.parametrize(("cell", "L", "E", "dropout"), STACKED)
def test_numpy_twin_is_called_once_each_way(monkeypatch, cell, L, E, dropout):
    m = make_model(cell, L, dropout=dropout, E=E)
    x, y, h0 = make_chunk(m)
    m.loss_and_grads(x, y, h0, backend="numpy")
    calls = counted_calls(monkeypatch, reference_cells)
    m.loss_and_grads(x, y, h0, backend="numpy")
    # the twin's own calls of its layer functions are counted too: the model's are these two
    assert calls.count("stack_forward") == 1
    assert calls.count("stack_backward") == 1
    assert calls[0] == "stack_forward"


def test_single_layer_fast_path_is_one_compiled_call_each_way(monkeypatch):
    m = make_model("rnn", 1)
    x, y, h0 = make_chunk(m)
    m.loss_and_grads(x, y, h0)
    calls = counted_calls(monkeypatch, kernel)
    m.loss_and_grads(x, y, h0)
    assert [c for c in calls if c not in VALIDATION_AIDS] == ["rnn_forward", "rnn_backward"]
