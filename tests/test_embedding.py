"""The input embedding (CharRNN(embedding_size=E)): kernel vs numpy on every buffer and gradient,
centred finite differences, equivalence with the one-hot model, training, generation,
checkpoints and validation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import conftest
import fastrnn
from conftest import CELLS, TOL, centred_differences, make_chunk, rel_err, run_reseeded
from fastrnn import CharRNN, reference_cells
from fastrnn.optim import make_optimizer

LAYERS = (1, 2, 3)


def make_model(cell, L, dtype=np.float64, dropout=0.0, V=7, E=3, H=5, seed=0, jitter=0.3):
    """conftest's perturbed model, with an embedding (E = 3) unless told otherwise."""
    return conftest.make_model(cell, L, dtype, dropout, V=V, H=H, seed=seed, jitter=jitter, E=E)


run = run_reseeded


def workspace_buffers(m, B, T) -> dict[str, np.ndarray]:
    """The workspace's caches, without the recurrent product's scratch (packed), which holds
    each backend's own layout of Whh^T."""
    return {
        k: v.copy()
        for k, v in vars(m._workspace(B, T, True)).items()
        if isinstance(v, np.ndarray) and k != "packed"
    }


# ------------------------------------------------------------------ parameters


def test_embedding_parameters_and_workspace_shapes():
    V, E, H = 9, 4, 6
    m = CharRNN(V, H, num_layers=2, cell="gru", embedding_size=E)
    assert list(m.params)[:2] == ["Wemb", "Wxh"]
    assert m.params["Wemb"].shape == (V, E)
    assert m.params["Wxh"].shape == (E, 3 * H) and m.params["Wxh1"].shape == (H, 3 * H)
    x = np.zeros((2, 5), dtype=np.int64)
    m.loss_and_grads(x, x, m.initial_state(2))
    ws = m._workspace(2, 5, True)
    assert ws.emb.shape == ws.demb.shape == (5, 2, E)


def test_no_embedding_is_the_one_hot_model():
    m = CharRNN(9, 6, embedding_size=0)
    assert list(m.params) == ["Wxh", "Whh", "bh", "Why", "by"]
    assert m.params["Wxh"].shape == (9, 6)
    assert not m._uses_stack(train=True)
    assert m._workspace(2, 3, True).emb is None


# ------------------------------------------------------------------ kernel vs numpy


@pytest.mark.parametrize(
    "cell,L,dtype,dropout",
    list(itertools.product(CELLS, LAYERS, (np.float64, np.float32), (0.0, 0.4))),
)
def test_kernel_matches_numpy(cell, L, dtype, dropout):
    """Loss, every gradient (dWemb included), the carried state and every workspace buffer
    (emb, demb, gates, hs, ...) agree between the kernel and its numpy twin."""
    m = make_model(cell, L, dtype, dropout)
    B, T = 3, 5
    x, y, h0 = make_chunk(m, B=B, T=T)
    lk, gk, hk = run(m, "kernel", x, y, h0, train=True)
    ws_k = workspace_buffers(m, B, T)
    ln, gn, hn = run(m, "numpy", x, y, h0, train=True)
    ws_n = workspace_buffers(m, B, T)
    tol = TOL[dtype]
    assert abs(lk - ln) <= tol * abs(ln)
    assert set(gk) == set(m.params) | {"h0"} and "Wemb" in gk
    for name in gn:
        assert gk[name].shape == gn[name].shape
        assert rel_err(gk[name], gn[name]) <= tol, name
    assert rel_err(hk, hn) <= tol
    assert {"emb", "demb"} <= set(ws_k)
    for name in ws_k:
        assert rel_err(ws_k[name], ws_n[name]) <= tol, name


