# Stacked layers: rnn / LSTM / GRU layer forward and backward, input projections, dropout, head.
#
# Its numpy twin is reference_cells.py: same function names, same argument order, same buffers.
# These kernels share the BLAS shim (_blas.pxd), the loop front doors (_loops.pxd) and the cdef
# helpers of _rnn.pxi (embed_forward, recurrence_forward/backward, output_forward/backward);
# model.py calls them layer by layer,
# each call one nogil region around its whole loop (the Python loop over L layers costs L calls
# per chunk, never one per step).
#
# Dimension letters: B streams, T steps, H hidden, V vocabulary, G gate blocks (rnn 1, lstm 4,
# gru 3), GH = G*H. Time-major buffers (T, B, .). Gate blocks along the last axis, H each:
# LSTM i, f, g, o; GRU r, z, n.
#
#     LSTM:  [i f g o] = [sig sig tanh sig](x W + b + h_{t-1} Whh)
#            c_t = f * c_{t-1} + i * g;   h_t = o * tanh(c_t)
#     GRU:   [r z] = sig(x W_rz + b_rz + h_{t-1} Whh_rz);   hn = h_{t-1} Whh_n + bhn
#            n = tanh(x W_n + b_n + r * hn);   h_t = (1 - z) * n + z * h_{t-1}
#     rnn:   h_t = tanh(x W + b + h_{t-1} Whh)
#
# Per-layer buffers (validated and allocated once per shape in model.py):
#     gates (T, B, GH)  in: input projection; forward leaves the gate activations (cache);
#                       backward overwrites them with dL/d(pre-activation) (the rnn uses hs)
#     hs    (T, B, H)   layer outputs h_t, cache
#     cs    (T, B, H)   LSTM cell states c_t, cache;   tcs (T, B, H) tanh(c_t), cache
#     hns   (T, B, H)   GRU h_{t-1} Whh_n + bhn, cache; backward overwrites it with dL/dhn
#     dhs   (T, B, H)   dL/dh_t from above, scratch (recurrent gradients accumulate into it)
#     dc    (B, H)      LSTM dL/dc carried backwards through time, scratch
#     mask  (T, B, H)   dropout keep-mask / (1 - p), input
#     packed (P,)       scratch: Whh packed for the recurrent product (forward), then Whh^T
#                       (backward); the GRU packs its [r z] and n blocks one after the other.
#                       P = the largest of packed_size(H, GH), packed_size(GH, H) and, for the
#                       GRU, packed_size(H, 2H) + packed_size(H, H) and
#                       packed_size(2H, H) + packed_size(H, H) (model.py computes it)
# With an embedding Wemb (V, E), layer 0 reads its rows (embedding_forward / _backward):
#     emb   (T, B, E)   Wemb[x], cache: project_forward's input for layer 0
#     demb  (T, B, E)   dL/demb, scratch: project_backward's dxin for layer 0
# Only the recurrence is sequential: one packed recurrent product (two for the GRU) and one
# vectorised gate loop per step. Input projections, dropout, the head and every weight gradient
# are one pass or one GEMM over all T*B rows. Nothing is allocated inside nogil.


# ----------------------------------------------------------------------------- forward

def input_forward(const int[:, ::1] x, const floating[:, ::1] Wx, const floating[::1] b,
                  floating[:, :, ::1] gates):
    """gates[t, b] = Wx[x[b, t]] + b: layer 0's input projection, a row gather (x is one-hot)."""
    with nogil:
        embed_forward(x, Wx, b, gates)


def project_forward(const floating[:, :, ::1] xin, const floating[:, ::1] Wx,
                    const floating[::1] b, floating[:, :, ::1] gates):
    """gates = xin @ Wx + b: the input projection of layer l >= 1 (xin (T, B, H)) or of an
    embedded layer 0 (xin = emb (T, B, E)), one GEMM over the chunk."""
    cdef Py_ssize_t r, n = xin.shape[0] * xin.shape[1]
    cdef int H = <int> xin.shape[2], GH = <int> gates.shape[2]
    cdef floating *g = &gates[0, 0, 0]
    with nogil:
        for r in range(n):
            memcpy(g + r * GH, &b[0], GH * sizeof(floating))
        # gates = xin @ Wx + gates   (gates already holds b in every row)
        gemm(False, False, <int> n, GH, H, <floating> 1, &xin[0, 0, 0], H, &Wx[0, 0], GH,
             <floating> 1, g, GH)


