"""The one door: every malformed input is refused in Python with an error naming the argument,
before the unchecked kernel runs; random inputs give a correct answer or a clean exception."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastrnn
from conftest import CELLS
from fastrnn import CharRNN

V, H, B, T = 7, 4, 2, 3


@pytest.fixture
def model():
    return fastrnn.CharRNN(V, H, seed=0)


@pytest.fixture
def chunk():
    rng = np.random.default_rng(0)
    return rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T)), np.zeros((B, H))


def call(model, x, y, h0, **kw):
    return model.loss_and_grads(x, y, h0, **kw)


# ------------------------------------------------------------------ constructor


@pytest.mark.parametrize(
    "kwargs,error,words",
    [
        ({"vocab_size": 0, "hidden_size": 4}, ValueError, "vocab_size"),
        ({"vocab_size": 5, "hidden_size": -1}, ValueError, "hidden_size"),
        ({"vocab_size": 5.0, "hidden_size": 4}, TypeError, "vocab_size"),
        ({"vocab_size": 5, "hidden_size": 4, "dtype": np.int32}, TypeError, "dtype"),
        ({"vocab_size": 5, "hidden_size": 4, "dtype": np.float16}, TypeError, "dtype"),
        ({"vocab_size": 5, "hidden_size": 4, "dtype": "bogus"}, TypeError, "dtype"),
    ],
)
def test_constructor_rejects(kwargs, error, words):
    with pytest.raises(error, match=words):
        fastrnn.CharRNN(**kwargs)


# ------------------------------------------------------------------ inputs and targets


def test_inputs_float_dtype(model, chunk):
    x, y, h0 = chunk
    with pytest.raises(TypeError, match="inputs"):
        call(model, x.astype(np.float64), y, h0)


def test_targets_bool_dtype(model, chunk):
    x, y, h0 = chunk
    with pytest.raises(TypeError, match="targets"):
        call(model, x, y.astype(bool), h0)


def test_inputs_wrong_ndim(model, chunk):
    x, y, h0 = chunk
    with pytest.raises(ValueError, match="inputs"):
        call(model, x.reshape(-1), y, h0)


def test_inputs_empty(model, chunk):
    _, _, h0 = chunk
    with pytest.raises(ValueError, match="inputs"):
        call(model, np.zeros((B, 0), int), np.zeros((B, 0), int), h0)


def test_targets_shape_differs(model, chunk):
    x, y, h0 = chunk
    with pytest.raises(ValueError, match="targets"):
        call(model, x, y[:, :-1], h0)


def test_index_too_large(model, chunk):
    x, y, h0 = chunk
    x = x.copy()
    x[1, 2] = V
    with pytest.raises(ValueError, match=r"inputs.*\[0, 7\)"):
        call(model, x, y, h0)


def test_negative_index(model, chunk):
    x, y, h0 = chunk
    y = y.copy()
    y[0, 0] = -1
    with pytest.raises(ValueError, match="targets"):
        call(model, x, y, h0)


def test_huge_unsigned_index(model, chunk):
    x, y, h0 = chunk
    x = x.astype(np.uint64)
    x[0, 0] = 2**63
    with pytest.raises(ValueError, match="inputs"):
        call(model, x, y, h0)


def test_noncontiguous_indices_are_accepted(model, chunk):
    """Index arrays are small and copied to int32 anyway: any layout is fine."""
    x, y, h0 = chunk
    xf, yf = np.asfortranarray(x), np.asfortranarray(y)
    assert call(model, xf, yf, h0)[0] == call(model, x, y, h0)[0]


# ------------------------------------------------------------------ h0


def test_h0_wrong_dtype(model, chunk):
    x, y, h0 = chunk
    with pytest.raises(TypeError, match="h0"):
        call(model, x, y, h0.astype(np.float32))


def test_h0_wrong_shape(model, chunk):
    x, y, h0 = chunk
    with pytest.raises(ValueError, match=r"h0.*\(2, 4\)"):
        call(model, x, y, np.zeros((B + 1, H)))


def test_h0_not_contiguous(model, chunk):
    x, y, _ = chunk
    h0 = np.zeros((H, B)).T
    with pytest.raises(ValueError, match="h0.*C-contiguous"):
        call(model, x, y, h0)


def test_h0_not_an_array(model, chunk):
    x, y, h0 = chunk
    with pytest.raises(TypeError, match="h0"):
        call(model, x, y, h0.tolist())


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_h0_not_finite(model, chunk, bad):
    x, y, h0 = chunk
    h0 = h0.copy()
    h0[1, 1] = bad
    with pytest.raises(ValueError, match="h0"):
        call(model, x, y, h0)


# ------------------------------------------------------------------ params, grads, backend


def test_param_wrong_dtype(model, chunk):
    model.params["Whh"] = model.params["Whh"].astype(np.float32)
    with pytest.raises(TypeError, match="Whh"):
        call(model, *chunk)


def test_param_wrong_shape(model, chunk):
    model.params["Why"] = np.zeros((H, V + 1))
    with pytest.raises(ValueError, match="Why"):
        call(model, *chunk)


def test_param_not_contiguous(model, chunk):
    model.params["Wxh"] = np.asfortranarray(model.params["Wxh"])
    with pytest.raises(ValueError, match="Wxh.*C-contiguous"):
        call(model, *chunk)


def test_param_missing(model, chunk):
    del model.params["by"]
    with pytest.raises(ValueError, match="by"):
        call(model, *chunk)


def test_param_not_an_array(model, chunk):
    model.params["bh"] = [0.0] * H
    with pytest.raises(TypeError, match="bh"):
        call(model, *chunk)


def test_unknown_backend(model, chunk):
    with pytest.raises(ValueError, match="backend"):
        call(model, *chunk, backend="cuda")


def test_grads_buffer_wrong_shape(model, chunk):
    _, grads, _ = call(model, *chunk)
    grads["Why"] = np.zeros((V, H))
    with pytest.raises(ValueError, match="grads\\['Why'\\]"):
        call(model, *chunk, grads=grads)


def test_grads_buffer_missing_key(model, chunk):
    _, grads, _ = call(model, *chunk)
    del grads["h0"]
    with pytest.raises(ValueError, match="h0"):
        call(model, *chunk, grads=grads)


def test_grads_buffer_read_only(model, chunk):
    _, grads, _ = call(model, *chunk)
    grads["bh"].flags.writeable = False
    with pytest.raises(ValueError, match="bh.*writeable"):
        call(model, *chunk, grads=grads)


def test_grads_buffers_aliased(model, chunk):
    _, grads, _ = call(model, *chunk)
    grads["bh"] = grads["Whh"][0]  # a view into another output: both are written
    with pytest.raises(ValueError, match="share memory"):
        call(model, *chunk, grads=grads)


def test_grads_buffer_aliases_params(model, chunk):
    _, grads, _ = call(model, *chunk)
    grads["Whh"] = model.params["Whh"]  # would overwrite the weights while reading them
    with pytest.raises(ValueError, match="share memory"):
        call(model, *chunk, grads=grads)


def test_read_only_params_are_fine(model, chunk):
    """The kernel only reads parameters: read-only arrays must work, not crash."""
    for p in model.params.values():
        p.flags.writeable = False
    loss, _, _ = call(model, *chunk)
    assert np.isfinite(loss)


# ------------------------------------------------------------------ random inputs

index_dtypes = st.sampled_from(
    [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32, np.float64, np.bool_]
)
float_dtypes = st.sampled_from([np.float32, np.float64, np.float16, np.int64])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    V=st.integers(2, 40),
    H=st.integers(1, 12),
    B=st.integers(0, 5),
    T=st.integers(0, 6),
    hB=st.integers(0, 6),
    hH=st.integers(0, 13),
    xdt=index_dtypes,
    hdt=float_dtypes,
    model_dt=st.sampled_from([np.float32, np.float64]),
    lo=st.integers(-3, 0),
    hi_extra=st.integers(-1, 2),
    seed=st.integers(0, 2**16),
    backend=st.sampled_from(["kernel", "numpy"]),
)
def test_random_inputs_answer_or_refuse_cleanly(
    V, H, B, T, hB, hH, xdt, hdt, model_dt, lo, hi_extra, seed, backend
):
    rng = np.random.default_rng(seed)
    model = fastrnn.CharRNN(V, H, dtype=model_dt, seed=seed)
    hi = V + hi_extra
    try:
        x = rng.integers(lo, max(hi, lo + 1), size=(B, T)).astype(xdt)
        y = rng.integers(0, V, size=(B, T)).astype(xdt)
    except (ValueError, OverflowError):
        return
    h0 = rng.uniform(-1, 1, size=(hB, hH)).astype(hdt)
    valid = (
        np.dtype(xdt).kind in "iu"
        and B >= 1
        and T >= 1
        and (hB, hH) == (B, H)
        and np.dtype(hdt) == np.dtype(model_dt)
        and x.min(initial=0) >= 0
        and x.max(initial=0) < V
    )
    try:
        loss, grads, h_last = model.loss_and_grads(x, y, h0, backend=backend)
    except (TypeError, ValueError) as exc:
        assert not valid, f"valid input refused: {exc}"
        assert str(exc)
        return
    assert valid, "invalid input accepted"
    ref_loss, ref_grads, ref_h = model.loss_and_grads(x, y, h0, backend="numpy")
    tol = 1e-10 if model_dt == np.float64 else 1e-4
    assert abs(loss - ref_loss) <= tol * abs(ref_loss)
    for name in grads:
        scale = max(np.abs(ref_grads[name]).max(), 1e-30)
        assert np.abs(grads[name] - ref_grads[name]).max() <= tol * scale * 10, name
    np.testing.assert_allclose(h_last, ref_h, rtol=tol * 10, atol=tol)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint16])
@pytest.mark.parametrize("where", [(0, 0), (1, 2)])
def test_out_of_range_index_any_dtype_any_position(model, chunk, dtype, where):
    x, y, h0 = chunk
    x = x.astype(dtype)
    x[where] = V + 3
    with pytest.raises(ValueError, match="inputs.*found 10"):
        call(model, x, y, h0)
    if np.dtype(dtype).kind == "i":
        x[where] = -2
        with pytest.raises(ValueError, match="inputs.*found -2"):
            call(model, x, y, h0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_anywhere_in_a_large_h0(dtype):
    model = fastrnn.CharRNN(V, 300, dtype=dtype)
    x = np.zeros((3, 2), np.int32)
    for pos in [(0, 0), (2, 299), (1, 150)]:
        h0 = np.zeros((3, 300), dtype)
        h0[pos] = np.nan
        with pytest.raises(ValueError, match="h0"):
            model.loss_and_grads(x, x, h0)


# ------------------------------------------------------------------ repeated calls: the fast path


@pytest.mark.parametrize("backend", ["kernel", "numpy"])
def test_checks_are_not_skipped_when_the_same_arrays_change(backend):
    """After a call has passed, the same grads dict and params are accepted without the full
    checks; anything that changed since must still be refused, never reach the kernel."""
    model = fastrnn.CharRNN(V, H, seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    h0 = np.zeros((B, H))
    _, grads, _ = model.loss_and_grads(x, y, h0, backend=backend)
    model.loss_and_grads(x, y, h0, backend=backend, grads=grads)  # passes, remembered
    # A different batch size with the same grads: grads['h0'] no longer fits.
    with pytest.raises(ValueError, match=r"grads\['h0'\]"):
        model.loss_and_grads(x[:1], y[:1], h0[:1], backend=backend, grads=grads)
    model.loss_and_grads(x, y, h0, backend=backend, grads=grads)
    # A parameter reshaped in place (same object, same size, other shape).
    model.params["Wxh"].shape = (H, V)
    with pytest.raises(ValueError, match="Wxh"):
        model.loss_and_grads(x, y, h0, backend=backend, grads=grads)
    model.params["Wxh"].shape = (V, H)
    model.loss_and_grads(x, y, h0, backend=backend, grads=grads)
    # A gradient buffer made read-only in place.
    grads["Whh"].flags.writeable = False
    with pytest.raises(ValueError):
        model.loss_and_grads(x, y, h0, backend=backend, grads=grads)
    grads["Whh"].flags.writeable = True
    # A gradient replaced by an array of the wrong dtype (a new object).
    grads["bh"] = grads["bh"].astype(np.float32)
    with pytest.raises(TypeError, match="bh"):
        model.loss_and_grads(x, y, h0, backend=backend, grads=grads)


def test_fast_path_gives_the_same_results():
    model = fastrnn.CharRNN(V, H, seed=1)
    rng = np.random.default_rng(1)
    x, y, h0 = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T)), np.zeros((B, H))
    loss0, fresh, h_0 = model.loss_and_grads(x, y, h0)
    buffers = {k: np.empty_like(v) for k, v in fresh.items()}
    for _ in range(3):
        loss, grads, h_last = model.loss_and_grads(x, y, h0, grads=buffers)
        assert loss == loss0
        for k in fresh:
            np.testing.assert_array_equal(grads[k], fresh[k])


@pytest.mark.parametrize("impl", ["kernel", "numpy"])
def test_same_arrays_memo(impl):
    """The kernel's SameArrays and its numpy twin keep the same contract."""
    from fastrnn import reference
    from fastrnn.backend import require_kernel

    a, b = np.zeros((2, 3)), np.zeros(4)
    memo = (require_kernel() if impl == "kernel" else reference).SameArrays()
    assert not memo.matches([a, b])  # nothing remembered yet
    assert not memo.matches([])
    memo.remember([a, b])
    assert memo.matches([a, b])
    assert not memo.matches([b, a])  # order counts
    assert not memo.matches([a, b.copy()])  # identity, not equality
    assert not memo.matches([a])
    a.shape = (3, 2)  # same object, reshaped in place
    assert not memo.matches([a, b])
    a.shape = (2, 3)
    assert memo.matches([a, b])


# ------------------------------------------------------------------ stacked models


@pytest.mark.parametrize(
    "cell,L,shape",
    [
        ("lstm", 2, (2, 3, 5)),  # missing the (h, c) axis
        ("lstm", 2, (2, 1, 3, 5)),  # wrong layer count
        ("lstm", 1, (3, 5)),  # (B, H) is for the single-layer rnn only
        ("gru", 2, (2, 2, 3, 5)),  # an lstm-shaped state
        ("gru", 2, (2, 4, 5)),  # wrong B
        ("rnn", 2, (3, 5)),
        ("rnn", 1, (3, 6)),  # wrong H
        ("rnn", 1, (2, 3, 5)),  # L = 2 state for a one-layer model
    ],
)
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
    grads["h0"] = np.empty((2, 3, 5))  # the h part only: wrong shape
    with pytest.raises(ValueError, match="h0"):
        m.loss_and_grads(x, x, h, grads=grads)
    grads["h0"] = np.empty_like(h)
    del grads["bh1"]
    with pytest.raises(ValueError, match="bh1"):
        m.loss_and_grads(x, x, h, grads=grads)