@pytest.mark.parametrize("dtype", (np.float64, np.float32))
@pytest.mark.parametrize("B,T,E,V", [(1, 1, 1, 2), (4, 3, 7, 3), (2, 6, 16, 40)])
def test_embedding_kernels_match_numpy(dtype, B, T, E, V):
    """embedding_forward / embedding_backward on their own, repeated indices included; the
    backward overwrites whatever dWemb held."""
    r = np.random.default_rng(B * T + E)
    x = r.integers(0, V, (B, T)).astype(np.int32)
    Wemb = r.normal(size=(V, E)).astype(dtype)
    demb = r.normal(size=(T, B, E)).astype(dtype)
    kernel = fastrnn.model._kernel
    out = {}
    for name, impl in (("kernel", kernel), ("numpy", reference_cells)):
        emb = np.full((T, B, E), np.nan, dtype=dtype)
        dWemb = np.full((V, E), np.nan, dtype=dtype)
        impl.embedding_forward(x, Wemb, emb)
        impl.embedding_backward(x, demb, dWemb)
        out[name] = emb, dWemb
    np.testing.assert_array_equal(out["kernel"][0], Wemb[x.T])
    np.testing.assert_array_equal(out["numpy"][0], Wemb[x.T])
    expected = np.zeros((V, E))
    for t, b in itertools.product(range(T), range(B)):
        expected[x[b, t]] += demb[t, b]
    for name in out:
        assert rel_err(out[name][1], expected) <= TOL[dtype], name


# ------------------------------------------------------------------ finite differences


@pytest.mark.slow
@pytest.mark.parametrize("cell,L,dropout", list(itertools.product(CELLS, (1, 2), (0.0, 0.3))))
def test_finite_differences(cell, L, dropout):
    """Centred differences (float64, kernel) with a non-zero carried state: every entry of
    Wemb, of layer 0's Wxh and of the state; spot entries of every other parameter. Per array
    the error is relative to the array's largest gradient."""
    m = make_model(cell, L, np.float64, dropout=dropout, V=5, E=3, H=4, jitter=0.5)
    x, y, h0 = make_chunk(m, B=2, T=4, state_scale=0.8)
    _, grads, _ = run(m, "kernel", x, y, h0, train=True)

    def loss():
        m.rng = np.random.default_rng(7)
        return m.loss(x, y, h0, backend="kernel", train=True)[0]

    spots = np.random.default_rng(5)
    for name, arr in [*m.params.items(), ("h0", h0)]:
        g = grads[name].ravel()
        every = name in ("Wemb", "Wxh", "h0")
        indices = range(g.size) if every else spots.choice(g.size, min(g.size, 6), replace=False)
        numeric = centred_differences(loss, arr, indices)
        worst = np.abs(numeric - g[list(indices)]).max()
        assert worst / np.abs(g).max() < 1e-6, (name, worst / np.abs(g).max())
    assert np.abs(grads["Wemb"]).max() > 1e-6


def test_finite_differences_detect_a_wrong_embedding_gradient():
    """The check can fail: a dWemb with one entry perturbed is caught."""
    m = make_model("lstm", 1, V=5, E=3, H=4)
    x, y, h0 = make_chunk(m, B=2, T=3)
    _, grads, _ = run(m, "kernel", x, y, h0, train=False)
    wrong = grads["Wemb"].ravel().copy()
    wrong[x[0, 0] * 3 + 1] += 1e-4
    numeric = centred_differences(lambda: m.loss(x, y, h0)[0], m.params["Wemb"], range(wrong.size))
    assert np.abs(numeric - grads["Wemb"].ravel()).max() < 1e-8
    assert np.abs(numeric - wrong).max() > 1e-5


# ------------------------------------------------------------------ behaviour


