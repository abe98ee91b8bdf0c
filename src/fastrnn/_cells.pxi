# Stacked layers: rnn / LSTM / GRU layer forward and backward, input projections, dropout, head.
#
# Its numpy twin is reference_cells.py: same function names, same argument order, same buffers.
# These kernels share the BLAS shim (_blas.pxd), the loop front doors (_loops.pxd) and the cdef
# helpers of _rnn.pxi (embed_forward, recurrence_forward/backward, output_forward/backward).
# Each is a cdef core on the buffers' first elements and dimensions (nogil, no checks), which
# the whole-stack loops of _stack.pxi call layer by layer inside their one nogil region, and a
# def door over typed memoryviews that runs the core alone (for the tests and the numpy twin's
# parity checks).
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
#                       (backward). Forward, the LSTM and GRU pack Whh gate block by gate block
#                       (G packed (H, H) matrices, pack_gate_blocks); backward, the LSTM packs
#                       Whh^T (GH, H) whole and the GRU its [r z] and n blocks one after the
#                       other. P = the larger of G * packed_size(H, H) and packed_size(GH, H)
#                       (GRU: packed_size(2H, H) + packed_size(H, H)) (model.py computes it)
# With an embedding Wemb (V, E), layer 0 reads its rows (embedding_forward / _backward):
#     emb   (T, B, E)   Wemb[x], cache: project_forward's input for layer 0
#     demb  (T, B, E)   dL/demb, scratch: project_backward's dxin for layer 0
# Only the recurrence is sequential: packed recurrent products and one vectorised gate loop per
# step. Input projections, dropout, the head and every weight gradient are one pass or one GEMM
# over all T*B rows. Nothing is allocated inside nogil.
#
# Shared recurrences (set_recurrent_threads(n > 1), a step large enough: cell_recurrence_threads):
# an LSTM or GRU layer runs its loop over t in one parallel region per chunk. Thread tid of n
# owns the hidden units [j0, j1) of the packed panels [p0, p1) (panels of H columns). Forward,
# per step it computes its units' columns g*H + j of every gate block g of h_{t-1} @ Whh (Whh is
# packed block by block, so the same panels in each) and then their gate loop alone; backward,
# their gate loop alone (dL/dpre of its units) and then its columns j of dh_{t-1} = dpre_t @
# Whh^T. One barrier per step (fastrnn_barrier.h, which yields a busy machine's core): forward
# after the step, before the next reads the whole h_t; backward between the gate loop and the
# product, which reads the whole dpre_t. Every value is computed by one thread in the order of
# the one-thread loop (the same *_steps function over every panel), so the results are the same
# bits whatever the thread count.


# ----------------------------------------------------------------------------- forward

def input_forward(const int[:, ::1] x, const floating[:, ::1] Wx, const floating[::1] b,
                  floating[:, :, ::1] gates):
    """gates[t, b] = Wx[x[b, t]] + b: layer 0's input projection, a row gather (x is one-hot)."""
    with nogil:
        embed_forward(&x[0, 0], &Wx[0, 0], &b[0], &gates[0, 0, 0], <int> gates.shape[0],
                      <int> gates.shape[1], <int> gates.shape[2])


cdef void project_forward_core(const floating *xin, const floating *Wx, const floating *b,
                               floating *gates, int n, int K, int GH) noexcept nogil:
    """gates (n, GH) = xin (n, K) @ Wx (K, GH) + b (GH,): one GEMM over the n = T*B rows."""
    cdef Py_ssize_t r
    for r in range(n):
        memcpy(gates + r * GH, b, GH * sizeof(floating))
    # gates = xin @ Wx + gates   (gates already holds b in every row)
    gemm(False, False, n, GH, K, <floating> 1, xin, K, Wx, GH, <floating> 1, gates, GH)


def project_forward(const floating[:, :, ::1] xin, const floating[:, ::1] Wx,
                    const floating[::1] b, floating[:, :, ::1] gates):
    """gates = xin @ Wx + b: the input projection of layer l >= 1 (xin (T, B, H)) or of an
    embedded layer 0 (xin = emb (T, B, E)), one GEMM over the chunk."""
    with nogil:
        project_forward_core(&xin[0, 0, 0], &Wx[0, 0], &b[0], &gates[0, 0, 0],
                             <int> (xin.shape[0] * xin.shape[1]), <int> xin.shape[2],
                             <int> gates.shape[2])


