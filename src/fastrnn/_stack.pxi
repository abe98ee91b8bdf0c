# The whole stack over one chunk: stack_forward and stack_backward run every layer of any cell
# (rnn, LSTM, GRU) and depth, the dropout, the head and the loss, each in one nogil region,
# through the cores of _cells.pxi and _rnn.pxi. Their numpy twins are
# reference_cells.stack_forward / stack_backward: the same loops over the numpy layer functions.
#
# Dimension letters: L layers, B streams, T steps, H hidden, V vocabulary, E embedding, G gate
# blocks, GH = G*H. The per-layer buffers of _cells.pxi, stacked along a leading L axis
# (model.py's StackWorkspace, validated and allocated there once per shape):
#     x, y    (B, T)         int32 inputs / targets in [0, V), input
#     h0, c0  (L, B, H)      carried state, input (c0: the LSTM's cell state; for other cells
#                            any (L, B, H) array, unused)
#     Wemb    (V, E)         embedding, or any (1, 1) array without one (layer 0 then gathers rows
#                            of Wxhs[0])
#     Wxhs    L arrays       (V, GH), or (E, GH) with an embedding, for layer 0; (H, GH) above
#     Whhs    L arrays       (H, GH);   bhs L arrays (GH,)
#     bhns    L arrays       (H,), the GRU's; for other cells any L arrays, unused
#     Why (H, V), by (V,)    the head
#     masks   (L, T, B, H)   dropout keep-masks / (1 - p), input, read only when dropping
#     emb     (T, B, E)      Wemb[x], cache (with an embedding; else any (T, B, .) array)
#     gates   (L, T, B, GH)  input projections, then gate activations (cache), then dL/dpre; the
#                            rnn's gates are its hs (the same array)
#     hs      (L, T, B, H)   layer outputs, cache
#     cs, tcs (L, T, B, H)   LSTM c_t and tanh(c_t), cache (other cells: any such array, unused)
#     hns     (L, T, B, H)   GRU hn, cache, then dL/dhn (other cells: any such array, unused)
#     drops   (L, T, B, H)   hs * masks, what the layer above and the head read (when dropping)
#     probs   (T*B, V)       softmax probabilities, cache; backward: probs - onehot(y)
#     packed  (P,)           scratch of the recurrent products, shared by the layers
#     dhs     (L, T, B, H)   dL/dh per layer, scratch
#     dc      (B, H)         the LSTM's dL/dc carried back through time, scratch (other cells:
#                            any (B, H) array, unused)
#     demb    (T, B, E)      dL/demb, scratch (with an embedding; else any (T, B, .) array)
# Gradients (outputs, overwritten): dWemb (V, E) (without an embedding any (1, 1) array, unused);
# dWxhs, dWhhs, dbhs, dbhns lists shaped as their parameters (dbhns unused but for the GRU);
# dWhy (H, V), dby (V,); dh0, dc0 (L, B, H) (dc0 unused but for the LSTM).
#
# The parameter lists are read under the GIL into tables of L pointers (PyMem_Malloc, freed after
# the call; the lists keep the arrays alive); nothing is allocated inside nogil. model.py checks
# every shape, dtype and contiguity before the call; here the list lengths only.


cdef int gather_matrices(list arrays, Py_ssize_t L, floating **table) except -1:
    """table[l] = the first element of arrays[l], a C-contiguous (., .) array, for l < L."""
    cdef const floating[:, ::1] a
    cdef Py_ssize_t layer
    if len(arrays) != L:
        raise ValueError(f"expected one array per layer ({L}), got {len(arrays)}")
    for layer in range(L):
        a = arrays[layer]
        table[layer] = <floating *> &a[0, 0]
    return 0


cdef int gather_vectors(list arrays, Py_ssize_t L, floating **table) except -1:
    """table[l] = the first element of arrays[l], a C-contiguous (.,) array, for l < L."""
    cdef const floating[::1] a
    cdef Py_ssize_t layer
    if len(arrays) != L:
        raise ValueError(f"expected one array per layer ({L}), got {len(arrays)}")
    for layer in range(L):
        a = arrays[layer]
        table[layer] = <floating *> &a[0]
    return 0


