"""Optimizers, gradient clipping and learning-rate decay, updating ``model.params`` in place.

Every optimizer iterates over the names in ``params`` (never a fixed list), skips gradients that
are not parameters (such as grads['h0']), and keeps its state as named arrays plus a step counter,
which is what a checkpoint stores. The updates themselves are the kernel's UpdatePlan, one call
over every parameter (``backend="kernel"``), or its numpy twin in reference.py
(``backend="numpy"``): each reads the gradient as clip(g, -clip, clip) * scale, so clipping costs
no extra pass and no copy, and a step allocates nothing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .backend import SameArrays, ops
from .errors import ConfigError

OPTIMIZERS = ("sgd", "adagrad", "rmsprop", "adam")


def decayed_lr(base_lr: float, decay: float, decay_every: int, iteration: int) -> float:
    """base_lr * decay ** (iteration // decay_every): a step schedule that depends only on the
    iteration number, so a resumed run follows the same schedule."""
    if decay == 1.0 or decay_every <= 0:
        return base_lr
    return base_lr * decay ** (iteration // decay_every)


class Optimizer:
    """Base: owns the per-parameter state buffers and the step counter.

    Subclasses define ``slots`` (names of state arrays per parameter) and ``_update``.
    ``state_arrays()`` returns {'<slot>.<param>': array}; ``load_state`` puts them back.
    """

    name = "base"
    slots: tuple[str, ...] = ()

    def __init__(
        self, params: dict[str, np.ndarray], lr: float, backend: str = "kernel", **hyper: float
    ):
        self.lr = float(lr)
        self.hyper = hyper
        self.step_count = 0
        self.names = list(params)
        self.impl = ops(backend)
        self.state = {
            f"{slot}.{n}": np.zeros_like(params[n]) for slot in self.slots for n in self.names
        }
        self._cached_plan = None  # the UpdatePlan over the arrays in _checked
        self._checked = SameArrays()

    def step(
        self,
        params: dict[str, np.ndarray],
        grads: dict[str, np.ndarray],
        clip: float = 0.0,
        max_norm: float = 0.0,
    ) -> float | None:
        """One update of every parameter from its gradient (grads beyond params are ignored).

        clip > 0: each gradient element is first clipped to [-clip, clip] (elementwise clipping).
        max_norm > 0: then all gradients are scaled by max_norm / norm when their global norm
        exceeds max_norm. Returns that norm (of the clipped gradients) when max_norm > 0.
        The gradients themselves are not modified.
        """
        clip = clip if clip > 0 else math.inf
        plan = self._plan(params, grads)
        norm, scale = None, 1.0
        if max_norm > 0:
            norm = math.sqrt(plan.clipped_sq_norm(clip))
            if norm > max_norm:
                scale = max_norm / (norm + 1e-12)
        self.step_count += 1
        self._prepare()
        self._update(plan, clip, scale)
        return norm

    def _plan(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]):
        """The backend's UpdatePlan over [(p, g, state slots)] as 1-D views, checked (the door
        to the unchecked update loops) and kept while params and grads hold the same array
        objects: at small sizes building and checking them every step would cost more than the
        updates themselves."""
        arrays = [params[n] for n in self.names] + [grads[n] for n in self.names]
        if self._cached_plan is not None and self._checked.matches(arrays):
            return self._cached_plan
        views = []
        for n in self.names:
            p, g = params[n], grads[n]
            for what, a in (("parameter", p), ("gradient", g)):
                if not (isinstance(a, np.ndarray) and a.flags.c_contiguous):
                    raise ConfigError(f"{what} {n!r} must be a C-contiguous numpy array")
            state = self.state[f"{self.slots[0]}.{n}"] if self.slots else p
            if (
                g.shape != p.shape
                or p.shape != state.shape
                or g.dtype != p.dtype
                or p.dtype != state.dtype
            ):
                raise ConfigError(
                    f"parameter {n!r} {p.shape} {p.dtype}, its gradient "
                    f"{g.shape} {g.dtype} and the optimizer state "
                    f"{state.shape} {state.dtype} must agree"
                )
            if not p.flags.writeable:
                raise ConfigError(f"parameter {n!r} is read-only")
            views.append(
                (_flat(p), _flat(g), tuple(_flat(self.state[f"{slot}.{n}"]) for slot in self.slots))
            )
        plan = self.impl.UpdatePlan(views, len(self.slots))
        self._cached_plan = plan
        self._checked.remember(arrays)
        return plan

    def _prepare(self) -> None:
        """Per-step scalars (Adam's bias corrections); nothing by default."""

    def _update(self, plan, clip: float, scale: float) -> None:
        """Every parameter through the backend's UpdatePlan (kernel or its numpy twin)."""
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
                raise ConfigError(
                    f"optimizer state {key!r} has shape {src.shape}, expected {buf.shape}"
                )
            buf[...] = src
        self.step_count = int(step)


def _flat(a: np.ndarray) -> np.ndarray:
    """The 1-D view the one-pass updates work on (params, grads, state are C-contiguous)."""
    return a.reshape(-1)


class SGD(Optimizer):
    """p <- p - lr * g"""

    name = "sgd"

    def _update(self, plan, clip, scale):
        plan.sgd(self.lr, clip, scale)


class Adagrad(Optimizer):
    """s <- s + g**2;  p <- p - lr * g / (sqrt(s) + eps)   (min-char-rnn's update)"""

    name = "adagrad"
    slots = ("sum_sq",)

    def _update(self, plan, clip, scale):
        plan.adagrad(self.lr, self.hyper["eps"], clip, scale)


class RMSprop(Optimizer):
    """v <- a*v + (1-a)*g**2;  p <- p - lr * g / (sqrt(v) + eps)   (char-rnn's default)"""

    name = "rmsprop"
    slots = ("mean_sq",)

    def _update(self, plan, clip, scale):
        plan.rmsprop(self.lr, self.hyper["alpha"], self.hyper["eps"], clip, scale)


class Adam(Optimizer):
    """m <- b1*m + (1-b1)*g;  v <- b2*v + (1-b2)*g**2;
    p <- p - lr_t * m / (sqrt(v) + eps_t),
    lr_t = lr*sqrt(1-b2**t)/(1-b1**t),  eps_t = eps*sqrt(1-b2**t)

    which is the bias-corrected update m_hat / (sqrt(v_hat) + eps) of Kingma & Ba, rearranged
    so the corrections are two scalars instead of two more array passes.
    """

    name = "adam"
    slots = ("m", "v")

    def _prepare(self):
        t = self.step_count
        b1, b2 = self.hyper["beta1"], self.hyper["beta2"]
        root = math.sqrt(1.0 - b2**t)
        self._args = (self.lr * root / (1.0 - b1**t), b1, b2, self.hyper["eps"] * root)

    def _update(self, plan, clip, scale):
        plan.adam(*self._args, clip, scale)


_CLASSES = {"sgd": SGD, "adagrad": Adagrad, "rmsprop": RMSprop, "adam": Adam}
DEFAULT_HYPER = {
    "sgd": {},
    "adagrad": {"eps": 1e-8},
    "rmsprop": {"alpha": 0.95, "eps": 1e-8},
    "adam": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
}


def make_optimizer(
    name: str, params: dict[str, np.ndarray], lr: float, backend: str = "kernel", **hyper: float
) -> Optimizer:
    """The optimizer called name ('sgd', 'adagrad', 'rmsprop', 'adam') over params, whose
    updates run in the kernel or in numpy (backend)."""
    if name not in _CLASSES:
        raise ConfigError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"learning rate must be a positive number, got {lr}")
    return _CLASSES[name](params, lr, backend, **{**DEFAULT_HYPER[name], **hyper})
