# Generation: characters drawn one at a time from the model's softmax (temperature, top-k,
# greedy). stack_generate runs every model (any cell, depth, embedding) for N streams in one
# call; its numpy twin is reference_cells.stack_generate. rnn_generate (the single-layer rnn,
# one stream; twin reference.rnn_generate) and sample_index (one draw from a row of logits)
# remain as compiled entry points of the same draw.

# ----------------------------------------------------------------------------- sampling

cdef enum:
    DRAW_BLOCK = 64  # weights summed in order per block (reference.DRAW_BLOCK)


cdef double block_sum(const double *w, Py_ssize_t n) noexcept nogil:
    """w[0] + w[1] + ... + w[n-1], in that order."""
    cdef double s = 0.0
    cdef Py_ssize_t i
    for i in range(n):
        s += w[i]
    return s


cdef void block_ends(const double *w, Py_ssize_t n, double *ends) noexcept nogil:
    """ends[j] = running sum of the in-order sums of the blocks w[j*DRAW_BLOCK:][:DRAW_BLOCK];
    four full blocks at a time, whose four in-order chains of additions overlap."""
    cdef Py_ssize_t full = n // DRAW_BLOCK, j = 0, t, nb = (n + DRAW_BLOCK - 1) // DRAW_BLOCK
    cdef double s0, s1, s2, s3, total = 0.0
    cdef const double *b
    while j + 4 <= full:
        b = w + j * DRAW_BLOCK
        s0 = s1 = s2 = s3 = 0.0
        for t in range(DRAW_BLOCK):
            s0 += b[t]
            s1 += b[DRAW_BLOCK + t]
            s2 += b[2 * DRAW_BLOCK + t]
            s3 += b[3 * DRAW_BLOCK + t]
        total += s0
        ends[j] = total
        total += s1
        ends[j + 1] = total
        total += s2
        ends[j + 2] = total
        total += s3
        ends[j + 3] = total
        j += 4
    while j < nb:
        total += block_sum(w + j * DRAW_BLOCK, min(DRAW_BLOCK, n - j * DRAW_BLOCK))
        ends[j] = total
        j += 1


cdef Py_ssize_t last_positive(const double *w, Py_ssize_t n) noexcept nogil:
    """The last i < n with w[i] > 0 (0 if none)."""
    cdef Py_ssize_t i = n - 1
    while i > 0 and not w[i] > 0:
        i -= 1
    return i


cdef Py_ssize_t draw_index(const double *w, Py_ssize_t n, double u,
                           double *ends) noexcept nogil:
    """Inverse-CDF draw from unnormalised weights w (n,) (the largest > 0), as the twin
    reference.draw_index: the first i whose running sum exceeds u * total, the sums taken by
    blocks (block_ends); ends (ceil(n / DRAW_BLOCK),) is scratch."""
    cdef Py_ssize_t nb = (n + DRAW_BLOCK - 1) // DRAW_BLOCK, j = 0, i, start, width
    block_ends(w, n, ends)
    cdef double target = u * ends[nb - 1], c
    while j < nb and not ends[j] > target:
        j += 1
    if j == nb:  # rounding left nothing past the target
        return last_positive(w, n)
    start = j * DRAW_BLOCK
    width = min(DRAW_BLOCK, n - start)
    c = ends[j - 1] if j > 0 else 0.0
    for i in range(width):
        c += w[start + i]
        if c > target:
            return start + i
    return start + last_positive(w + start, width)


