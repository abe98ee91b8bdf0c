"""Backend selection (fastrnn.backend): one place names the compiled kernel or its numpy twin."""

from __future__ import annotations

import pytest

from fastrnn import backend, reference, reference_cells


def test_backends_by_name():
    assert backend.ops("numpy") is reference
    assert backend.cells("numpy") is reference_cells
    assert backend.ops("kernel") is backend.kernel
    assert backend.cells("kernel") is backend.kernel


@pytest.mark.parametrize("choose", [backend.ops, backend.cells])
def test_unknown_backend_is_refused(choose):
    with pytest.raises(ValueError, match="backend must be one of"):
        choose("torch")


def test_missing_kernel_raises_with_the_build_command(monkeypatch):
    """No silent fallback: without the compiled module, asking for it says how to build it."""
    monkeypatch.setattr(backend, "kernel", None)
    with pytest.raises(ImportError, match="pip install -e"):
        backend.ops("kernel")
    with pytest.raises(ImportError, match="pip install -e"):
        backend.cells("kernel")
    assert backend.ops("numpy") is reference


def test_twins_offer_the_same_names():
    """What model.py and optim.py call on a backend exists on both."""
    for name in (
        "rnn_forward",
        "rnn_backward",
        "rnn_generate",
        "sample_index",
        "UpdatePlan",
        "SameArrays",
    ):
        assert hasattr(reference, name) and hasattr(backend.kernel, name), name
    for name in (
        "input_forward",
        "project_forward",
        "rnn_layer_forward",
        "lstm_layer_forward",
        "gru_layer_forward",
        "head_forward",
        "head_backward",
        "input_backward",
        "project_backward",
        "dropout_forward",
        "dropout_backward",
    ):
        assert hasattr(reference_cells, name) and hasattr(backend.kernel, name), name
