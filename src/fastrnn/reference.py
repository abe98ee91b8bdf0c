"""The numpy twin of the compiled kernel, function by function: of ``_rnn.pxi`` (the single-layer
rnn), ``_generate.pxi`` (generation), ``_optim.pxi`` (UpdatePlan) and ``_checks.pxi``
(SameArrays); the stacked layers of ``_cells.pxi`` have theirs in reference_cells.py.

Read the two side by side: every function here has the same name, the same argument order and
writes the same buffers as its Cython counterpart. This module is the test oracle and the
benchmark baseline, so it is written as plain, reasonably efficient numpy (whole-chunk GEMMs
where the math allows, a Python loop only over the T sequential steps of the recurrence).

Dimension letters: B streams, T steps, H hidden units, V vocabulary size.
Time-major buffers: row ``t*B + b`` of a (T*B, .) matrix is stream b at step t.

Model, for t = 0..T-1 (h_{-1} = h0, the state carried in from the previous chunk):
    h_t    = tanh(Wxh[x_t] + h_{t-1} @ Whh + bh)          Wxh (V,H) is a row gather: x is one-hot
    logits = h_t @ Why + by
    loss   = mean over the B*T targets of -log softmax(logits)[y_t]

Buffers (allocated by the caller, once per shape):
    x, y   (B, T)    int32 inputs / targets, input
    h0     (B, H)    carried hidden state, input
    hs     (T, B, H) hidden states h_0..h_{T-1}, cache kept for backward
    probs  (T*B, V)  softmax probabilities, cache; backward overwrites it with
                     probs - onehot(y) = (T*B) * dlogits
    dhs    (T, B, H) scratch: dL/dh_t, then in place dL/dpre_t (the gradient before tanh)
    packed (P,)      scratch of the recurrent product: the kernel packs Whh into it (forward)
                     and Whh^T (backward); here the backward keeps a contiguous Whh^T in its
                     first H*H values, and the forward reads Whh as it is
Gradients (outputs, overwritten): dWxh (V,H), dWhh (H,H), dbh (H,), dWhy (H,V), dby (V,), dh0 (B,H).
"""

from __future__ import annotations

import numpy as np

# ----------------------------------------------------------------------------- forward


def embed_forward(x: np.ndarray, Wxh: np.ndarray, bh: np.ndarray, hs: np.ndarray) -> None:
    """hs[t, b] = Wxh[x[b, t]] + bh: the input projection of the whole chunk, a row gather."""
    np.add(Wxh[x.T], bh, out=hs)


def recurrence_forward(h0: np.ndarray, Whh: np.ndarray, hs: np.ndarray, packed: np.ndarray) -> None:
    """In place over t: hs[t] = tanh(hs[t] + h_{t-1} @ Whh). The only sequential part.
    (packed is the kernel's scratch for a packed Whh; numpy multiplies by Whh directly.)"""
    h_prev = h0
    for t in range(hs.shape[0]):
        hs[t] += h_prev @ Whh
        np.tanh(hs[t], out=hs[t])
        h_prev = hs[t]


def output_forward(
    hs: np.ndarray, Why: np.ndarray, by: np.ndarray, y: np.ndarray, probs: np.ndarray
) -> float:
    """probs = softmax(hs @ Why + by) over the chunk; returns the mean cross-entropy of y.

    Stable softmax: the row maximum is subtracted before exp, so a logit of 1e4 is harmless,
    and log p[y] = (logit_y - max) - log(sum exp(logit - max)) never takes the log of 0.
    """
    T, B, H = hs.shape
    np.matmul(hs.reshape(T * B, H), Why, out=probs)
    probs += by
    rows = np.arange(T * B)
    targets = y.T.reshape(-1)  # time-major, like the rows of probs
    row_max = probs.max(axis=1, keepdims=True)
    shifted_y = probs[rows, targets] - row_max[:, 0]
    probs -= row_max
    np.exp(probs, out=probs)
    sums = probs.sum(axis=1)
    probs /= sums[:, None]
    nll = np.log(sums) - shifted_y  # -log p[y] per row
    return float(nll.sum(dtype=np.float64) / (T * B))


