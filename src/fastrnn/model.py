"""CharRNN: parameters, the one door of validation, and dispatch to the kernel or its numpy twin.

Everything the unchecked compiled code relies on (dtype agreement, C-contiguity, shapes, index
range, finiteness of the carried state) is checked here, in Python, before it runs.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from . import init as initialisation
from . import reference_cells
from .backend import BACKENDS, SameArrays
from .backend import cells as backend_cells
from .backend import kernel as _kernel  # for the validation aids (index_bounds, all_finite)
from .backend import ops as backend_ops
from .cells import LAYER_BUFFERS, NAMES, Cell
from .cells import cell as cell_entry

__all__ = ["BACKENDS", "CELLS", "CharRNN", "layer_suffix"]
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_WORKSPACE_SHAPES_KEPT = 4  # training, validation and sampling shapes, with room to spare


class Workspace:
    """Caches and scratch for one (B, T) chunk shape, allocated once and reused.

    hs    (T, B, H)  hidden states, cache kept for backward
    probs (T*B, V)   softmax probabilities, cache; backward overwrites it with probs - onehot(y)
    dhs   (T, B, H)  scratch for dL/dh_t and dL/dpre_t
    packed (P,)      scratch: Whh, then Whh^T, packed for the recurrent product
                     (P = packed_recurrent_size("rnn", H, dtype))
    """

    def __init__(self, B: int, T: int, H: int, V: int, dtype: np.dtype):
        self.hs = np.empty((T, B, H), dtype=dtype)
        self.probs = np.empty((T * B, V), dtype=dtype)
        self.dhs = np.empty((T, B, H), dtype=dtype)
        self.packed = np.empty(packed_recurrent_size("rnn", H, dtype), dtype=dtype)


def generation_packed_size(cell: str, H: int, dtype: np.dtype) -> int:
    """Values one layer's Whh (H, G*H) takes packed for the generation loop, forward only,
    block by block of the cell's packed_blocks (1 without the compiled kernel: unused)."""
    if _kernel is None:
        return 1
    return sum(int(_kernel.packed_size(H, b * H, dtype)) for b in cell_entry(cell).packed_blocks)


def packed_recurrent_size(cell: str, H: int, dtype: np.dtype) -> int:
    """Values of the scratch buffer every layer's recurrence packs Whh (H, G*H) into for the
    forward, gate block by gate block (G packed (H, H) matrices), and Whh^T for the backward,
    block by block of the cell's packed_blocks: the larger need of the two directions. Without
    the compiled kernel, what the numpy twin uses (a contiguous Whh^T)."""
    spec = cell_entry(cell)
    if _kernel is None:
        return sum(spec.packed_blocks) * H * H

    def size(K: int, N: int) -> int:
        return int(_kernel.packed_size(K, N, dtype))

    forward = spec.gates * size(H, H)
    backward = sum(size(b * H, H) for b in spec.packed_blocks)
    return max(forward, backward)


class StackWorkspace:
    """Caches and scratch of the stacked path (lstm, gru, or rnn with L > 1 or dropout), for one
    (B, T) chunk shape, allocated once and reused. See reference_cells.py for each buffer's role.

    gates (L, T, B, G*H)  input projections, then gate activations, then their gradients
                          (absent for the rnn, whose projection lives in hs)
    hs    (L, T, B, H)    layer outputs, cache
    emb   (T, B, E)       embedding rows Wemb[x] that layer 0 projects, cache (E > 0)
    demb  (T, B, E)       dL/demb, scratch (E > 0)
    cs    (L, T, B, H)    LSTM cell states, cache;  tcs (L, T, B, H) their tanh, cache
    hns   (L, T, B, H)    GRU h_{t-1} Whh_n + bhn, cache, then its gradient
    masks (L, T, B, H)    dropout keep-masks / (1 - p), drawn per training call (dropout > 0)
    drops (L, T, B, H)    dropped layer outputs hs * masks, what the next layer / head reads
    dhs   (L, T, B, H)    dL/dh per layer, scratch;  dc (B, H) LSTM cell-gradient carry, scratch
    no_embedding (1, 1)   what stands for Wemb and dWemb in a model without embedding (never
                          read or written)
    probs (T*B, V)        softmax probabilities, cache, then probs - onehot(y) = dlogits * T*B
    packed (P,)           scratch: one layer's Whh, then Whh^T, packed for the recurrent product
                          (P = packed_recurrent_size(cell, H, dtype), shared by the layers)
    """

    # The per-layer caches of the cells (fastrnn.cells.LAYER_BUFFERS), None where the model's
    # cell keeps none, and the other buffers that exist only for some models.
    cs: Any
    tcs: Any
    hns: Any
    dc: Any
    emb: Any
    demb: Any
    masks: Any
    drops: Any

    def __init__(
        self,
        cell: str,
        L: int,
        B: int,
        T: int,
        H: int,
        V: int,
        dropout: float,
        dtype: np.dtype,
        E: int = 0,
    ):
        spec = cell_entry(cell)
        layer = (L, T, B, H)
        self.hs = np.empty(layer, dtype=dtype)
        self.emb = np.empty((T, B, E), dtype=dtype) if E > 0 else None
        self.demb = np.empty((T, B, E), dtype=dtype) if E > 0 else None
        self.gates = (
            self.hs if spec.projects_into_hs else np.empty((L, T, B, spec.gates * H), dtype=dtype)
        )
        for name in LAYER_BUFFERS:
            setattr(
                self, name, np.empty(layer, dtype=dtype) if name in spec.layer_buffers else None
            )
        self.dc = np.empty((B, H), dtype=dtype) if spec.cell_state else None
        self.masks = np.empty(layer, dtype=dtype) if dropout > 0 else None
        self.drops = np.empty(layer, dtype=dtype) if dropout > 0 else None
        self.dhs = np.empty(layer, dtype=dtype)
        self.probs = np.empty((T * B, V), dtype=dtype)
        self.packed = np.empty(packed_recurrent_size(cell, H, dtype), dtype=dtype)
        self.no_embedding = np.zeros((1, 1), dtype=dtype)


