"""LSTM, GRU and stacked rnn layers with dropout (issue 5): kernel vs numpy, finite differences,
dropout reproducibility, state carry, the single-layer rnn contract, and validation."""
from __future__ import annotations

import io
import itertools

import numpy as np
import pytest

import fastrnn
from _gradcheck import centred_differences
from fastrnn import CharRNN
from fastrnn import reference_cells

CELLS = ("rnn", "lstm", "gru")
LAYERS = (1, 2, 3)
TOL = {np.float64: 1e-10, np.float32: 1e-4}


def rel_err(a, b) -> float:
    """max |a - b| relative to the scale max |b| of the reference."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def make_model(cell, L, dtype=np.float64, dropout=0.0, V=7, H=5, seed=0, jitter=0.3):
    """A model whose biases and weights are perturbed away from their initial values, so that
    every gate is exercised (zero biases would hide bias-gradient bugs)."""
    m = CharRNN(V, H, num_layers=L, cell=cell, dropout=dropout, dtype=dtype, seed=seed)
    r = np.random.default_rng(seed + 100)
    for name, p in m.params.items():
        p += r.normal(0.0, jitter, p.shape).astype(dtype)
    return m


def make_chunk(m, B=3, T=4, seed=1, state_scale=0.5):
    r = np.random.default_rng(seed)
    x = r.integers(0, m.vocab_size, (B, T))
    y = r.integers(0, m.vocab_size, (B, T))
    h0 = (r.normal(0.0, state_scale, m.state_shape(B))).astype(m.dtype)
    return x, y, h0


def run(m, backend, x, y, h0, train, mask_seed=7):
    """loss_and_grads with the model's generator reset, so both backends draw the same masks."""
    m.rng = np.random.default_rng(mask_seed)
    loss, grads, h_last = m.loss_and_grads(x, y, h0, backend=backend, train=train)
    return loss, {k: v.copy() for k, v in grads.items()}, h_last


# ------------------------------------------------------------------ kernel vs numpy

@pytest.mark.parametrize("cell,L,dtype,dropout", [
    (c, L, dt, p) for c, L, dt, p in itertools.product(CELLS, LAYERS, (np.float64, np.float32),
                                                       (0.0, 0.4))])
def test_kernel_matches_numpy(cell, L, dtype, dropout):
    m = make_model(cell, L, dtype, dropout)
    x, y, h0 = make_chunk(m, B=3, T=5)
    lk, gk, hk = run(m, "kernel", x, y, h0, train=True)
    ln, gn, hn = run(m, "numpy", x, y, h0, train=True)
    tol = TOL[dtype]
    assert abs(lk - ln) <= tol * abs(ln)
    assert set(gk) == set(m.params) | {"h0"}
    for name in gn:
        assert gk[name].shape == gn[name].shape
        assert rel_err(gk[name], gn[name]) <= tol, name
    assert hk.shape == h0.shape
    assert rel_err(hk, hn) <= tol


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("B,T,H,V", [(1, 1, 1, 2), (1, 6, 3, 4), (4, 1, 6, 3), (2, 3, 17, 40)])
def test_kernel_matches_numpy_odd_shapes(cell, B, T, H, V):
    m = make_model(cell, 2, np.float64, dropout=0.25, V=V, H=H)
    x, y, h0 = make_chunk(m, B=B, T=T)
    lk, gk, hk = run(m, "kernel", x, y, h0, train=True)
    ln, gn, hn = run(m, "numpy", x, y, h0, train=True)
    assert abs(lk - ln) <= 1e-10 * abs(ln)
    for name in gn:
        assert rel_err(gk[name], gn[name]) <= 1e-10, name
    assert rel_err(hk, hn) <= 1e-10


@pytest.mark.parametrize("cell", CELLS)
def test_intermediate_buffers_match(cell):
    """Same caches on both backends, not only the same loss (the twins mirror each other).
    The scratch of the recurrent product (packed) holds each backend's own layout of Whh^T."""
    m = make_model(cell, 2, np.float64, dropout=0.3)
    x, y, h0 = make_chunk(m, B=2, T=3)
    run(m, "kernel", x, y, h0, train=True)
    ws_k = {k: (v.copy() if isinstance(v, np.ndarray) else v)
            for k, v in vars(m._workspace(2, 3, True)).items()}
    run(m, "numpy", x, y, h0, train=True)
    ws_n = vars(m._workspace(2, 3, True))
    for name, buf in ws_k.items():
        if buf is not None and name != "packed":
            assert rel_err(buf, ws_n[name]) <= 1e-10, name


