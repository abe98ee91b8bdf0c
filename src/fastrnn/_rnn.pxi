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
#     packed (P,)      scratch: Whh packed for the recurrent product (forward), then Whh^T
#                      (backward); P = packed_size(H, H) (see _recurrent.pxi)
# Gradients (outputs, overwritten): dWxh (V,H), dWhh (H,H), dbh (H,), dWhy (H,V), dby (V,),
# dh0 (B,H).
#
# Only the recurrence is sequential (one packed recurrent product and one vectorised tanh per
# step). The output layer, softmax, dWhy, dby, dhs, dWhh, dbh and dWxh are each one pass or one
# GEMM over all T*B rows. Nothing is allocated and no Python object is touched inside nogil.

# ----------------------------------------------------------------------------- forward

cdef void embed_forward(const int *x, const floating *Wxh, const floating *bh, floating *hs,
                        int T, int B, int H) noexcept nogil:
    """hs[t, b] = Wxh[x[b, t]] + bh: the input projection of the whole chunk, a row gather.
    x (B, T) int32 in [0, V); Wxh (V, H); bh (H,); hs (T, B, H), output."""
    cdef Py_ssize_t t, b
    for t in range(T):
        for b in range(B):
            add_bias(hs + (t * B + b) * H, Wxh + <Py_ssize_t> x[b * T + t] * H, bh, H)


cdef void recurrence_forward(const floating *h0, const floating *Whh, floating *hs,
                             floating *packed, int T, int B, int H) noexcept nogil:
    """In place over t: hs[t] = tanh(hs[t] + h_{t-1} @ Whh). The only sequential part.
    h0 (B, H); Whh (H, H); hs (T, B, H); packed: scratch of packed_size(H, H) values for Whh,
    packed once for the T steps."""
    cdef int t
    cdef Py_ssize_t step = <Py_ssize_t> B * H
    cdef const floating *h_prev = h0
    cdef int threads = recurrence_threads(packed, B, H, H)
    recurrent_pack(packed, Whh, H, H, H, False)
    if threads > 1:
        recurrence_forward_parallel(h0, packed, hs, T, B, H, threads)
        return
    for t in range(T):
        # hs[t] += h_prev @ Whh
        recurrent_step_product(h_prev, H, packed, H, H, hs + t * step, H, B, True, t)
        tanh_inplace(hs + t * step, B * H)
        h_prev = hs + t * step


cdef void recurrence_forward_parallel(const floating *h0, const floating *packed, floating *hs,
                                      int T, int B, int H, int threads) noexcept nogil:
    """recurrence_forward on `threads` threads, Whh already packed; h0 (B, H), hs (T, B, H).
    Each thread owns a range of columns: per step it computes them (its panels of
    h_{t-1} @ Whh) and their tanh, then waits at the one barrier of the step, after which
    every thread reads the whole of h_t."""
    cdef fr_barrier barrier
    cdef int n, tid, p0, p1, c0, c1, t, b
    cdef Py_ssize_t step = <Py_ssize_t> B * H
    cdef const floating *h_prev = h0
    n = tid = p0 = p1 = c0 = c1 = t = b = 0     # assigned again in the region (private)
    cdef int panels = recurrent_panels(packed, H), width = recurrent_panel_width(packed)
    fr_barrier_init(&barrier)
    with parallel(num_threads=threads):
        # thread tid of n owns panels [p0, p1): columns [c0, c1)
        n = omp_get_num_threads()
        tid = omp_get_thread_num()
        p0 = panels * tid // n
        p1 = panels * (tid + 1) // n
        c0 = min(p0 * width, H)
        c1 = min(p1 * width, H)
        h_prev = h0
        for t in range(T):
            # hs[t][:, c0:c1] = tanh(hs[t][:, c0:c1] + h_prev @ Whh[:, c0:c1])
            recurrent_product_panels(h_prev, H, packed, H, H, hs + t * step, H, B, True, p0, p1)
            for b in range(B):
                if c1 > c0:
                    tanh_inplace(hs + t * step + b * H + c0, c1 - c0)
            fr_barrier_wait(&barrier, n)
            h_prev = hs + t * step