def rnn_layer_forward(const floating[:, ::1] h0, const floating[:, ::1] Whh,
                      floating[:, :, ::1] hs, floating[::1] packed):
    """In place over t: hs[t] = tanh(hs[t] + h_{t-1} @ Whh) (hs holds the input projection)."""
    with nogil:
        recurrence_forward(h0, Whh, hs, &packed[0])


def lstm_layer_forward(const floating[:, ::1] h0, const floating[:, ::1] c0,
                       const floating[:, ::1] Whh, floating[:, :, ::1] gates,
                       floating[:, :, ::1] hs, floating[:, :, ::1] cs, floating[:, :, ::1] tcs,
                       floating[::1] packed):
    """One LSTM layer over the chunk; gates holds x W + b in, the activations i, f, g, o out.
    h0, c0 (B, H) the carried state; Whh (H, 4H); outputs hs, cs, tcs (T, B, H)."""
    cdef Py_ssize_t t, b, T = hs.shape[0], B = hs.shape[1], H = hs.shape[2]
    cdef int GH = <int> gates.shape[2]
    cdef const floating *h_prev = &h0[0, 0]
    cdef const floating *c_prev = &c0[0, 0]
    with nogil:
        recurrent_pack(&packed[0], &Whh[0, 0], <int> H, GH, GH, False)
        for t in range(T):
            # gates[t] += h_prev @ Whh
            recurrent_product(h_prev, <int> H, &packed[0], <int> H, GH, &gates[t, 0, 0], GH,
                              <int> B, True)
            # i, f, g, o = activations;  c = f * c_prev + i * g;  h = o * tanh(c)
            for b in range(B):
                lstm_cell_forward(&gates[t, b, 0], c_prev + b * H, &cs[t, b, 0], &tcs[t, b, 0],
                                  &hs[t, b, 0], H)
            h_prev, c_prev = &hs[t, 0, 0], &cs[t, 0, 0]


def gru_layer_forward(const floating[:, ::1] h0, const floating[:, ::1] Whh,
                      const floating[::1] bhn, floating[:, :, ::1] gates,
                      floating[:, :, ::1] hns, floating[:, :, ::1] hs, floating[::1] packed):
    """One GRU layer over the chunk; gates holds x W + b in, the activations r, z, n out.
    h0 (B, H); Whh (H, 3H); bhn (H,); outputs hns, hs (T, B, H)."""
    cdef Py_ssize_t t, b, T = hs.shape[0], B = hs.shape[1], H = hs.shape[2]
    cdef int GH = <int> gates.shape[2]
    cdef const floating *h_prev = &h0[0, 0]
    cdef floating *packed_rz = &packed[0]
    cdef floating *packed_n = packed_after(packed_rz, <int> H, <int> (2 * H))
    with nogil:
        recurrent_pack(packed_rz, &Whh[0, 0], <int> H, <int> (2 * H), GH, False)
        recurrent_pack(packed_n, &Whh[0, 2 * H], <int> H, <int> H, GH, False)
        for t in range(T):
            # gates[t][:, :2H] += h_prev @ Whh[:, :2H]
            recurrent_product(h_prev, <int> H, packed_rz, <int> H, <int> (2 * H),
                              &gates[t, 0, 0], GH, <int> B, True)
            # hns[t] = h_prev @ Whh[:, 2H:] + bhn
            for b in range(B):
                memcpy(&hns[t, b, 0], &bhn[0], H * sizeof(floating))
            recurrent_product(h_prev, <int> H, packed_n, <int> H, <int> H, &hns[t, 0, 0],
                              <int> H, <int> B, True)
            # r, z = sig;  n = tanh(x W_n + b_n + r * hn);  h = (1 - z) * n + z * h_prev
            for b in range(B):
                gru_cell_forward(&gates[t, b, 0], &hns[t, b, 0], h_prev + b * H, &hs[t, b, 0], H)
            h_prev = &hs[t, 0, 0]