# ------------------------------------------------------------------ finite differences

@pytest.mark.parametrize("cell,L", list(itertools.product(CELLS, LAYERS)))
def test_finite_differences(cell, L):
    """Centred differences (float64, kernel) on every parameter and on the initial state, with
    dropout active (masks fixed by reseeding), every entry. Per array, the error is relative to
    the array's largest gradient."""
    m = make_model(cell, L, np.float64, dropout=0.3, V=5, H=4, jitter=0.5)
    x, y, h0 = make_chunk(m, B=2, T=4, state_scale=0.8)
    _, grads, _ = run(m, "kernel", x, y, h0, train=True)

    def loss():
        m.rng = np.random.default_rng(7)
        return m.loss(x, y, h0, backend="kernel", train=True)[0]

    for name, arr in [*m.params.items(), ("h0", h0)]:
        g = grads[name].ravel()
        numeric = centred_differences(loss, arr, range(g.size))
        worst = np.abs(numeric - g).max()
        assert worst / np.abs(g).max() < 1e-6, (name, worst / np.abs(g).max())


# ------------------------------------------------------------------ dropout

@pytest.mark.parametrize("cell", CELLS)
def test_dropout_masks_identical_between_backends(cell):
    mk = make_model(cell, 2, np.float64, dropout=0.5, seed=3)
    mn = make_model(cell, 2, np.float64, dropout=0.5, seed=3)
    x, y, h0 = make_chunk(mk)
    lk, gk, _ = mk.loss_and_grads(x, y, h0, backend="kernel")
    ln, gn, _ = mn.loss_and_grads(x, y, h0, backend="numpy")
    np.testing.assert_array_equal(mk._workspace(3, 4, True).masks,
                                  mn._workspace(3, 4, True).masks)
    assert abs(lk - ln) <= 1e-10 * ln
    masks = mk._workspace(3, 4, True).masks
    assert set(np.unique(masks)) == {0.0, 2.0}            # keep / (1 - p)
    # a second call draws fresh masks, on both backends alike
    lk2 = mk.loss_and_grads(x, y, h0, backend="kernel")[0]
    ln2 = mn.loss_and_grads(x, y, h0, backend="numpy")[0]
    assert lk2 != lk and abs(lk2 - ln2) <= 1e-10 * ln2


@pytest.mark.parametrize("cell", CELLS)
def test_train_false_is_deterministic(cell):
    m = make_model(cell, 2, np.float64, dropout=0.5)
    x, y, h0 = make_chunk(m)
    first = m.loss_and_grads(x, y, h0, train=False)
    second = m.loss_and_grads(x, y, h0, train=False)
    assert first[0] == second[0]
    for name in first[1]:
        np.testing.assert_array_equal(first[1][name], second[1][name])
    np.testing.assert_array_equal(first[2], second[2])
    # and equal to a model without dropout, and to forward-only loss (which never drops)
    plain = CharRNN(m.vocab_size, m.hidden_size, 2, cell, 0.0, seed=0)
    plain.params = {k: v.copy() for k, v in m.params.items()}
    assert plain.loss_and_grads(x, y, h0)[0] == first[0]
    assert m.loss(x, y, h0)[0] == first[0]


def test_dropout_changes_training_loss_only_when_training():
    m = make_model("lstm", 2, np.float64, dropout=0.5)
    x, y, h0 = make_chunk(m)
    assert m.loss(x, y, h0, train=True)[0] != m.loss(x, y, h0)[0]


# ------------------------------------------------------------------ state and behaviour