cdef void recurrence_backward_parallel(const floating *packed, const floating *hs,
                                       floating *dhs, floating *dh0, int T, int B, int H,
                                       int threads) noexcept nogil:
    """recurrence_backward on `threads` threads, Whh^T already packed. A thread owns columns of
    dh: per step it computes its columns of dh_{t-1} (+)= dpre_t @ Whh^T and, at once, their
    dpre_{t-1} = dh_{t-1} * (1 - h_{t-1}^2); one barrier per step."""
    cdef fr_barrier barrier
    cdef int n, tid, p0, p1, c0, c1, t, b
    cdef Py_ssize_t step = <Py_ssize_t> B * H
    cdef floating *dh_prev = dh0
    n = tid = p0 = p1 = c0 = c1 = t = b = 0     # assigned again in the region (private)
    cdef int panels = recurrent_panels(packed, H), width = recurrent_panel_width(packed)
    fr_barrier_init(&barrier)
    with parallel(num_threads=threads):
        # thread tid of n owns panels [p0, p1): columns [c0, c1)
        n = omp_get_num_threads()
        tid = omp_get_thread_num()
        p0 = panels * tid // n
        p1 = panels * (tid + 1) // n
        c0 = min(p0 * width, H)
        c1 = min(p1 * width, H)
        for b in range(B):
            if c1 > c0:
                tanh_backward(dhs + (T - 1) * step + b * H + c0,
                              hs + (T - 1) * step + b * H + c0, c1 - c0)
        fr_barrier_wait(&barrier, n)
        for t in range(T - 1, -1, -1):
            dh_prev = dhs + (t - 1) * step if t > 0 else dh0
            # dh_prev[:, c0:c1] = dpre_t @ Whh^T[:, c0:c1] (+ dh_prev[:, c0:c1] if t > 0)
            recurrent_product_panels(dhs + t * step, H, packed, H, H, dh_prev, H, B, t > 0, p0,
                                     p1)
            for b in range(B):
                if t > 0 and c1 > c0:
                    tanh_backward(dh_prev + b * H + c0, hs + (t - 1) * step + b * H + c0,
                                  c1 - c0)
            fr_barrier_wait(&barrier, n)


cdef double output_forward(const floating *hs, const floating *Why, const floating *by,
                           const int *y, floating *probs, int T, int B, int H,
                           int V) noexcept nogil:
    """probs = softmax(hs @ Why + by) over the chunk; returns the mean cross-entropy of y.
    hs (T, B, H); Why (H, V); by (V,); y (B, T) int32 in [0, V); probs (T*B, V), output.

    Stable softmax: the row maximum is subtracted before exp (a logit of 1e4 is harmless), and
    -log p[y] = log(sum exp(logit - max)) - (logit_y - max) never takes the log of 0. The exp
    runs as one loop over the whole chunk (short rows would each end in a scalar tail), and
    the sums (each in [1, V]) are multiplied in double and their log taken once per many rows.
    """
    cdef Py_ssize_t t, b, r
    cdef int n = T * B
    cdef double nll = 0.0, sums = 1.0
    for r in range(n):
        memcpy(probs + r * V, by, V * sizeof(floating))
    # probs = hs @ Why + by   (by already in every row, so beta = 1)
    gemm(False, False, n, V, H, <floating> 1, hs, H, Why, V, <floating> 1, probs, V)
    for r in range(n):
        subtract_max(probs + r * V, V)
    for t in range(T):
        for b in range(B):
            nll -= probs[(t * B + b) * V + y[b * T + t]]     # logit_y - max
    exp_nonpos_inplace(probs, <Py_ssize_t> n * V)
    for r in range(n):
        sums *= normalize(probs + r * V, V)
        if sums > 1e200:    # one more factor (at most V < 2^31) stays finite
            nll += log(sums)
            sums = 1.0
    return (nll + log(sums)) / n


def rnn_forward(const int[:, ::1] x, const int[:, ::1] y, const floating[:, ::1] h0,
                const floating[:, ::1] Wxh, const floating[:, ::1] Whh,
                const floating[::1] bh, const floating[:, ::1] Why, const floating[::1] by,
                floating[:, :, ::1] hs, floating[:, ::1] probs, floating[::1] packed):
    """Whole forward pass over one chunk; fills the caches hs and probs, returns the loss."""
    cdef double loss
    cdef int T = <int> hs.shape[0], B = <int> hs.shape[1], H = <int> hs.shape[2]
    with nogil:
        embed_forward(&x[0, 0], &Wxh[0, 0], &bh[0], &hs[0, 0, 0], T, B, H)
        recurrence_forward(&h0[0, 0], &Whh[0, 0], &hs[0, 0, 0], &packed[0], T, B, H)
        loss = output_forward(&hs[0, 0, 0], &Why[0, 0], &by[0], &y[0, 0], &probs[0, 0], T, B, H,
                              <int> Why.shape[1])
    return loss


# ----------------------------------------------------------------------------- backward

cdef void output_backward(const floating *hs, const floating *Why, const int *y,
                          floating *probs, floating *dhs, floating *dWhy, floating *dby, int T,
                          int B, int H, int V, floating *scratch,
                          Py_ssize_t capacity) noexcept nogil:
    """From loss = mean(-log softmax(hs @ Why + by)[y]), with n = T*B:
    dlogits = (probs - onehot(y)) / n; probs keeps probs - onehot(y) and 1/n is the GEMMs' alpha.
    hs (T, B, H); Why (H, V); y (B, T); probs (T*B, V) in, probs - onehot(y) out; outputs
    dhs (T, B, H), dWhy (H, V), dby (V,); scratch: `capacity` values the outer sum may
    overwrite (capacity 0: none).
    """
    cdef Py_ssize_t t, b
    cdef int n = T * B
    cdef floating inv_n = (<floating> 1) / n
    for t in range(T):
        for b in range(B):
            probs[(t * B + b) * V + y[b * T + t]] -= 1
    # dWhy = hs^T @ (probs - onehot) / n
    outer_sum(H, V, n, inv_n, hs, H, probs, V, False, dWhy, V, scratch, capacity)
    # dby = (probs - onehot).sum(axis=0) / n
    column_sums(probs, n, V, inv_n, dby)
    # dhs = (probs - onehot) @ Why^T / n
    gemm(False, True, n, H, V, inv_n, probs, V, Why, V, <floating> 0, dhs, H)


