# Generation: characters drawn one at a time from the model's softmax (temperature, top-k,
# greedy), with the single-layer rnn stepped in the kernel (rnn_generate) or, for stacked
# models, one draw per call after the layer kernels' step (sample_index).

# ----------------------------------------------------------------------------- sampling

cdef Py_ssize_t draw_index(const double *cdf, Py_ssize_t n, double u) noexcept nogil:
    """First i with cdf[i] > u * cdf[n-1] (inverse-CDF draw from unnormalised weights)."""
    cdef double target = u * cdf[n - 1]
    cdef Py_ssize_t lo = 0, hi = n - 1, mid
    while lo < hi:
        mid = (lo + hi) // 2
        if cdf[mid] > target:
            hi = mid
        else:
            lo = mid + 1
    return lo


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
    (all V when top_k >= V), or the argmax when greedy. z and scratch are (V,) doubles."""
    cdef Py_ssize_t i, best = 0
    cdef double cutoff, m
    if greedy:
        for i in range(1, V):
            if logits[i] > logits[best]:
                best = i
        return best
    for i in range(V):
        z[i] = logits[i] / temperature
    m = z[0]
    for i in range(1, V):
        if z[i] > m:
            m = z[i]
    if top_k < V and top_k <= 64:
        cutoff = kth_largest_few(z, V, top_k, scratch)
    elif top_k < V:
        memcpy(scratch, z, V * sizeof(double))
        cutoff = kth_largest(scratch, V, top_k)
    else:
        cutoff = -INFINITY
    # scratch = exp(z - max); z becomes the running sum of the kept weights: an unnormalised CDF.
    fr_exp_shifted_d(scratch, z, V, m)
    cdef double total = 0.0
    for i in range(V):
        if z[i] >= cutoff:
            total += scratch[i]
        z[i] = total
    return draw_index(z, V, u)


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
