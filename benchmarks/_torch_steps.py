"""The PyTorch side of compare_torch, run in a process of its own (_torch_env.TorchProcess, see
there why): the PyTorch training step of a configuration, and the calls the comparison makes
into that process (TORCH_CALLS).

Imported only in that process, after torch: _measure then imports fastrnn, whose thread
defaults no longer reach the OpenMP runtime PyTorch has loaded.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _measure  # noqa: E402
from _configs import TORCH_INPUTS as INPUTS  # noqa: E402
from _configs import BenchConfig  # noqa: E402


class TorchStep:
    """Callable: one PyTorch training step of cfg's model (cell, layers, dtype) with layer 0
    reading `variant` ('one-hot' or 'embedding', see compare_torch's docstring), on the next of
    CHUNKS_IN_POOL random chunks; h0 stays zero."""

    def __init__(self, cfg: BenchConfig, variant: str, seed: int = 0):
        if variant not in INPUTS:
            raise ValueError(f"variant must be one of {INPUTS}, got {variant!r}")
        V, H, B, L = cfg.V, cfg.H, cfg.B, cfg.layers
        dtype = getattr(torch, cfg.dtype)
        torch.manual_seed(seed)
        self.V = V
        self.embed = torch.nn.Embedding(V, H, dtype=dtype) if variant == "embedding" else None
        self.rnn = recurrent_module(cfg.cell, H if self.embed is not None else V, H, L, dtype)
        self.head = torch.nn.Linear(H, V, dtype=dtype)
        modules = [m for m in (self.embed, self.rnn, self.head) if m is not None]
        self.params = [p for m in modules for p in m.parameters()]
        self.optimizer = torch.optim.Adam(self.params, lr=_measure.ADAM_LR)
        rng = np.random.default_rng(seed + 1)
        shape = (_measure.CHUNKS_IN_POOL, B, cfg.T)
        self.xs = torch.from_numpy(rng.integers(0, V, shape))
        self.ys = torch.from_numpy(rng.integers(0, V, shape))
        h0 = torch.zeros(L, B, H, dtype=dtype)
        self.state = (h0, torch.zeros_like(h0)) if cfg.cell == "lstm" else h0
        self.dtype = dtype
        self.i = 0

    def layer0_input(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, H) embedding rows or (B, T, V) one-hot rows of the characters x (B, T)."""
        if self.embed is not None:
            return self.embed(x)
        return torch.nn.functional.one_hot(x, self.V).to(self.dtype)

    def __call__(self) -> float:
        k = self.i % _measure.CHUNKS_IN_POOL
        self.i += 1
        self.optimizer.zero_grad(set_to_none=False)
        out, _ = self.rnn(self.layer0_input(self.xs[k]), self.state)  # (B, T, H)
        logits = self.head(out).reshape(-1, self.V)  # (B*T, V)
        loss = torch.nn.functional.cross_entropy(logits, self.ys[k].reshape(-1))
        loss.backward()
        for p in self.params:
            p.grad.clamp_(-_measure.GRAD_CLIP, _measure.GRAD_CLIP)
        self.optimizer.step()
        return loss.item()


def recurrent_module(cell: str, inputs: int, H: int, layers: int, dtype) -> torch.nn.Module:
    """nn.RNN (tanh), nn.LSTM or nn.GRU: `layers` stacked layers of H, batch first."""
    kinds = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
    return kinds[cell](inputs, H, num_layers=layers, batch_first=True, dtype=dtype)


# ---------------------------------------------------------------- calls from compare_torch

STEPS: dict[int, TorchStep] = {}  # the steps made and not dropped, by the key `make` returned
KEYS = itertools.count()


def version() -> str:
    return torch.__version__


def set_threads(threads: int) -> None:
    """PyTorch's intra-op threads (and its BLAS's) for the steps that follow."""
    torch.set_num_threads(threads)


def make(config: dict, variant: str) -> int:
    """A TorchStep of BenchConfig(**config); its key for `step` and `time`."""
    key = next(KEYS)
    STEPS[key] = TorchStep(BenchConfig(**config), variant)
    return key


def step(key: int) -> float:
    """One step; its loss."""
    return STEPS[key]()


def time_steps(key: int, n: int) -> float:
    """Seconds for n steps, measured here (_measure.time_steps)."""
    return _measure.time_steps(STEPS[key], n)


def drop() -> None:
    """Forget every step made so far (their models and chunks)."""
    STEPS.clear()


TORCH_CALLS = {
    "version": version,
    "set_threads": set_threads,
    "make": make,
    "step": step,
    "time_steps": time_steps,
    "drop": drop,
}