cdef double kth_largest(double *scratch, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """The k-th largest of scratch[0:n] (1 <= k <= n), by quickselect; reorders scratch."""
    cdef Py_ssize_t lo = 0, hi = n - 1, i, j, want = k - 1
    cdef double pivot, tmp
    while lo < hi:
        pivot = scratch[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while scratch[i] > pivot:
                i += 1
            while scratch[j] < pivot:
                j -= 1
            if i <= j:
                tmp = scratch[i]
                scratch[i] = scratch[j]
                scratch[j] = tmp
                i += 1
                j -= 1
        if want <= j:
            hi = j
        elif want >= i:
            lo = i
        else:
            break
    return scratch[want]


cdef double kth_largest_few(const double *z, Py_ssize_t n, Py_ssize_t k,
                            double *best) noexcept nogil:
    """The k-th largest of z[0:n] for small k: best[0:k] keeps the k largest seen, sorted
    descending; most entries fail the one comparison with best[k-1], so this is one pass."""
    cdef Py_ssize_t i, j, filled = 0
    cdef double v
    for i in range(n):
        v = z[i]
        if filled == k and v <= best[k - 1]:
            continue
        j = filled if filled < k else k - 1
        while j > 0 and best[j - 1] < v:
            best[j] = best[j - 1]
            j -= 1
        best[j] = v
        if filled < k:
            filled += 1
    return best[k - 1]


cdef Py_ssize_t next_index(const floating *logits, Py_ssize_t V, double temperature,
                           Py_ssize_t top_k, bint greedy, double u,
                           double *z, double *scratch) noexcept nogil:
    """One draw from softmax(logits / temperature) restricted to the top_k largest logits
    (all V when top_k >= V) and to weights above e^-708 of the largest, or the argmax when
    greedy. z and scratch are (V,) doubles.

    Two vectorised passes (the maximum; the weights), then the block sums that draw_index
    searches. The logits are scaled by 1 / temperature > 0, which keeps their order, so
    max(logits) / temperature is max(logits / temperature) exactly."""
    cdef Py_ssize_t i, best = 0
    cdef double cutoff = -INFINITY
    if greedy:
        for i in range(1, V):
            if logits[i] > logits[best]:
                best = i
        return best
    cdef double inverse_t = 1.0 / temperature
    cdef double m = max_value(logits, V) * inverse_t
    if top_k < V:
        for i in range(V):
            z[i] = logits[i] * inverse_t
        if top_k <= 64:
            cutoff = kth_largest_few(z, V, top_k, scratch)
        else:
            cutoff = kth_largest(z, V, top_k)
    # z = the kept weights exp(logits / temperature - m)
    sampling_weights(z, logits, V, inverse_t, m, cutoff)
    return draw_index(z, V, u, scratch)


def sample_index(const floating[::1] logits, double temperature, Py_ssize_t top_k,
                 bint greedy, double u, double[::1] z, double[::1] scratch):
    """One draw of next_index from a (V,) row of logits (z and scratch: (V,) double scratch),
    for the generation of models that step through the layer kernels one character at a time."""
    cdef Py_ssize_t i
    with nogil:
        i = next_index(&logits[0], logits.shape[0], temperature, top_k, greedy, u, &z[0],
                       &scratch[0])
    return i


def rnn_generate(const floating[:, ::1] Wxh, const floating[:, ::1] Whh,
                 const floating[::1] bh, const floating[:, ::1] Why, const floating[::1] by,
                 floating[::1] h, int first_index, const double[::1] uniforms,
                 double temperature, Py_ssize_t top_k, bint greedy, int[::1] out,
                 floating[::1] pre, floating[::1] logits, double[::1] z, double[::1] scratch):
    """Generate len(out) indices, each read back as the next input, starting from first_index.

    h       (H,)  state before first_index is read; input, updated in place to the last state
    uniforms(len(out),) one U[0,1) draw per character (from the caller's seeded generator)
    out     (len(out),) generated indices, output
    pre     (H,), logits (V,), z (V,) and scratch (V,): scratch buffers
    Per step: h = tanh(Wxh[x] + h @ Whh + bh); logits = h @ Why + by; x = draw(logits).
    """
    cdef Py_ssize_t n, length = out.shape[0]
    cdef int H = <int> h.shape[0], V = <int> by.shape[0], x = first_index
    with nogil:
        for n in range(length):
            # pre = Wxh[x] + bh + h @ Whh;  h = tanh(pre)
            add_bias(&pre[0], &Wxh[x, 0], &bh[0], H)
            gemv(True, H, H, <floating> 1, &Whh[0, 0], H, &h[0], <floating> 1, &pre[0])
            tanh_inplace(&pre[0], H)
            memcpy(&h[0], &pre[0], H * sizeof(floating))
            # logits = h @ Why + by
            memcpy(&logits[0], &by[0], V * sizeof(floating))
            gemv(True, H, V, <floating> 1, &Why[0, 0], V, &h[0], <floating> 1, &logits[0])
            x = <int> next_index(&logits[0], V, temperature, top_k, greedy, uniforms[n],
                                 &z[0], &scratch[0])
            out[n] = x


# ----------------------------------------------------------------------------- every model
# stack_generate: rnn, LSTM and GRU at any depth, with or without the input embedding, for N
# streams at once, in one nogil region. Each step reads every weight once for all N streams:
# (N, in) @ (in, G*H) and (N, H) @ (H, V) products.
#
# Cell numbers (fastrnn.cells.Cell.kernel_cell): 0 rnn, 1 lstm, 2 gru.
#
# Per step, for each layer l (x the stream's current index, in^0 = onehot(x) or Wemb[x],
# in^l = h^{l-1} for l >= 1), then the head and one draw per stream:
#     gates = in^l @ Wxh^l + bh^l + h^l @ Whh^l      (GRU: the n block without h^l @ Whh^l_n)
#     rnn:  h^l = tanh(gates)
#     lstm: c^l = f * c^l + i * g;  h^l = o * tanh(c^l)
#     gru:  hn = h^l @ Whh^l_n + bhn^l;  n = tanh(gates_n + r * hn);  h^l = (1-z) n + z h^l
#     logits = h^{L-1} @ Why + by;  x = next_index(logits, ..., uniforms[step, stream])
#
# Buffers (N streams, GH = G*H; all caller-provided, model.GenerateWorkspace):
#     h       (L, N, H)   state, input, updated in place;  c (L, N, H) LSTM cell state, likewise
#     xs      (N,)        int32, the current input of each stream, input then scratch
#     uniforms(T, N)      one U[0,1) draw per character and stream, input
#     out     (N, T)      generated indices, output
#     emb     (N, E)      Wemb[xs], scratch (E > 0)
#     gates   (N, GH)     pre-activations, then activations, scratch
#     hn      (N, H)      GRU h @ Whh_n + bhn, scratch
#     h_new, c_new, tc (N, H)  a layer's new h, c and tanh(c) before they replace the state
#     logits  (N, V)      scratch;  z, scratch (V,) double scratch of next_index
#     packed_whh (L * S,) every layer's Whh in the panels of the recurrent product
#                         (_recurrent.pxi), packed once per call, scratch
#     packed  (P,)        Why in column panels of 64 bytes (fastrnn_rows.h), packed once per
#                         call, scratch: P = ceil(V / W) * W * H with W = 64 / itemsize

cdef enum:
    CELL_RNN = 0
    CELL_LSTM = 1
    CELL_GRU = 2

RNN_CELL, LSTM_CELL, GRU_CELL = CELL_RNN, CELL_LSTM, CELL_GRU


cdef extern from "fastrnn_rows.h" nogil:
    void fr_pack_panels_f(Py_ssize_t k, Py_ssize_t m, const float *W, Py_ssize_t ldw, float *P)
    void fr_pack_panels_d(Py_ssize_t k, Py_ssize_t m, const double *W, Py_ssize_t ldw,
                          double *P)
    void fr_panels_product_f(Py_ssize_t n, Py_ssize_t m, Py_ssize_t k, const float *A,
                             Py_ssize_t lda, const float *P, float *C, Py_ssize_t ldc)
    void fr_panels_product_d(Py_ssize_t n, Py_ssize_t m, Py_ssize_t k, const double *A,
                             Py_ssize_t lda, const double *P, double *C, Py_ssize_t ldc)
    void fr_panels_row_f(Py_ssize_t m, Py_ssize_t k, const float *a, const float *P, float *c)
    void fr_panels_row_d(Py_ssize_t m, Py_ssize_t k, const double *a, const double *P,
                         double *c)


cdef inline void rows_product(int N, int M, int K, const floating *A, int lda,
                              const floating *W, int ldw, floating *C, int ldc) noexcept nogil:
    """C (N, M) += A (N, K) @ W (K, M), row-major: one gemv for one row, else one gemm."""
    if N == 1:
        gemv(True, K, M, <floating> 1, W, ldw, A, <floating> 1, C)
    else:
        gemm(False, False, N, M, K, <floating> 1, A, lda, W, ldw, <floating> 1, C, ldc)


cdef inline void fill_rows(floating *dst, const floating *row, int N, int M) noexcept nogil:
    """dst (N, M) = row (M,) in every row."""
    cdef int b
    for b in range(N):
        memcpy(dst + b * M, row, M * sizeof(floating))


cdef void input_step(const int *xs, const floating *Wemb, int E, const floating *Wxh,
                     const floating *bh, int N, int GH, floating *emb,
                     floating *gates) noexcept nogil:
    """Layer 0's projection: gates = Wxh[xs] + bh (one-hot, E = 0), or
    emb = Wemb[xs]; gates = emb @ Wxh + bh."""
    cdef int b
    if E == 0:
        for b in range(N):
            add_bias(gates + b * GH, Wxh + <Py_ssize_t> xs[b] * GH, bh, GH)
        return
    for b in range(N):
        memcpy(emb + b * E, Wemb + <Py_ssize_t> xs[b] * E, E * sizeof(floating))
    fill_rows(gates, bh, N, GH)
    # gates += emb @ Wxh
    rows_product(N, GH, E, emb, E, Wxh, GH, gates, GH)


cdef size_t recurrent_block_size(int cell, int H, bint first, bint single) noexcept nogil:
    """Values of the packed panels of one layer's first (GRU: [r z], else all of Whh) or second
    (GRU: n, else none) block of Whh, as recurrent_pack writes them; single: float32."""
    cdef int G = 4 if cell == CELL_LSTM else (3 if cell == CELL_GRU else 1)
    cdef int cols = (2 * H if first else H) if cell == CELL_GRU else (G * H if first else 0)
    if cols == 0:
        return 0
    return fr_recurrent_packed_size_f(H, cols) if single else fr_recurrent_packed_size_d(H, cols)


cdef void layer_step(int cell, const floating *xin, int K, const floating *Wxh,
                     const floating *packed_whh, size_t second, const floating *bh,
                     const floating *bhn, floating *h, floating *c, int N, int H,
                     floating *gates, floating *hn, floating *h_new, floating *c_new,
                     floating *tc) noexcept nogil:
    """One step of one layer for N streams: h (N, H) (and the LSTM's c) updated in place.
    xin (N, K) is the layer's input, or NULL when gates already holds layer 0's projection.
    packed_whh: the layer's Whh packed by pack_recurrent (its second block at offset second)."""
    cdef int b, G = 4 if cell == CELL_LSTM else (3 if cell == CELL_GRU else 1), GH = G * H
    if xin != NULL:
        fill_rows(gates, bh, N, GH)
        # gates += xin @ Wxh
        rows_product(N, GH, K, xin, K, Wxh, GH, gates, GH)
    if cell == CELL_GRU:
        # gates[:, :2H] += h @ Whh[:, :2H];  hn = h @ Whh[:, 2H:] + bhn
        recurrent_product(h, H, packed_whh, H, 2 * H, gates, GH, N, True)
        fill_rows(hn, bhn, N, H)
        recurrent_product(h, H, packed_whh + second, H, H, hn, H, N, True)
        for b in range(N):
            gru_cell_forward(gates + b * GH, hn + b * H, h + b * H, h_new + b * H, H)
    elif cell == CELL_LSTM:
        # gates += h @ Whh;  c = f * c + i * g;  h = o * tanh(c)
        recurrent_product(h, H, packed_whh, H, GH, gates, GH, N, True)
        for b in range(N):
            lstm_cell_forward(gates + b * GH, c + b * H, c_new + b * H, tc + b * H,
                              h_new + b * H, H)
        memcpy(c, c_new, N * H * sizeof(floating))
    else:
        # h = tanh(gates + h @ Whh)
        recurrent_product(h, H, packed_whh, H, H, gates, H, N, True)
        tanh_inplace(gates, N * H)
        memcpy(h_new, gates, N * H * sizeof(floating))
    memcpy(h, h_new, N * H * sizeof(floating))


cdef void pack_recurrent(int cell, const floating *Whh, int H, size_t second,
                         floating *packed_whh) noexcept nogil:
    """packed_whh = one layer's Whh (H, G*H) in the panels of the recurrent product: all of it,
    or for the GRU [r z] (H, 2H) and then, at offset second, n (H, H)."""
    cdef int G = 4 if cell == CELL_LSTM else (3 if cell == CELL_GRU else 1)
    if cell == CELL_GRU:
        recurrent_pack(packed_whh, Whh, H, 2 * H, G * H, False)
        recurrent_pack(packed_whh + second, Whh + 2 * H, H, H, G * H, False)
    else:
        recurrent_pack(packed_whh, Whh, H, G * H, G * H, False)


cdef void pack_head(const floating *Why, int H, int V, floating *packed) noexcept nogil:
    """packed = Why (H, V) in the column panels of fastrnn_rows.h (for N > 1 streams)."""
    if floating is float:
        fr_pack_panels_f(H, V, Why, V, packed)
    else:
        fr_pack_panels_d(H, V, Why, V, packed)


# One stream's head reads packed panels only where packing Why (once per call) pays: a small
# head, or a long call. Else the BLAS gemv reads Why in place (measured at V=6533, H=256:
# packing costs about as much as it saves over a 64-character call, sample.STREAM_BLOCK).
cdef enum:
    SMALL_HEAD_VALUES = 65536
    LONG_CALL_STEPS = 256


cdef void head_step(const floating *h, const floating *Why, const floating *packed,
                    bint panels, const floating *by, int N, int H, int V,
                    floating *logits) noexcept nogil:
    """logits (N, V) = h (N, H) @ Why + by over packed (Why packed by pack_head): the panel
    product, which reads Why once per step without the copy of it that GEMM makes at every
    call; for one stream its one-row form, without the per-call cost of a BLAS gemv (at
    V=65, H=100 a third of the head's time), or that gemv when not panels (then packed is
    not read)."""
    fill_rows(logits, by, N, V)
    if not panels:
        gemv(True, H, V, <floating> 1, Why, V, h, <floating> 1, logits)
        return
    if floating is float:
        if N == 1:
            fr_panels_row_f(V, H, h, packed, logits)
        else:
            fr_panels_product_f(N, V, H, h, H, packed, logits, V)
    else:
        if N == 1:
            fr_panels_row_d(V, H, h, packed, logits)
        else:
            fr_panels_product_d(N, V, H, h, H, packed, logits, V)


def stack_generate(int cell, const floating[:, ::1] Wemb, list Wxhs, list Whhs, list bhs,
                   list bhns, const floating[:, ::1] Why, const floating[::1] by,
                   floating[:, :, ::1] h, floating[:, :, ::1] c, int[::1] xs,
                   const double[:, ::1] uniforms, double temperature, Py_ssize_t top_k,
                   bint greedy, int[:, ::1] out, floating[:, ::1] emb, floating[:, ::1] gates,
                   floating[:, ::1] hn, floating[:, ::1] h_new, floating[:, ::1] c_new,
                   floating[:, ::1] tc, floating[:, ::1] logits, floating[::1] packed,
                   floating[::1] packed_whh, double[::1] z, double[::1] scratch):
    """Generate out.shape[1] indices for each of N = out.shape[0] streams, each read back as
    that stream's next input, starting from xs (see the buffer list above).

    cell: CELL_RNN / CELL_LSTM / CELL_GRU. Wemb (V, E), or any (1, 1) array when E = 0
    (xs then index the rows of Wxhs[0]). Wxhs, Whhs, bhs, bhns: per layer (bhns only for the
    GRU; for other cells any list of L (H,) arrays). c: the LSTM cell state, for other cells
    any (L, N, H) array (unused). Every Whh is packed into packed_whh once per call and Why
    into packed (one stream: where that pays, see head_step): the weights must not change
    during the call. Every shape is
    checked by model.generate before the call.
    """
    cdef Py_ssize_t L = h.shape[0], layer, n, b, steps = out.shape[1]
    cdef int N = <int> h.shape[1], H = <int> h.shape[2], V = <int> by.shape[0]
    cdef int E = <int> emb.shape[1] if Wemb.shape[0] == V else 0
    cdef int GH = <int> gates.shape[1]
    cdef const floating[:, ::1] w
    cdef const floating[::1] v
    cdef bint single = floating is float
    cdef bint panels = (N > 1 or <Py_ssize_t> V * H <= SMALL_HEAD_VALUES
                        or steps >= LONG_CALL_STEPS)
    cdef size_t second = recurrent_block_size(cell, H, True, single)
    cdef size_t per_layer = second + recurrent_block_size(cell, H, False, single)
    if <size_t> packed_whh.shape[0] < L * per_layer:
        raise ValueError(f"packed_whh holds {packed_whh.shape[0]} values, fewer than the "
                         f"{L * per_layer} of the packed recurrent matrices")
    # The L weight pointers of each kind, gathered with the GIL (the memoryviews in the lists
    # keep the arrays alive); a table of 4 L pointers, not a workspace.
    cdef const floating **table = <const floating **> PyMem_Malloc(4 * L * sizeof(void *))
    if table == NULL:
        raise MemoryError()
    cdef const floating **Wx = table
    cdef const floating **Wh = table + L
    cdef const floating **bb = table + 2 * L
    cdef const floating **bn = table + 3 * L
    try:
        for layer in range(L):
            w = Wxhs[layer]
            Wx[layer] = &w[0, 0]
            w = Whhs[layer]
            Wh[layer] = &w[0, 0]
            v = bhs[layer]
            bb[layer] = &v[0]
            v = bhns[layer]
            bn[layer] = &v[0]
        with nogil:
            for layer in range(L):
                pack_recurrent(cell, Wh[layer], H, second, &packed_whh[layer * per_layer])
            if panels:
                pack_head(&Why[0, 0], H, V, &packed[0])
            for n in range(steps):
                input_step(&xs[0], &Wemb[0, 0], E, Wx[0], bb[0], N, GH, &emb[0, 0],
                           &gates[0, 0])
                for layer in range(L):
                    layer_step(cell, NULL if layer == 0 else &h[layer - 1, 0, 0], H,
                               Wx[layer], &packed_whh[layer * per_layer], second, bb[layer],
                               bn[layer], &h[layer, 0, 0],
                               &c[layer, 0, 0], N, H, &gates[0, 0], &hn[0, 0], &h_new[0, 0],
                               &c_new[0, 0], &tc[0, 0])
                head_step(&h[L - 1, 0, 0], &Why[0, 0], &packed[0], panels, &by[0], N, H, V,
                          &logits[0, 0])
                for b in range(N):
                    xs[b] = <int> next_index(&logits[b, 0], V, temperature, top_k, greedy,
                                             uniforms[n, b], &z[0], &scratch[0])
                    out[b, n] = xs[b]
    finally:
        PyMem_Free(table)