def dropout_forward(const floating[:, :, ::1] h, const floating[:, :, ::1] mask,
                    floating[:, :, ::1] out):
    """out = h * mask (inverted dropout: mask is keep / (1 - p))."""
    with nogil:
        mul(&out[0, 0, 0], &h[0, 0, 0], &mask[0, 0, 0], h.shape[0] * h.shape[1] * h.shape[2])


def head_forward(const floating[:, :, ::1] h, const floating[:, ::1] Why,
                 const floating[::1] by, const int[:, ::1] y, floating[:, ::1] probs):
    """probs = softmax(h @ Why + by); returns the mean cross-entropy of y (see output_forward)."""
    cdef double loss
    with nogil:
        loss = output_forward(h, Why, by, y, probs)
    return loss


# ----------------------------------------------------------------------------- backward

def head_backward(const floating[:, :, ::1] h, const floating[:, ::1] Why, const int[:, ::1] y,
                  floating[:, ::1] probs, floating[:, :, ::1] dh, floating[:, ::1] dWhy,
                  floating[::1] dby):
    """dWhy, dby and dh = dL/dh from the head (see output_backward)."""
    with nogil:
        output_backward(h, Why, y, probs, dh, dWhy, dby)


def dropout_backward(floating[:, :, ::1] dh, const floating[:, :, ::1] mask):
    """From out = h * mask: dh *= mask, in place."""
    with nogil:
        scale(&dh[0, 0, 0], &mask[0, 0, 0], dh.shape[0] * dh.shape[1] * dh.shape[2])


cdef void recurrent_weight_backward(const floating *h0, const floating *hs,
                                    const floating *dgates, int ldg, floating *dWhh, int ldw,
                                    int T, int B, int H, int N) noexcept nogil:
    """From gates_t[:, :N] += h_{t-1} @ Whh[:, :N], with h0 (B, H), hs (T, B, H), dgates
    (T, B, ldg) and dWhh (H, ldw) given by their first element:
    dWhh[:, :N] = h0^T @ dgates[0][:, :N] + hs[:T-1]^T @ dgates[1:][:, :N]."""
    # dWhh[:, :N] = h0^T @ dgates[0][:, :N]
    gemm(True, False, H, N, B, <floating> 1, h0, H, dgates, ldg, <floating> 0, dWhh, ldw)
    if T > 1:
        # dWhh[:, :N] += hs[:T-1]^T @ dgates[1:][:, :N]   (one GEMM over (T-1)*B rows)
        gemm(True, False, H, N, (T - 1) * B, <floating> 1, hs, H, dgates + B * ldg, ldg,
             <floating> 1, dWhh, ldw)


def rnn_layer_backward(const floating[:, ::1] h0, const floating[:, ::1] Whh,
                       const floating[:, :, ::1] hs, floating[:, :, ::1] dhs,
                       floating[:, ::1] dWhh, floating[:, ::1] dh0, floating[::1] packed):
    """BPTT of rnn_layer_forward: dhs becomes dL/dpre (see recurrence_backward); then dWhh."""
    cdef int T = <int> hs.shape[0], B = <int> hs.shape[1], H = <int> hs.shape[2]
    with nogil:
        recurrence_backward(h0, Whh, hs, dhs, dh0, &packed[0])
        recurrent_weight_backward(&h0[0, 0], &hs[0, 0, 0], &dhs[0, 0, 0], H, &dWhh[0, 0], H,
                                  T, B, H, H)