def rnn_layer_forward(const floating[:, ::1] h0, const floating[:, ::1] Whh,
                      floating[:, :, ::1] hs, floating[::1] packed):
    """In place over t: hs[t] = tanh(hs[t] + h_{t-1} @ Whh) (hs holds the input projection)."""
    with nogil:
        recurrence_forward(&h0[0, 0], &Whh[0, 0], &hs[0, 0, 0], &packed[0], <int> hs.shape[0],
                           <int> hs.shape[1], <int> hs.shape[2])


cdef inline Py_ssize_t packed_values(const floating *packed, int K, int N) noexcept nogil:
    """Values a packed (K, N) matrix takes in a packed buffer (packed only selects the dtype)."""
    if floating is float:
        return fr_recurrent_packed_size_f(K, N)
    else:
        return fr_recurrent_packed_size_d(K, N)


cdef inline int panel_unit(const floating *packed, int p, int H) noexcept nogil:
    """The first hidden unit (column) of panel p of an H-column packed matrix; H for p = panels."""
    return min(p * recurrent_panel_width(packed), H)


# The threads of every LSTM and GRU recurrence, whatever its size (test door): see
# share_cell_recurrences_at_any_size.
cdef bint cell_recurrences_shared_at_any_size = False


cdef inline int cell_recurrence_threads(const floating *packed, int B, int G, int H) noexcept nogil:
    """Threads for an LSTM or GRU recurrence of G gate blocks: as for a step (B, G*H) @ (G*H, H),
    the backward product (recurrence_threads), or all of them when shared at any size."""
    if cell_recurrences_shared_at_any_size:
        return recurrent_thread_count
    return recurrence_threads(packed, B, G * H, H)


def share_cell_recurrences_at_any_size(bint on):
    """Test door: with on, every LSTM and GRU recurrence runs on the set_recurrent_threads count
    however small its step (even with fewer panels than threads; a thread may own no unit),
    so that tests reach the shared path at small and odd sizes. Returns the previous setting."""
    global cell_recurrences_shared_at_any_size
    before = cell_recurrences_shared_at_any_size
    cell_recurrences_shared_at_any_size = on
    return before


def cell_recurrence_threads_for(int B, int G, int H, dtype):
    """The threads an LSTM (G = 4) or GRU (G = 3) recurrence of B streams and H units of
    `dtype` runs on now."""
    import numpy as np
    cdef float f = 0
    cdef double d = 0
    if np.dtype(dtype) == np.float32:
        return cell_recurrence_threads(&f, B, G, H)
    return cell_recurrence_threads(&d, B, G, H)


cdef void pack_gate_blocks(floating *packed, const floating *Whh, int H, int G) noexcept nogil:
    """packed = the G gate blocks Whh[:, g*H:(g+1)*H] of Whh (H, G*H), each packed as an (H, H)
    matrix, one after the other (packed_values(H, H) values each)."""
    cdef int g
    cdef Py_ssize_t block = packed_values(packed, H, H)
    for g in range(G):
        recurrent_pack(packed + g * block, Whh + g * H, H, H, G * H, False)


cdef void gate_blocks_product(const floating *h_prev, const floating *packed, int H, int G,
                              floating *C, int ldc, int B, int p0, int p1) noexcept nogil:
    """C[:, g*H + j] += (h_prev @ Whh)[:, g*H + j] for the units j of panels [p0, p1) of every
    gate block g < G; h_prev (B, H), C (B, ldc), packed: Whh by pack_gate_blocks."""
    cdef int g
    cdef Py_ssize_t block = packed_values(packed, H, H)
    for g in range(G):
        recurrent_product_panels(h_prev, H, packed + g * block, H, H, C + g * H, ldc, B, True, p0,
                                 p1)


cdef void lstm_forward_steps(const floating *h0, const floating *c0, const floating *packed,
                             floating *gates, floating *hs, floating *cs, floating *tcs, int T,
                             int B, int H, int p0, int p1, fr_barrier *barrier,
                             int n) noexcept nogil:
    """lstm_layer_forward's loop over t for the units [j0, j1) of panels [p0, p1): all of them
    on one thread (n = 1), or one thread's share, waiting at barrier with the n - 1 others after
    every step. h0, c0 (B, H); gates (T, B, 4H); hs, cs, tcs (T, B, H); packed: Whh by
    pack_gate_blocks."""
    cdef int t, b, GH = 4 * H
    cdef int j0 = panel_unit(packed, p0, H), j1 = panel_unit(packed, p1, H)
    cdef Py_ssize_t step = <Py_ssize_t> B * H, gstep = <Py_ssize_t> B * GH, r
    cdef const floating *h_prev
    cdef const floating *c_prev
    for t in range(T):
        h_prev, c_prev = h0, c0
        if t > 0:
            h_prev, c_prev = hs + (t - 1) * step, cs + (t - 1) * step
        # gates[t][:, g*H + j] += (h_prev @ Whh)[:, g*H + j]   (every block g, units j)
        gate_blocks_product(h_prev, packed, H, 4, gates + t * gstep, GH, B, p0, p1)
        # i, f, g, o = activations;  c = f * c_prev + i * g;  h = o * tanh(c)   (units j)
        for b in range(B):
            r = t * step + b * H + j0
            lstm_units_forward(gates + t * gstep + b * GH + j0, H, c_prev + b * H + j0, cs + r,
                               tcs + r, hs + r, j1 - j0)
        if n > 1:
            fr_barrier_wait(barrier, n)     # step t + 1 reads the whole of h_t