cdef void stack_input_forward(const int *x, const floating *Wemb, int E, const floating *Wx,
                              const floating *b, floating *emb, floating *gates, int T, int B,
                              int GH) noexcept nogil:
    """Layer 0's input projection: gates = Wx[x] + b (one-hot x, E = 0: a row gather), or
    emb = Wemb[x]; gates = emb @ Wx + b. x (B, T); emb (T, B, E); gates (T, B, GH)."""
    if E == 0:
        embed_forward(x, Wx, b, gates, T, B, GH)
        return
    embedding_forward_core(x, Wemb, emb, T, B, E)
    project_forward_core(emb, Wx, b, gates, T * B, E, GH)


cdef void cell_layer_forward(int cell, const floating *h0, const floating *c0,
                             const floating *Whh, const floating *bhn, floating *gates,
                             floating *hs, floating *cs, floating *tcs, floating *hns,
                             floating *packed, int T, int B, int H) noexcept nogil:
    """One layer of the cell over the chunk, gates holding its input projection (the rnn's
    gates are its hs): the cell's *_layer_forward (shapes in _cells.pxi)."""
    if cell == CELL_LSTM:
        lstm_layer_forward_core(h0, c0, Whh, gates, hs, cs, tcs, packed, T, B, H)
    elif cell == CELL_GRU:
        gru_layer_forward_core(h0, Whh, bhn, gates, hns, hs, packed, T, B, H)
    else:
        recurrence_forward(h0, Whh, hs, packed, T, B, H)


def stack_forward(int cell, bint dropping, const int[:, ::1] x, const int[:, ::1] y,
                  const floating[:, :, ::1] h0, const floating[:, :, ::1] c0,
                  const floating[:, ::1] Wemb, list Wxhs, list Whhs, list bhs, list bhns,
                  const floating[:, ::1] Why, const floating[::1] by,
                  const floating[:, :, :, ::1] masks, floating[:, :, ::1] emb,
                  floating[:, :, :, ::1] gates, floating[:, :, :, ::1] hs,
                  floating[:, :, :, ::1] cs, floating[:, :, :, ::1] tcs,
                  floating[:, :, :, ::1] hns, floating[:, :, :, ::1] drops,
                  floating[:, ::1] probs, floating[::1] packed):
    """Every layer, the dropout (when dropping), the head and the loss over one chunk; fills
    the caches, returns the mean loss. cell: CELL_RNN / CELL_LSTM / CELL_GRU; the buffers are
    listed at the top of this file.

        gates[l] = x^l @ Wxhs[l] + bhs[l]     x^0 = onehot(x) or Wemb[x], x^l = drops[l-1]
        hs[l] = the cell over t from h0[l] (c0[l]);  drops[l] = hs[l] * masks[l]
        loss = mean(-log softmax(x^L @ Why + by)[y])
    """
    cdef int L = <int> hs.shape[0], T = <int> hs.shape[1], B = <int> hs.shape[2]
    cdef int H = <int> hs.shape[3], GH = <int> gates.shape[3], V = <int> by.shape[0]
    cdef int E = <int> emb.shape[2] if Wemb.shape[0] == V else 0
    cdef int layer
    cdef double loss
    cdef const floating *below
    cdef floating **table = <floating **> PyMem_Malloc(4 * L * sizeof(void *))
    if table == NULL:
        raise MemoryError()
    cdef floating **Wx = table
    cdef floating **Wh = table + L
    cdef floating **bb = table + 2 * L
    cdef floating **bn = table + 3 * L
    try:
        gather_matrices(Wxhs, L, Wx)
        gather_matrices(Whhs, L, Wh)
        gather_vectors(bhs, L, bb)
        gather_vectors(bhns, L, bn)
        with nogil:
            for layer in range(L):
                if layer == 0:
                    stack_input_forward(&x[0, 0], &Wemb[0, 0], E, Wx[0], bb[0], &emb[0, 0, 0],
                                        &gates[0, 0, 0, 0], T, B, GH)
                else:
                    below = &drops[layer - 1, 0, 0, 0] if dropping else &hs[layer - 1, 0, 0, 0]
                    # gates[l] = x^l @ Wxh^l + bh^l
                    project_forward_core(below, Wx[layer], bb[layer], &gates[layer, 0, 0, 0],
                                         T * B, H, GH)
                cell_layer_forward(cell, &h0[layer, 0, 0], &c0[layer, 0, 0], Wh[layer],
                                   bn[layer], &gates[layer, 0, 0, 0], &hs[layer, 0, 0, 0],
                                   &cs[layer, 0, 0, 0], &tcs[layer, 0, 0, 0],
                                   &hns[layer, 0, 0, 0], &packed[0], T, B, H)
                if dropping:
                    # drops[l] = hs[l] * masks[l]
                    mul(&drops[layer, 0, 0, 0], &hs[layer, 0, 0, 0], &masks[layer, 0, 0, 0],
                        <Py_ssize_t> T * B * H)
            below = &drops[L - 1, 0, 0, 0] if dropping else &hs[L - 1, 0, 0, 0]
            loss = output_forward(below, &Why[0, 0], &by[0], &y[0, 0], &probs[0, 0], T, B, H, V)
    finally:
        PyMem_Free(table)
    return loss