def lstm_layer_backward(const floating[:, ::1] h0, const floating[:, ::1] c0,
                        const floating[:, ::1] Whh, floating[:, :, ::1] gates,
                        const floating[:, :, ::1] hs, const floating[:, :, ::1] cs,
                        const floating[:, :, ::1] tcs, floating[:, :, ::1] dhs,
                        floating[:, ::1] dc, floating[:, ::1] dWhh, floating[:, ::1] dh0,
                        floating[:, ::1] dc0, floating[::1] packed):
    """BPTT of lstm_layer_forward, t = T-1..0; gates becomes dL/d(pre-activation).
    Outputs dWhh (H, 4H), dh0 and dc0 (B, H); packed holds Whh^T during the recurrence."""
    cdef Py_ssize_t t, b, T = hs.shape[0], B = hs.shape[1], H = hs.shape[2]
    cdef int GH = <int> gates.shape[2]
    cdef const floating *c_prev
    cdef floating *dh_prev
    cdef bint into_prev
    with nogil:
        recurrent_pack(&packed[0], &Whh[0, 0], GH, <int> H, GH, True)
        memset(&dc[0, 0], 0, B * H * sizeof(floating))
        for t in range(T - 1, -1, -1):
            c_prev = &cs[t - 1, 0, 0] if t > 0 else &c0[0, 0]
            # h = o * tanh(c), c = f * c_prev + i * g, gates = act(pre)  ->  dpre, dc_prev
            for b in range(B):
                lstm_cell_backward(&gates[t, b, 0], c_prev + b * H, &tcs[t, b, 0],
                                   &dhs[t, b, 0], &dc[b, 0], H)
            into_prev = t > 0
            dh_prev = &dhs[t - 1, 0, 0] if into_prev else &dh0[0, 0]
            # gates_t += h_{t-1} @ Whh  ->  dh_prev = dgates_t @ Whh^T (+ dh_prev if t > 0)
            recurrent_product(&gates[t, 0, 0], GH, &packed[0], GH, <int> H, dh_prev, <int> H,
                              <int> B, into_prev)
        memcpy(&dc0[0, 0], &dc[0, 0], B * H * sizeof(floating))
        recurrent_weight_backward(&h0[0, 0], &hs[0, 0, 0], &gates[0, 0, 0], GH, &dWhh[0, 0], GH,
                                  <int> T, <int> B, <int> H, GH)


def gru_layer_backward(const floating[:, ::1] h0, const floating[:, ::1] Whh,
                       floating[:, :, ::1] gates, floating[:, :, ::1] hns,
                       const floating[:, :, ::1] hs, floating[:, :, ::1] dhs,
                       floating[:, ::1] dWhh, floating[::1] dbhn, floating[:, ::1] dh0,
                       floating[::1] packed):
    """BPTT of gru_layer_forward, t = T-1..0; gates becomes dL/d(pre-activation) of x W + b,
    hns becomes dL/dhn. Outputs dWhh (H, 3H), dbhn (H,), dh0 (B, H); packed holds
    Whh[:, :2H]^T and Whh[:, 2H:]^T during the recurrence."""
    cdef Py_ssize_t t, b, T = hs.shape[0], B = hs.shape[1], H = hs.shape[2]
    cdef int GH = <int> gates.shape[2]
    cdef const floating *h_prev
    cdef floating *dh_prev
    cdef floating *packed_rz = &packed[0]
    cdef floating *packed_n = packed_after(packed_rz, <int> (2 * H), <int> H)
    with nogil:
        recurrent_pack(packed_rz, &Whh[0, 0], <int> (2 * H), <int> H, GH, True)
        recurrent_pack(packed_n, &Whh[0, 2 * H], <int> H, <int> H, GH, True)
        memset(&dh0[0, 0], 0, B * H * sizeof(floating))
        for t in range(T - 1, -1, -1):
            h_prev = &hs[t - 1, 0, 0] if t > 0 else &h0[0, 0]
            dh_prev = &dhs[t - 1, 0, 0] if t > 0 else &dh0[0, 0]
            # h = (1-z) n + z h_prev, n = tanh(a + r hn), r, z = sig  ->  dpre, dhn; dh_prev += dh z
            for b in range(B):
                gru_cell_backward(&gates[t, b, 0], &hns[t, b, 0], h_prev + b * H, &dhs[t, b, 0],
                                  dh_prev + b * H, H)
            # [r z] pre += h_prev @ Whh[:, :2H]  ->  dh_prev += dgates_t[:, :2H] @ Whh[:, :2H]^T
            recurrent_product(&gates[t, 0, 0], GH, packed_rz, <int> (2 * H), <int> H, dh_prev,
                              <int> H, <int> B, True)
            # hn = h_prev @ Whh[:, 2H:] + bhn  ->  dh_prev += dhn_t @ Whh[:, 2H:]^T
            recurrent_product(&hns[t, 0, 0], <int> H, packed_n, <int> H, <int> H, dh_prev,
                              <int> H, <int> B, True)
        recurrent_weight_backward(&h0[0, 0], &hs[0, 0, 0], &gates[0, 0, 0], GH, &dWhh[0, 0], GH,
                                  <int> T, <int> B, <int> H, <int> (2 * H))
        recurrent_weight_backward(&h0[0, 0], &hs[0, 0, 0], &hns[0, 0, 0], <int> H,
                                  &dWhh[0, 2 * H], GH, <int> T, <int> B, <int> H, <int> H)
        # dbhn = dhn.sum over all T*B rows
        column_sums(&hns[0, 0, 0], T * B, H, <floating> 1, &dbhn[0])