cdef void lstm_layer_forward_core(const floating *h0, const floating *c0, const floating *Whh,
                                  floating *gates, floating *hs, floating *cs, floating *tcs,
                                  floating *packed, int T, int B, int H) noexcept nogil:
    """lstm_layer_forward on the buffers' first elements (shapes there)."""
    cdef int panels = recurrent_panels(packed, H), n, tid, threads
    cdef fr_barrier barrier
    n = tid = 0     # assigned again in the region (private)
    fr_barrier_init(&barrier)
    pack_gate_blocks(packed, Whh, H, 4)
    threads = cell_recurrence_threads(packed, B, 4, H)
    if threads == 1:
        lstm_forward_steps(h0, c0, packed, gates, hs, cs, tcs, T, B, H, 0, panels, &barrier, 1)
    else:
        with parallel(num_threads=threads):
            n = omp_get_num_threads()
            tid = omp_get_thread_num()
            lstm_forward_steps(h0, c0, packed, gates, hs, cs, tcs, T, B, H, panels * tid // n,
                               panels * (tid + 1) // n, &barrier, n)


def lstm_layer_forward(const floating[:, ::1] h0, const floating[:, ::1] c0,
                       const floating[:, ::1] Whh, floating[:, :, ::1] gates,
                       floating[:, :, ::1] hs, floating[:, :, ::1] cs, floating[:, :, ::1] tcs,
                       floating[::1] packed):
    """One LSTM layer over the chunk; gates holds x W + b in, the activations i, f, g, o out.
    h0, c0 (B, H) the carried state; Whh (H, 4H); outputs hs, cs, tcs (T, B, H). On
    recurrent_threads() threads when the step is large enough (see the top of this file)."""
    with nogil:
        lstm_layer_forward_core(&h0[0, 0], &c0[0, 0], &Whh[0, 0], &gates[0, 0, 0], &hs[0, 0, 0],
                                &cs[0, 0, 0], &tcs[0, 0, 0], &packed[0], <int> hs.shape[0],
                                <int> hs.shape[1], <int> hs.shape[2])


cdef void gru_forward_steps(const floating *h0, const floating *bhn, const floating *packed,
                            floating *gates, floating *hns, floating *hs, int T, int B, int H,
                            int p0, int p1, fr_barrier *barrier, int n) noexcept nogil:
    """gru_layer_forward's loop over t for the units [j0, j1) of panels [p0, p1), on one thread
    (n = 1) or as one thread's share (see lstm_forward_steps). h0 (B, H); bhn (H,); gates
    (T, B, 3H); hns, hs (T, B, H); packed: Whh by pack_gate_blocks (r, z, n)."""
    cdef int t, b, GH = 3 * H
    cdef int j0 = panel_unit(packed, p0, H), j1 = panel_unit(packed, p1, H)
    cdef Py_ssize_t step = <Py_ssize_t> B * H, gstep = <Py_ssize_t> B * GH, r
    cdef const floating *packed_n = packed + 2 * packed_values(packed, H, H)
    cdef const floating *h_prev
    for t in range(T):
        h_prev = h0
        if t > 0:
            h_prev = hs + (t - 1) * step
        # gates[t][:, g*H + j] += (h_prev @ Whh)[:, g*H + j]   (blocks r, z; units j)
        gate_blocks_product(h_prev, packed, H, 2, gates + t * gstep, GH, B, p0, p1)
        # hns[t][:, j] = (h_prev @ Whh[:, 2H:])[:, j] + bhn[j]
        for b in range(B):
            memcpy(hns + t * step + b * H + j0, bhn + j0, (j1 - j0) * sizeof(floating))
        gate_blocks_product(h_prev, packed_n, H, 1, hns + t * step, H, B, p0, p1)
        # r, z = sig;  n = tanh(x W_n + b_n + r * hn);  h = (1 - z) * n + z * h_prev   (units j)
        for b in range(B):
            r = t * step + b * H + j0
            gru_units_forward(gates + t * gstep + b * GH + j0, H, hns + r, h_prev + b * H + j0,
                              hs + r, j1 - j0)
        if n > 1:
            fr_barrier_wait(barrier, n)     # step t + 1 reads the whole of h_t


cdef void gru_layer_forward_core(const floating *h0, const floating *Whh, const floating *bhn,
                                 floating *gates, floating *hns, floating *hs, floating *packed,
                                 int T, int B, int H) noexcept nogil:
    """gru_layer_forward on the buffers' first elements (shapes there)."""
    cdef int panels = recurrent_panels(packed, H), n, tid, threads
    cdef fr_barrier barrier
    n = tid = 0     # assigned again in the region (private)
    fr_barrier_init(&barrier)
    pack_gate_blocks(packed, Whh, H, 3)
    threads = cell_recurrence_threads(packed, B, 3, H)
    if threads == 1:
        gru_forward_steps(h0, bhn, packed, gates, hns, hs, T, B, H, 0, panels, &barrier, 1)
    else:
        with parallel(num_threads=threads):
            n = omp_get_num_threads()
            tid = omp_get_thread_num()
            gru_forward_steps(h0, bhn, packed, gates, hns, hs, T, B, H, panels * tid // n,
                              panels * (tid + 1) // n, &barrier, n)


def gru_layer_forward(const floating[:, ::1] h0, const floating[:, ::1] Whh,
                      const floating[::1] bhn, floating[:, :, ::1] gates,
                      floating[:, :, ::1] hns, floating[:, :, ::1] hs, floating[::1] packed):
    """One GRU layer over the chunk; gates holds x W + b in, the activations r, z, n out.
    h0 (B, H); Whh (H, 3H); bhn (H,); outputs hns, hs (T, B, H). On recurrent_threads() threads
    when the step is large enough (see the top of this file)."""
    with nogil:
        gru_layer_forward_core(&h0[0, 0], &Whh[0, 0], &bhn[0], &gates[0, 0, 0], &hns[0, 0, 0],
                               &hs[0, 0, 0], &packed[0], <int> hs.shape[0], <int> hs.shape[1],
                               <int> hs.shape[2])


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
        loss = output_forward(&h[0, 0, 0], &Why[0, 0], &by[0], &y[0, 0], &probs[0, 0],
                              <int> h.shape[0], <int> h.shape[1], <int> h.shape[2],
                              <int> Why.shape[1])
    return loss


# ----------------------------------------------------------------------------- backward

def head_backward(const floating[:, :, ::1] h, const floating[:, ::1] Why, const int[:, ::1] y,
                  floating[:, ::1] probs, floating[:, :, ::1] dh, floating[:, ::1] dWhy,
                  floating[::1] dby):
    """dWhy, dby and dh = dL/dh from the head (see output_backward)."""
    with nogil:
        output_backward(&h[0, 0, 0], &Why[0, 0], &y[0, 0], &probs[0, 0], &dh[0, 0, 0],
                        &dWhy[0, 0], &dby[0], <int> h.shape[0], <int> h.shape[1],
                        <int> h.shape[2], <int> Why.shape[1], NULL, 0)


def dropout_backward(floating[:, :, ::1] dh, const floating[:, :, ::1] mask):
    """From out = h * mask: dh *= mask, in place."""
    with nogil:
        scale(&dh[0, 0, 0], &mask[0, 0, 0], dh.shape[0] * dh.shape[1] * dh.shape[2])


cdef void recurrent_weight_backward(const floating *h0, const floating *hs,
                                    const floating *dgates, int ldg, floating *dWhh, int ldw,
                                    int T, int B, int H, int N, floating *scratch,
                                    Py_ssize_t capacity) noexcept nogil:
    """From gates_t[:, :N] += h_{t-1} @ Whh[:, :N], with h0 (B, H), hs (T, B, H), dgates
    (T, B, ldg) and dWhh (H, ldw) given by their first element:
    dWhh[:, :N] = h0^T @ dgates[0][:, :N] + hs[:T-1]^T @ dgates[1:][:, :N].
    scratch: `capacity` values the outer sums may overwrite (the recurrence's packed buffer,
    free once it is done)."""
    # dWhh[:, :N] = h0^T @ dgates[0][:, :N]
    outer_sum(H, N, B, <floating> 1, h0, H, dgates, ldg, False, dWhh, ldw, scratch, capacity)
    if T > 1:
        # dWhh[:, :N] += hs[:T-1]^T @ dgates[1:][:, :N]   (one product over (T-1)*B rows)
        outer_sum(H, N, (T - 1) * B, <floating> 1, hs, H, dgates + B * ldg, ldg, True, dWhh,
                  ldw, scratch, capacity)


cdef void rnn_layer_backward_core(const floating *h0, const floating *Whh, const floating *hs,
                                  floating *dhs, floating *dWhh, floating *dh0, floating *packed,
                                  int T, int B, int H) noexcept nogil:
    """rnn_layer_backward on the buffers' first elements (shapes there)."""
    recurrence_backward(h0, Whh, hs, dhs, dh0, packed, T, B, H)
    recurrent_weight_backward(h0, hs, dhs, H, dWhh, H, T, B, H, H, packed,
                              packed_values(packed, H, H))


def rnn_layer_backward(const floating[:, ::1] h0, const floating[:, ::1] Whh,
                       const floating[:, :, ::1] hs, floating[:, :, ::1] dhs,
                       floating[:, ::1] dWhh, floating[:, ::1] dh0, floating[::1] packed):
    """BPTT of rnn_layer_forward: dhs becomes dL/dpre (see recurrence_backward); then dWhh.
    h0, dh0 (B, H); Whh, dWhh (H, H); hs, dhs (T, B, H)."""
    with nogil:
        rnn_layer_backward_core(&h0[0, 0], &Whh[0, 0], &hs[0, 0, 0], &dhs[0, 0, 0], &dWhh[0, 0],
                                &dh0[0, 0], &packed[0], <int> hs.shape[0], <int> hs.shape[1],
                                <int> hs.shape[2])


cdef void lstm_backward_steps(const floating *c0, const floating *packed, floating *gates,
                              const floating *cs, const floating *tcs, floating *dhs,
                              floating *dc, floating *dh0, int T, int B, int H, int p0, int p1,
                              fr_barrier *barrier, int n) noexcept nogil:
    """lstm_layer_backward's loop over t = T-1..0 for the units [j0, j1) of panels [p0, p1), on
    one thread (n = 1) or as one thread's share, waiting at barrier with the n - 1 others
    between a step's gate loop and its product. c0 (B, H); gates (T, B, 4H) activations in,
    dL/dpre out; cs, tcs (T, B, H); dhs (T, B, H) dL/dh, recurrent parts added; dc (B, H) the
    carried dL/dc (zero on entry); dh0 (B, H) output; packed: Whh^T (4H, H)."""
    cdef int t, b, GH = 4 * H
    cdef int j0 = panel_unit(packed, p0, H), j1 = panel_unit(packed, p1, H)
    cdef Py_ssize_t step = <Py_ssize_t> B * H, gstep = <Py_ssize_t> B * GH, r
    cdef const floating *c_prev
    cdef floating *dh_prev
    for t in range(T - 1, -1, -1):
        c_prev, dh_prev = c0, dh0
        if t > 0:
            c_prev, dh_prev = cs + (t - 1) * step, dhs + (t - 1) * step
        # h = o * tanh(c), c = f * c_prev + i * g, gates = act(pre)  ->  dpre, dc_prev (units j)
        for b in range(B):
            r = t * step + b * H + j0
            lstm_units_backward(gates + t * gstep + b * GH + j0, H, c_prev + b * H + j0, tcs + r,
                                dhs + r, dc + b * H + j0, j1 - j0)
        if n > 1:
            fr_barrier_wait(barrier, n)     # the product reads every unit's dpre_t
        # gates_t += h_{t-1} @ Whh  ->  dh_prev[:, j] = (dgates_t @ Whh^T)[:, j] (+ if t > 0)
        recurrent_product_panels(gates + t * gstep, GH, packed, GH, H, dh_prev, H, B, t > 0, p0,
                                 p1)


cdef void lstm_layer_backward_core(const floating *h0, const floating *c0, const floating *Whh,
                                   floating *gates, const floating *hs, const floating *cs,
                                   const floating *tcs, floating *dhs, floating *dc,
                                   floating *dWhh, floating *dh0, floating *dc0,
                                   floating *packed, int T, int B, int H) noexcept nogil:
    """lstm_layer_backward on the buffers' first elements (shapes there)."""
    cdef int GH = 4 * H
    cdef int panels = recurrent_panels(packed, H), n, tid, threads
    cdef fr_barrier barrier
    n = tid = 0     # assigned again in the region (private)
    fr_barrier_init(&barrier)
    recurrent_pack(packed, Whh, GH, H, GH, True)
    memset(dc, 0, <size_t> B * H * sizeof(floating))
    threads = cell_recurrence_threads(packed, B, 4, H)
    if threads == 1:
        lstm_backward_steps(c0, packed, gates, cs, tcs, dhs, dc, dh0, T, B, H, 0, panels,
                            &barrier, 1)
    else:
        with parallel(num_threads=threads):
            n = omp_get_num_threads()
            tid = omp_get_thread_num()
            lstm_backward_steps(c0, packed, gates, cs, tcs, dhs, dc, dh0, T, B, H,
                                panels * tid // n, panels * (tid + 1) // n, &barrier, n)
    memcpy(dc0, dc, <size_t> B * H * sizeof(floating))
    recurrent_weight_backward(h0, hs, gates, GH, dWhh, GH, T, B, H, GH, packed,
                              packed_values(packed, GH, H))


def lstm_layer_backward(const floating[:, ::1] h0, const floating[:, ::1] c0,
                        const floating[:, ::1] Whh, floating[:, :, ::1] gates,
                        const floating[:, :, ::1] hs, const floating[:, :, ::1] cs,
                        const floating[:, :, ::1] tcs, floating[:, :, ::1] dhs,
                        floating[:, ::1] dc, floating[:, ::1] dWhh, floating[:, ::1] dh0,
                        floating[:, ::1] dc0, floating[::1] packed):
    """BPTT of lstm_layer_forward, t = T-1..0; gates becomes dL/d(pre-activation).
    Outputs dWhh (H, 4H), dh0 and dc0 (B, H); packed holds Whh^T during the recurrence, which
    runs on recurrent_threads() threads when the step is large enough."""
    with nogil:
        lstm_layer_backward_core(&h0[0, 0], &c0[0, 0], &Whh[0, 0], &gates[0, 0, 0],
                                 &hs[0, 0, 0], &cs[0, 0, 0], &tcs[0, 0, 0], &dhs[0, 0, 0],
                                 &dc[0, 0], &dWhh[0, 0], &dh0[0, 0], &dc0[0, 0], &packed[0],
                                 <int> hs.shape[0], <int> hs.shape[1], <int> hs.shape[2])


cdef void gru_backward_steps(const floating *h0, const floating *packed_rz,
                             const floating *packed_n, floating *gates, floating *hns,
                             const floating *hs, floating *dhs, floating *dh0, int T, int B,
                             int H, int p0, int p1, fr_barrier *barrier, int n) noexcept nogil:
    """gru_layer_backward's loop over t = T-1..0 for the units [j0, j1) of panels [p0, p1), on
    one thread (n = 1) or as one thread's share (see lstm_backward_steps). h0 (B, H); gates
    (T, B, 3H) activations in, dL/dpre out; hns (T, B, H) hn in, dL/dhn out; hs (T, B, H);
    dhs (T, B, H) dL/dh, recurrent parts added; dh0 (B, H) zero on entry, output; packed_rz,
    packed_n: Whh[:, :2H]^T (2H, H) and Whh[:, 2H:]^T (H, H) packed."""
    cdef int t, b, GH = 3 * H
    cdef int j0 = panel_unit(packed_rz, p0, H), j1 = panel_unit(packed_rz, p1, H)
    cdef Py_ssize_t step = <Py_ssize_t> B * H, gstep = <Py_ssize_t> B * GH, r
    cdef const floating *h_prev
    cdef floating *dh_prev
    for t in range(T - 1, -1, -1):
        h_prev, dh_prev = h0, dh0
        if t > 0:
            h_prev, dh_prev = hs + (t - 1) * step, dhs + (t - 1) * step
        # h = (1-z) n + z h_prev, n = tanh(a + r hn), r, z = sig  ->  dpre, dhn; dh_prev += dh z
        for b in range(B):
            r = t * step + b * H + j0
            gru_units_backward(gates + t * gstep + b * GH + j0, H, hns + r, h_prev + b * H + j0,
                               dhs + r, dh_prev + b * H + j0, j1 - j0)
        if n > 1:
            fr_barrier_wait(barrier, n)     # the products read every unit's dpre_t and dhn_t
        # [r z] pre += h_prev @ Whh[:, :2H]
        #   ->  dh_prev[:, j] += (dgates_t[:, :2H] @ Whh[:, :2H]^T)[:, j]
        recurrent_product_panels(gates + t * gstep, GH, packed_rz, 2 * H, H, dh_prev, H, B, True,
                                 p0, p1)
        # hn = h_prev @ Whh[:, 2H:] + bhn  ->  dh_prev[:, j] += (dhn_t @ Whh[:, 2H:]^T)[:, j]
        recurrent_product_panels(hns + t * step, H, packed_n, H, H, dh_prev, H, B, True, p0, p1)


cdef void gru_layer_backward_core(const floating *h0, const floating *Whh, floating *gates,
                                  floating *hns, const floating *hs, floating *dhs,
                                  floating *dWhh, floating *dbhn, floating *dh0,
                                  floating *packed, int T, int B, int H) noexcept nogil:
    """gru_layer_backward on the buffers' first elements (shapes there)."""
    cdef int GH = 3 * H
    cdef floating *packed_rz = packed
    cdef floating *packed_n = packed_after(packed_rz, 2 * H, H)
    cdef int panels = recurrent_panels(packed_rz, H), n, tid, threads
    cdef fr_barrier barrier
    n = tid = 0     # assigned again in the region (private)
    fr_barrier_init(&barrier)
    recurrent_pack(packed_rz, Whh, 2 * H, H, GH, True)
    recurrent_pack(packed_n, Whh + 2 * H, H, H, GH, True)
    memset(dh0, 0, <size_t> B * H * sizeof(floating))
    threads = cell_recurrence_threads(packed_rz, B, 3, H)
    if threads == 1:
        gru_backward_steps(h0, packed_rz, packed_n, gates, hns, hs, dhs, dh0, T, B, H, 0, panels,
                           &barrier, 1)
    else:
        with parallel(num_threads=threads):
            n = omp_get_num_threads()
            tid = omp_get_thread_num()
            gru_backward_steps(h0, packed_rz, packed_n, gates, hns, hs, dhs, dh0, T, B, H,
                               panels * tid // n, panels * (tid + 1) // n, &barrier, n)
    cdef Py_ssize_t capacity = packed_values(packed, 2 * H, H) + packed_values(packed, H, H)
    recurrent_weight_backward(h0, hs, gates, GH, dWhh, GH, T, B, H, 2 * H, packed, capacity)
    recurrent_weight_backward(h0, hs, hns, H, dWhh + 2 * H, GH, T, B, H, H, packed, capacity)
    # dbhn = dhn.sum over all T*B rows
    column_sums(hns, T * B, H, <floating> 1, dbhn)


def gru_layer_backward(const floating[:, ::1] h0, const floating[:, ::1] Whh,
                       floating[:, :, ::1] gates, floating[:, :, ::1] hns,
                       const floating[:, :, ::1] hs, floating[:, :, ::1] dhs,
                       floating[:, ::1] dWhh, floating[::1] dbhn, floating[:, ::1] dh0,
                       floating[::1] packed):
    """BPTT of gru_layer_forward, t = T-1..0; gates becomes dL/d(pre-activation) of x W + b,
    hns becomes dL/dhn. Outputs dWhh (H, 3H), dbhn (H,), dh0 (B, H); packed holds
    Whh[:, :2H]^T and Whh[:, 2H:]^T during the recurrence, which runs on recurrent_threads()
    threads when the step is large enough."""
    with nogil:
        gru_layer_backward_core(&h0[0, 0], &Whh[0, 0], &gates[0, 0, 0], &hns[0, 0, 0],
                                &hs[0, 0, 0], &dhs[0, 0, 0], &dWhh[0, 0], &dbhn[0], &dh0[0, 0],
                                &packed[0], <int> hs.shape[0], <int> hs.shape[1],
                                <int> hs.shape[2])


cdef void input_backward_core(const int *x, const floating *dgates, floating *dWx, floating *db,
                              int T, int B, int GH, int V) noexcept nogil:
    """input_backward on the buffers' first elements: x (B, T), dgates (T, B, GH),
    dWx (V, GH), db (GH,)."""
    cdef Py_ssize_t t, b
    memset(dWx, 0, <size_t> V * GH * sizeof(floating))
    for t in range(T):
        for b in range(B):
            accumulate(dWx + <Py_ssize_t> x[b * T + t] * GH, dgates + (t * B + b) * GH, GH)
    column_sums(dgates, T * B, GH, <floating> 1, db)


def input_backward(const int[:, ::1] x, const floating[:, :, ::1] dgates,
                   floating[:, ::1] dWx, floating[::1] db):
    """From gates[t, b] = Wx[x[b, t]] + b: dWx[v] = sum of dgates rows with input v, db = sum."""
    with nogil:
        input_backward_core(&x[0, 0], &dgates[0, 0, 0], &dWx[0, 0], &db[0],
                            <int> dgates.shape[0], <int> dgates.shape[1], <int> dgates.shape[2],
                            <int> dWx.shape[0])


cdef void project_backward_core(const floating *xin, const floating *Wx, const floating *dgates,
                                floating *dWx, floating *db, floating *dxin, int n, int K,
                                int GH, floating *scratch, Py_ssize_t capacity) noexcept nogil:
    """project_backward on the buffers' first elements: xin, dxin (n, K), Wx, dWx (K, GH),
    dgates (n, GH), db (GH,), n = T*B rows; scratch: `capacity` values the outer sum may
    overwrite (capacity 0: none)."""
    # dWx = xin^T @ dgates
    outer_sum(K, GH, n, <floating> 1, xin, K, dgates, GH, False, dWx, GH, scratch, capacity)
    # db = dgates.sum(axis=0)
    column_sums(dgates, n, GH, <floating> 1, db)
    # dxin = dgates @ Wx^T
    gemm(False, True, n, K, GH, <floating> 1, dgates, GH, Wx, GH, <floating> 0, dxin, K)


def project_backward(const floating[:, :, ::1] xin, const floating[:, ::1] Wx,
                     const floating[:, :, ::1] dgates, floating[:, ::1] dWx, floating[::1] db,
                     floating[:, :, ::1] dxin):
    """From gates = xin @ Wx + b: dWx = xin^T @ dgates; db = sum of rows; dxin = dgates @ Wx^T."""
    with nogil:
        project_backward_core(&xin[0, 0, 0], &Wx[0, 0], &dgates[0, 0, 0], &dWx[0, 0], &db[0],
                              &dxin[0, 0, 0], <int> (xin.shape[0] * xin.shape[1]),
                              <int> xin.shape[2], <int> dgates.shape[2], NULL, 0)


# ----------------------------------------------------------------------------- embedding
# Layer 0 of an embedded model: emb = Wemb[x], then project_forward(emb, Wxh, bh, gates);
# backward: project_backward(emb, Wxh, dgates, dWxh, dbh, demb), then embedding_backward.

cdef void embedding_forward_core(const int *x, const floating *Wemb, floating *emb, int T,
                                 int B, int E) noexcept nogil:
    """embedding_forward on the buffers' first elements: x (B, T), Wemb (V, E), emb (T, B, E)."""
    cdef Py_ssize_t t, b
    for t in range(T):
        for b in range(B):
            memcpy(emb + (t * B + b) * E, Wemb + <Py_ssize_t> x[b * T + t] * E,
                   E * sizeof(floating))


def embedding_forward(const int[:, ::1] x, const floating[:, ::1] Wemb,
                      floating[:, :, ::1] emb):
    """emb[t, b] = Wemb[x[b, t]]: the embedding rows of the chunk's inputs, a row gather.
    x (B, T) int32 in [0, V), input; Wemb (V, E); emb (T, B, E), output."""
    with nogil:
        embedding_forward_core(&x[0, 0], &Wemb[0, 0], &emb[0, 0, 0], <int> emb.shape[0],
                               <int> emb.shape[1], <int> emb.shape[2])


cdef void embedding_backward_core(const int *x, const floating *demb, floating *dWemb, int T,
                                  int B, int E, int V) noexcept nogil:
    """embedding_backward on the buffers' first elements: x (B, T), demb (T, B, E),
    dWemb (V, E)."""
    cdef Py_ssize_t t, b
    memset(dWemb, 0, <size_t> V * E * sizeof(floating))
    for t in range(T):
        for b in range(B):
            accumulate(dWemb + <Py_ssize_t> x[b * T + t] * E, demb + (t * B + b) * E, E)


def embedding_backward(const int[:, ::1] x, const floating[:, :, ::1] demb,
                       floating[:, ::1] dWemb):
    """From emb[t, b] = Wemb[x[b, t]]: dWemb[v] = sum of the demb rows whose input is v
    (scatter-add). demb (T, B, E), input; dWemb (V, E), output, overwritten."""
    with nogil:
        embedding_backward_core(&x[0, 0], &demb[0, 0, 0], &dWemb[0, 0], <int> demb.shape[0],
                                <int> demb.shape[1], <int> demb.shape[2], <int> dWemb.shape[0])