@pytest.mark.parametrize("cell,L", [("rnn", 1), ("lstm", 2), ("gru", 1)])
@pytest.mark.parametrize("backend", ("kernel", "numpy"))
def test_equals_the_one_hot_model_with_the_product_matrix(cell, L, backend):
    """onehot(x) @ Wemb @ Wxh = onehot(x) @ (Wemb @ Wxh): the embedded model computes the
    loss, state and upstream gradients of the one-hot model whose Wxh is Wemb @ Wxh, and its
    dWemb, dWxh are that model's dWxh multiplied through (dWemb = dW @ Wxh^T, dWxh =
    Wemb^T @ dW)."""
    m = make_model(cell, L)
    flat = CharRNN(m.vocab_size, m.hidden_size, num_layers=L, cell=cell)
    flat.params = {k: v.copy() for k, v in m.params.items() if k != "Wemb"}
    flat.params["Wxh"] = m.params["Wemb"] @ m.params["Wxh"]
    x, y, h0 = make_chunk(m)
    le, ge, he = run(m, backend, x, y, h0, train=False)
    lf, gf, hf = run(flat, backend, x, y, h0, train=False)
    assert abs(le - lf) <= 1e-12 * lf
    assert rel_err(he, hf) <= 1e-12
    for name in gf:
        if name != "Wxh":
            assert rel_err(ge[name], gf[name]) <= 1e-10, name
    assert rel_err(ge["Wemb"], gf["Wxh"] @ m.params["Wxh"].T) <= 1e-10
    assert rel_err(ge["Wxh"], m.params["Wemb"].T @ gf["Wxh"]) <= 1e-10


@pytest.mark.parametrize("cell,L", [("rnn", 1), ("lstm", 2), ("gru", 3)])
def test_state_carry_over_two_chunks(cell, L):
    """One chunk of 2T steps = two chunks of T with the state carried."""
    m = make_model(cell, L)
    x, y, h0 = make_chunk(m, B=2, T=6)
    loss_all, h_all = m.loss(x, y, h0)
    l1, h1 = m.loss(x[:, :3], y[:, :3], h0)
    l2, h2 = m.loss(x[:, 3:], y[:, 3:], h1)
    assert abs(loss_all - (l1 + l2) / 2) < 1e-12
    np.testing.assert_allclose(h2, h_all, rtol=0, atol=1e-13)


def test_single_layer_rnn_with_embedding_takes_both_state_shapes():
    m = make_model("rnn", 1)
    x, y, h3 = make_chunk(m)
    h2 = h3[0].copy()
    l2, g2, s2 = run(m, "kernel", x, y, h2, train=True)
    l3, g3, s3 = run(m, "kernel", x, y, h3, train=True)
    assert l2 == l3 and s2.shape == h2.shape and g2["h0"].shape == h2.shape
    np.testing.assert_array_equal(g2["Wemb"], g3["Wemb"])
    np.testing.assert_array_equal(s2, s3[0])


def periodic_chunks(V, B, T, steps, seed=0):
    """(x, y) chunks of streams that follow the cycle 0, 1, ..., V-1 from random offsets."""
    r = np.random.default_rng(seed)
    start = r.integers(0, V, B)
    for n in range(steps):
        pos = (start[:, None] + n * T + np.arange(T + 1)[None, :]) % V
        yield pos[:, :-1], pos[:, 1:]


def train_losses(m, backend, steps, B=8, T=12):
    opt = make_optimizer("adam", m.params, 1e-2, backend=backend)
    h = m.initial_state(B)
    losses = []
    for x, y in periodic_chunks(m.vocab_size, B, T, steps):
        loss, grads, h = m.loss_and_grads(x, y, h, backend=backend)
        opt.step(m.params, grads, clip=5.0)
        losses.append(loss)
    return np.array(losses)


@pytest.mark.slow
@pytest.mark.parametrize("cell,L", [("rnn", 1), ("lstm", 2), ("gru", 1)])
def test_short_training_run_learns(cell, L):
    """Adam on a predictable sequence: the loss falls far below the uniform guess."""
    V = 11
    m = CharRNN(V, 16, num_layers=L, cell=cell, embedding_size=8, seed=3)
    losses = train_losses(m, "kernel", 120)
    assert abs(losses[0] - np.log(V)) < 1.0
    assert losses[-10:].mean() < 0.25 * np.log(V)