def rnn_forward(x, y, h0, Wxh, Whh, bh, Why, by, hs, probs, packed) -> float:
    """Whole forward pass over one chunk; fills the caches hs and probs, returns the loss."""
    embed_forward(x, Wxh, bh, hs)
    recurrence_forward(h0, Whh, hs, packed)
    return output_forward(hs, Why, by, y, probs)


# ----------------------------------------------------------------------------- backward


def output_backward(hs, Why, y, probs, dhs, dWhy, dby) -> None:
    """From loss = mean(-log softmax(hs @ Why + by)[y]), with n = T*B:
    dlogits = (probs - onehot(y)) / n; probs keeps probs - onehot(y) and 1/n scales the products.
    dWhy = hs^T @ dlogits; dby = sum of dlogits rows; dhs = dlogits @ Why^T.
    """
    T, B, H = hs.shape
    n = T * B
    inv_n = probs.dtype.type(1.0 / n)
    probs[np.arange(n), y.T.reshape(-1)] -= 1.0
    np.matmul(hs.reshape(n, H).T, probs, out=dWhy)
    dWhy *= inv_n
    np.sum(probs, axis=0, out=dby)
    dby *= inv_n
    np.matmul(probs, Why.T, out=dhs.reshape(n, H))
    dhs *= inv_n


def transposed_copy(packed: np.ndarray, W: np.ndarray) -> np.ndarray:
    """A contiguous W^T in the first values of the scratch buffer packed (the kernel packs W^T
    into panels there); returns it as a (W.shape[1], W.shape[0]) view."""
    WT = packed[: W.size].reshape(W.shape[::-1])
    np.copyto(WT, W.T)
    return WT


def recurrence_backward(h0, Whh, hs, dhs, dh0, packed) -> None:
    """Full BPTT, in place over t = T-1..0.

    Differentiates h_t = tanh(pre_t), pre_t = ... + h_{t-1} @ Whh:
    dpre_t = dh_t * (1 - h_t^2), stored over dhs[t];
    dh_{t-1} += dpre_t @ Whh^T, and for t = 0 that is dh0 (the carried state's gradient).
    packed is scratch for Whh^T, as in the kernel.
    """
    T = hs.shape[0]
    WhhT = transposed_copy(packed, Whh)
    for t in range(T - 1, -1, -1):
        dhs[t] *= 1.0 - hs[t] * hs[t]
        if t > 0:
            dhs[t - 1] += dhs[t] @ WhhT
    np.matmul(dhs[0], WhhT, out=dh0)


def weight_backward(x, h0, hs, dhs, dWxh, dWhh, dbh) -> None:
    """Weight gradients of the recurrence, batched over the chunk (dhs holds dpre):
    dWhh = h0^T @ dpre_0 + hs[:T-1]^T @ dpre[1:]   (h_{t-1} is h0 at t = 0, the carried state);
    dbh = sum of dpre rows; dWxh[v] = sum of dpre rows whose input is v (scatter-add).
    """
    T, B, H = hs.shape
    np.matmul(h0.T, dhs[0], out=dWhh)
    if T > 1:
        dWhh += hs[:-1].reshape(-1, H).T @ dhs[1:].reshape(-1, H)
    np.sum(dhs.reshape(-1, H), axis=0, out=dbh)
    dWxh.fill(0.0)
    np.add.at(dWxh, x.T.reshape(-1), dhs.reshape(-1, H))


def rnn_backward(
    x, y, h0, Whh, Why, hs, probs, dhs, dWxh, dWhh, dbh, dWhy, dby, dh0, packed
) -> None:
    """Whole backward pass over one chunk, from the caches of rnn_forward."""
    output_backward(hs, Why, y, probs, dhs, dWhy, dby)
    recurrence_backward(h0, Whh, hs, dhs, dh0, packed)
    weight_backward(x, h0, hs, dhs, dWxh, dWhh, dbh)


