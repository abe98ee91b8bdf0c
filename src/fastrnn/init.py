"""Initialisation schemes: how CharRNN draws its parameters before training.

A scheme is an ``InitScheme`` (frozen: its numbers are recorded in every checkpoint header, and
the same scheme, seed and architecture always give the same draws). ``SCHEMES`` names the ones
CharRNN(init=...) accepts by name (it also takes an InitScheme); the numbers of each live in
that one table. model.py validates the choice; an InitScheme validates its own fields.

Dimension letters: V vocabulary, E embedding size, H hidden, G gate blocks (rnn 1, lstm 4,
gru 3), GH = G*H. Parameters are drawn in the order of CharRNN.param_shapes, each from the
model's seeded generator, then cast to the model dtype:

    Wemb           (V, E)   embedding rows (E > 0):        N(0, embed_std^2)
                                                           (embed_std 0: uniform +-1/sqrt(H))
    Wxh, E == 0    (V, GH)  layer 0 reads one-hot rows:    N(0, input_std^2)
                                                           (input_std 0: uniform +-1/sqrt(H))
    Wxh, E > 0     (E, GH)  layer 0 projects the embedding: embed_proj
    Wxh{l}, l >= 1 (H, GH)  layer l reads the layer below:  hidden_input
    Whh{l}         (H, GH)  recurrent matrices:              recurrent
    Why            (H, V)   the head:                        head
    bh{l}, bhn{l}           zero, except the LSTM forget block f of every bh{l} = forget_bias
                            (1 in "uniform": an open forget gate keeps the cell's memory early
                            in training, Jozefowicz et al., 2015; 0 in "default", which learns
                            faster in short runs)
    by             (V,)     the head's bias:                 head_bias
                            ("zero"; "unigram": the training text's character frequencies,
                            see unigram_bias, when the model is given their counts)

Matrix kinds: "uniform" is U(-1/sqrt(fan), 1/sqrt(fan)) with fan = H (fan = E for embed_proj);
"orthogonal" draws each of the G (rows, H) gate blocks with orthonormal columns (or rows, when
rows < H) from the QR decomposition of a Gaussian matrix, signs corrected so that the result is
uniformly distributed (R's diagonal made positive); "zero" (head only) starts at 0.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from .cells import TABLE

MATRIX_KINDS = ("uniform", "orthogonal")
HEAD_KINDS = ("uniform", "zero")
HEAD_BIAS_KINDS = ("zero", "unigram")


@dataclass(frozen=True)
class InitScheme:
    """The numbers of one initialisation scheme (see the module docstring for each rule)."""

    input_std: float = 0.0  # one-hot layer-0 rows N(0, s^2); 0: uniform +-1/sqrt(H)
    embed_std: float = 0.0  # embedding rows N(0, s^2); 0: uniform +-1/sqrt(H)
    embed_proj: str = "uniform"  # (E, GH) layer-0 projection: MATRIX_KINDS
    hidden_input: str = "uniform"  # (H, GH) input matrices of layers >= 1: MATRIX_KINDS
    recurrent: str = "uniform"  # (H, GH) recurrent matrices: MATRIX_KINDS
    head: str = "uniform"  # (H, V) output matrix: HEAD_KINDS
    forget_bias: float = 1.0  # LSTM forget-gate bias (block f of every bh)
    head_bias: str = "zero"  # the head's bias by: HEAD_BIAS_KINDS

    def __post_init__(self) -> None:
        for name in ("input_std", "embed_std", "forget_bias"):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
                raise TypeError(f"InitScheme.{name} must be a number, got {type(value).__name__}")
            if not math.isfinite(value):
                raise ValueError(f"InitScheme.{name} must be finite, got {value}")
            object.__setattr__(self, name, float(value))  # plain floats: JSON-able, comparable
        for name in ("input_std", "embed_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"InitScheme.{name} must be >= 0, got {getattr(self, name)}")
        for name, kinds in (
            ("embed_proj", MATRIX_KINDS),
            ("hidden_input", MATRIX_KINDS),
            ("recurrent", MATRIX_KINDS),
            ("head", HEAD_KINDS),
            ("head_bias", HEAD_BIAS_KINDS),
        ):
            if getattr(self, name) not in kinds:
                raise ValueError(
                    f"InitScheme.{name} must be one of {kinds}, got {getattr(self, name)!r}"
                )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able numbers (dataclasses.asdict), as recorded in a checkpoint header."""
        return dataclasses.asdict(self)


