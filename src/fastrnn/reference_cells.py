"""The numpy twin of ``_cells.pxi``: stacked rnn / LSTM / GRU layers and dropout, function by
function; of ``_stack.pxi`` (stack_forward / stack_backward, the whole stack over one chunk);
and of ``stack_generate`` (_generate.pxi), generation built on the same layers.

Every function has the name, argument order and buffers of its Cython counterpart; model.py
calls the one or the other with the same arguments. Plain, reasonably efficient numpy: the input
projection and every weight gradient are one GEMM over the chunk; only the T recurrent steps loop.

Dimension letters: B streams, T steps, H hidden, V vocabulary, G gate blocks (rnn 1, lstm 4,
gru 3), L layers. Time-major buffers: (T, B, .). Gate blocks lie along the last axis, H each:
LSTM i, f, g, o; GRU r, z, n.

    LSTM:  [i f g o] = [sig sig tanh sig](x W + b + h_{t-1} Whh)
           c_t = f * c_{t-1} + i * g;   h_t = o * tanh(c_t)
    GRU:   [r z] = sig(x W_rz + b_rz + h_{t-1} Whh_rz);   hn = h_{t-1} Whh_n + bhn
           n = tanh(x W_n + b_n + r * hn);   h_t = (1 - z) * n + z * h_{t-1}
    rnn:   h_t = tanh(x W + b + h_{t-1} Whh)

Layer 0's input x is a character index: W is a row gather (``input_forward``) or, with an
embedding Wemb (V, E), the gathered rows emb = Wemb[x] (``embedding_forward``) are projected by
an (E, G*H) W (``project_forward``); layer l >= 1 reads the layer below's output, after
inverted dropout while training (``project_forward``).
The output layer (``head_forward``) reads the top layer, after dropout while training.

Per-layer buffers (allocated once per shape by model.py):
    gates (T, B, G*H)  in: input projection; forward leaves the gate activations (cache);
                       backward overwrites them with dL/d(pre-activation) (the rnn uses hs)
    hs    (T, B, H)    layer outputs h_t, cache
    cs    (T, B, H)    LSTM cell states c_t, cache
    tcs   (T, B, H)    LSTM tanh(c_t), cache
    hns   (T, B, H)    GRU h_{t-1} Whh_n + bhn, cache; backward overwrites it with its gradient
    dhs   (T, B, H)    dL/dh_t from above; scratch (recurrent gradients accumulate into it)
    dc    (B, H)       LSTM dL/dc carried backwards through time, scratch
    mask  (T, B, H)    dropout keep-mask scaled by 1/(1-p), input
Embedding buffers (E > 0):
    emb   (T, B, E)    embedding rows Wemb[x], cache (layer 0's input)
    demb  (T, B, E)    dL/demb, scratch
"""

from __future__ import annotations

import numpy as np

from .reference import (
    next_index,
    output_backward,
    output_forward,
    recurrence_backward,
    recurrence_forward,
    transposed_copy,
)