# ----------------------------------------------------------------------------- backward

cdef floating *cell_layer_backward(int cell, const floating *h0, const floating *c0,
                                   const floating *Whh, floating *gates, const floating *hs,
                                   const floating *cs, const floating *tcs, floating *hns,
                                   floating *dhs, floating *dc, floating *dWhh, floating *dbhn,
                                   floating *dh0, floating *dc0, floating *packed, int T, int B,
                                   int H) noexcept nogil:
    """BPTT of cell_layer_forward from dhs = dL/dh: the cell's *_layer_backward. Returns the
    buffer that then holds dL/d(input projection): the rnn's dhs, the others' gates."""
    if cell == CELL_LSTM:
        lstm_layer_backward_core(h0, c0, Whh, gates, hs, cs, tcs, dhs, dc, dWhh, dh0, dc0, packed,
                                 T, B, H)
        return gates
    if cell == CELL_GRU:
        gru_layer_backward_core(h0, Whh, gates, hns, hs, dhs, dWhh, dbhn, dh0, packed, T, B, H)
        return gates
    rnn_layer_backward_core(h0, Whh, hs, dhs, dWhh, dh0, packed, T, B, H)
    return dhs


cdef void stack_input_backward(const int *x, const floating *emb, int E, const floating *Wx,
                               const floating *dgates, floating *dWx, floating *db,
                               floating *demb, floating *dWemb, int T, int B, int GH,
                               int V, floating *scratch, Py_ssize_t capacity) noexcept nogil:
    """Gradients of stack_input_forward from dgates (T, B, GH): dWx, db, and with an
    embedding demb = dgates @ Wx^T (T, B, E), then dWemb (V, E). scratch: `capacity` values
    the outer sum may overwrite."""
    if E == 0:
        input_backward_core(x, dgates, dWx, db, T, B, GH, V)
        return
    project_backward_core(emb, Wx, dgates, dWx, db, demb, T * B, E, GH, scratch, capacity)
    embedding_backward_core(x, demb, dWemb, T, B, E, V)


