"""ONNX export: a CharRNN as an ONNX graph of ONNX's own RNN, LSTM and GRU operators.

    fastrnn.export.write_onnx(model, vocab, "model.onnx")

The graph (float32, time-major as ONNX's recurrent operators are; L layers, H hidden, V vocabulary):

    inputs   tokens  int64 (T, B)       character indices (vocabulary in metadata "vocabulary")
             h0      float (L, B, H)    initial hidden state of every layer
             c0      float (L, B, H)    initial cell state (LSTM only)
    outputs  logits  float (T, B, V)    next-character logits after each input character
             hN      float (L, B, H)    final hidden state;  cN (L, B, H) final cell state (LSTM)

    x^0 = OneHot(tokens, V)                (no embedding)   or   Gather(Wemb, tokens)  (E > 0)
    Y^l, hN^l (, cN^l) = RNN|LSTM|GRU(x^l, W^l, R^l, B^l, h0[l] (, c0[l]))
    x^{l+1} = Squeeze(Y^l, axis 1)         (T, B, H)
    logits = x^L @ Why + by                (MatMul, Add)

Layer 0 without an embedding reads one-hot rows. fastrnn gathers Wxh's rows; the graph instead
feeds OneHot(tokens) to the operator with W = Wxh^T. The product with a one-hot vector is exact
(one 1 * w, the other terms +0), it keeps the weights once, in the operator's own layout, and it
costs T*B*V*G*H multiply-adds, small for character vocabularies. The alternative of a Gather of
Wxh rows fed to an operator with an identity W would store and multiply a (G*H, G*H) identity.

Weights: ONNX's operators compute X W^T + H R^T with W (1, G*H, input) and R (1, G*H, H), so each
gate block is fastrnn's (input, H) block transposed, and the blocks are reordered:
    LSTM  fastrnn i, f, g, o  ->  ONNX i, o, f, c
    GRU   fastrnn r, z, n     ->  ONNX z, r, h
B is (1, 2*G*H) = [input biases, recurrent biases]: fastrnn's 'bh' goes to the input half; the
recurrent half is zero except for the GRU's n block, which holds 'bhn'. fastrnn's GRU applies r
after the recurrent product, n = tanh(x W_n + b_n + r * (h Whh_n + bhn)): ONNX's
linear_before_reset=1 variant, with Rb_h = bhn and Wb_h = b_n.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from .data import Vocabulary
from .errors import ConfigError
from .model import CharRNN, layer_suffix

DEFAULT_OPSET = 17
MIN_OPSET = 13  # Squeeze with its axes as an input
INSTALL_HINT = 'ONNX export needs the onnx package: pip install "fastrnn[onnx]"'

# For each cell: the ONNX operator and the fastrnn gate block that goes to each ONNX position.
ONNX_CELLS = {"rnn": ("RNN", (0,)), "lstm": ("LSTM", (0, 3, 1, 2)), "gru": ("GRU", (1, 0, 2))}


def _require_onnx():
    try:
        import onnx
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return onnx


def onnx_blocks(W: np.ndarray, order: tuple[int, ...], H: int) -> np.ndarray:
    """(1, G*H, n) ONNX weight from a fastrnn (n, G*H) one: each gate block transposed, the
    blocks in ONNX order (order[k] is the fastrnn block at ONNX position k)."""
    return np.concatenate([W[:, k * H : (k + 1) * H].T for k in order])[None]


def onnx_bias(bh: np.ndarray, bhn: np.ndarray | None, order: tuple[int, ...], H: int) -> np.ndarray:
    """(1, 2*G*H) ONNX bias [Wb, Rb]: bh on the input side; bhn as the recurrent bias of the
    GRU's n block (which is last in both orders); zero elsewhere."""
    Wb = np.concatenate([bh[k * H : (k + 1) * H] for k in order])
    Rb = np.zeros_like(Wb)
    if bhn is not None:
        Rb[-H:] = bhn
    return np.concatenate([Wb, Rb])[None]


def layer_weights(model: CharRNN, layer: int) -> dict[str, np.ndarray]:
    """W, R, B of one layer in ONNX layout, float32."""
    p, H, k = model.params, model.hidden_size, layer_suffix(layer)
    order = ONNX_CELLS[model.cell][1]
    bhn = p.get(f"bhn{k}")
    arrays = {
        "W": onnx_blocks(p[f"Wxh{k}"], order, H),
        "R": onnx_blocks(p[f"Whh{k}"], order, H),
        "B": onnx_bias(p[f"bh{k}"], bhn, order, H),
    }
    return {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in arrays.items()}


class _Graph:
    """Nodes and initializers collected in order, then made into an onnx GraphProto."""

    def __init__(self, onnx: Any) -> None:
        self.onnx, self.helper = onnx, onnx.helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], **attrs) -> list[str]:
        self.nodes.append(self.helper.make_node(op, inputs, outputs, name=outputs[0], **attrs))
        return outputs


