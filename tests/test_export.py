"""ONNX export: the exported graph, run by onnxruntime, gives the kernel's logits and final states
for every cell and 1-3 layers over a long sequence from a non-zero state; the file is valid."""

import json

import numpy as np
import pytest

from _tools import TEXT, random_model, write_checkpoint
from fastrnn import CharRNN, Vocabulary
from fastrnn.cli import export_main
from fastrnn.errors import ConfigError
from fastrnn.export import build_onnx, onnx_bias, onnx_blocks, write_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

VOCAB = Vocabulary.from_text(TEXT)
T, B = 60, 3


def kernel_run(model, x, h0):
    """The kernel's forward over x (B, T) from h0: (logits (T, B, V), final state).

    The logits are the top layer's hidden states, read from the model's workspace cache (the
    kernel fills it in model.loss), times the head, in the model's dtype."""
    y = np.zeros_like(x)
    _, h_last = model.loss(x, y, h0, backend="kernel")
    stacked = model._uses_stack(False)
    ws = model._workspace(B, T, stacked)
    top = ws.hs[-1] if stacked else ws.hs  # (T, B, H)
    return top @ model.params["Why"] + model.params["by"], h_last


def onnx_run(proto, x, h0, cell):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {"tokens": np.ascontiguousarray(x.T, dtype=np.int64)}
    if cell == "lstm":
        feed["h0"], feed["c0"] = h0[0], h0[1]
    else:
        feed["h0"] = h0
    return session.run(None, feed)


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_onnx_matches_the_kernel(cell, layers):
    model = random_model(VOCAB, cell, layers, hidden=16, dtype=np.float32, scale=0.4)
    rng = np.random.default_rng(7)
    x = rng.integers(0, VOCAB.size, size=(B, T)).astype(np.int32)
    h0 = rng.normal(0, 0.5, size=model.state_shape(B)).astype(np.float32)
    if cell == "lstm":
        h0[0] = np.tanh(h0[0])
    logits, h_last = kernel_run(model, x, h0)
    out = onnx_run(build_onnx(model, VOCAB), x, h0, cell)
    np.testing.assert_allclose(out[0], logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        out[1], h_last[0] if cell == "lstm" else h_last, rtol=1e-5, atol=1e-5
    )
    if cell == "lstm":
        np.testing.assert_allclose(out[2], h_last[1], rtol=1e-5, atol=1e-5)
    assert np.abs(logits).max() > 1.0  # the comparison is not of near-zero numbers


def test_gate_blocks_are_transposed_and_reordered():
    H = 2
    W = np.arange(3 * 4 * H).reshape(3, 4 * H).astype(float)  # (input 3, 4 blocks of H)
    onnx_W = onnx_blocks(W, (0, 3, 1, 2), H)
    assert onnx_W.shape == (1, 4 * H, 3)
    np.testing.assert_array_equal(onnx_W[0, H : 2 * H], W[:, 3 * H : 4 * H].T)  # o in place 1
    b = onnx_bias(np.arange(3 * H, dtype=float), np.array([7.0, 8.0]), (1, 0, 2), H)
    np.testing.assert_array_equal(b[0], [2, 3, 0, 1, 4, 5, 0, 0, 0, 0, 7, 8])


def test_file_metadata_and_checker(tmp_path, capsys):
    model = random_model(VOCAB, "gru", 2, hidden=8)  # float64: exported as float32
    ckpt = write_checkpoint(tmp_path / "m.npz", model, VOCAB)
    out = tmp_path / "m.onnx"
    assert export_main([ckpt, "-o", str(out), "--opset", "17"]) == 0
    assert str(out) in capsys.readouterr().out
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert "".join(map(chr, json.loads(meta["vocabulary"]))) == VOCAB.chars
    assert json.loads(meta["fastrnn_config"])["cell"] == "gru"
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("GRU") == 2 and "OneHot" in ops and "MatMul" in ops
    assert proto.opset_import[0].version == 17


def test_opset_too_old_and_unwritable(tmp_path):
    model = random_model(VOCAB, "rnn", hidden=4)
    with pytest.raises(ConfigError, match="opset"):
        build_onnx(model, VOCAB, opset=11)
    with pytest.raises(ConfigError, match="cannot write"):
        write_onnx(model, VOCAB, tmp_path / "no" / "dir" / "m.onnx")


def test_missing_onnx_is_a_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError("No module named 'onnx'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(ConfigError, match=r'pip install "fastrnn\[onnx\]"'):
        build_onnx(random_model(VOCAB, "rnn", hidden=4), VOCAB)


def test_embedding_is_exported_as_a_gather():
    """With a 'Wemb' (V, E) parameter the graph gathers its rows for layer 0. An identity
    embedding (E = V) reads exactly the one-hot rows, so the model's own forward is the
    reference whether or not this fastrnn has embeddings."""
    model = random_model(VOCAB, "gru", 2, hidden=8, dtype=np.float32)
    rng = np.random.default_rng(3)
    x = rng.integers(0, VOCAB.size, size=(B, T)).astype(np.int32)
    h0 = rng.normal(0, 0.5, size=model.state_shape(B)).astype(np.float32)
    logits, h_last = kernel_run(model, x, h0)
    model.params["Wemb"] = np.eye(VOCAB.size, dtype=np.float32)
    proto = build_onnx(model, VOCAB)
    assert [n.op_type for n in proto.graph.node][0] == "Gather"
    assert "OneHot" not in [n.op_type for n in proto.graph.node]
    out = onnx_run(proto, x, h0, "gru")
    np.testing.assert_allclose(out[0], logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out[1], h_last, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_model_with_an_embedding_matches_the_kernel(cell):
    try:
        model = CharRNN(VOCAB.size, 10, num_layers=2, cell=cell, dtype=np.float32, embedding_size=6)
    except TypeError:
        pytest.skip("this fastrnn has no embedding_size")
    rng = np.random.default_rng(5)
    for p in model.params.values():
        p[...] = rng.normal(0, 0.5, size=p.shape)
    assert model.params["Wemb"].shape == (VOCAB.size, 6)
    x = rng.integers(0, VOCAB.size, size=(B, T)).astype(np.int32)
    h0 = rng.normal(0, 0.5, size=model.state_shape(B)).astype(np.float32)
    logits, h_last = kernel_run(model, x, h0)
    out = onnx_run(build_onnx(model, VOCAB), x, h0, cell)
    np.testing.assert_allclose(out[0], logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        out[1], h_last[0] if cell == "lstm" else h_last, rtol=1e-5, atol=1e-5
    )