# The schemes CharRNN(init=name) accepts; tune a scheme's numbers here and nowhere else.
SCHEMES: dict[str, InitScheme] = {
    # Every matrix uniform +-1/sqrt(H) (as torch-rnn and PyTorch's nn.RNN), zero biases, the
    # LSTM forget gate open (bias 1).
    "uniform": InitScheme(),
    # Chosen by validation loss after 500 and 1000 Adam steps on tinyshakespeare (rnn 256,
    # LSTM 2x256; README, learning quality): the uniform scheme's one-hot rows (+-1/16 at
    # H=256) start about 30 times weaker than this and Adam needs thousands of steps to grow
    # them. One-hot rows N(0, 2^2) (rnn: 1.756 at std 1, 1.731 at 2, 1.721 at 3; LSTM 1.727 at
    # 1, 1.701 at 2), embedding rows N(0, 1) (std 2 was worse: 1.731 against 1.700), input
    # matrices above layer 0 orthogonal (entries sqrt(3) times the uniform's: LSTM 1.727
    # against 1.736), recurrent matrices uniform (orthogonal was worse: rnn 1.767 against
    # 1.756, LSTM 1.753 against 1.736), LSTM forget bias 0 (LSTM 2x256 with E = 256: 1.874,
    # 1.696 after 250, 500 steps against 1.890, 1.727 at bias 1; the PyTorch script: 1.871,
    # 1.695): in a short run an open forget gate slows learning more than it protects memory.
    # The head bias at the training text's unigram frequencies (LSTM 2x256, E = 256: 1.787,
    # 1.630 after 250, 500 steps against 1.874, 1.696 at zero; Tang poems, V = 6533, LSTM 256:
    # 5.639, 5.290 after 200, 400 steps against 5.842, 5.538): Adam moves each of the V biases
    # by about the learning rate per step, so from zero it needs thousands of steps to learn
    # that some characters are hundreds of times rarer than others.
    "default": InitScheme(
        input_std=2.0,
        embed_std=1.0,
        hidden_input="orthogonal",
        recurrent="uniform",
        head="uniform",
        forget_bias=0.0,
        head_bias="unigram",
    ),
}


def from_spec(spec: dict[str, Any]) -> InitScheme:
    """The InitScheme recorded as ``spec`` (InitScheme.to_dict); ValueError on unknown keys."""
    if not isinstance(spec, dict):
        raise TypeError(f"init_spec must be a dict, got {type(spec).__name__}")
    known = {f.name for f in dataclasses.fields(InitScheme)}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ValueError(f"init_spec has unknown keys {unknown}; known: {sorted(known)}")
    return InitScheme(**spec)


# ---------------------------------------------------------------------- draws


def uniform(rng: np.random.Generator, shape: tuple[int, ...], fan: int) -> np.ndarray:
    """U(-1/sqrt(fan), 1/sqrt(fan)) of the given shape (float64)."""
    bound = 1.0 / np.sqrt(fan)
    return rng.uniform(-bound, bound, size=shape)