@pytest.mark.parametrize("cell,L", list(itertools.product(CELLS, (1, 3))))
def test_state_carry_over_two_chunks(cell, L):
    """One chunk of 2T steps = two chunks of T with the state carried (losses average)."""
    m = make_model(cell, L)
    x, y, h0 = make_chunk(m, B=2, T=6)
    loss_all, h_all = m.loss(x, y, h0)
    l1, h1 = m.loss(x[:, :3], y[:, :3], h0)
    l2, h2 = m.loss(x[:, 3:], y[:, 3:], h1)
    assert abs(loss_all - (l1 + l2) / 2) < 1e-12
    np.testing.assert_allclose(h2, h_all, rtol=0, atol=1e-13)


@pytest.mark.parametrize("cell,L", [("rnn", 1), ("rnn", 2), ("lstm", 1), ("lstm", 2), ("gru", 3)])
def test_step_logits_follow_the_chunk_forward(cell, L):
    m = make_model(cell, L)
    x, y, h0 = make_chunk(m, B=2, T=4)
    loss, h_last = m.loss(x, y, h0)
    h, nll = h0, 0.0
    for t in range(x.shape[1]):
        logits, h = m.step_logits(x[:, t], h)
        z = logits - logits.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        nll -= logp[np.arange(2), y[:, t]].sum()
    assert h.shape == h0.shape
    np.testing.assert_allclose(h, h_last, rtol=0, atol=1e-12)
    assert abs(nll / x.size - loss) < 1e-12


@pytest.mark.parametrize("cell,L", [("rnn", 1), ("lstm", 2), ("gru", 2)])
def test_initial_state_and_config_round_trip(cell, L):
    m = CharRNN(11, 6, num_layers=L, cell=cell, dropout=0.2, dtype=np.float32, seed=4)
    state = m.initial_state(3)
    assert state.shape == ((3, 6) if (cell, L) == ("rnn", 1) else m.state_shape(3))
    assert state.dtype == np.float32 and not state.any()
    again = CharRNN.from_config(m.config(), seed=4)
    assert again.config() == m.config()
    for name in m.params:
        np.testing.assert_array_equal(again.params[name], m.params[name])
    x = np.zeros((3, 2), dtype=np.int64)
    loss, grads, h = m.loss_and_grads(x, x, state)
    assert np.isfinite(loss) and h.shape == state.shape and grads["h0"].shape == state.shape


def test_parameter_names_and_shapes():
    V, H = 9, 4
    lstm = CharRNN(V, H, num_layers=2, cell="lstm")
    assert list(lstm.params) == ["Wxh", "Whh", "bh", "Wxh1", "Whh1", "bh1", "Why", "by"]
    assert lstm.params["Wxh"].shape == (V, 4 * H) and lstm.params["Wxh1"].shape == (H, 4 * H)
    for b in ("bh", "bh1"):        # the forget gate (second block) starts open, the others at 0
        np.testing.assert_array_equal(lstm.params[b], np.r_[np.zeros(H), np.ones(H), np.zeros(2 * H)])
    gru = CharRNN(V, H, num_layers=2, cell="gru")
    assert list(gru.params) == ["Wxh", "Whh", "bh", "bhn", "Wxh1", "Whh1", "bh1", "bhn1", "Why", "by"]
    assert gru.params["Whh1"].shape == (H, 3 * H) and gru.params["bhn"].shape == (H,)
    rnn = CharRNN(V, H)
    assert list(rnn.params) == ["Wxh", "Whh", "bh", "Why", "by"]
    assert rnn.params["Whh"].shape == (H, H)


def test_single_layer_rnn_keeps_the_core_contract(monkeypatch):
    """(B, H) and (1, B, H) states give the same numbers, grads['h0'] follows the state's
    shape, and the stacked kernels reproduce the core path exactly for L = 1."""
    m = make_model("rnn", 1)
    x, y, h3 = make_chunk(m)
    h2 = h3[0].copy()
    l2, g2, s2 = run(m, "kernel", x, y, h2, train=True)
    l3, g3, s3 = run(m, "kernel", x, y, h3, train=True)
    assert g2["h0"].shape == h2.shape and s2.shape == h2.shape
    assert g3["h0"].shape == h3.shape and s3.shape == h3.shape
    assert l2 == l3
    np.testing.assert_array_equal(g2["h0"], g3["h0"][0])
    for backend in ("kernel", "numpy"):
        core = run(m, backend, x, y, h2, train=True)
        monkeypatch.setattr(m, "_uses_stack", lambda train: True)
        stacked = run(m, backend, x, y, h2, train=True)
        monkeypatch.undo()
        assert abs(core[0] - stacked[0]) <= 1e-12 * core[0]
        for name in core[1]:
            assert rel_err(stacked[1][name], core[1][name]) <= 1e-10, (backend, name)


