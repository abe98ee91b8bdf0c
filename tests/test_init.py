"""Initialisation schemes (fastrnn.init): the "uniform" draws as they have always been, the
orthogonal blocks, the spreads each scheme states, the forget bias, the registry and its
validation, and checkpoints written before schemes existed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fastrnn import CharRNN, init
from fastrnn import checkpoint as ckpt
from fastrnn.data import Vocabulary
from fastrnn.init import InitScheme


def legacy_params(
    shapes: dict[str, tuple[int, ...]], cell: str, H: int, dtype, seed: int
) -> dict[str, np.ndarray]:
    """The draws of the one-hot CharRNN before schemes existed, written out again: every
    matrix uniform +-1/sqrt(H) in parameter order from default_rng(seed), zero biases, the
    LSTM forget block of every bh at 1."""
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(H)
    params = {}
    for name, shape in shapes.items():
        if name.startswith("W"):
            params[name] = np.ascontiguousarray(rng.uniform(-scale, scale, size=shape), dtype=dtype)
        else:
            params[name] = np.zeros(shape, dtype=dtype)
            if cell == "lstm" and name.startswith("bh"):
                params[name][H : 2 * H] = 1.0
    return params


def gate_blocks(W: np.ndarray, H: int) -> list[np.ndarray]:
    return [W[:, j * H : (j + 1) * H] for j in range(W.shape[1] // H)]


# ------------------------------------------------------------------ "uniform"


@pytest.mark.parametrize(
    "cell,L,dtype,seed",
    [
        ("rnn", 1, np.float64, 0),
        ("rnn", 1, np.float32, 7),
        ("rnn", 3, np.float64, 1),
        ("lstm", 2, np.float32, 2),
        ("lstm", 1, np.float64, 3),
        ("gru", 2, np.float64, 4),
    ],
)
def test_uniform_reproduces_the_legacy_draws(cell, L, dtype, seed):
    m = CharRNN(11, 6, num_layers=L, cell=cell, dtype=dtype, seed=seed, init="uniform")
    expected = legacy_params(m.param_shapes(), cell, 6, dtype, seed)
    assert list(m.params) == list(expected)
    for name, p in expected.items():
        assert m.params[name].dtype == p.dtype
        np.testing.assert_array_equal(m.params[name], p, err_msg=name)


def test_the_default_scheme_is_the_contract_default():
    m = CharRNN(5, 4)
    assert m.init == "default" and m.init_scheme == init.SCHEMES["default"]
    legacy = legacy_params(m.param_shapes(), "rnn", 4, np.float64, 0)
    assert not np.array_equal(m.params["Wxh"], legacy["Wxh"])


# ------------------------------------------------------------------ orthogonal blocks


@pytest.mark.parametrize("cell,L", [("rnn", 2), ("lstm", 2), ("gru", 1)])
def test_orthogonal_recurrent_blocks(cell, L):
    H = 16
    m = CharRNN(7, H, num_layers=L, cell=cell, init=InitScheme(recurrent="orthogonal"))
    for layer in range(L):
        name = "Whh" if layer == 0 else f"Whh{layer}"
        blocks = gate_blocks(m.params[name], H)
        assert len(blocks) == m.gates
        for q in blocks:
            np.testing.assert_allclose(q.T @ q, np.eye(H), rtol=0, atol=1e-12)
            np.testing.assert_allclose(q @ q.T, np.eye(H), rtol=0, atol=1e-12)
        assert not np.allclose(blocks[0], blocks[-1]) or len(blocks) == 1


@pytest.mark.parametrize("E,H", [(3, 8), (8, 8), (20, 8)])
def test_orthogonal_input_blocks_of_any_shape(E, H):
    """A non-square (rows, H) block has orthonormal columns when rows >= H, rows otherwise."""
    scheme = InitScheme(embed_proj="orthogonal", hidden_input="orthogonal")
    m = CharRNN(9, H, num_layers=2, cell="lstm", embedding_size=E, init=scheme)
    for q in gate_blocks(m.params["Wxh"], H):
        gram = q.T @ q if E >= H else q @ q.T
        np.testing.assert_allclose(gram, np.eye(min(E, H)), rtol=0, atol=1e-12)
    for q in gate_blocks(m.params["Wxh1"], H):
        np.testing.assert_allclose(q.T @ q, np.eye(H), rtol=0, atol=1e-12)


def test_orthogonal_is_sign_corrected():
    """Q of a Gaussian's QR with R's diagonal made positive: Q^T A is upper triangular with a
    positive diagonal for the A drawn."""
    a = np.random.default_rng(3).standard_normal((6, 6))
    q = init.orthogonal(np.random.default_rng(3), 6, 6)
    r = q.T @ a
    np.testing.assert_allclose(np.tril(r, -1), 0.0, atol=1e-12)
    assert (np.diag(r) > 0).all()


# ------------------------------------------------------------------ spreads


def assert_gaussian(a: np.ndarray, std: float) -> None:
    """Mean and standard deviation of n draws within 5 standard errors (std / sqrt(n) for the
    mean, about std / sqrt(2n) for the standard deviation)."""
    n = a.size
    assert abs(a.mean()) < 5 * std / np.sqrt(n)
    assert abs(a.std() - std) < 5 * std / np.sqrt(2 * n)


def assert_uniform(a: np.ndarray, bound: float) -> None:
    """Within +-bound, reaching near it, and of variance bound^2 / 3 within 5 standard errors
    (a uniform's sample variance has standard error 2 bound^2 / sqrt(45 n))."""
    n = a.size
    assert np.abs(a).max() <= bound and np.abs(a).max() > 0.99 * bound
    assert abs(a.var() - bound**2 / 3) < 5 * 2 * bound**2 / np.sqrt(45 * n)


def test_stated_spreads_with_an_embedding():
    V, E, H = 300, 64, 128
    scheme = InitScheme(embed_std=0.5, input_std=2.0, head="uniform")
    m = CharRNN(V, H, num_layers=2, cell="gru", embedding_size=E, init=scheme, seed=11)
    assert_gaussian(m.params["Wemb"], 0.5)
    assert_uniform(m.params["Wxh"], 1 / np.sqrt(E))  # embed_proj: +-1/sqrt(E)
    assert_uniform(m.params["Wxh1"], 1 / np.sqrt(H))  # hidden_input
    assert_uniform(m.params["Whh"], 1 / np.sqrt(H))  # recurrent
    assert_uniform(m.params["Why"], 1 / np.sqrt(H))  # head
    for b in ("bh", "bhn", "bh1", "bhn1", "by"):
        assert not m.params[b].any()


def test_stated_spreads_of_one_hot_rows():
    V, H = 300, 128
    m = CharRNN(V, H, cell="lstm", init=InitScheme(input_std=1.5), seed=12)
    assert_gaussian(m.params["Wxh"], 1.5)
    default = CharRNN(V, H, init="default", seed=13)
    assert_gaussian(default.params["Wxh"], init.SCHEMES["default"].input_std)


def test_zero_std_means_uniform_rows():
    m = CharRNN(300, 128, embedding_size=32, init=InitScheme(embed_std=0.0), seed=14)
    assert_uniform(m.params["Wemb"], 1 / np.sqrt(128))


def test_zero_head_and_forget_bias():
    H = 5
    scheme = InitScheme(head="zero", forget_bias=2.5)
    m = CharRNN(7, H, num_layers=2, cell="lstm", init=scheme)
    assert not m.params["Why"].any()
    for b in ("bh", "bh1"):
        np.testing.assert_array_equal(
            m.params[b], np.r_[np.zeros(H), np.full(H, 2.5), np.zeros(2 * H)]
        )
    default = CharRNN(7, H, cell="lstm")
    np.testing.assert_array_equal(
        default.params["bh"][H : 2 * H], np.full(H, init.SCHEMES["default"].forget_bias)
    )


# ------------------------------------------------------------------ registry and validation


def test_unknown_scheme_name_names_the_choices():
    with pytest.raises(ValueError, match="init must be one of.*'uniform'.*'default'"):
        CharRNN(5, 4, init="glorot")
    with pytest.raises(TypeError, match="init"):
        CharRNN(5, 4, init=3)


@pytest.mark.parametrize(
    "kw,error",
    [
        ({"recurrent": "identity"}, ValueError),
        ({"head": "orthogonal"}, ValueError),
        ({"embed_proj": "zero"}, ValueError),
        ({"input_std": -1.0}, ValueError),
        ({"embed_std": float("nan")}, ValueError),
        ({"forget_bias": "1"}, TypeError),
        ({"input_std": True}, TypeError),
    ],
)
def test_bad_scheme_numbers_are_rejected(kw, error):
    with pytest.raises(error, match=next(iter(kw))):
        InitScheme(**kw)


def test_schemes_are_frozen_and_recorded():
    scheme = init.SCHEMES["default"]
    with pytest.raises(AttributeError):
        scheme.input_std = 3.0
    m = CharRNN(6, 4, init="default")
    cfg = m.config()
    assert cfg["init"] == "default" and cfg["init_spec"] == scheme.to_dict()
    assert json.loads(json.dumps(cfg)) == cfg
    custom = CharRNN(6, 4, init=InitScheme(input_std=0.3))
    assert custom.config()["init"] == "custom"
    named = CharRNN(6, 4, init=InitScheme())
    assert named.config()["init"] == "uniform"


def test_from_config_draws_the_same_parameters():
    for scheme in ("uniform", "default", InitScheme(recurrent="orthogonal", head="zero")):
        m = CharRNN(8, 5, num_layers=2, cell="lstm", embedding_size=3, init=scheme, seed=6)
        again = CharRNN.from_config(m.config(), seed=6)
        assert again.config() == m.config()
        for name, p in m.params.items():
            np.testing.assert_array_equal(again.params[name], p)


def test_a_recorded_spec_outlives_a_retuned_scheme(monkeypatch):
    """A config records the numbers it was drawn with; if the named scheme's numbers change
    later, from_config still draws with the recorded numbers (and calls them "custom")."""
    m = CharRNN(8, 5, init="default", seed=2)
    cfg = m.config()
    monkeypatch.setitem(init.SCHEMES, "default", InitScheme(input_std=0.1))
    again = CharRNN.from_config(cfg, seed=2)
    assert again.init == "custom" and again.init_scheme == m.init_scheme
    for name, p in m.params.items():
        np.testing.assert_array_equal(again.params[name], p)


def test_unknown_spec_keys_are_rejected():
    cfg = CharRNN(5, 4).config()
    cfg["init_spec"] = {**cfg["init_spec"], "gain": 2.0}
    with pytest.raises(ValueError, match="gain"):
        CharRNN.from_config(cfg)


# ------------------------------------------------------------------ checkpoints


def test_config_without_the_new_keys_is_the_uniform_one_hot_model():
    old = {
        "cell": "rnn",
        "vocab_size": 9,
        "hidden_size": 6,
        "num_layers": 1,
        "dropout": 0.0,
        "dtype": "float64",
    }
    m = CharRNN.from_config(old, seed=5)
    assert m.embedding_size == 0 and m.init == "uniform"
    expected = legacy_params(m.param_shapes(), "rnn", 6, np.float64, 5)
    for name, p in expected.items():
        np.testing.assert_array_equal(m.params[name], p)


def test_checkpoint_written_without_the_new_keys_loads(tmp_path):
    """A checkpoint whose model header lacks embedding_size, init and init_spec (as written
    before they existed) loads as the one-hot model, with its stored parameters."""
    vocab = Vocabulary.from_text("hello world")
    m = CharRNN(vocab.size, 6, num_layers=2, cell="lstm", init="uniform", seed=3)
    for p in m.params.values():
        p += 0.25
    arrays = ckpt.build_arrays(m, vocab, {"iteration": 4}, hidden=m.initial_state(2))
    header = json.loads(arrays["header"].tobytes().decode("utf-8"))
    for key in ("embedding_size", "init", "init_spec"):
        del header["model"][key]
    arrays["header"] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8).copy()
    del arrays["checksum"]
    arrays["checksum"] = ckpt.checksum(arrays)
    path = tmp_path / "old.npz"
    ckpt.write_atomically(str(path), arrays)
    loaded = ckpt.load_checkpoint(path)
    assert loaded.header["iteration"] == 4 and "init" not in loaded.header["model"]
    assert loaded.model.embedding_size == 0 and loaded.model.init == "uniform"
    assert loaded.model.config() == m.config()
    for name, p in m.params.items():
        np.testing.assert_array_equal(loaded.model.params[name], p)
