# Single-layer rnn: forward and full-BPTT backward over one chunk.
#
# Its numpy twin is ``reference.py``: same function names, same argument order, same buffers.
# Read them side by side; the numpy expression each BLAS call computes is written above it.
#
# Dimension letters: B streams, T steps, H hidden, V vocabulary. Time-major: row t*B + b of a
# (T*B, .) matrix is stream b at step t.
#
#     h_t    = tanh(Wxh[x_t] + h_{t-1} @ Whh + bh)          (h_{-1} = h0, the carried state)
#     logits = h_t @ Why + by
#     loss   = mean over the B*T targets of -log softmax(logits)[y_t]
#
# Buffers (validated and allocated in Python by model.py, once per shape):
#     x, y   (B, T)    int32 inputs / targets in [0, V), input
#     h0     (B, H)    carried hidden state, input
#     hs     (T, B, H) hidden states h_0..h_{T-1}, cache kept for backward
#     probs  (T*B, V)  softmax probabilities, cache; backward overwrites it with
#                      probs - onehot(y) = (T*B) * dlogits (the 1/(T*B) goes into the GEMMs' alpha)
#     dhs    (T, B, H) scratch: dL/dh_t, then in place dL/dpre_t
# Gradients (outputs, overwritten): dWxh (V,H), dWhh (H,H), dbh (H,), dWhy (H,V), dby (V,),
# dh0 (B,H). Until weight_backward writes it, dWhh holds Whh^T: backpropagation multiplies by Whh^T
# every step, and BLAS runs the untransposed product of a transposed copy faster.
#
# Only the recurrence is sequential (one GEMM, or GEMV at B = 1, and one vectorised tanh per
# step). The output layer, softmax, dWhy, dby, dhs, dWhh, dbh and dWxh are each one pass or one
# GEMM over all T*B rows. Nothing is allocated and no Python object is touched inside nogil.

# ----------------------------------------------------------------------------- forward

cdef void embed_forward(const int[:, ::1] x, const floating[:, ::1] Wxh,
                        const floating[::1] bh, floating[:, :, ::1] hs) noexcept nogil:
    """hs[t, b] = Wxh[x[b, t]] + bh: the input projection of the whole chunk, a row gather."""
    cdef Py_ssize_t t, b, B = hs.shape[1], T = hs.shape[0], H = hs.shape[2]
    for t in range(T):
        for b in range(B):
            add_bias(&hs[t, b, 0], &Wxh[x[b, t], 0], &bh[0], H)


cdef void recurrence_forward(const floating[:, ::1] h0, const floating[:, ::1] Whh,
                             floating[:, :, ::1] hs) noexcept nogil:
    """In place over t: hs[t] = tanh(hs[t] + h_{t-1} @ Whh). The only sequential part."""
    cdef Py_ssize_t t, T = hs.shape[0]
    cdef int B = <int> hs.shape[1], H = <int> hs.shape[2]
    cdef const floating *h_prev = &h0[0, 0]
    for t in range(T):
        # hs[t] += h_prev @ Whh
        if B == 1:
            gemv(True, H, H, <floating> 1, &Whh[0, 0], H, h_prev, <floating> 1, &hs[t, 0, 0])
        else:
            gemm(False, False, B, H, H, <floating> 1, h_prev, H, &Whh[0, 0], H,
                 <floating> 1, &hs[t, 0, 0], H)
        tanh_inplace(&hs[t, 0, 0], B * H)
        h_prev = &hs[t, 0, 0]


cdef double output_forward(const floating[:, :, ::1] hs, const floating[:, ::1] Why,
                           const floating[::1] by, const int[:, ::1] y,
                           floating[:, ::1] probs) noexcept nogil:
    """probs = softmax(hs @ Why + by) over the chunk; returns the mean cross-entropy of y.

    Stable softmax: the row maximum is subtracted before exp (a logit of 1e4 is harmless), and
    -log p[y] = log(sum exp(logit - max)) - (logit_y - max) never takes the log of 0.
    """
    cdef Py_ssize_t t, b, r, T = hs.shape[0], B = hs.shape[1]
    cdef int n = <int> (T * B), H = <int> hs.shape[2], V = <int> Why.shape[1]
    cdef double nll = 0.0
    for r in range(n):
        memcpy(&probs[r, 0], &by[0], V * sizeof(floating))
    # probs = hs @ Why + by   (by already in every row, so beta = 1)
    gemm(False, False, n, V, H, <floating> 1, &hs[0, 0, 0], H, &Why[0, 0], V,
         <floating> 1, &probs[0, 0], V)
    for t in range(T):
        for b in range(B):
            nll += softmax_nll(&probs[t * B + b, 0], V, y[b, t])
    return nll / n


def rnn_forward(const int[:, ::1] x, const int[:, ::1] y, const floating[:, ::1] h0,
                const floating[:, ::1] Wxh, const floating[:, ::1] Whh,
                const floating[::1] bh, const floating[:, ::1] Why, const floating[::1] by,
                floating[:, :, ::1] hs, floating[:, ::1] probs):
    """Whole forward pass over one chunk; fills the caches hs and probs, returns the loss."""
    cdef double loss
    with nogil:
        embed_forward(x, Wxh, bh, hs)
        recurrence_forward(h0, Whh, hs)
        loss = output_forward(hs, Why, by, y, probs)
    return loss


# ----------------------------------------------------------------------------- backward