# ----------------------------------------------------------------------------- sampling


# The draw sums the weights by blocks of DRAW_BLOCK, each in order: the search then walks the
# block ends and one block, not all V running sums (the kernel's draw_index does the same).
DRAW_BLOCK = 64


def _last_positive(w: np.ndarray) -> int:
    return int(np.flatnonzero(w > 0)[-1])


def draw_index(weights: np.ndarray, u: float) -> int:
    """Inverse-CDF draw from unnormalised weights (V,) (the largest > 0): the first i whose
    running sum exceeds u * total, where each block of DRAW_BLOCK weights is summed in order
    (sums), total is the running sum of the block sums (ends), and within the block that ends
    past the target the running sum starts from the previous block's end. Where rounding
    leaves nothing past the target, the last index of positive weight (in that block, or in
    all)."""
    V = weights.size
    blocks = np.pad(weights, (0, -V % DRAW_BLOCK)).reshape(-1, DRAW_BLOCK)
    sums = np.cumsum(blocks, axis=1)[:, -1]
    ends = np.cumsum(sums)
    target = u * ends[-1]
    j = int(np.searchsorted(ends, target, side="right"))
    if j == ends.size:
        return _last_positive(weights)
    base = ends[j - 1] if j > 0 else 0.0
    within = np.cumsum(np.concatenate(([base], blocks[j])))[1:]
    i = int(np.searchsorted(within, target, side="right"))
    if i == DRAW_BLOCK:
        i = _last_positive(blocks[j])
    return j * DRAW_BLOCK + i


# Softmax weights below exp(EXP_FLOOR) of the largest are 0 in the draw: no index of weight ~0
# can come out, even for u = 0 (the kernel's exp clamps its argument there).
EXP_FLOOR = -708.0


def next_index(logits: np.ndarray, temperature: float, top_k: int, greedy: bool, u: float) -> int:
    """One draw from softmax(logits / temperature) restricted to the top_k largest logits
    (all V when top_k >= V) and to weights above exp(EXP_FLOOR), or the argmax when greedy.
    The logits are scaled by the reciprocal 1 / temperature."""
    if greedy:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) * (1.0 / temperature)
    V = z.size
    cutoff = np.partition(z, V - top_k)[V - top_k] if top_k < V else -np.inf
    shifted = z - z.max()
    weights = np.where((z >= cutoff) & (shifted > EXP_FLOOR), np.exp(shifted), 0.0)
    return draw_index(weights, u)


def sample_index(logits, temperature, top_k, greedy, u, z, scratch) -> int:
    """One draw of next_index from a (V,) row of logits (z, scratch: the kernel's scratch)."""
    return next_index(logits, temperature, top_k, greedy, u)


def rnn_generate(
    Wxh,
    Whh,
    bh,
    Why,
    by,
    h,
    first_index,
    uniforms,
    temperature,
    top_k,
    greedy,
    out,
    pre,
    logits,
    z,
    scratch,
) -> None:
    """Generate len(out) indices, each read back as the next input, starting from first_index.
    h (H,) is updated in place to the last state; pre, logits, z, scratch are scratch buffers
    (kept for the kernel's signature). Per step: h = tanh(Wxh[x] + h @ Whh + bh);
    logits = h @ Why + by; x = draw(logits)."""
    x = first_index
    for n in range(out.shape[0]):
        np.tanh(Wxh[x] + h @ Whh + bh, out=h)
        np.add(h @ Why, by, out=logits)
        x = next_index(logits, temperature, top_k, greedy, uniforms[n])
        out[n] = x


# ----------------------------------------------------------------------------- optimizers
# Twins of the kernel's one-pass updates (UpdatePlan), over 1-D views; g is read as
# clip(g) * scale.


def _clipped(g: np.ndarray, clip: float, scale: float) -> np.ndarray:
    return np.clip(g, -clip, clip) * g.dtype.type(scale)


