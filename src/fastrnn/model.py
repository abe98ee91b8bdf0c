"""CharRNN: parameters, the one door of validation, and dispatch to the kernel or its numpy twin.

Everything the unchecked compiled code relies on (dtype agreement, C-contiguity, shapes, index
range, finiteness of the carried state) is checked here, in Python, before it runs.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from . import reference

try:
    from . import _kernel
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    _kernel = None
    _KERNEL_IMPORT_ERROR: Exception | None = exc
else:
    _KERNEL_IMPORT_ERROR = None

BACKENDS = ("kernel", "numpy")
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_WORKSPACE_SHAPES_KEPT = 4  # training, validation and sampling shapes, with room to spare


def _require_kernel():
    if _kernel is None:
        raise ImportError(
            "the compiled fastrnn kernel is not built "
            f"({_KERNEL_IMPORT_ERROR}); build it with `pip install -e .` from the source tree, "
            "or pass backend='numpy' to use the numpy reference explicitly"
        )
    return _kernel


def _backend_module(backend: str):
    if backend == "kernel":
        return _require_kernel()
    if backend == "numpy":
        return reference
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


class Workspace:
    """Caches and scratch for one (B, T) chunk shape, allocated once and reused.

    hs    (T, B, H)  hidden states, cache kept for backward
    probs (T*B, V)   softmax probabilities, cache; backward overwrites it with dlogits
    dhs   (T, B, H)  scratch for dL/dh_t and dL/dpre_t
    """

    def __init__(self, B: int, T: int, H: int, V: int, dtype: np.dtype):
        self.hs = np.empty((T, B, H), dtype=dtype)
        self.probs = np.empty((T * B, V), dtype=dtype)
        self.dhs = np.empty((T, B, H), dtype=dtype)


class CharRNN:
    """A character-level vanilla RNN language model.

    h_t = tanh(Wxh[x_t] + h_{t-1} @ Whh + bh);  logits_t = h_t @ Why + by.

    ``params`` holds 'Wxh' (V,H), 'Whh' (H,H), 'bh' (H,), 'Why' (H,V), 'by' (V,), C-contiguous,
    of the model dtype. Updating them in place or assigning new arrays of the same shape are both
    honoured by the next call.
    """

    def __init__(self, vocab_size: int, hidden_size: int, dtype: Any = np.float64,
                 seed: int | None = 0):
        self.vocab_size = _positive_int(vocab_size, "vocab_size", minimum=2)
        self.hidden_size = _positive_int(hidden_size, "hidden_size")
        self.dtype = _model_dtype(dtype)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.params: dict[str, np.ndarray] = self._init_params()
        self._workspaces: OrderedDict[tuple[int, int], Workspace] = OrderedDict()
        self._disjoint: tuple[np.ndarray, ...] = ()   # last grads+params found not to overlap

    # ------------------------------------------------------------------ construction

    def _init_params(self) -> dict[str, np.ndarray]:
        """Uniform(-1/sqrt(H), 1/sqrt(H)) weights (as torch-rnn and PyTorch), zero biases."""
        V, H, dt = self.vocab_size, self.hidden_size, self.dtype
        scale = 1.0 / np.sqrt(H)

        def uniform(*shape):
            return np.ascontiguousarray(self.rng.uniform(-scale, scale, size=shape), dtype=dt)

        return {
            "Wxh": uniform(V, H),
            "Whh": uniform(H, H),
            "bh": np.zeros(H, dtype=dt),
            "Why": uniform(H, V),
            "by": np.zeros(V, dtype=dt),
        }

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        V, H = self.vocab_size, self.hidden_size
        return {"Wxh": (V, H), "Whh": (H, H), "bh": (H,), "Why": (H, V), "by": (V,)}

    @property
    def num_params(self) -> int:
        return int(sum(np.prod(s) for s in self.param_shapes().values()))

    def config(self) -> dict[str, Any]:
        """JSON-able description from which from_config rebuilds the same architecture."""
        return {"cell": "rnn", "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
                "num_layers": 1, "dtype": self.dtype.name}

    @classmethod
    def from_config(cls, config: dict[str, Any], seed: int | None = 0) -> "CharRNN":
        cell = config.get("cell", "rnn")
        if cell != "rnn" or config.get("num_layers", 1) != 1:
            raise ValueError(f"unsupported model configuration: cell={cell!r}, "
                             f"num_layers={config.get('num_layers')!r}")
        return cls(config["vocab_size"], config["hidden_size"], dtype=config["dtype"], seed=seed)

    def initial_state(self, batch_size: int) -> np.ndarray:
        """A zero hidden state for batch_size streams: (B, H)."""
        return np.zeros((batch_size, self.hidden_size), dtype=self.dtype)

    # ------------------------------------------------------------------ the one door

    def _checked_params(self) -> dict[str, np.ndarray]:
        shapes = self.param_shapes()
        missing = sorted(set(shapes) - set(self.params))
        if missing:
            raise ValueError(f"params is missing {missing}")
        for name, shape in shapes.items():
            _check_array(self.params[name], f"params[{name!r}]", shape, self.dtype)
        return self.params

    def _checked_chunk(self, inputs, targets, h0):
        x = _check_indices(inputs, "inputs", self.vocab_size)
        y = _check_indices(targets, "targets", self.vocab_size)
        if y.shape != x.shape:
            raise ValueError(f"targets must have the shape of inputs {x.shape}, got {y.shape}")
        B = x.shape[0]
        _check_array(h0, "h0", (B, self.hidden_size), self.dtype)
        if not _all_finite(h0):
            raise ValueError("h0 contains nan or inf")
        return x, y, h0

    def _workspace(self, B: int, T: int) -> Workspace:
        key = (B, T)
        ws = self._workspaces.get(key)
        if ws is None:
            ws = Workspace(B, T, self.hidden_size, self.vocab_size, self.dtype)
            self._workspaces[key] = ws
            if len(self._workspaces) > _WORKSPACE_SHAPES_KEPT:
                self._workspaces.popitem(last=False)
        else:
            self._workspaces.move_to_end(key)
        return ws

    # ------------------------------------------------------------------ computation

    def loss(self, inputs, targets, h0, backend: str = "kernel") -> tuple[float, np.ndarray]:
        """Forward only: (mean loss in nats/char, h_last (B,H))."""
        impl = _backend_module(backend)
        x, y, h0 = self._checked_chunk(inputs, targets, h0)
        p = self._checked_params()
        ws = self._workspace(*x.shape)
        loss = impl.rnn_forward(x, y, h0, p["Wxh"], p["Whh"], p["bh"], p["Why"], p["by"],
                                ws.hs, ws.probs)
        return loss, ws.hs[-1].copy()

    def loss_and_grads(self, inputs, targets, h0, backend: str = "kernel",
                       grads: dict[str, np.ndarray] | None = None):
        """Loss, gradients of every parameter and of h0, and the state to carry.

        inputs, targets: integer arrays (B, T) of indices in [0, V); h0: (B, H), model dtype.
        Returns (loss: float, grads: dict with the params' keys plus 'h0', h_last: (B, H)).
        ``grads``, if given, is a dict of C-contiguous arrays of the right shapes and dtype that
        are overwritten and returned (no allocation per call); otherwise new arrays are returned.
        """
        impl = _backend_module(backend)
        x, y, h0 = self._checked_chunk(inputs, targets, h0)
        p = self._checked_params()
        B, T = x.shape
        g = self._checked_grads(grads, B)
        ws = self._workspace(B, T)
        loss = impl.rnn_forward(x, y, h0, p["Wxh"], p["Whh"], p["bh"], p["Why"], p["by"],
                                ws.hs, ws.probs)
        impl.rnn_backward(x, y, h0, p["Whh"], p["Why"], ws.hs, ws.probs, ws.dhs,
                          g["Wxh"], g["Whh"], g["bh"], g["Why"], g["by"], g["h0"])
        return loss, g, ws.hs[-1].copy()

    def _checked_grads(self, grads, B: int) -> dict[str, np.ndarray]:
        shapes = dict(self.param_shapes(), h0=(B, self.hidden_size))
        if grads is None:
            return {name: np.empty(shape, dtype=self.dtype) for name, shape in shapes.items()}
        if not isinstance(grads, dict):
            raise TypeError(f"grads must be a dict of arrays, got {type(grads).__name__}")
        for name, shape in shapes.items():
            if name not in grads:
                raise ValueError(f"grads is missing {name!r}")
            _check_array(grads[name], f"grads[{name!r}]", shape, self.dtype)
        # The pairwise overlap test is the costly part; the same array objects cannot start to
        # overlap later, so its verdict is kept for the last set of objects that passed it.
        arrays = tuple(grads[n] for n in shapes) + tuple(self.params.values())
        if len(arrays) != len(self._disjoint) or any(
                a is not b for a, b in zip(arrays, self._disjoint)):
            _check_no_overlap([(f"grads[{n!r}]", grads[n]) for n in shapes]
                              + [(f"params[{n!r}]", p) for n, p in self.params.items()])
            self._disjoint = arrays
        return grads

    def generate(self, h: np.ndarray, first_index: int, length: int, temperature: float = 1.0,
                 top_k: int | None = None, greedy: bool = False,
                 rng: np.random.Generator | None = None, backend: str = "kernel") -> np.ndarray:
        """Generate length indices, each fed back as the next input, starting from first_index.

        h is the (1, H) state before first_index is read; it is updated in place to the state
        after the last generated index. Each character uses one rng.random() draw (even when
        greedy, so that the generator's position depends only on length): the same seed gives
        the same text. temperature > 0; top_k in [1, V] keeps only the top_k largest logits.
        """
        impl = _backend_module(backend)
        V, H = self.vocab_size, self.hidden_size
        _check_array(h, "h", (1, H), self.dtype)
        if not _all_finite(h):
            raise ValueError("h contains nan or inf")
        first_index = _check_index(first_index, "first_index", V)
        length = _positive_int(length, "length", minimum=0)
        temperature = float(temperature)
        if not (temperature > 0 and np.isfinite(temperature)):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
        top_k = V if top_k is None else _check_index(top_k - 1, "top_k - 1", V) + 1
        rng = rng if rng is not None else np.random.default_rng()
        p = self._checked_params()
        out = np.empty(length, dtype=np.int32)
        uniforms = rng.random(length)
        impl.rnn_generate(p["Wxh"], p["Whh"], p["bh"], p["Why"], p["by"], h.reshape(H),
                          first_index, uniforms, temperature, top_k, bool(greedy), out,
                          np.empty(H, self.dtype), np.empty(V, self.dtype),
                          np.empty(V, np.float64), np.empty(V, np.float64))
        return out

    def step_logits(self, x, h) -> tuple[np.ndarray, np.ndarray]:
        """One forward step for sampling: x (B,) indices, h (B,H) -> (logits (B,V), h_new (B,H))."""
        x = _check_indices(np.asarray(x).reshape(-1, 1), "x", self.vocab_size)[:, 0]
        _check_array(h, "h", (x.shape[0], self.hidden_size), self.dtype)
        p = self._checked_params()
        h_new = np.tanh(p["Wxh"][x] + h @ p["Whh"] + p["bh"])
        return h_new @ p["Why"] + p["by"], h_new


# ---------------------------------------------------------------------- validation helpers

def _positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _model_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from exc
    if dt not in DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _check_array(a, name: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """The array contract of the kernel: ndarray, exact dtype, exact shape, C-contiguous."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {a.dtype}")
    if a.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use np.ascontiguousarray)")
    if not a.flags.writeable and name.startswith("grads"):
        raise ValueError(f"{name} must be writeable")