cdef void output_backward(const floating[:, :, ::1] hs, const floating[:, ::1] Why,
                          const int[:, ::1] y, floating[:, ::1] probs, floating[:, :, ::1] dhs,
                          floating[:, ::1] dWhy, floating[::1] dby) noexcept nogil:
    """From loss = mean(-log softmax(hs @ Why + by)[y]), with n = T*B:
    dlogits = (probs - onehot(y)) / n; probs keeps probs - onehot(y) and 1/n is the GEMMs' alpha.
    """
    cdef Py_ssize_t t, b, T = hs.shape[0], B = hs.shape[1]
    cdef int n = <int> (T * B), H = <int> hs.shape[2], V = <int> Why.shape[1]
    cdef floating inv_n = (<floating> 1) / n
    for t in range(T):
        for b in range(B):
            probs[t * B + b, y[b, t]] -= 1
    # dWhy = hs^T @ (probs - onehot) / n
    gemm(True, False, H, V, n, inv_n, &hs[0, 0, 0], H, &probs[0, 0], V,
         <floating> 0, &dWhy[0, 0], V)
    # dby = (probs - onehot).sum(axis=0) / n
    column_sums(&probs[0, 0], n, V, inv_n, &dby[0])
    # dhs = (probs - onehot) @ Why^T / n
    gemm(False, True, n, H, V, inv_n, &probs[0, 0], V, &Why[0, 0], V,
         <floating> 0, &dhs[0, 0, 0], H)


cdef void recurrence_backward(const floating[:, ::1] h0, const floating[:, ::1] Whh,
                              const floating[:, :, ::1] hs, floating[:, :, ::1] dhs,
                              floating[:, ::1] dh0, floating *WhhT) noexcept nogil:
    """Full BPTT, in place over t = T-1..0. Differentiates h_t = tanh(pre_t),
    pre_t = ... + h_{t-1} @ Whh:  dpre_t = dh_t * (1 - h_t^2), stored over dhs[t];
    dh_{t-1} += dpre_t @ Whh^T, which at t = 0 is dh0, the carried state's gradient.
    WhhT (H*H values) is scratch for Whh^T (see fr_transpose in the header), unused at B = 1:
    the callers lend it dWhh, which is written only after the recurrence.
    """
    cdef Py_ssize_t t, T = hs.shape[0]
    cdef int B = <int> hs.shape[1], H = <int> hs.shape[2]
    cdef floating *dh_prev
    cdef floating beta
    if B > 1:
        transpose(WhhT, &Whh[0, 0], H, H)
    for t in range(T - 1, -1, -1):
        tanh_backward(&dhs[t, 0, 0], &hs[t, 0, 0], B * H)
        if t > 0:
            dh_prev, beta = &dhs[t - 1, 0, 0], 1
        else:
            dh_prev, beta = &dh0[0, 0], 0
        # dh_prev = dpre_t @ Whh^T + beta * dh_prev
        if B == 1:
            gemv(False, H, H, <floating> 1, &Whh[0, 0], H, &dhs[t, 0, 0], beta, dh_prev)
        else:
            gemm(False, False, B, H, H, <floating> 1, &dhs[t, 0, 0], H, WhhT, H,
                 beta, dh_prev, H)


cdef void weight_backward(const int[:, ::1] x, const floating[:, ::1] h0,
                          const floating[:, :, ::1] hs, const floating[:, :, ::1] dhs,
                          floating[:, ::1] dWxh, floating[:, ::1] dWhh,
                          floating[::1] dbh) noexcept nogil:
    """Weight gradients of the recurrence, batched over the chunk (dhs holds dpre):
    dWhh = h0^T @ dpre_0 + hs[:T-1]^T @ dpre[1:]  (h_{t-1} is the carried h0 at t = 0);
    dbh = sum of dpre rows; dWxh[v] = sum of dpre rows whose input is v (scatter-add).
    """
    cdef Py_ssize_t t, b, T = hs.shape[0], B = hs.shape[1]
    cdef int H = <int> hs.shape[2]
    # dWhh = h0^T @ dpre[0]
    gemm(True, False, H, H, <int> B, <floating> 1, &h0[0, 0], H, &dhs[0, 0, 0], H,
         <floating> 0, &dWhh[0, 0], H)
    if T > 1:
        # dWhh += hs[:T-1]^T @ dpre[1:]   (one GEMM over (T-1)*B rows)
        gemm(True, False, H, H, <int> ((T - 1) * B), <floating> 1, &hs[0, 0, 0], H,
             &dhs[1, 0, 0], H, <floating> 1, &dWhh[0, 0], H)
    column_sums(&dhs[0, 0, 0], T * B, H, <floating> 1, &dbh[0])
    memset(&dWxh[0, 0], 0, dWxh.shape[0] * H * sizeof(floating))
    for t in range(T):
        for b in range(B):
            accumulate(&dWxh[x[b, t], 0], &dhs[t, b, 0], H)


def rnn_backward(const int[:, ::1] x, const int[:, ::1] y, const floating[:, ::1] h0,
                 const floating[:, ::1] Whh, const floating[:, ::1] Why,
                 const floating[:, :, ::1] hs, floating[:, ::1] probs, floating[:, :, ::1] dhs,
                 floating[:, ::1] dWxh, floating[:, ::1] dWhh, floating[::1] dbh,
                 floating[:, ::1] dWhy, floating[::1] dby, floating[:, ::1] dh0):
    """Whole backward pass over one chunk, from the caches of rnn_forward."""
    with nogil:
        output_backward(hs, Why, y, probs, dhs, dWhy, dby)
        recurrence_backward(h0, Whh, hs, dhs, dh0, &dWhh[0, 0])  # dWhh lent as scratch
        weight_backward(x, h0, hs, dhs, dWxh, dWhh, dbh)