def sgd_update(p, g, lr, clip, scale) -> None:
    """p -= lr * g"""
    p -= p.dtype.type(lr) * _clipped(g, clip, scale)


def adagrad_update(p, g, cache, lr, eps, clip, scale) -> None:
    """cache += g^2; p -= lr * g / (sqrt(cache) + eps)"""
    g = _clipped(g, clip, scale)
    cache += g * g
    p -= p.dtype.type(lr) * g / (np.sqrt(cache) + p.dtype.type(eps))


def rmsprop_update(p, g, cache, lr, alpha, eps, clip, scale) -> None:
    """cache = alpha cache + (1 - alpha) g^2; p -= lr * g / (sqrt(cache) + eps)"""
    g = _clipped(g, clip, scale)
    t = p.dtype.type
    cache *= t(alpha)
    cache += t(1 - alpha) * (g * g)
    p -= t(lr) * g / (np.sqrt(cache) + t(eps))


def adam_update(p, g, m, v, lr_t, beta1, beta2, eps_t, clip, scale) -> None:
    """m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p -= lr_t * m / (sqrt(v) + eps_t)"""
    g = _clipped(g, clip, scale)
    t = p.dtype.type
    m *= t(beta1)
    m += t(1 - beta1) * g
    v *= t(beta2)
    v += t(1 - beta2) * (g * g)
    p -= t(lr_t) * m / (np.sqrt(v) + t(eps_t))


def clipped_sq_norm(g, clip) -> float:
    """sum(clip(g, -clip, clip) ** 2), accumulated in double."""
    c = np.clip(g, -clip, clip).astype(np.float64)
    return float(np.dot(c, c))


class UpdatePlan:
    """Twin of the kernel's UpdatePlan: a list of (p, g, slots) 1-D arrays of one dtype, bound
    once; each method is one optimizer step over every entry, through the updates above."""

    def __init__(self, entries: list, nslots: int):
        self.entries = [(p, g, tuple(slots)) for p, g, slots in entries]
        for i, (_, _, slots) in enumerate(self.entries):
            if len(slots) != nslots:
                raise ValueError(f"entry {i} has {len(slots)} optimizer slots, expected {nslots}")

    def sgd(self, lr, clip, scale) -> None:
        for p, g, _ in self.entries:
            sgd_update(p, g, lr, clip, scale)

    def adagrad(self, lr, eps, clip, scale) -> None:
        for p, g, (cache,) in self.entries:
            adagrad_update(p, g, cache, lr, eps, clip, scale)

    def rmsprop(self, lr, alpha, eps, clip, scale) -> None:
        for p, g, (cache,) in self.entries:
            rmsprop_update(p, g, cache, lr, alpha, eps, clip, scale)

    def adam(self, lr_t, beta1, beta2, eps_t, clip, scale) -> None:
        for p, g, (m, v) in self.entries:
            adam_update(p, g, m, v, lr_t, beta1, beta2, eps_t, clip, scale)

    def clipped_sq_norm(self, clip) -> float:
        return sum(clipped_sq_norm(g, clip) for _, g, _ in self.entries)


# ----------------------------------------------------------------------------- checks
# Twin of the kernel's SameArrays (_checks.pxi), for a build without the kernel.


class SameArrays:
    """Remembers a set of arrays that passed the Python checks: the objects (held, so their
    identities cannot be reused) and their shapes. ``matches`` tells whether a list holds those
    same objects, in order, with those same shapes."""

    def __init__(self) -> None:
        self.held: list[np.ndarray] = []
        self.shapes: list[tuple[int, ...]] = []

    def remember(self, arrays: list) -> None:
        """Keep arrays (each has passed the checks) as the set to match."""
        self.held, self.shapes = list(arrays), [a.shape for a in arrays]

    def matches(self, arrays: list) -> bool:
        """True when arrays are the remembered objects, in order, with the remembered shapes."""
        return (
            0 < len(arrays) == len(self.held)
            and all(a is b for a, b in zip(arrays, self.held))
            and all(a.shape == s for a, s in zip(arrays, self.shapes))
        )