def gaussian(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    """N(0, std^2) of the given shape (float64)."""
    return rng.normal(0.0, std, size=shape)


def orthogonal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """A (rows, cols) matrix with orthonormal columns (rows >= cols) or orthonormal rows
    (rows < cols): Q of the QR decomposition of a Gaussian matrix, each column's sign set so
    that R's diagonal is positive (which makes Q Haar-distributed)."""
    tall = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(tall)
    q *= np.where(np.diag(r) < 0, -1.0, 1.0)
    return q if rows >= cols else q.T


def orthogonal_blocks(rng: np.random.Generator, rows: int, H: int, G: int) -> np.ndarray:
    """(rows, G*H): G gate blocks of shape (rows, H), each drawn by ``orthogonal``."""
    return np.concatenate([orthogonal(rng, rows, H) for _ in range(G)], axis=1)


def matrix(
    rng: np.random.Generator, kind: str, shape: tuple[int, ...], fan: int, H: int
) -> np.ndarray:
    """A (rows, G*H) gate matrix of the given kind (MATRIX_KINDS), fan the uniform's fan-in."""
    if kind == "orthogonal":
        return orthogonal_blocks(rng, shape[0], H, shape[1] // H)
    return uniform(rng, shape, fan)


def draw_params(
    scheme: InitScheme,
    shapes: dict[str, tuple[int, ...]],
    cell: str,
    H: int,
    dtype: np.dtype,
    rng: np.random.Generator,
    char_counts: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Every parameter of a CharRNN with these param_shapes, drawn in their order from rng
    and cast to dtype (C-contiguous). With SCHEMES["uniform"] the draws are, value for value,
    one rng.uniform(-1/sqrt(H), 1/sqrt(H)) per matrix in order, as they have always been.
    char_counts (V,): occurrences of each character in the training text, which a scheme with
    head_bias "unigram" starts the head bias from (unigram_bias); without them it is zero.
    The biases draw nothing from rng, so the counts never change the matrices' draws."""
    embedded = "Wemb" in shapes
    forget = TABLE[cell].forget_block
    params = {}
    for name, shape in shapes.items():
        if name.startswith("W"):
            values = _draw_matrix(scheme, name, shape, embedded, H, rng)
            params[name] = np.ascontiguousarray(values, dtype=dtype)
        else:
            params[name] = np.zeros(shape, dtype=dtype)
            if forget is not None and _is_gate_bias(name):
                params[name][forget * H : (forget + 1) * H] = scheme.forget_bias
    if scheme.head_bias == "unigram" and char_counts is not None:
        params["by"][...] = unigram_bias(char_counts)
    return params


def unigram_bias(char_counts: np.ndarray) -> np.ndarray:
    """(V,) float64 head bias whose softmax is the add-one smoothed frequency of each
    character, (count + 1) / (total + V), so that the untrained model already predicts the
    unigram distribution; shifted to mean 0 (the softmax does not see a shift)."""
    counts = np.asarray(char_counts, dtype=np.float64)
    logp = np.log(counts + 1.0) - np.log(counts.sum() + counts.size)
    return logp - logp.mean()


def _is_gate_bias(name: str) -> bool:
    """bh, bh1, bh2, ...: a layer's (G*H,) bias of the gate blocks (not bhn, not by)."""
    return name == "bh" or (name.startswith("bh") and name[2:].isdigit())


def _draw_matrix(
    scheme: InitScheme,
    name: str,
    shape: tuple[int, ...],
    embedded: bool,
    H: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """One weight matrix by the rule of its role (see the module docstring)."""
    if name == "Wemb":
        return _gaussian_or_uniform(rng, shape, scheme.embed_std, H)
    if name == "Wxh":
        if embedded:
            return matrix(rng, scheme.embed_proj, shape, shape[0], H)
        return _gaussian_or_uniform(rng, shape, scheme.input_std, H)
    if name.startswith("Wxh"):
        return matrix(rng, scheme.hidden_input, shape, H, H)
    if name.startswith("Whh"):
        return matrix(rng, scheme.recurrent, shape, H, H)
    if name == "Why":
        return np.zeros(shape) if scheme.head == "zero" else uniform(rng, shape, H)
    raise ValueError(f"no initialisation rule for parameter {name!r}")


def _gaussian_or_uniform(
    rng: np.random.Generator, shape: tuple[int, ...], std: float, H: int
) -> np.ndarray:
    """N(0, std^2) rows, or uniform +-1/sqrt(H) when std is 0."""
    return gaussian(rng, shape, std) if std > 0 else uniform(rng, shape, H)