def stack_backward(int cell, bint dropping, const int[:, ::1] x, const int[:, ::1] y,
                   const floating[:, :, ::1] h0, const floating[:, :, ::1] c0,
                   const floating[:, ::1] Wemb, list Wxhs, list Whhs,
                   const floating[:, ::1] Why, const floating[:, :, :, ::1] masks,
                   const floating[:, :, ::1] emb, floating[:, :, :, ::1] gates,
                   const floating[:, :, :, ::1] hs, const floating[:, :, :, ::1] cs,
                   const floating[:, :, :, ::1] tcs, floating[:, :, :, ::1] hns,
                   const floating[:, :, :, ::1] drops, floating[:, ::1] probs,
                   floating[:, :, :, ::1] dhs, floating[:, ::1] dc, floating[:, :, ::1] demb,
                   floating[::1] packed, floating[:, ::1] dWemb, list dWxhs, list dWhhs,
                   list dbhs, list dbhns, floating[:, ::1] dWhy, floating[::1] dby,
                   floating[:, :, ::1] dh0, floating[:, :, ::1] dc0):
    """Every gradient of stack_forward's loss, from its caches (the buffers are listed at the
    top of this file), layer by layer from the head down:

        dhs[L-1] = dL/dx^L (* masks[L-1]);   per layer l: the cell's BPTT -> dgates, dWhh, dh0[l]
        dWxh^l = x^l^T @ dgates, dbh^l = sum dgates, dhs[l-1] = dgates @ Wxh^l^T (* masks[l-1])
    """
    cdef int L = <int> hs.shape[0], T = <int> hs.shape[1], B = <int> hs.shape[2]
    cdef int H = <int> hs.shape[3], GH = <int> gates.shape[3], V = <int> Why.shape[1]
    cdef int E = <int> emb.shape[2] if Wemb.shape[0] == V else 0
    cdef int layer
    cdef Py_ssize_t size = <Py_ssize_t> T * B * H
    cdef const floating *below
    cdef floating *dgates
    cdef floating **table = <floating **> PyMem_Malloc(6 * L * sizeof(void *))
    if table == NULL:
        raise MemoryError()
    cdef floating **Wx = table
    cdef floating **Wh = table + L
    cdef floating **dWx = table + 2 * L
    cdef floating **dWh = table + 3 * L
    cdef floating **db = table + 4 * L
    cdef floating **dbn = table + 5 * L
    try:
        gather_matrices(Wxhs, L, Wx)
        gather_matrices(Whhs, L, Wh)
        gather_matrices(dWxhs, L, dWx)
        gather_matrices(dWhhs, L, dWh)
        gather_vectors(dbhs, L, db)
        gather_vectors(dbhns, L, dbn)
        with nogil:
            below = &drops[L - 1, 0, 0, 0] if dropping else &hs[L - 1, 0, 0, 0]
            output_backward(below, &Why[0, 0], &y[0, 0], &probs[0, 0], &dhs[L - 1, 0, 0, 0],
                            &dWhy[0, 0], &dby[0], T, B, H, V, &packed[0], packed.shape[0])
            if dropping:
                # drops = hs * masks  ->  dhs *= masks
                scale(&dhs[L - 1, 0, 0, 0], &masks[L - 1, 0, 0, 0], size)
            for layer in range(L - 1, -1, -1):
                dgates = cell_layer_backward(
                    cell, &h0[layer, 0, 0], &c0[layer, 0, 0], Wh[layer], &gates[layer, 0, 0, 0],
                    &hs[layer, 0, 0, 0], &cs[layer, 0, 0, 0], &tcs[layer, 0, 0, 0],
                    &hns[layer, 0, 0, 0], &dhs[layer, 0, 0, 0], &dc[0, 0], dWh[layer],
                    dbn[layer], &dh0[layer, 0, 0], &dc0[layer, 0, 0], &packed[0], T, B, H)
                if layer == 0:
                    stack_input_backward(&x[0, 0], &emb[0, 0, 0], E, Wx[0], dgates, dWx[0], db[0],
                                         &demb[0, 0, 0], &dWemb[0, 0], T, B, GH, V,
                                         &packed[0], packed.shape[0])
                    break
                below = &drops[layer - 1, 0, 0, 0] if dropping else &hs[layer - 1, 0, 0, 0]
                # gates[l] = x^l @ Wxh^l + bh^l  ->  dWxh^l, dbh^l, dhs[l-1] = dgates @ Wxh^l^T
                project_backward_core(below, Wx[layer], dgates, dWx[layer], db[layer],
                                      &dhs[layer - 1, 0, 0, 0], T * B, H, GH, &packed[0],
                                      packed.shape[0])
                if dropping:
                    scale(&dhs[layer - 1, 0, 0, 0], &masks[layer - 1, 0, 0, 0], size)
    finally:
        PyMem_Free(table)