def test_kernel_is_compiled_from_this_tree():
    assert fastrnn.model._kernel is not None
    assert hasattr(fastrnn.model._kernel, "lstm_layer_forward")
    assert hasattr(reference_cells, "lstm_layer_forward")


def test_grads_buffers_are_reused():
    m = make_model("gru", 2)
    x, y, h0 = make_chunk(m)
    grads = {k: np.empty_like(v) for k, v in m.params.items()}
    grads["h0"] = np.empty_like(h0)
    _, out, _ = m.loss_and_grads(x, y, h0, grads=grads)
    assert out is grads
    expected = m.loss_and_grads(x, y, h0)[1]
    for name in expected:
        np.testing.assert_array_equal(grads[name], expected[name])


# ------------------------------------------------------------------ validation

@pytest.mark.parametrize("cell,L,shape", [
    ("lstm", 2, (2, 3, 5)),          # missing the (h, c) axis
    ("lstm", 2, (2, 1, 3, 5)),       # wrong layer count
    ("lstm", 1, (3, 5)),             # (B, H) is for the single-layer rnn only
    ("gru", 2, (2, 2, 3, 5)),        # an lstm-shaped state
    ("gru", 2, (2, 4, 5)),           # wrong B
    ("rnn", 2, (3, 5)),
    ("rnn", 1, (3, 6)),              # wrong H
    ("rnn", 1, (2, 3, 5)),           # L = 2 state for a one-layer model
])
def test_bad_state_shape_is_rejected(cell, L, shape):
    m = CharRNN(7, 5, num_layers=L, cell=cell)
    x = np.zeros((3, 4), dtype=np.int64)
    h = np.zeros(shape)
    with pytest.raises(ValueError, match="h0"):
        m.loss_and_grads(x, x, h)
    with pytest.raises(ValueError, match="h0"):
        m.loss(x, x, h)
    with pytest.raises(ValueError, match="h"):
        m.step_logits(x[:, 0], h)


@pytest.mark.parametrize("cell", CELLS)
def test_bad_state_values_are_rejected(cell):
    m = CharRNN(7, 5, num_layers=2, cell=cell)
    x = np.zeros((3, 4), dtype=np.int64)
    h = m.initial_state(3)
    with pytest.raises(TypeError, match="h0"):
        m.loss_and_grads(x, x, h.astype(np.float32))
    with pytest.raises(TypeError, match="h0"):
        m.loss_and_grads(x, x, h.tolist())
    bad = h.copy()
    bad.flat[3] = np.nan
    with pytest.raises(ValueError, match="h0"):
        m.loss_and_grads(x, x, bad)
    wide = np.zeros(h.shape[:-1] + (10,))[..., ::2]
    with pytest.raises(ValueError, match="h0"):
        m.loss_and_grads(x, x, wide)


def test_bad_constructor_arguments_are_rejected():
    with pytest.raises(ValueError, match="cell"):
        CharRNN(5, 4, cell="transformer")
    with pytest.raises(ValueError, match="num_layers"):
        CharRNN(5, 4, num_layers=0)
    with pytest.raises(TypeError, match="num_layers"):
        CharRNN(5, 4, num_layers=2.0)
    with pytest.raises(ValueError, match="dropout"):
        CharRNN(5, 4, dropout=1.0)
    with pytest.raises(ValueError, match="dropout"):
        CharRNN(5, 4, dropout=-0.1)
    with pytest.raises(TypeError, match="dropout"):
        CharRNN(5, 4, dropout="0.5")


