"""Optimizers, gradient clipping and learning-rate decay, updating ``model.params`` in place.

Every optimizer iterates over the names in ``params`` (never a fixed list), skips gradients that
are not parameters (such as grads['h0']), and keeps its state as named arrays plus a step counter,
which is what a checkpoint stores. Updates use in-place numpy operations into buffers allocated
once, so a training step allocates nothing per parameter.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import ConfigError

OPTIMIZERS = ("sgd", "adagrad", "rmsprop", "adam")


# ---------------------------------------------------------------------------- clipping

def clip_elementwise(grads: dict[str, np.ndarray], names: list[str], limit: float) -> None:
    """g <- clip(g, -limit, limit) for each named gradient (the seed's ±5 clipping)."""
    for name in names:
        np.clip(grads[name], -limit, limit, out=grads[name])


def global_norm(grads: dict[str, np.ndarray], names: list[str]) -> float:
    """sqrt(sum over names of sum(g**2)), accumulated in float64."""
    total = 0.0
    for name in names:
        g = grads[name].reshape(-1)
        total += float(np.dot(g, g))
    return math.sqrt(total)


def clip_global_norm(grads: dict[str, np.ndarray], names: list[str], max_norm: float) -> float:
    """Scale all named gradients by max_norm / norm when norm > max_norm; returns the norm."""
    norm = global_norm(grads, names)
    if norm > max_norm:
        scale = max_norm / (norm + 1e-12)
        for name in names:
            np.multiply(grads[name], scale, out=grads[name])
    return norm


def decayed_lr(base_lr: float, decay: float, decay_every: int, iteration: int) -> float:
    """base_lr * decay ** (iteration // decay_every): a step schedule that depends only on the
    iteration number, so a resumed run follows the same schedule."""
    if decay == 1.0 or decay_every <= 0:
        return base_lr
    return base_lr * decay ** (iteration // decay_every)


# ---------------------------------------------------------------------------- optimizers

class Optimizer:
    """Base: owns the per-parameter state buffers and the step counter.

    Subclasses define ``slots`` (names of state arrays per parameter) and ``_update``.
    ``state_arrays()`` returns {'<slot>.<param>': array}; ``load_state`` puts them back.
    """

    name = "base"
    slots: tuple[str, ...] = ()

    def __init__(self, params: dict[str, np.ndarray], lr: float, **hyper: float):
        self.lr = float(lr)
        self.hyper = hyper
        self.step_count = 0
        self.names = list(params)
        self.state = {f"{slot}.{n}": np.zeros_like(params[n]) for slot in self.slots
                      for n in self.names}
        self._scratch = {n: np.empty_like(params[n]) for n in self.names}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        """One update of every parameter from its gradient (grads beyond params are ignored)."""
        self.step_count += 1
        for n in self.names:
            self._update(n, params[n], grads[n], self._scratch[n])

    def _update(self, name: str, p: np.ndarray, g: np.ndarray, tmp: np.ndarray) -> None:
        raise NotImplementedError

    def state_arrays(self) -> dict[str, np.ndarray]:
        return dict(self.state)

    def counters(self) -> dict[str, Any]:
        """JSON-able scalars of the state: name, step counter, hyperparameters."""
        return {"name": self.name, "step": self.step_count, "lr": self.lr, **self.hyper}

    def load_state(self, arrays: dict[str, np.ndarray], step: int) -> None:
        """Restore buffers saved by state_arrays (same names, shapes and dtypes) and the counter."""
        missing = sorted(set(self.state) - set(arrays))
        if missing:
            raise ConfigError(f"optimizer state is missing {missing} ({self.name})")
        for key, buf in self.state.items():
            src = arrays[key]
            if src.shape != buf.shape:
                raise ConfigError(f"optimizer state {key!r} has shape {src.shape}, "
                                  f"expected {buf.shape}")
            buf[...] = src
        self.step_count = int(step)


class SGD(Optimizer):
    """p <- p - lr * g"""

    name = "sgd"

    def _update(self, name, p, g, tmp):
        np.multiply(g, self.lr, out=tmp)
        np.subtract(p, tmp, out=p)


class Adagrad(Optimizer):
    """s <- s + g**2;  p <- p - lr * g / sqrt(s + eps)   (min-char-rnn's update)"""

    name = "adagrad"
    slots = ("sum_sq",)

    def _update(self, name, p, g, tmp):
        s = self.state[f"sum_sq.{name}"]
        np.multiply(g, g, out=tmp)
        np.add(s, tmp, out=s)
        np.add(s, self.hyper["eps"], out=tmp)
        np.sqrt(tmp, out=tmp)
        np.divide(g, tmp, out=tmp)
        np.multiply(tmp, self.lr, out=tmp)
        np.subtract(p, tmp, out=p)


class RMSprop(Optimizer):
    """v <- a*v + (1-a)*g**2;  p <- p - lr * g / (sqrt(v) + eps)   (char-rnn's default)"""

    name = "rmsprop"
    slots = ("mean_sq",)

    def _update(self, name, p, g, tmp):
        a = self.hyper["alpha"]
        v = self.state[f"mean_sq.{name}"]
        np.multiply(g, g, out=tmp)
        np.multiply(tmp, 1.0 - a, out=tmp)
        np.multiply(v, a, out=v)
        np.add(v, tmp, out=v)
        np.sqrt(v, out=tmp)
        np.add(tmp, self.hyper["eps"], out=tmp)
        np.divide(g, tmp, out=tmp)
        np.multiply(tmp, self.lr, out=tmp)
        np.subtract(p, tmp, out=p)


class Adam(Optimizer):
    """m <- b1*m + (1-b1)*g;  v <- b2*v + (1-b2)*g**2;
    p <- p - lr_t * m / (sqrt(v) + eps_t),  lr_t = lr*sqrt(1-b2**t)/(1-b1**t), eps_t = eps*sqrt(1-b2**t)

    which is the bias-corrected update m_hat / (sqrt(v_hat) + eps) of Kingma & Ba, rearranged
    so the corrections are two scalars instead of two more array passes.
    """

    name = "adam"
    slots = ("m", "v")

    def step(self, params, grads):
        t = self.step_count + 1
        b1, b2 = self.hyper["beta1"], self.hyper["beta2"]
        root = math.sqrt(1.0 - b2 ** t)
        self._lr_t = self.lr * root / (1.0 - b1 ** t)
        self._eps_t = self.hyper["eps"] * root
        super().step(params, grads)

    def _update(self, name, p, g, tmp):
        b1, b2 = self.hyper["beta1"], self.hyper["beta2"]
        m, v = self.state[f"m.{name}"], self.state[f"v.{name}"]
        np.multiply(m, b1, out=m)
        np.multiply(g, 1.0 - b1, out=tmp)
        np.add(m, tmp, out=m)
        np.multiply(v, b2, out=v)
        np.multiply(g, g, out=tmp)
        np.multiply(tmp, 1.0 - b2, out=tmp)
        np.add(v, tmp, out=v)
        np.sqrt(v, out=tmp)
        np.add(tmp, self._eps_t, out=tmp)
        np.divide(m, tmp, out=tmp)
        np.multiply(tmp, self._lr_t, out=tmp)
        np.subtract(p, tmp, out=p)


_CLASSES = {"sgd": SGD, "adagrad": Adagrad, "rmsprop": RMSprop, "adam": Adam}
DEFAULT_HYPER = {
    "sgd": {},
    "adagrad": {"eps": 1e-8},
    "rmsprop": {"alpha": 0.95, "eps": 1e-8},
    "adam": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
}


def make_optimizer(name: str, params: dict[str, np.ndarray], lr: float,
                   **hyper: float) -> Optimizer:
    """The optimizer called name ('sgd', 'adagrad', 'rmsprop', 'adam') over params."""
    if name not in _CLASSES:
        raise ConfigError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"learning rate must be a positive number, got {lr}")
    return _CLASSES[name](params, lr, **{**DEFAULT_HYPER[name], **hyper})