def _check_index(value, name: str, V: int) -> int:
    """A single integer index in [0, V)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if not 0 <= value < V:
        raise ValueError(f"{name} must be in [0, {V}), got {value}")
    return int(value)


def _check_no_overlap(named_arrays: list[tuple[str, np.ndarray]]) -> None:
    """Output buffers must not share memory with each other or with the inputs."""
    for i, (name_a, a) in enumerate(named_arrays):
        for name_b, b in named_arrays[i + 1:]:
            if np.may_share_memory(a, b):
                raise ValueError(f"{name_a} and {name_b} share memory; use separate arrays")


def _check_indices(a, name: str, V: int) -> np.ndarray:
    """Integer (B, T) array with every value in [0, V); returned as C-contiguous int32."""
    a = np.asarray(a)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (B, T), got shape {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} must have B >= 1 and T >= 1, got shape {a.shape}")
    if a.dtype == np.int32 and a.flags.c_contiguous and _kernel is not None:
        lo, hi = _kernel.index_bounds(a)
    else:
        lo, hi = a.min(), a.max()
    if lo < 0 or hi >= V:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{name} must hold indices in [0, {V}), found {bad}")
    return np.ascontiguousarray(a, dtype=np.int32)


def _all_finite(a: np.ndarray) -> bool:
    """No nan or inf in a (a C-contiguous float array that passed _check_array)."""
    if _kernel is not None and a.ndim == 2:
        return bool(_kernel.all_finite(a))
    return bool(np.isfinite(a).all())