def test_bad_grads_buffers_are_rejected():
    m = CharRNN(7, 5, num_layers=2, cell="lstm")
    x = np.zeros((3, 4), dtype=np.int64)
    h = m.initial_state(3)
    grads = {k: np.empty_like(v) for k, v in m.params.items()}
    grads["h0"] = np.empty((2, 3, 5))                    # the h part only: wrong shape
    with pytest.raises(ValueError, match="h0"):
        m.loss_and_grads(x, x, h, grads=grads)
    grads["h0"] = np.empty_like(h)
    del grads["bh1"]
    with pytest.raises(ValueError, match="bh1"):
        m.loss_and_grads(x, x, h, grads=grads)


# ------------------------------------------------------------------ sampling and training wiring

@pytest.mark.parametrize("cell,L", [("lstm", 2), ("gru", 1), ("rnn", 2)])
def test_generate_matches_step_logits(cell, L):
    """generate for the other cells: same draws as stepping step_logits with next_index, on
    the numpy backend exactly and on the kernel to rounding (float64)."""
    from fastrnn.reference import next_index
    m = make_model(cell, L, V=6)
    u = np.random.default_rng(3).random(30)
    g, x, expected = m.initial_state(1), 2, []
    for n in range(30):
        logits, g = m.step_logits(np.array([x]), g)
        x = next_index(logits[0], 0.8, 4, False, u[n])
        expected.append(x)
    for backend in ("numpy", "kernel"):
        h = m.initial_state(1)
        out = m.generate(h, 2, 30, temperature=0.8, top_k=4, rng=np.random.default_rng(3),
                         backend=backend)
        assert out.tolist() == expected, backend
        np.testing.assert_allclose(h, g, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell,L,dropout", [("lstm", 2, 0.3), ("gru", 1, 0.0)])
def test_train_and_sample_other_cells(tmp_path, cell, L, dropout):
    """fastrnn.train with model/num_layers/dropout; the checkpoint records them and sampling
    needs nothing else; the loss goes down."""
    text = "the quick brown fox jumps over the lazy dog. " * 40
    ck = str(tmp_path / "m.npz")
    result = fastrnn.train(text=text, model=cell, num_layers=L, dropout=dropout,
                           hidden_size=16, batch_size=4, seq_length=16, max_iters=60,
                           eval_every=0, sample_every=0, checkpoint=ck, quiet=True,
                           out=io.StringIO(), handle_signals=False)
    model, vocab = fastrnn.load_model(ck)
    assert (model.cell, model.num_layers, model.dropout) == (cell, L, dropout)
    assert result.train_loss < np.log(vocab.size)
    text_out = fastrnn.sample(model, vocab, length=20, seed=1)
    assert len(text_out) == 20 and set(text_out) <= set(vocab.chars)


def test_cli_flags_and_sample_without_extra_flags(tmp_path, capsys):
    from fastrnn.cli import sample_main, train_main
    corpus = tmp_path / "c.txt"
    corpus.write_text("abcabd abcabd, a cab. " * 50, encoding="utf-8")
    ck = tmp_path / "m.npz"
    argv = [str(corpus), "--model", "lstm", "--num-layers", "2", "--dropout", "0.25",
            "--hidden-size", "12", "--batch-size", "4", "--seq-length", "8", "--max-iters", "20",
            "--sample-every", "0", "--eval-every", "0", "--checkpoint", str(ck), "--quiet"]
    assert train_main(argv) == 0
    model, _ = fastrnn.load_model(ck)
    assert model.config()["cell"] == "lstm" and model.num_layers == 2 and model.dropout == 0.25
    capsys.readouterr()
    assert sample_main([str(ck), "--length", "15", "--seed", "2"]) == 0
    assert len(capsys.readouterr().out.strip()) >= 10
    # a resumed run cannot change the architecture
    assert train_main(argv[:1] + ["--resume", str(ck), "--model", "gru"]) != 0


@pytest.mark.parametrize("flags,message", [
    (["--model", "transformer"], "--model"),
    (["--num-layers", "0"], "--num-layers"),
    (["--dropout", "1"], "--dropout"),
])
def test_cli_rejects_bad_model_flags(tmp_path, capsys, flags, message):
    from fastrnn.cli import train_main
    try:
        status = train_main(["x.txt", *flags])
    except SystemExit as exc:
        status = exc.code
    assert status != 0
    assert message in capsys.readouterr().err