class GenerateWorkspace:
    """Scratch of the compiled generation loop (stack_generate) for N streams, allocated once
    per N and reused (see _generate.pxi).

    xs           (N,)      int32, each stream's current input
    no_embedding (1, 1)    what stands for Wemb in a model without embedding (never read)
    emb          (N, E)    Wemb[xs] ((N, 1), unused, without embedding)
    gates        (N, G*H)  a layer's pre-activations, then activations
    hn, h_new, c_new, tc (N, H)  GRU h @ Whh_n + bhn; a layer's new h, c, tanh(c)
    logits       (N, V)    the head's output
    packed       (P,)      Why cut into column panels of 64 bytes (fastrnn_rows.h):
                           P = ceil(V / w) * w * H values, w = 64 / itemsize
    packed_whh   (L * S,)  every layer's Whh packed for the recurrent product (_recurrent.pxi),
                           S values a layer (generation_packed_size)
    z, scratch   (V,)      float64 scratch of the draw
    """

    def __init__(self, N: int, H: int, G: int, V: int, E: int, dtype: np.dtype, cell: str, L: int):
        self.xs = np.empty(N, dtype=np.int32)
        self.no_embedding = np.zeros((1, 1), dtype=dtype)
        self.emb = np.empty((N, max(E, 1)), dtype=dtype)
        self.gates = np.empty((N, G * H), dtype=dtype)
        self.hn, self.h_new, self.c_new, self.tc = (np.empty((N, H), dtype=dtype) for _ in range(4))
        self.logits = np.empty((N, V), dtype=dtype)
        width = 64 // dtype.itemsize
        self.packed = np.empty(-(-V // width) * width * H, dtype=dtype)
        self.packed_whh = np.empty(L * generation_packed_size(cell, H, dtype), dtype=dtype)
        self.z = np.empty(V)
        self.scratch = np.empty(V)


class CharRNN:
    """A character-level language model: L stacked rnn, LSTM or GRU layers and a softmax head.

    G gate blocks per layer (rnn 1, lstm 4 in the order i, f, g, o, gru 3 in the order r, z, n):
        rnn:  h_t = tanh(x W + b + h_{t-1} @ Whh)
        lstm: c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t)
        gru:  n = tanh(x W_n + b_n + r * (h_{t-1} @ Whh_n + bhn));  h_t = (1-z) * n + z * h_{t-1}
        logits_t = drop(h^{L-1}_t) @ Why + by
    Layer 0's x is one-hot (Wxh is a row gather) or, with an embedding (embedding_size E > 0,
    as torch-rnn's -wordvec_size), the embedding row Wemb[x] (Wxh is then an (E, G*H) GEMM);
    layer l >= 1 reads drop(h^{l-1}). Inverted dropout with probability ``dropout`` is applied,
    only while training, between layers and before the head (as char-rnn), with masks drawn
    from the model's seeded generator ``rng``.

    ``params`` (C-contiguous, model dtype), in this order: 'Wemb' (V, E) if E > 0; layer 0
    'Wxh' (V, G*H), or (E, G*H) if E > 0, 'Whh' (H, G*H), 'bh' (G*H,); layer l >= 1 'Wxh{l}'
    (H, G*H), 'Whh{l}', 'bh{l}'; for the gru also 'bhn' / 'bhn{l}' (H,); the head 'Why' (H, V),
    'by' (V,). A single-layer rnn without embedding has exactly 'Wxh', 'Whh', 'bh', 'Why', 'by'.
    Updating them in place or assigning new arrays of the same shape are both honoured. They
    are drawn from ``rng`` by the initialisation scheme ``init``, a name of
    fastrnn.init.SCHEMES ("uniform", "default") or an fastrnn.init.InitScheme. ``char_counts``
    (V,), the occurrences of each character in the training text, starts the head bias at
    their log frequencies in the "default" scheme (fastrnn.init.unigram_bias); without them
    that bias starts at 0.

    State: (L, B, H) for rnn and gru, (2, L, B, H) for lstm (h first, c second); a single-layer
    rnn also takes (B, H). Gradients and returned states have the shape of the state passed in.
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        num_layers: int = 1,
        cell: str = "rnn",
        dropout: float = 0.0,
        dtype: Any = np.float64,
        seed: int | None = 0,
        embedding_size: int = 0,
        init: str | initialisation.InitScheme = "default",
        char_counts: Any = None,
    ):
        self.vocab_size = _positive_int(vocab_size, "vocab_size", minimum=2)
        self.hidden_size = _positive_int(hidden_size, "hidden_size")
        self.num_layers = _positive_int(num_layers, "num_layers")
        self._cell: Cell = cell_entry(cell)
        self.cell = cell
        self.dropout = _dropout_probability(dropout)
        self.dtype = _model_dtype(dtype)
        self.embedding_size = _positive_int(embedding_size, "embedding_size", minimum=0)
        self.init, self.init_scheme = _init_scheme(init)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self._param_shapes = self._compute_param_shapes()
        self._layer_names = _names_per_layer(self._cell, self.num_layers)
        self.params: dict[str, np.ndarray] = initialisation.draw_params(
            self.init_scheme,
            self._param_shapes,
            self.cell,
            self.hidden_size,
            self.dtype,
            self.rng,
            _check_char_counts(char_counts, self.vocab_size),
        )
        self._workspaces: OrderedDict[tuple[int, int, bool], Any] = OrderedDict()
        self._generate_workspaces: OrderedDict[int, GenerateWorkspace] = OrderedDict()
        # The grads and params last found not to overlap (see _checked_grads), and those
        # that passed every check last (see _checked_params_and_grads).
        self._disjoint = SameArrays()
        self._passed = SameArrays()
        self._passed_state_shape: tuple[int, ...] | None = None

    # ------------------------------------------------------------------ construction

    @property
    def cell_spec(self) -> Cell:
        """The model's entry of the table of cells (fastrnn.cells): gate blocks, per-layer
        parameters, whether the state carries a cell state c, ..."""
        return self._cell

    @property
    def gates(self) -> int:
        """G, the number of gate blocks of one layer: rnn 1, lstm 4, gru 3."""
        return self._cell.gates

    @property
    def _is_plain_rnn(self) -> bool:
        """A single-layer rnn, which also accepts a (B, H) state (the single-layer fast path
        and its (B, H) state exist for the rnn cell only)."""
        return self.cell == "rnn" and self.num_layers == 1

    @property
    def _has_fast_path(self) -> bool:
        """A single-layer rnn reading one-hot rows: the single-layer fast path (rnn_forward,
        rnn_backward, rnn_generate) computes it."""
        return self._is_plain_rnn and self.embedding_size == 0

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """{name: shape} of every parameter (a fresh dict; the architecture never changes)."""
        return dict(self._param_shapes)

    def _compute_param_shapes(self) -> dict[str, tuple[int, ...]]:
        V, H, GH = self.vocab_size, self.hidden_size, self.gates * self.hidden_size
        E = self.embedding_size
        shapes: dict[str, tuple[int, ...]] = {}
        if E > 0:
            shapes["Wemb"] = (V, E)
        for layer in range(self.num_layers):
            k = layer_suffix(layer)
            shapes[f"Wxh{k}"] = ((E if E > 0 else V) if layer == 0 else H, GH)
            shapes[f"Whh{k}"] = (H, GH)
            shapes[f"bh{k}"] = (GH,)
            for name in self._cell.layer_vectors:
                shapes[f"{name}{k}"] = (H,)
        shapes["Why"] = (H, V)
        shapes["by"] = (V,)
        return shapes

    @property
    def num_params(self) -> int:
        return int(sum(np.prod(s) for s in self.param_shapes().values()))

    def config(self) -> dict[str, Any]:
        """JSON-able description from which from_config rebuilds the same architecture (and,
        with the same seed, the same initial draws: "init_spec" holds the scheme's numbers)."""
        return {
            "cell": self.cell,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "dropout": self.dropout,
            "dtype": self.dtype.name,
            "embedding_size": self.embedding_size,
            "init": self.init,
            "init_spec": self.init_scheme.to_dict(),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], seed: int | None = 0) -> CharRNN:
        """The model of config(). A config written before embeddings and schemes existed (no
        "embedding_size", no "init") is a one-hot model drawn by the "uniform" scheme."""
        return cls(
            config["vocab_size"],
            config["hidden_size"],
            num_layers=config.get("num_layers", 1),
            cell=config.get("cell", "rnn"),
            dropout=config.get("dropout", 0.0),
            dtype=config["dtype"],
            seed=seed,
            embedding_size=config.get("embedding_size", 0),
            init=_recorded_init(config),
        )

    def state_shape(self, batch_size: int) -> tuple[int, ...]:
        """(2, L, B, H) for lstm, (L, B, H) otherwise."""
        L, H = self.num_layers, self.hidden_size
        return (2, L, batch_size, H) if self._cell.cell_state else (L, batch_size, H)

    def initial_state(self, batch_size: int) -> np.ndarray:
        """A zero state for batch_size streams: (B, H) for a single-layer rnn, otherwise
        state_shape(B)."""
        B = _positive_int(batch_size, "batch_size")
        shape = (B, self.hidden_size) if self._is_plain_rnn else self.state_shape(B)
        return np.zeros(shape, dtype=self.dtype)

    # ------------------------------------------------------------------ the one door

    def _checked_params(self) -> dict[str, np.ndarray]:
        shapes = self._param_shapes
        missing = [n for n in shapes if n not in self.params]
        if missing:
            raise ValueError(f"params is missing {missing}")
        for name, shape in shapes.items():
            a = self.params[name]
            if not _fits(a, shape, self.dtype):  # the message is built only on failure
                _check_array(a, f"params[{name!r}]", shape, self.dtype)
        return self.params

    def _checked_state(self, h, name: str, B: int) -> np.ndarray:
        """The state in its canonical shape (a view), checked: dtype, shape, contiguity, finite."""
        if self._is_plain_rnn and isinstance(h, np.ndarray) and h.ndim == 2:
            _check_array(h, name, (B, self.hidden_size), self.dtype)
        else:
            expected = self.state_shape(B)
            if self._is_plain_rnn and not (isinstance(h, np.ndarray) and h.ndim == 3):
                expected_text = f"{(B, self.hidden_size)} or {expected}"
                if not isinstance(h, np.ndarray):
                    raise TypeError(f"{name} must be a numpy array, got {type(h).__name__}")
                raise ValueError(f"{name} must have shape {expected_text}, got {h.shape}")
            _check_array(h, name, expected, self.dtype)
        if not _all_finite(h if h.ndim == 2 else h.reshape(-1, self.hidden_size)):
            raise ValueError(f"{name} contains nan or inf")
        return h

    def _checked_chunk(self, inputs, targets, h0):
        x = _check_indices(inputs, "inputs", self.vocab_size)
        y = _check_indices(targets, "targets", self.vocab_size)
        if y.shape != x.shape:
            raise ValueError(f"targets must have the shape of inputs {x.shape}, got {y.shape}")
        self._checked_state(h0, "h0", x.shape[0])
        return x, y, h0

    def _uses_stack(self, train: bool) -> bool:
        """The single-layer fast path unless layers, cells, an embedding or active dropout
        need the stacked kernels."""
        # Two paths compute a one-layer rnn, each in two compiled calls per chunk; the fast one
        # is kept because the stacked one, whose calls take every buffer any model needs, is
        # measurably slower where the per-call cost counts. benchmarks/single_layer_paths.py,
        # loss_and_grads, float32, one thread, fast / stacked chars/s, median of per-round
        # ratios, two runs on a shared 2-core EPYC (OpenBLAS 0.3.30, load ~5): S (B 1, T 40,
        # H 100) 1.17-1.27; M (B 32, T 40, H 100) 1.03-1.06; L (B 32, T 64, H 512) 0.99,
        # equal within noise.
        return not (self._has_fast_path and (self.dropout == 0.0 or not train))

    def _workspace(self, B: int, T: int, stacked: bool):
        key = (B, T, stacked)
        ws = self._workspaces.get(key)
        if ws is None:
            if stacked:
                ws = StackWorkspace(
                    self.cell,
                    self.num_layers,
                    B,
                    T,
                    self.hidden_size,
                    self.vocab_size,
                    self.dropout,
                    self.dtype,
                    self.embedding_size,
                )
            else:
                ws = Workspace(B, T, self.hidden_size, self.vocab_size, self.dtype)
            self._workspaces[key] = ws
            if len(self._workspaces) > _WORKSPACE_SHAPES_KEPT:
                self._workspaces.popitem(last=False)
        else:
            self._workspaces.move_to_end(key)
        return ws

    # ------------------------------------------------------------------ computation

    def loss(
        self, inputs, targets, h0, backend: str = "kernel", train: bool = False
    ) -> tuple[float, np.ndarray]:
        """Forward only: (mean loss in nats/char, the state to carry, shaped like h0).
        Dropout is off unless train=True (then masks are drawn from ``rng``)."""
        impl = backend_ops(backend)
        x, y, h0 = self._checked_chunk(inputs, targets, h0)
        p = self._checked_params()
        stacked = self._uses_stack(bool(train))
        B, T = x.shape
        ws = self._workspace(B, T, stacked)
        if not stacked:
            loss = _fast_path_forward(impl, x, y, h0.reshape(ws.hs.shape[1:]), p, ws)
            return loss, ws.hs[-1].reshape(h0.shape).copy()
        dropping = self._draw_masks(ws, bool(train))
        loss = self._stack_forward(
            backend_cells(backend), x, y, self._state(h0, B), p, ws, dropping
        )
        return loss, self._last_state(ws).reshape(h0.shape)

    def loss_and_grads(
        self,
        inputs,
        targets,
        h0,
        backend: str = "kernel",
        grads: dict[str, np.ndarray] | None = None,
        train: bool = True,
        dropout_key: tuple[int, int, int] | None = None,
    ):
        """Loss, gradients of every parameter and of h0, and the state to carry.

        inputs, targets: integer arrays (B, T) of indices in [0, V); h0: the state (see the class
        docstring), model dtype. Returns (loss: float, grads: dict with the params' keys plus
        'h0' shaped like h0, h_last shaped like h0). ``grads``, if given, is a dict of
        C-contiguous arrays of the right shapes and dtype that are overwritten and returned (no
        allocation per call); otherwise new arrays are returned. train=True applies dropout
        (if the model has any) with masks drawn from ``rng``; train=False is deterministic.
        dropout_key (seed, iteration, first): draw the masks of stream b from a generator keyed
        by (seed, iteration, first + b) instead, so that a stream's masks do not depend on how
        the streams are split over processes (see _draw_masks).
        """
        impl = backend_ops(backend)
        x, y, h0 = self._checked_chunk(inputs, targets, h0)
        p, g = self._checked_params_and_grads(grads, h0.shape)
        B, T = x.shape
        stacked = self._uses_stack(bool(train))
        ws = self._workspace(B, T, stacked)
        if not stacked:  # the single-layer fast path, state (B, H)
            h0_bh, dh0_bh = h0.reshape(B, -1), g["h0"].reshape(B, -1)
            loss = _fast_path_forward(impl, x, y, h0_bh, p, ws)
            impl.rnn_backward(
                x,
                y,
                h0_bh,
                p["Whh"],
                p["Why"],
                ws.hs,
                ws.probs,
                ws.dhs,
                g["Wxh"],
                g["Whh"],
                g["bh"],
                g["Why"],
                g["by"],
                dh0_bh,
                ws.packed,
            )
            return loss, g, ws.hs[-1].reshape(h0.shape).copy()
        cells = backend_cells(backend)
        dropping = self._draw_masks(ws, bool(train), dropout_key)
        state = self._state(h0, B)
        loss = self._stack_forward(cells, x, y, state, p, ws, dropping)
        self._stack_backward(cells, x, y, state, p, ws, dropping, g, self._state(g["h0"], B))
        return loss, g, self._last_state(ws).reshape(h0.shape)

    def _checked_params_and_grads(self, grads, state_shape: tuple[int, ...]):
        """(params, grads), both checked. A training loop passes the same arrays every call:
        when the same objects with the same shapes (and the same state shape) passed all the
        checks last time, they are not repeated. What an array could change in place without
        changing identity or shape (dtype, strides, the writeable flag) is checked again by the
        kernel's typed memoryviews as it is entered, which refuse a mismatch with ValueError."""
        arrays = None
        if type(grads) is dict:
            try:
                arrays = [self.params[n] for n in self._param_shapes]
                arrays += [grads[n] for n in self._param_shapes]
                arrays.append(grads["h0"])
            except KeyError:
                arrays = None
            if (
                arrays is not None
                and state_shape == self._passed_state_shape
                and self._passed.matches(arrays)
            ):
                return self.params, grads
        p, g = self._checked_params(), self._checked_grads(grads, state_shape)
        if type(grads) is dict:
            self._passed.remember(
                [p[n] for n in self._param_shapes] + [g[n] for n in self._param_shapes] + [g["h0"]]
            )
            self._passed_state_shape = state_shape
        return p, g

    def _checked_grads(self, grads, state_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        shapes = dict(self._param_shapes, h0=state_shape)
        if grads is None:
            return {name: np.empty(shape, dtype=self.dtype) for name, shape in shapes.items()}
        if not isinstance(grads, dict):
            raise TypeError(f"grads must be a dict of arrays, got {type(grads).__name__}")
        for name, shape in shapes.items():
            if name not in grads:
                raise ValueError(f"grads is missing {name!r}")
            if not _fits(grads[name], shape, self.dtype, writeable=True):
                _check_array(grads[name], f"grads[{name!r}]", shape, self.dtype, writeable=True)
        # The pairwise overlap test is the costly part; the same array objects cannot start to
        # overlap later, so its verdict is kept for the last set of objects that passed it.
        arrays = [grads[n] for n in shapes] + list(self.params.values())
        if not self._disjoint.matches(arrays):
            _check_no_overlap(
                [(f"grads[{n!r}]", grads[n]) for n in shapes]
                + [(f"params[{n!r}]", p) for n, p in self.params.items()]
            )
            self._disjoint.remember(arrays)
        return grads

    # ------------------------------------------------------------------ the stacked path

    def _state(self, h: np.ndarray, B: int) -> tuple[np.ndarray, np.ndarray]:
        """(h, c) as (L, B, H) views of a (checked) state; a cell without a cell state gives
        h for c too (the kernels read c only for a cell with one)."""
        s = h.reshape(self.state_shape(B))
        return (s[0], s[1]) if self._cell.cell_state else (s, s)

    def _last_state(self, ws: StackWorkspace) -> np.ndarray:
        """The state after the chunk's last step (a cell with a cell state keeps it in cs)."""
        if self._cell.cell_state:
            return np.stack([ws.hs[:, -1], ws.cs[:, -1]])
        return ws.hs[:, -1].copy()

    def _draw_masks(
        self, ws: StackWorkspace, train: bool, key: tuple[int, int, int] | None = None
    ) -> bool:
        """Fill ws.masks with keep / (1 - p) from the model's generator; False if no dropout.
        Drawn here, before dispatch, so that both backends see the same masks.

        key (seed, iteration, first): stream b's (L, T, H) uniforms come from
        default_rng((seed, iteration, first + b)), a function of the stream's global index
        alone, so the same streams get the same masks however the batch is split."""
        if not train or self.dropout == 0.0:
            return False
        if key is None:
            self.rng.random(dtype=self.dtype, out=ws.masks)
        else:
            seed, iteration, first = (int(k) % 2**63 for k in key)
            for b in range(ws.masks.shape[2]):
                rng = np.random.default_rng((seed, iteration, first + b))
                ws.masks[:, :, b, :] = rng.random(ws.masks[:, :, b, :].shape, dtype=self.dtype)
        keep = ws.masks >= self.dropout
        np.multiply(keep, self.dtype.type(1.0 / (1.0 - self.dropout)), out=ws.masks)
        return True

    def _per_layer(self, arrays: dict[str, np.ndarray], name: str) -> list[np.ndarray]:
        """[arrays[name], arrays[name1], ...], one per layer (see _names_per_layer)."""
        return [arrays[n] for n in self._layer_names[name]]

    def _layer_arrays(
        self, arrays: dict[str, np.ndarray], ws: StackWorkspace
    ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """(Wemb, Wxh, Whh, bh, bhn per layer) of arrays (the parameters or their gradients),
        in the order the whole-stack calls take them; ws.no_embedding stands in for Wemb
        without an embedding."""
        per_layer = self._per_layer
        return (
            arrays.get("Wemb", ws.no_embedding),
            per_layer(arrays, "Wxh"),
            per_layer(arrays, "Whh"),
            per_layer(arrays, "bh"),
            per_layer(arrays, "bhn"),
        )

    def _stack_forward(
        self,
        cells,
        x,
        y,
        state: tuple[np.ndarray, np.ndarray],
        p,
        ws: StackWorkspace,
        dropping: bool,
    ) -> float:
        """Every layer, the dropout (when dropping), the head and the loss in one call of the
        backend's stack_forward (_stack.pxi); returns the mean loss. Buffers a model lacks
        are passed as stand-ins the call never reads (see _stack_caches)."""
        h0, c0 = state
        return cells.stack_forward(
            self._cell.code,
            dropping,
            x,
            y,
            h0,
            c0,
            *self._layer_arrays(p, ws),
            p["Why"],
            p["by"],
            *_stack_caches(ws),
            ws.probs,
            ws.packed,
        )

    def _stack_backward(
        self,
        cells,
        x,
        y,
        state: tuple[np.ndarray, np.ndarray],
        p,
        ws: StackWorkspace,
        dropping: bool,
        g: dict[str, np.ndarray],
        dstate: tuple[np.ndarray, np.ndarray],
    ) -> None:
        """Every gradient of _stack_forward's loss into g and dstate, in one call of the
        backend's stack_backward (_stack.pxi)."""
        h0, c0 = state
        dh0, dc0 = dstate
        Wemb, Wxhs, Whhs, _, _ = self._layer_arrays(p, ws)
        cells.stack_backward(
            self._cell.code,
            dropping,
            x,
            y,
            h0,
            c0,
            Wemb,
            Wxhs,
            Whhs,
            p["Why"],
            *_stack_caches(ws),
            ws.probs,
            ws.dhs,
            ws.dc if ws.dc is not None else ws.dhs[0, 0],
            ws.demb if ws.demb is not None else ws.dhs[0],
            ws.packed,
            *self._layer_arrays(g, ws),
            g["Why"],
            g["by"],
            dh0,
            dc0,
        )

    # ------------------------------------------------------------------ sampling
    def generate(
        self,
        h: np.ndarray,
        first_index,
        length: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        greedy: bool = False,
        rng: np.random.Generator | None = None,
        backend: str = "kernel",
    ) -> np.ndarray:
        """Generate length indices per stream, each fed back as that stream's next input.

        h is the state of N >= 1 streams before first_index is read: state_shape(N), or (N, H)
        for a single-layer rnn; it is updated in place to the state after the last generated
        index. first_index is an int (every stream starts from it) or an (N,) integer array.
        Returns the indices as an (N, length) int32 array, except for the single-stream call
        (N = 1 and an int first_index), which returns them as a 1-D (length,) array.

        The whole loop is one compiled call (stack_generate) for every cell, depth and
        embedding; each step reads the weights once for all N streams. The draws: uniforms =
        rng.random((length, N)) (row-major: step by step, stream 0 first), stream b's n-th
        character drawn with uniforms[n, b], even when greedy, so that the generator's position
        depends only on length and N. Hence a single-stream call draws rng.random(length), the
        same seed gives the same text, and the streams of an N-stream call are what N
        single-stream calls would give with uniforms[:, b] as their draws (not stream 0 of the
        same rng: the streams interleave their draws). temperature > 0; top_k in [1, V] keeps
        only the top_k largest logits.
        """
        cells = backend_cells(backend)
        V = self.vocab_size
        N = self._generation_streams(h)
        self._checked_state(h, "h", N)
        single = N == 1 and not isinstance(first_index, np.ndarray)
        xs = _check_first_indices(first_index, N, V)
        length = _positive_int(length, "length", minimum=0)
        temperature = float(temperature)
        if not (temperature > 0 and np.isfinite(temperature)):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
        top_k = V if top_k is None else _check_index(top_k - 1, "top_k - 1", V) + 1
        rng = rng if rng is not None else np.random.default_rng()
        p = self._checked_params()
        uniforms = rng.random((length, N))
        out = np.empty((N, length), dtype=np.int32)
        ws = self._generate_workspace(N)
        ws.xs[...] = xs
        state = h.reshape(self.state_shape(N))
        hs, cs = (state[0], state[1]) if self._cell.cell_state else (state, state)
        suffixes = [layer_suffix(layer) for layer in range(self.num_layers)]
        bhs = [p[f"bh{k}"] for k in suffixes]
        bhns = [p[f"bhn{k}"] for k in suffixes] if "bhn" in self._cell.layer_vectors else bhs
        cells.stack_generate(
            self._cell.code,
            p.get("Wemb", ws.no_embedding),
            [p[f"Wxh{k}"] for k in suffixes],
            [p[f"Whh{k}"] for k in suffixes],
            bhs,
            bhns,
            p["Why"],
            p["by"],
            hs,
            cs,
            ws.xs,
            uniforms,
            temperature,
            top_k,
            bool(greedy),
            out,
            ws.emb,
            ws.gates,
            ws.hn,
            ws.h_new,
            ws.c_new,
            ws.tc,
            ws.logits,
            ws.packed,
            ws.packed_whh,
            ws.z,
            ws.scratch,
        )
        return out.reshape(length) if single else out

    def _generation_streams(self, h) -> int:
        """N, the number of streams of a state passed to generate: its next-to-last axis
        (shape errors are reported by _checked_state)."""
        if isinstance(h, np.ndarray) and h.ndim >= 2 and h.shape[-2] >= 1:
            return int(h.shape[-2])
        return 1

    def _generate_workspace(self, N: int) -> GenerateWorkspace:
        ws = self._generate_workspaces.get(N)
        if ws is None:
            ws = GenerateWorkspace(
                N,
                self.hidden_size,
                self.gates,
                self.vocab_size,
                self.embedding_size,
                self.dtype,
                self.cell,
                self.num_layers,
            )
            self._generate_workspaces[N] = ws
            if len(self._generate_workspaces) > _WORKSPACE_SHAPES_KEPT:
                self._generate_workspaces.popitem(last=False)
        else:
            self._generate_workspaces.move_to_end(N)
        return ws

    def step_logits(self, x, h) -> tuple[np.ndarray, np.ndarray]:
        """One forward step for sampling (no dropout): x (B,) indices and a state h ->
        (logits (B, V), the new state shaped like h)."""
        x = _check_indices(np.asarray(x).reshape(-1, 1), "x", self.vocab_size)
        B = x.shape[0]
        self._checked_state(h, "h", B)
        p = self._checked_params()
        if self._has_fast_path:
            hs = np.tanh(p["Wxh"][x[:, 0]] + h.reshape(B, -1) @ p["Whh"] + p["bh"])
            return hs @ p["Why"] + p["by"], hs.reshape(h.shape)
        ws = self._workspace(B, 1, True)
        h0, c0 = self._state(h, B)
        reference_cells.stack_layers_forward(
            self._cell.code,
            False,
            x,
            h0,
            c0,
            *self._layer_arrays(p, ws),
            *_stack_caches(ws),
            ws.packed,
            V=self.vocab_size,
        )
        logits = ws.hs[-1, 0] @ p["Why"] + p["by"]
        return logits, self._last_state(ws).reshape(h.shape)


CELLS = NAMES  # the cells' names, from the table of cells (fastrnn.cells)


def _recorded_init(config: dict[str, Any]) -> str | initialisation.InitScheme:
    """The scheme a config records: its name when the recorded numbers are that scheme's
    numbers today (or none were recorded), else the recorded numbers themselves."""
    name = config.get("init", "uniform")
    spec = config.get("init_spec")
    if spec is None:
        return name
    if name in initialisation.SCHEMES and initialisation.SCHEMES[name].to_dict() == spec:
        return name
    return initialisation.from_spec(spec)


def _fast_path_forward(impl, x, y, h0: np.ndarray, p: dict[str, np.ndarray], ws) -> float:
    """The single-layer rnn's forward pass over the chunk (loss; ws.hs, ws.probs filled), by
    the kernel or its numpy twin (impl); h0 is (B, H)."""
    return impl.rnn_forward(
        x, y, h0, p["Wxh"], p["Whh"], p["bh"], p["Why"], p["by"], ws.hs, ws.probs, ws.packed
    )


def _names_per_layer(cell: Cell, L: int) -> dict[str, list[str]]:
    """{'Wxh': ['Wxh', 'Wxh1', ...], 'Whh': [...], 'bh': [...], 'bhn': [...]}: the names of each
    per-layer parameter, layer by layer. A cell without 'bhn' gets the 'bh' names in its place
    (the whole-stack calls read bhn only for the GRU)."""
    kinds = ("Wxh", "Whh", "bh") + cell.layer_vectors
    names = {kind: [f"{kind}{layer_suffix(layer)}" for layer in range(L)] for kind in kinds}
    names.setdefault("bhn", names["bh"])
    return names


_Caches = tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray
]


def _stack_caches(ws: StackWorkspace) -> _Caches:
    """(masks, emb, gates, hs, cs, tcs, hns, drops) of the workspace, in the order the
    whole-stack calls take them, with hs (or hs[0] for emb) in place of those the model has
    none of: the calls take every buffer and read only those of the model's cell, embedding
    and dropout."""
    masks, cs, tcs, hns, drops = (
        b if b is not None else ws.hs for b in (ws.masks, ws.cs, ws.tcs, ws.hns, ws.drops)
    )
    emb = ws.emb if ws.emb is not None else ws.hs[0]
    return masks, emb, ws.gates, ws.hs, cs, tcs, hns, drops


def layer_suffix(layer: int) -> str:
    """Parameter-name suffix of a layer: '' for layer 0, else its number ('Whh1')."""
    return "" if layer == 0 else str(layer)


def _dropout_probability(p) -> float:
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, (int, float, np.integer, np.floating)):
        raise TypeError(f"dropout must be a number, got {type(p).__name__}")
    if not 0.0 <= float(p) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p}")
    return float(p)


# ---------------------------------------------------------------------- validation helpers


def _positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _init_scheme(init) -> tuple[str, initialisation.InitScheme]:
    """(name, scheme) of CharRNN(init=...): a name of SCHEMES, or an InitScheme, named after
    the registered scheme it equals, else "custom"."""
    schemes = initialisation.SCHEMES
    if isinstance(init, initialisation.InitScheme):
        names = [name for name, scheme in schemes.items() if scheme == init]
        return (names[0] if names else "custom"), init
    if not isinstance(init, str):
        raise TypeError(f"init must be a scheme name or an InitScheme, got {type(init).__name__}")
    if init not in schemes:
        raise ValueError(f"init must be one of {tuple(schemes)}, got {init!r}")
    return init, schemes[init]


def _check_char_counts(counts, V: int) -> np.ndarray | None:
    """char_counts as a (V,) float64 array of finite counts >= 0, or None."""
    if counts is None:
        return None
    a = np.asarray(counts)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"char_counts must hold numbers, got dtype {a.dtype}")
    if a.shape != (V,):
        raise ValueError(f"char_counts must have shape ({V},) (one per character), got {a.shape}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all() or (a < 0).any():
        raise ValueError("char_counts must be finite and >= 0")
    return a


def _model_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from exc
    if dt not in DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _fits(a, shape: tuple[int, ...], dtype: np.dtype, writeable: bool = False) -> bool:
    """The combined test of _check_array, for the common case (no message to build)."""
    return (
        isinstance(a, np.ndarray)
        and a.dtype == dtype
        and a.shape == shape
        and a.flags.c_contiguous
        and (a.flags.writeable or not writeable)
    )


def _check_array(
    a, name: str, shape: tuple[int, ...], dtype: np.dtype, writeable: bool = False
) -> None:
    """The array contract of the kernel: ndarray, exact dtype, exact shape, C-contiguous (and
    writeable for outputs); raises TypeError or ValueError naming the argument."""
    if _fits(a, shape, dtype, writeable):
        return
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {a.dtype}")
    if a.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use np.ascontiguousarray)")
    if writeable and not a.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    raise AssertionError(f"{name}: _check_array found no reason to refuse")  # unreachable