@pytest.mark.slow
def test_training_trajectories_match_between_backends():
    """Losses and parameters of a fixed-seed run agree step by step (float64)."""
    runs = {}
    for backend in ("kernel", "numpy"):
        m = CharRNN(9, 8, num_layers=2, cell="lstm", embedding_size=5, seed=4, dropout=0.2)
        runs[backend] = train_losses(m, backend, 25), m.params
    np.testing.assert_allclose(runs["kernel"][0], runs["numpy"][0], rtol=1e-9)
    for name, p in runs["kernel"][1].items():
        np.testing.assert_allclose(p, runs["numpy"][1][name], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("cell,L", [("rnn", 1), ("lstm", 2), ("gru", 1)])
def test_generation_identical_on_both_backends(cell, L):
    """generate: the same indices on both backends for the same generator (float64), the
    same as stepping step_logits with next_index, and the final states agree."""
    from fastrnn.reference import next_index

    m = make_model(cell, L, V=6, jitter=0.6)
    u = np.random.default_rng(3).random(40)
    g, x, expected = m.initial_state(1), 2, []
    for n in range(40):
        logits, g = m.step_logits(np.array([x]), g)
        x = next_index(logits[0], 0.9, 5, False, u[n])
        expected.append(x)
    outs, states = [], []
    for backend in ("kernel", "numpy"):
        h = m.initial_state(1)
        outs.append(
            m.generate(
                h, 2, 40, temperature=0.9, top_k=5, rng=np.random.default_rng(3), backend=backend
            )
        )
        states.append(h)
    assert outs[0].tolist() == outs[1].tolist() == expected
    np.testing.assert_allclose(states[0], states[1], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(states[0], g, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell,L", [("rnn", 1), ("gru", 2)])
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
    np.testing.assert_allclose(h, h_last, rtol=0, atol=1e-12)
    assert abs(nll / x.size - loss) < 1e-12


# ------------------------------------------------------------------ configuration, checkpoints


def test_config_round_trip_and_checkpoint(tmp_path):
    from fastrnn import checkpoint as ckpt
    from fastrnn.data import Vocabulary

    vocab = Vocabulary.from_text("abcdefg")
    m = make_model("lstm", 2, np.float32, dropout=0.1, V=vocab.size)
    assert m.config()["embedding_size"] == 3
    again = CharRNN.from_config(m.config(), seed=0)
    assert again.config() == m.config()
    path = tmp_path / "e.npz"
    ckpt.save_checkpoint(path, m, vocab, {"iteration": 0})
    loaded = ckpt.load_checkpoint(path)
    assert loaded.model.config() == m.config()
    assert list(loaded.model.params) == list(m.params)
    for name, p in m.params.items():
        np.testing.assert_array_equal(loaded.model.params[name], p)
    x = np.zeros((2, 3), dtype=np.int64)
    h = m.initial_state(2)
    assert loaded.model.loss(x, x, h)[0] == m.loss(x, x, h)[0]


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "value,error",
    [(-1, ValueError), (2.0, TypeError), ("3", TypeError), (True, TypeError), (None, TypeError)],
)
def test_bad_embedding_size_is_rejected(value, error):
    with pytest.raises(error, match="embedding_size"):
        CharRNN(5, 4, embedding_size=value)


def test_bad_embedding_grads_are_rejected():
    m = make_model("gru", 1)
    x, y, h0 = make_chunk(m)
    grads = {k: np.empty_like(v) for k, v in m.params.items()}
    grads["h0"] = np.empty_like(h0)
    grads["Wemb"] = np.empty((m.vocab_size, 4))
    with pytest.raises(ValueError, match="Wemb"):
        m.loss_and_grads(x, y, h0, grads=grads)
    m.params["Wemb"] = m.params["Wemb"].astype(np.float32)
    with pytest.raises(TypeError, match="Wemb"):
        m.loss(x, y, h0)