def _layer0_input(g: _Graph, model: CharRNN) -> str:
    """(T, B, input size) float input of layer 0: the embedding rows, or one-hot rows."""
    if "Wemb" in model.params:
        g.const("Wemb", model.params["Wemb"].astype(np.float32))
        return g.node("Gather", ["Wemb", "tokens"], ["x0"], axis=0)[0]
    g.const("depth", np.array([model.vocab_size], dtype=np.int64))
    g.const("one_hot_values", np.array([0.0, 1.0], dtype=np.float32))
    return g.node("OneHot", ["tokens", "depth", "one_hot_values"], ["x0"], axis=-1)[0]


def _recurrent_layer(g: _Graph, model: CharRNN, layer: int, x: str) -> tuple[str, list[str]]:
    """One ONNX RNN/LSTM/GRU node: returns (its (T, B, H) output, its final state names)."""
    op = ONNX_CELLS[model.cell][0]
    w = {name: g.const(f"{name}{layer}", a) for name, a in layer_weights(model, layer).items()}
    index = g.const(f"layer{layer}", np.array([layer], dtype=np.int64))
    h0 = g.node("Gather", ["h0", index], [f"h0_{layer}"], axis=0)[0]  # (1, B, H)
    inputs = [x, w["W"], w["R"], w["B"], "", h0]
    outputs = [f"Y{layer}", f"hN{layer}"]
    attrs: dict[str, Any] = {"hidden_size": model.hidden_size}
    if model.cell_spec.cell_state:
        inputs.append(g.node("Gather", ["c0", index], [f"c0_{layer}"], axis=0)[0])
        outputs.append(f"cN{layer}")
    if model.cell == "gru":
        attrs["linear_before_reset"] = 1
    g.node(op, inputs, outputs, **attrs)
    squeeze_axis = g.const(f"axis1_{layer}", np.array([1], dtype=np.int64))
    y = g.node("Squeeze", [outputs[0], squeeze_axis], [f"x{layer + 1}"])[0]  # (T, B, H)
    return y, outputs[1:]


def build_onnx(model: CharRNN, vocab: Vocabulary, opset: int = DEFAULT_OPSET):
    """The onnx ModelProto of model (float32 whatever the model's dtype), checked by
    onnx.checker; the vocabulary's code points are in metadata_props["vocabulary"] (JSON)."""
    onnx = _require_onnx()
    helper, TP = onnx.helper, onnx.TensorProto
    if vocab.size != model.vocab_size:
        raise ValueError(
            f"the vocabulary has {vocab.size} characters, the model {model.vocab_size}"
        )
    if int(opset) < MIN_OPSET:
        raise ConfigError(f"--opset must be >= {MIN_OPSET}, got {opset}")
    L, H, V = model.num_layers, model.hidden_size, model.vocab_size
    g = _Graph(onnx)
    x = _layer0_input(g, model)
    finals: list[list[str]] = []
    for layer in range(L):
        x, states = _recurrent_layer(g, model, layer, x)
        finals.append(states)
    g.const("Why", model.params["Why"].astype(np.float32))
    g.const("by", model.params["by"].astype(np.float32))
    g.node("MatMul", [x, "Why"], ["scores"])
    g.node("Add", ["scores", "by"], ["logits"])
    state_names = ["hN", "cN"] if model.cell_spec.cell_state else ["hN"]
    for k, name in enumerate(state_names):
        g.node("Concat", [states[k] for states in finals], [name], axis=0)

    def state(name: str):
        return helper.make_tensor_value_info(name, TP.FLOAT, [L, "B", H])

    inputs = [helper.make_tensor_value_info("tokens", TP.INT64, ["T", "B"]), state("h0")]
    if model.cell_spec.cell_state:
        inputs.append(state("c0"))
    outputs = [helper.make_tensor_value_info("logits", TP.FLOAT, ["T", "B", V])]
    outputs += [state(name) for name in state_names]
    graph = helper.make_graph(
        g.nodes, f"fastrnn_{model.cell}", inputs, outputs, initializer=g.initializers
    )
    proto = helper.make_model(
        graph, producer_name="fastrnn", opset_imports=[helper.make_opsetid("", int(opset))]
    )
    helper.set_model_props(
        proto,
        {
            "vocabulary": json.dumps(vocab.codepoints().tolist()),
            "fastrnn_config": json.dumps(model.config()),
            "layout": "tokens (T, B) int64, time-major; states (L, B, H); logits (T, B, V)",
        },
    )
    onnx.checker.check_model(proto, full_check=True)
    return proto


def write_onnx(
    model: CharRNN, vocab: Vocabulary, path: str | os.PathLike, opset: int = DEFAULT_OPSET
) -> None:
    """build_onnx(model, vocab, opset) saved to path."""
    onnx = _require_onnx()
    proto = build_onnx(model, vocab, opset)
    try:
        onnx.save(proto, os.fspath(path))
    except OSError as exc:
        raise ConfigError(f"cannot write {os.fspath(path)}: {exc.strerror or exc}") from None