def input_backward(const int[:, ::1] x, const floating[:, :, ::1] dgates,
                   floating[:, ::1] dWx, floating[::1] db):
    """From gates[t, b] = Wx[x[b, t]] + b: dWx[v] = sum of dgates rows with input v, db = sum."""
    cdef Py_ssize_t t, b, T = dgates.shape[0], B = dgates.shape[1], GH = dgates.shape[2]
    with nogil:
        memset(&dWx[0, 0], 0, dWx.shape[0] * GH * sizeof(floating))
        for t in range(T):
            for b in range(B):
                accumulate(&dWx[x[b, t], 0], &dgates[t, b, 0], GH)
        column_sums(&dgates[0, 0, 0], T * B, GH, <floating> 1, &db[0])


def project_backward(const floating[:, :, ::1] xin, const floating[:, ::1] Wx,
                     const floating[:, :, ::1] dgates, floating[:, ::1] dWx, floating[::1] db,
                     floating[:, :, ::1] dxin):
    """From gates = xin @ Wx + b: dWx = xin^T @ dgates; db = sum of rows; dxin = dgates @ Wx^T."""
    cdef int n = <int> (xin.shape[0] * xin.shape[1]), H = <int> xin.shape[2]
    cdef int GH = <int> dgates.shape[2]
    with nogil:
        # dWx = xin^T @ dgates
        gemm(True, False, H, GH, n, <floating> 1, &xin[0, 0, 0], H, &dgates[0, 0, 0], GH,
             <floating> 0, &dWx[0, 0], GH)
        # db = dgates.sum(axis=0)
        column_sums(&dgates[0, 0, 0], n, GH, <floating> 1, &db[0])
        # dxin = dgates @ Wx^T
        gemm(False, True, n, H, GH, <floating> 1, &dgates[0, 0, 0], GH, &Wx[0, 0], GH,
             <floating> 0, &dxin[0, 0, 0], H)


# ----------------------------------------------------------------------------- embedding
# Layer 0 of an embedded model: emb = Wemb[x], then project_forward(emb, Wxh, bh, gates);
# backward: project_backward(emb, Wxh, dgates, dWxh, dbh, demb), then embedding_backward.

def embedding_forward(const int[:, ::1] x, const floating[:, ::1] Wemb,
                      floating[:, :, ::1] emb):
    """emb[t, b] = Wemb[x[b, t]]: the embedding rows of the chunk's inputs, a row gather.
    x (B, T) int32 in [0, V), input; Wemb (V, E); emb (T, B, E), output."""
    cdef Py_ssize_t t, b, T = emb.shape[0], B = emb.shape[1], E = emb.shape[2]
    with nogil:
        for t in range(T):
            for b in range(B):
                memcpy(&emb[t, b, 0], &Wemb[x[b, t], 0], E * sizeof(floating))


def embedding_backward(const int[:, ::1] x, const floating[:, :, ::1] demb,
                       floating[:, ::1] dWemb):
    """From emb[t, b] = Wemb[x[b, t]]: dWemb[v] = sum of the demb rows whose input is v
    (scatter-add). demb (T, B, E), input; dWemb (V, E), output, overwritten."""
    cdef Py_ssize_t t, b, T = demb.shape[0], B = demb.shape[1], E = demb.shape[2]
    with nogil:
        memset(&dWemb[0, 0], 0, dWemb.shape[0] * E * sizeof(floating))
        for t in range(T):
            for b in range(B):
                accumulate(&dWemb[x[b, t], 0], &demb[t, b, 0], E)