def sigmoid(a: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = 1 / (1 + exp(-a)), stable: with e = exp(-|a|), 1/(1+e) for a >= 0, e/(1+e) below."""
    e = np.exp(-np.abs(a))
    s = 1.0 / (1.0 + e)
    np.copyto(out, np.where(a >= 0, s, e * s))
    return out


# ----------------------------------------------------------------------------- forward


def input_forward(x, Wx, b, gates) -> None:
    """gates[t, b] = Wx[x[b, t]] + b: layer 0's input projection, a row gather (x is one-hot)."""
    np.add(Wx[x.T], b, out=gates)


def project_forward(xin, Wx, b, gates) -> None:
    """gates = xin @ Wx + b: the input projection of layer l >= 1 (xin (T, B, H)) or of an
    embedded layer 0 (xin = emb (T, B, E)), one GEMM over the chunk."""
    T, B, H = xin.shape
    np.matmul(xin.reshape(T * B, H), Wx, out=gates.reshape(T * B, -1))
    gates += b


def rnn_layer_forward(h0, Whh, hs, packed) -> None:
    """In place over t: hs[t] = tanh(hs[t] + h_{t-1} @ Whh) (hs holds the input projection)."""
    recurrence_forward(h0, Whh, hs, packed)


def lstm_layer_forward(h0, c0, Whh, gates, hs, cs, tcs, packed) -> None:
    """One LSTM layer over the chunk; gates holds x W + b in, the activations i, f, g, o out.
    (packed is the kernel's scratch for a packed Whh; numpy multiplies by Whh directly.)"""
    T, B, H = hs.shape
    h_prev, c_prev = h0, c0
    for t in range(T):
        g = gates[t]
        g += h_prev @ Whh
        sigmoid(g[:, : 2 * H], out=g[:, : 2 * H])  # i, f
        np.tanh(g[:, 2 * H : 3 * H], out=g[:, 2 * H : 3 * H])  # g
        sigmoid(g[:, 3 * H :], out=g[:, 3 * H :])  # o
        i, f, gg, o = g[:, :H], g[:, H : 2 * H], g[:, 2 * H : 3 * H], g[:, 3 * H :]
        np.multiply(f, c_prev, out=cs[t])
        cs[t] += i * gg  # c = f * c_prev + i * g
        np.tanh(cs[t], out=tcs[t])
        np.multiply(o, tcs[t], out=hs[t])  # h = o * tanh(c)
        h_prev, c_prev = hs[t], cs[t]


def gru_layer_forward(h0, Whh, bhn, gates, hns, hs, packed) -> None:
    """One GRU layer over the chunk; gates holds x W + b in, the activations r, z, n out.
    (packed is the kernel's scratch for a packed Whh; numpy multiplies by Whh directly.)"""
    T, B, H = hs.shape
    h_prev = h0
    for t in range(T):
        g = gates[t]
        g[:, : 2 * H] += h_prev @ Whh[:, : 2 * H]
        np.matmul(h_prev, Whh[:, 2 * H :], out=hns[t])
        hns[t] += bhn  # hn = h_prev Whh_n + bhn
        sigmoid(g[:, : 2 * H], out=g[:, : 2 * H])  # r, z
        r, z, n = g[:, :H], g[:, H : 2 * H], g[:, 2 * H :]
        n += r * hns[t]
        np.tanh(n, out=n)  # n = tanh(x W_n + b_n + r*hn)
        np.multiply(1.0 - z, n, out=hs[t])
        hs[t] += z * h_prev  # h = (1-z) n + z h_prev
        h_prev = hs[t]


def dropout_forward(h, mask, out) -> None:
    """out = h * mask (inverted dropout: mask is keep / (1 - p))."""
    np.multiply(h, mask, out=out)


def head_forward(h, Why, by, y, probs) -> float:
    """probs = softmax(h @ Why + by); returns the mean cross-entropy of y (see output_forward)."""
    return output_forward(h, Why, by, y, probs)


# ----------------------------------------------------------------------------- backward


def head_backward(h, Why, y, probs, dh, dWhy, dby) -> None:
    """dWhy, dby and dh = dL/dh from the head (see output_backward)."""
    output_backward(h, Why, y, probs, dh, dWhy, dby)


def dropout_backward(dh, mask) -> None:
    """From out = h * mask: dh *= mask, in place."""
    dh *= mask


def recurrent_weight_backward(h0, hs, dgates, dWhh) -> None:
    """From gates_t += h_{t-1} @ Whh:  dWhh = h0^T @ dgates[0] + hs[:T-1]^T @ dgates[1:]."""
    T, B, H = hs.shape
    np.matmul(h0.T, dgates[0], out=dWhh)
    if T > 1:
        dWhh += hs[:-1].reshape(-1, H).T @ dgates[1:].reshape((T - 1) * B, -1)


def rnn_layer_backward(h0, Whh, hs, dhs, dWhh, dh0, packed) -> None:
    """BPTT of rnn_layer_forward: dhs becomes dL/dpre (see recurrence_backward); then dWhh."""
    recurrence_backward(h0, Whh, hs, dhs, dh0, packed)
    recurrent_weight_backward(h0, hs, dhs, dWhh)


def lstm_layer_backward(h0, c0, Whh, gates, hs, cs, tcs, dhs, dc, dWhh, dh0, dc0, packed) -> None:
    """BPTT of lstm_layer_forward, t = T-1..0; gates becomes dL/d(pre-activation).
    packed holds a contiguous Whh^T (4H, H) during the recurrence (the kernel: packed Whh^T)."""
    T, B, H = hs.shape
    WhhT = transposed_copy(packed, Whh)
    dc.fill(0.0)
    for t in range(T - 1, -1, -1):
        g, dh = gates[t], dhs[t]
        i, f = g[:, :H].copy(), g[:, H : 2 * H].copy()
        gg, o = g[:, 2 * H : 3 * H].copy(), g[:, 3 * H :].copy()
        c_prev = cs[t - 1] if t > 0 else c0
        do = dh * tcs[t]  # h = o * tanh(c)
        dc += dh * o * (1.0 - tcs[t] * tcs[t])
        np.multiply(dc * gg, i * (1.0 - i), out=g[:, :H])  # c = f c_prev + i g, i = sig
        np.multiply(dc * c_prev, f * (1.0 - f), out=g[:, H : 2 * H])
        np.multiply(dc * i, 1.0 - gg * gg, out=g[:, 2 * H : 3 * H])  # g = tanh
        np.multiply(do, o * (1.0 - o), out=g[:, 3 * H :])
        dc *= f  # dc_{t-1}
        # gates_t += h_{t-1} @ Whh  ->  dh_{t-1} += dgates_t @ Whh^T
        if t > 0:
            dhs[t - 1] += g @ WhhT
        else:
            np.matmul(g, WhhT, out=dh0)
    np.copyto(dc0, dc)
    recurrent_weight_backward(h0, hs, gates, dWhh)


def gru_layer_backward(h0, Whh, gates, hns, hs, dhs, dWhh, dbhn, dh0, packed) -> None:
    """BPTT of gru_layer_forward, t = T-1..0; gates becomes dL/d(pre-activation) of x W + b,
    hns becomes dL/dhn. packed holds a contiguous Whh^T (3H, H) during the recurrence (the
    kernel: packed Whh[:, :2H]^T and Whh[:, 2H:]^T)."""
    T, B, H = hs.shape
    WhhT = transposed_copy(packed, Whh)
    dh0.fill(0.0)
    for t in range(T - 1, -1, -1):
        g, dh = gates[t], dhs[t]
        r, z, n = g[:, :H].copy(), g[:, H : 2 * H].copy(), g[:, 2 * H :].copy()
        h_prev = hs[t - 1] if t > 0 else h0
        dh_prev = dhs[t - 1] if t > 0 else dh0
        # h = (1-z) n + z h_prev; n = tanh(a)
        da = dh * (1.0 - z) * (1.0 - n * n)
        np.multiply(da * hns[t], r * (1.0 - r), out=g[:, :H])  # a = x W_n + b_n + r * hn
        np.multiply(dh * (h_prev - n), z * (1.0 - z), out=g[:, H : 2 * H])
        g[:, 2 * H :] = da
        np.multiply(da, r, out=hns[t])  # dhn
        dh_prev += dh * z
        # [r z] pre += h_prev @ Whh_rz;  hn = h_prev @ Whh_n + bhn
        dh_prev += g[:, : 2 * H] @ WhhT[: 2 * H]
        dh_prev += hns[t] @ WhhT[2 * H :]
    np.matmul(h0.T, gates[0, :, : 2 * H], out=dWhh[:, : 2 * H])
    np.matmul(h0.T, hns[0], out=dWhh[:, 2 * H :])
    if T > 1:
        hp = hs[:-1].reshape(-1, H).T
        dWhh[:, : 2 * H] += hp @ gates[1:, :, : 2 * H].reshape(-1, 2 * H)
        dWhh[:, 2 * H :] += hp @ hns[1:].reshape(-1, H)
    np.sum(hns.reshape(-1, H), axis=0, out=dbhn)


def input_backward(x, dgates, dWx, db) -> None:
    """From gates[t, b] = Wx[x[b, t]] + b: dWx[v] = sum of dgates rows with input v, db = sum."""
    GH = dgates.shape[-1]
    dWx.fill(0.0)
    np.add.at(dWx, x.T.reshape(-1), dgates.reshape(-1, GH))
    np.sum(dgates.reshape(-1, GH), axis=0, out=db)


def project_backward(xin, Wx, dgates, dWx, db, dxin) -> None:
    """From gates = xin @ Wx + b: dWx = xin^T @ dgates; db = sum of rows; dxin = dgates @ Wx^T."""
    T, B, H = xin.shape
    dg = dgates.reshape(T * B, -1)
    np.matmul(xin.reshape(T * B, H).T, dg, out=dWx)
    np.sum(dg, axis=0, out=db)
    np.matmul(dg, Wx.T, out=dxin.reshape(T * B, H))


# ----------------------------------------------------------------------------- embedding
# Layer 0 of an embedded model: emb = Wemb[x], then project_forward(emb, Wxh, bh, gates);
# backward: project_backward(emb, Wxh, dgates, dWxh, dbh, demb), then embedding_backward.


def embedding_forward(x, Wemb, emb) -> None:
    """emb[t, b] = Wemb[x[b, t]]: the embedding rows of the chunk's inputs, a row gather.
    x (B, T) int in [0, V), input; Wemb (V, E); emb (T, B, E), output."""
    np.take(Wemb, x.T, axis=0, out=emb)


def embedding_backward(x, demb, dWemb) -> None:
    """From emb[t, b] = Wemb[x[b, t]]: dWemb[v] = sum of the demb rows whose input is v
    (scatter-add). demb (T, B, E), input; dWemb (V, E), output, overwritten."""
    dWemb.fill(0.0)
    np.add.at(dWemb, x.T.reshape(-1), demb.reshape(-1, demb.shape[-1]))


# ----------------------------------------------------------------------------- the stack
# Twin of _stack.pxi: every layer, the dropout, the head and the loss over one chunk, through
# the layer functions above. Cell numbers: 0 rnn, 1 lstm, 2 gru (as stack_generate's). The
# buffers are those of _stack.pxi, stacked along a leading L axis; stand-ins (unused arrays)
# where a cell, an embedding or dropout has none.

RNN_CELL, LSTM_CELL, GRU_CELL = 0, 1, 2


def stack_input_forward(x, Wemb, E, Wx, b, emb, gates) -> None:
    """Layer 0's input projection: gates = Wx[x] + b (one-hot x, E = 0: a row gather), or
    emb = Wemb[x]; gates = emb @ Wx + b."""
    if E == 0:
        input_forward(x, Wx, b, gates)
        return
    embedding_forward(x, Wemb, emb)
    project_forward(emb, Wx, b, gates)


def cell_layer_forward(cell, h0, c0, Whh, bhn, gates, hs, cs, tcs, hns, packed) -> None:
    """One layer of the cell over the chunk, gates holding its input projection (the rnn's
    gates are its hs): the cell's *_layer_forward."""
    if cell == LSTM_CELL:
        lstm_layer_forward(h0, c0, Whh, gates, hs, cs, tcs, packed)
    elif cell == GRU_CELL:
        gru_layer_forward(h0, Whh, bhn, gates, hns, hs, packed)
    else:
        rnn_layer_forward(h0, Whh, hs, packed)


def stack_forward(
    cell,
    dropping,
    x,
    y,
    h0,
    c0,
    Wemb,
    Wxhs,
    Whhs,
    bhs,
    bhns,
    Why,
    by,
    masks,
    emb,
    gates,
    hs,
    cs,
    tcs,
    hns,
    drops,
    probs,
    packed,
) -> float:
    """Every layer, the dropout (when dropping), the head and the loss over one chunk; fills
    the caches, returns the mean loss (see _stack.pxi for every buffer)."""
    stack_layers_forward(
        cell,
        dropping,
        x,
        h0,
        c0,
        Wemb,
        Wxhs,
        Whhs,
        bhs,
        bhns,
        masks,
        emb,
        gates,
        hs,
        cs,
        tcs,
        hns,
        drops,
        packed,
        V=by.shape[0],
    )
    L = hs.shape[0]
    return head_forward(drops[L - 1] if dropping else hs[L - 1], Why, by, y, probs)


def stack_layers_forward(
    cell,
    dropping,
    x,
    h0,
    c0,
    Wemb,
    Wxhs,
    Whhs,
    bhs,
    bhns,
    masks,
    emb,
    gates,
    hs,
    cs,
    tcs,
    hns,
    drops,
    packed,
    V,
) -> None:
    """stack_forward without the head: every layer (and the dropout when dropping) over the
    chunk into the caches; what a step of sampling needs (V: the vocabulary size, which tells
    Wemb from its stand-in)."""
    L = hs.shape[0]
    E = emb.shape[2] if Wemb.shape[0] == V else 0
    for layer in range(L):
        if layer == 0:
            stack_input_forward(x, Wemb, E, Wxhs[0], bhs[0], emb, gates[0])
        else:
            below = drops[layer - 1] if dropping else hs[layer - 1]
            project_forward(below, Wxhs[layer], bhs[layer], gates[layer])
        cell_layer_forward(
            cell,
            h0[layer],
            c0[layer],
            Whhs[layer],
            bhns[layer],
            gates[layer],
            hs[layer],
            cs[layer],
            tcs[layer],
            hns[layer],
            packed,
        )
        if dropping:
            dropout_forward(hs[layer], masks[layer], drops[layer])


def cell_layer_backward(
    cell, h0, c0, Whh, gates, hs, cs, tcs, hns, dhs, dc, dWhh, dbhn, dh0, dc0, packed
):
    """BPTT of cell_layer_forward from dhs = dL/dh: the cell's *_layer_backward. Returns the
    buffer that then holds dL/d(input projection): the rnn's dhs, the others' gates."""
    if cell == LSTM_CELL:
        lstm_layer_backward(h0, c0, Whh, gates, hs, cs, tcs, dhs, dc, dWhh, dh0, dc0, packed)
        return gates
    if cell == GRU_CELL:
        gru_layer_backward(h0, Whh, gates, hns, hs, dhs, dWhh, dbhn, dh0, packed)
        return gates
    rnn_layer_backward(h0, Whh, hs, dhs, dWhh, dh0, packed)
    return dhs


def stack_input_backward(x, emb, E, Wx, dgates, dWx, db, demb, dWemb) -> None:
    """Gradients of stack_input_forward from dgates: dWx, db, and with an embedding
    demb = dgates @ Wx^T, then dWemb."""
    if E == 0:
        input_backward(x, dgates, dWx, db)
        return
    project_backward(emb, Wx, dgates, dWx, db, demb)
    embedding_backward(x, demb, dWemb)


def stack_backward(
    cell,
    dropping,
    x,
    y,
    h0,
    c0,
    Wemb,
    Wxhs,
    Whhs,
    Why,
    masks,
    emb,
    gates,
    hs,
    cs,
    tcs,
    hns,
    drops,
    probs,
    dhs,
    dc,
    demb,
    packed,
    dWemb,
    dWxhs,
    dWhhs,
    dbhs,
    dbhns,
    dWhy,
    dby,
    dh0,
    dc0,
) -> None:
    """Every gradient of stack_forward's loss, from its caches, layer by layer from the head
    down (see _stack.pxi for every buffer)."""
    L, V = hs.shape[0], Why.shape[1]
    E = emb.shape[2] if Wemb.shape[0] == V else 0
    head_backward(drops[L - 1] if dropping else hs[L - 1], Why, y, probs, dhs[L - 1], dWhy, dby)
    if dropping:
        dropout_backward(dhs[L - 1], masks[L - 1])
    for layer in range(L - 1, -1, -1):
        dgates = cell_layer_backward(
            cell,
            h0[layer],
            c0[layer],
            Whhs[layer],
            gates[layer],
            hs[layer],
            cs[layer],
            tcs[layer],
            hns[layer],
            dhs[layer],
            dc,
            dWhhs[layer],
            dbhns[layer],
            dh0[layer],
            dc0[layer],
            packed,
        )
        if layer == 0:
            stack_input_backward(x, emb, E, Wxhs[0], dgates, dWxhs[0], dbhs[0], demb, dWemb)
            break
        below = drops[layer - 1] if dropping else hs[layer - 1]
        project_backward(below, Wxhs[layer], dgates, dWxhs[layer], dbhs[layer], dhs[layer - 1])
        if dropping:
            dropout_backward(dhs[layer - 1], masks[layer - 1])


# ----------------------------------------------------------------------------- generation
# Twin of stack_generate (_generate.pxi): every cell and depth, N streams, one step at a time
# through the layer forwards above with T = 1 (cell numbers as the stack's).


def input_step(xs, Wemb, E, Wxh, bh, emb, gates) -> None:
    """Layer 0's projection: gates = Wxh[xs] + bh (one-hot, E = 0), or
    emb = Wemb[xs]; gates = emb @ Wxh + bh."""
    if E == 0:
        np.add(Wxh[xs], bh, out=gates)
        return
    np.take(Wemb, xs, axis=0, out=emb)
    np.add(emb @ Wxh, bh, out=gates)


def layer_step(cell, xin, Wxh, Whh, bh, bhn, h, c, gates, hn, h_new, c_new, tc) -> None:
    """One step of one layer for N streams: h (N, H) (and the LSTM's c) updated in place.
    xin (N, K) is the layer's input, or None when gates already holds layer 0's projection."""
    if xin is not None:
        np.add(xin @ Wxh, bh, out=gates)
    if cell == GRU_CELL:
        gru_layer_forward(h, Whh, bhn, gates[None], hn[None], h_new[None], None)
    elif cell == LSTM_CELL:
        lstm_layer_forward(h, c, Whh, gates[None], h_new[None], c_new[None], tc[None], None)
        c[...] = c_new
    else:
        rnn_layer_forward(h, Whh, gates[None], None)
        h_new[...] = gates
    h[...] = h_new


def head_step(h, Why, packed, by, logits) -> None:
    """logits (N, V) = h (N, H) @ Why + by (packed: the kernel's packed Why, unused here)."""
    np.add(h @ Why, by, out=logits)


def stack_generate(
    cell,
    Wemb,
    Wxhs,
    Whhs,
    bhs,
    bhns,
    Why,
    by,
    h,
    c,
    xs,
    uniforms,
    temperature,
    top_k,
    greedy,
    out,
    emb,
    gates,
    hn,
    h_new,
    c_new,
    tc,
    logits,
    packed,
    packed_whh,
    z,
    scratch,
) -> None:
    """Generate out.shape[1] indices for each of the out.shape[0] streams, each read back as
    that stream's next input, starting from xs; h (L, N, H) and the LSTM's c updated in place.
    uniforms[n, b] is stream b's draw at step n. See _generate.pxi for every buffer."""
    V = by.shape[0]
    E = emb.shape[1] if Wemb.shape[0] == V else 0
    for n in range(out.shape[1]):
        input_step(xs, Wemb, E, Wxhs[0], bhs[0], emb, gates)
        for layer in range(h.shape[0]):
            layer_step(
                cell,
                None if layer == 0 else h[layer - 1],
                Wxhs[layer],
                Whhs[layer],
                bhs[layer],
                bhns[layer],
                h[layer],
                c[layer],
                gates,
                hn,
                h_new,
                c_new,
                tc,
            )
        head_step(h[-1], Why, packed, by, logits)
        for b in range(xs.shape[0]):
            xs[b] = next_index(logits[b], temperature, top_k, greedy, uniforms[n, b])
            out[b, n] = xs[b]