def _check_index(value, name: str, V: int) -> int:
    """A single integer index in [0, V)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if not 0 <= value < V:
        raise ValueError(f"{name} must be in [0, {V}), got {value}")
    return int(value)


def _check_first_indices(first_index, N: int, V: int) -> np.ndarray:
    """generate's first_index: an int, or an (N,) integer array, each in [0, V); as (N,) int32."""
    if not isinstance(first_index, np.ndarray):
        return np.full(N, _check_index(first_index, "first_index", V), dtype=np.int32)
    if first_index.dtype.kind not in "iu":
        raise TypeError(f"first_index must be an integer array, got dtype {first_index.dtype}")
    if first_index.shape != (N,):
        raise ValueError(
            f"first_index must be an int or have shape {(N,)} (one index per "
            f"stream of h), got {first_index.shape}"
        )
    if first_index.min() < 0 or first_index.max() >= V:
        raise ValueError(
            f"first_index must hold indices in [0, {V}), got "
            f"{first_index.min()}..{first_index.max()}"
        )
    return first_index.astype(np.int32)


def _check_no_overlap(named_arrays: list[tuple[str, np.ndarray]]) -> None:
    """Output buffers must not share memory with each other or with the inputs."""
    for i, (name_a, a) in enumerate(named_arrays):
        for name_b, b in named_arrays[i + 1 :]:
            if np.may_share_memory(a, b):
                raise ValueError(f"{name_a} and {name_b} share memory; use separate arrays")


def _check_indices(a, name: str, V: int) -> np.ndarray:
    """Integer (B, T) array with every value in [0, V); returned as C-contiguous int32."""
    if (
        type(a) is np.ndarray
        and a.dtype == np.int32
        and a.ndim == 2
        and a.size
        and a.flags.c_contiguous
        and _kernel is not None
    ):
        lo, hi = _kernel.index_bounds(a)  # the trainer's case: one pass, no copy
        if 0 <= lo and hi < V:
            return a
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