cdef void recurrence_backward(const floating *h0, const floating *Whh, const floating *hs,
                              floating *dhs, floating *dh0, floating *packed, int T, int B,
                              int H) noexcept nogil:
    """Full BPTT, in place over t = T-1..0. Differentiates h_t = tanh(pre_t),
    pre_t = ... + h_{t-1} @ Whh:  dpre_t = dh_t * (1 - h_t^2), stored over dhs[t];
    dh_{t-1} += dpre_t @ Whh^T, which at t = 0 is dh0, the carried state's gradient.
    h0, dh0 (B, H); Whh (H, H); hs, dhs (T, B, H); packed: scratch of packed_size(H, H)
    values for Whh^T, packed once for the T steps.
    """
    cdef int t
    cdef Py_ssize_t step = <Py_ssize_t> B * H
    cdef floating *dh_prev
    cdef bint into_prev
    cdef int threads = recurrence_threads(packed, B, H, H)
    recurrent_pack(packed, Whh, H, H, H, True)
    if threads > 1:
        recurrence_backward_parallel(packed, hs, dhs, dh0, T, B, H, threads)
        return
    for t in range(T - 1, -1, -1):
        tanh_backward(dhs + t * step, hs + t * step, B * H)
        into_prev = t > 0
        dh_prev = dhs + (t - 1) * step if into_prev else dh0
        # dh_prev = dpre_t @ Whh^T + (dh_prev if t > 0 else 0)
        recurrent_step_product(dhs + t * step, H, packed, H, H, dh_prev, H, B, into_prev, t)


cdef void weight_backward(const int[:, ::1] x, const floating[:, ::1] h0,
                          const floating[:, :, ::1] hs, const floating[:, :, ::1] dhs,
                          floating[:, ::1] dWxh, floating[:, ::1] dWhh, floating[::1] dbh,
                          floating[::1] scratch) noexcept nogil:
    """Weight gradients of the recurrence, batched over the chunk (dhs holds dpre):
    dWhh = h0^T @ dpre_0 + hs[:T-1]^T @ dpre[1:]  (h_{t-1} is the carried h0 at t = 0);
    dbh = sum of dpre rows; dWxh[v] = sum of dpre rows whose input is v (scatter-add).
    scratch: values the outer sums may overwrite.
    """
    cdef Py_ssize_t t, b, T = hs.shape[0], B = hs.shape[1]
    cdef int H = <int> hs.shape[2]
    # dWhh = h0^T @ dpre[0] + hs[:T-1]^T @ dpre[1:]   (as every cell's, _cells.pxi)
    recurrent_weight_backward(&h0[0, 0], &hs[0, 0, 0], &dhs[0, 0, 0], H, &dWhh[0, 0], H,
                              <int> T, <int> B, H, H, &scratch[0], scratch.shape[0])
    column_sums(&dhs[0, 0, 0], T * B, H, <floating> 1, &dbh[0])
    memset(&dWxh[0, 0], 0, dWxh.shape[0] * H * sizeof(floating))
    for t in range(T):
        for b in range(B):
            accumulate(&dWxh[x[b, t], 0], &dhs[t, b, 0], H)


def rnn_backward(const int[:, ::1] x, const int[:, ::1] y, const floating[:, ::1] h0,
                 const floating[:, ::1] Whh, const floating[:, ::1] Why,
                 const floating[:, :, ::1] hs, floating[:, ::1] probs, floating[:, :, ::1] dhs,
                 floating[:, ::1] dWxh, floating[:, ::1] dWhh, floating[::1] dbh,
                 floating[:, ::1] dWhy, floating[::1] dby, floating[:, ::1] dh0,
                 floating[::1] packed):
    """Whole backward pass over one chunk, from the caches of rnn_forward."""
    cdef int T = <int> hs.shape[0], B = <int> hs.shape[1], H = <int> hs.shape[2]
    with nogil:
        output_backward(&hs[0, 0, 0], &Why[0, 0], &y[0, 0], &probs[0, 0], &dhs[0, 0, 0],
                        &dWhy[0, 0], &dby[0], T, B, H, <int> Why.shape[1], &packed[0],
                        packed.shape[0])
        recurrence_backward(&h0[0, 0], &Whh[0, 0], &hs[0, 0, 0], &dhs[0, 0, 0], &dh0[0, 0],
                            &packed[0], T, B, H)
        weight_backward(x, h0, hs, dhs, dWxh, dWhh, dbh, packed)
