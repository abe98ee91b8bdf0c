# cython: language_level=3
"""The compiled vanilla-RNN kernel: forward and full-BPTT backward over one chunk.

Its numpy twin is ``reference.py``: same function names, same argument order, same buffers.
Read them side by side; the numpy expression each BLAS call computes is written above it.

Dimension letters: B streams, T steps, H hidden, V vocabulary. Time-major: row t*B + b of a
(T*B, .) matrix is stream b at step t.

    h_t    = tanh(Wxh[x_t] + h_{t-1} @ Whh + bh)          (h_{-1} = h0, the carried state)
    logits = h_t @ Why + by
    loss   = mean over the B*T targets of -log softmax(logits)[y_t]

Buffers (validated and allocated in Python by model.py, once per shape):
    x, y   (B, T)    int32 inputs / targets in [0, V), input
    h0     (B, H)    carried hidden state, input
    hs     (T, B, H) hidden states h_0..h_{T-1}, cache kept for backward
    probs  (T*B, V)  softmax probabilities, cache; backward overwrites it with
                     probs - onehot(y) = (T*B) * dlogits (the 1/(T*B) goes into the GEMMs' alpha)
    dhs    (T, B, H) scratch: dL/dh_t, then in place dL/dpre_t
Gradients (outputs, overwritten): dWxh (V,H), dWhh (H,H), dbh (H,), dWhy (H,V), dby (V,),
dh0 (B,H). Until weight_backward writes it, dWhh holds Whh^T: backpropagation multiplies by Whh^T
every step, and BLAS runs the untransposed product of a transposed copy faster.

Only the recurrence is sequential (one GEMM, or GEMV at B = 1, and one vectorised tanh per
step). The output layer, softmax, dWhy, dby, dhs, dWhh, dbh and dWxh are each one pass or one
GEMM over all T*B rows. Nothing is allocated and no Python object is touched inside nogil.
"""
from libc.math cimport INFINITY
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.string cimport memcpy, memset

from ._blas cimport floating, gemm, gemv

cdef extern from "fastrnn_simd.h" nogil:
    void fr_tanh_inplace_f(float *a, Py_ssize_t n)
    void fr_tanh_inplace_d(double *a, Py_ssize_t n)
    void fr_add_f(float *dst, const float *src, const float *bias, Py_ssize_t n)
    void fr_add_d(double *dst, const double *src, const double *bias, Py_ssize_t n)
    void fr_accumulate_f(float *acc, const float *src, Py_ssize_t n)
    void fr_accumulate_d(double *acc, const double *src, Py_ssize_t n)
    void fr_tanh_backward_f(float *dh, const float *h, Py_ssize_t n)
    void fr_tanh_backward_d(double *dh, const double *h, Py_ssize_t n)
    double fr_softmax_nll_f(float *row, Py_ssize_t n, Py_ssize_t target)
    double fr_softmax_nll_d(double *row, Py_ssize_t n, Py_ssize_t target)
    void fr_exp_shifted_d(double *out, const double *z, Py_ssize_t n, double m)
    void fr_sgd_f(float *p, const float *g, Py_ssize_t n, float lr, float clip, float scale)
    void fr_sgd_d(double *p, const double *g, Py_ssize_t n, double lr, double clip,
                  double scale)
    void fr_adagrad_f(float *p, const float *g, float *c, Py_ssize_t n, float lr, float eps,
                      float clip, float scale)
    void fr_adagrad_d(double *p, const double *g, double *c, Py_ssize_t n, double lr,
                      double eps, double clip, double scale)
    void fr_rmsprop_f(float *p, const float *g, float *c, Py_ssize_t n, float lr, float alpha,
                      float eps, float clip, float scale)
    void fr_rmsprop_d(double *p, const double *g, double *c, Py_ssize_t n, double lr,
                      double alpha, double eps, double clip, double scale)
    void fr_adam_f(float *p, const float *g, float *m, float *v, Py_ssize_t n, float lr_t,
                   float b1, float b2, float eps_t, float clip, float scale)
    void fr_adam_d(double *p, const double *g, double *m, double *v, Py_ssize_t n,
                   double lr_t, double b1, double b2, double eps_t, double clip, double scale)
    double fr_clipped_sq_norm_f(const float *g, Py_ssize_t n, float clip)
    double fr_clipped_sq_norm_d(const double *g, Py_ssize_t n, double clip)
    void fr_transpose_f(float *dst, const float *src, Py_ssize_t m, Py_ssize_t n)
    void fr_transpose_d(double *dst, const double *src, Py_ssize_t m, Py_ssize_t n)
    int fr_all_finite_f(const float *a, Py_ssize_t n)
    int fr_all_finite_d(const double *a, Py_ssize_t n)


# ----------------------------------------------------------------------------- vector loops
# Fused-type front doors to the vectorised C loops of fastrnn_simd.h.

cdef inline void tanh_inplace(floating *a, Py_ssize_t n) noexcept nogil:
    if floating is float:
        fr_tanh_inplace_f(a, n)
    else:
        fr_tanh_inplace_d(a, n)


cdef inline void add_bias(floating *dst, const floating *src, const floating *bias,
                          Py_ssize_t n) noexcept nogil:
    if floating is float:
        fr_add_f(dst, src, bias, n)
    else:
        fr_add_d(dst, src, bias, n)


cdef inline void accumulate(floating *acc, const floating *src, Py_ssize_t n) noexcept nogil:
    if floating is float:
        fr_accumulate_f(acc, src, n)
    else:
        fr_accumulate_d(acc, src, n)


cdef inline void tanh_backward(floating *dh, const floating *h, Py_ssize_t n) noexcept nogil:
    if floating is float:
        fr_tanh_backward_f(dh, h, n)
    else:
        fr_tanh_backward_d(dh, h, n)


cdef inline double softmax_nll(floating *row, Py_ssize_t n, Py_ssize_t target) noexcept nogil:
    if floating is float:
        return fr_softmax_nll_f(row, n, target)
    else:
        return fr_softmax_nll_d(row, n, target)


cdef inline void transpose(floating *dst, const floating *src, Py_ssize_t m,
                           Py_ssize_t n) noexcept nogil:
    """dst (n, m) = src (m, n)^T"""
    if floating is float:
        fr_transpose_f(dst, src, m, n)
    else:
        fr_transpose_d(dst, src, m, n)


cdef inline void column_sums(const floating *a, Py_ssize_t rows, Py_ssize_t cols,
                             floating scale, floating *out) noexcept nogil:
    """out (cols,) = scale * a.sum(axis=0) for a row-major (rows, cols) matrix a."""
    cdef Py_ssize_t r, i
    memset(out, 0, cols * sizeof(floating))
    for r in range(rows):
        accumulate(out, a + r * cols, cols)
    if scale != 1:
        for i in range(cols):
            out[i] *= scale


include "_recurrent.pxi"


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
                tmp = scratch[i]; scratch[i] = scratch[j]; scratch[j] = tmp
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


# ----------------------------------------------------------------------------- optimizers
# One pass per parameter over 1-D views (p.reshape(-1)); g is read as clip(g, -clip, clip) *
# scale (clip = inf: none; scale < 1: global-norm clipping). Twins: reference.py.

def sgd_update(floating[::1] p, const floating[::1] g, double lr, double clip, double scale):
    """p -= lr * g"""
    with nogil:
        if floating is float:
            fr_sgd_f(&p[0], &g[0], p.shape[0], <float> lr, <float> clip, <float> scale)
        else:
            fr_sgd_d(&p[0], &g[0], p.shape[0], lr, clip, scale)


def adagrad_update(floating[::1] p, const floating[::1] g, floating[::1] cache, double lr,
                   double eps, double clip, double scale):
    """cache += g^2; p -= lr * g / (sqrt(cache) + eps)"""
    with nogil:
        if floating is float:
            fr_adagrad_f(&p[0], &g[0], &cache[0], p.shape[0], <float> lr, <float> eps,
                         <float> clip, <float> scale)
        else:
            fr_adagrad_d(&p[0], &g[0], &cache[0], p.shape[0], lr, eps, clip, scale)


def rmsprop_update(floating[::1] p, const floating[::1] g, floating[::1] cache, double lr,
                   double alpha, double eps, double clip, double scale):
    """cache = alpha cache + (1 - alpha) g^2; p -= lr * g / (sqrt(cache) + eps)"""
    with nogil:
        if floating is float:
            fr_rmsprop_f(&p[0], &g[0], &cache[0], p.shape[0], <float> lr, <float> alpha,
                         <float> eps, <float> clip, <float> scale)
        else:
            fr_rmsprop_d(&p[0], &g[0], &cache[0], p.shape[0], lr, alpha, eps, clip, scale)


def adam_update(floating[::1] p, const floating[::1] g, floating[::1] m, floating[::1] v,
                double lr_t, double beta1, double beta2, double eps_t, double clip,
                double scale):
    """m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p -= lr_t * m / (sqrt(v) + eps_t)
    (lr_t and eps_t carry Adam's bias corrections)."""
    with nogil:
        if floating is float:
            fr_adam_f(&p[0], &g[0], &m[0], &v[0], p.shape[0], <float> lr_t, <float> beta1,
                      <float> beta2, <float> eps_t, <float> clip, <float> scale)
        else:
            fr_adam_d(&p[0], &g[0], &m[0], &v[0], p.shape[0], lr_t, beta1, beta2, eps_t,
                      clip, scale)


def clipped_sq_norm(const floating[::1] g, double clip):
    """sum(clip(g, -clip, clip) ** 2), accumulated in double."""
    cdef double s
    with nogil:
        if floating is float:
            s = fr_clipped_sq_norm_f(&g[0], g.shape[0], <float> clip)
        else:
            s = fr_clipped_sq_norm_d(&g[0], g.shape[0], clip)
    return s



cdef class UpdatePlan:
    """The optimizer's arrays, bound once, so that a step over every parameter is one call.

    At the seed's size a step updates five small arrays; acquiring four buffers per array and
    dispatching on dtype every step costs more than the arithmetic. A plan takes a list of
    (p, g, slots) 1-D C-contiguous arrays of one dtype (checked by optim.py, which builds a plan
    only for a set of arrays it has validated), keeps references to them, and runs the same
    one-pass loops as sgd_update & co. over all of them. Keeping the references is what keeps
    the data pointers valid: numpy refuses to resize an array that is referenced elsewhere.
    """
    cdef list arrays          # the Python objects, held for the pointers' sake
    cdef bint is_float        # float32 (else float64)
    cdef Py_ssize_t count, nslots
    cdef void **ptrs          # count * (2 + nslots): p, g, slot0, slot1 per entry
    cdef Py_ssize_t *sizes    # count

    def __cinit__(self, list entries, int nslots):
        cdef Py_ssize_t i, k
        self.count = len(entries)
        self.nslots = nslots
        self.arrays = []
        self.ptrs = <void **> PyMem_Malloc(max(1, self.count * (2 + nslots)) * sizeof(void *))
        self.sizes = <Py_ssize_t *> PyMem_Malloc(max(1, self.count) * sizeof(Py_ssize_t))
        if self.ptrs == NULL or self.sizes == NULL:
            raise MemoryError()
        for i, entry in enumerate(entries):
            p, g, slots = entry
            row = [p, g, *slots]
            if len(slots) != nslots:
                raise ValueError(f"entry {i} has {len(slots)} optimizer slots, expected {nslots}")
            self.is_float = row[0].dtype.itemsize == 4
            for k, a in enumerate(row):
                if a.ndim != 1 or not a.flags.c_contiguous or a.shape[0] != p.shape[0] \
                        or a.dtype != p.dtype or a.dtype.kind != "f" \
                        or not (k == 1 or a.flags.writeable):
                    raise ValueError(f"entry {i}: every array must be a 1-D C-contiguous float "
                                     "array of the parameter's size and dtype, writeable but "
                                     "for the gradient")
                self.ptrs[i * (2 + nslots) + k] = <void *> <size_t> a.ctypes.data
            self.sizes[i] = p.shape[0]
            self.arrays.append(row)
        if self.count and any(r[0].dtype != self.arrays[0][0].dtype for r in self.arrays):
            raise ValueError("all entries must share one dtype")

    def __dealloc__(self):
        PyMem_Free(self.ptrs)
        PyMem_Free(self.sizes)

    cdef inline void *at(self, Py_ssize_t i, Py_ssize_t k) noexcept nogil:
        return self.ptrs[i * (2 + self.nslots) + k]

    def sgd(self, double lr, double clip, double scale):
        """p -= lr * g for every entry (see sgd_update)."""
        cdef Py_ssize_t i
        with nogil:
            for i in range(self.count):
                if self.is_float:
                    fr_sgd_f(<float *> self.at(i, 0), <float *> self.at(i, 1), self.sizes[i],
                             <float> lr, <float> clip, <float> scale)
                else:
                    fr_sgd_d(<double *> self.at(i, 0), <double *> self.at(i, 1), self.sizes[i],
                             lr, clip, scale)

    def adagrad(self, double lr, double eps, double clip, double scale):
        """cache += g^2; p -= lr * g / (sqrt(cache) + eps) for every entry."""
        cdef Py_ssize_t i
        with nogil:
            for i in range(self.count):
                if self.is_float:
                    fr_adagrad_f(<float *> self.at(i, 0), <float *> self.at(i, 1),
                                 <float *> self.at(i, 2), self.sizes[i], <float> lr,
                                 <float> eps, <float> clip, <float> scale)
                else:
                    fr_adagrad_d(<double *> self.at(i, 0), <double *> self.at(i, 1),
                                 <double *> self.at(i, 2), self.sizes[i], lr, eps, clip, scale)

    def rmsprop(self, double lr, double alpha, double eps, double clip, double scale):
        """cache = alpha cache + (1 - alpha) g^2; p -= lr * g / (sqrt(cache) + eps)."""
        cdef Py_ssize_t i
        with nogil:
            for i in range(self.count):
                if self.is_float:
                    fr_rmsprop_f(<float *> self.at(i, 0), <float *> self.at(i, 1),
                                 <float *> self.at(i, 2), self.sizes[i], <float> lr,
                                 <float> alpha, <float> eps, <float> clip, <float> scale)
                else:
                    fr_rmsprop_d(<double *> self.at(i, 0), <double *> self.at(i, 1),
                                 <double *> self.at(i, 2), self.sizes[i], lr, alpha, eps, clip,
                                 scale)

    def adam(self, double lr_t, double beta1, double beta2, double eps_t, double clip,
             double scale):
        """m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p -= lr_t m / (sqrt(v) + eps_t)."""
        cdef Py_ssize_t i
        with nogil:
            for i in range(self.count):
                if self.is_float:
                    fr_adam_f(<float *> self.at(i, 0), <float *> self.at(i, 1),
                              <float *> self.at(i, 2), <float *> self.at(i, 3), self.sizes[i],
                              <float> lr_t, <float> beta1, <float> beta2, <float> eps_t,
                              <float> clip, <float> scale)
                else:
                    fr_adam_d(<double *> self.at(i, 0), <double *> self.at(i, 1),
                              <double *> self.at(i, 2), <double *> self.at(i, 3), self.sizes[i],
                              lr_t, beta1, beta2, eps_t, clip, scale)

    def clipped_sq_norm(self, double clip):
        """sum over every entry's gradient of clip(g)^2, in double."""
        cdef Py_ssize_t i
        cdef double total = 0
        with nogil:
            for i in range(self.count):
                if self.is_float:
                    total += fr_clipped_sq_norm_f(<float *> self.at(i, 1), self.sizes[i],
                                                  <float> clip)
                else:
                    total += fr_clipped_sq_norm_d(<double *> self.at(i, 1), self.sizes[i], clip)
        return total


cdef class SameArrays:
    """Remembers a set of arrays that passed the Python checks: the objects (held, so their
    identities cannot be reused) and their shapes. ``matches`` tells, in C, whether the arrays
    named by ``keys`` in ``dicts`` are those same objects with those same shapes; it is what
    lets a training loop skip re-checking the arrays it passes on every call."""
    cdef list held
    cdef tuple shapes

    def __cinit__(self):
        self.held = []
        self.shapes = ()

    def remember(self, list arrays):
        """Keep arrays (each has passed the checks) as the set to match."""
        self.held = list(arrays)
        self.shapes = tuple([a.shape for a in arrays])

    def matches(self, list arrays):
        """True when arrays are the remembered objects, in order, with the remembered shapes."""
        cdef Py_ssize_t i, n = len(arrays)
        if n != len(self.held) or n == 0:
            return False
        for i in range(n):
            if arrays[i] is not self.held[i]:
                return False
        for i in range(n):
            if arrays[i].shape != self.shapes[i]:
                return False
        return True

# ----------------------------------------------------------------------------- validation aids
# Used by model.py's checks (before any unchecked code runs): one pass instead of numpy's
# min(), max() and isfinite().all(), which cost microseconds each on small chunks.

def index_bounds(const int[:, ::1] a):
    """(min, max) of a non-empty int32 array."""
    cdef Py_ssize_t i, j
    cdef int lo = a[0, 0], hi = a[0, 0], v
    with nogil:
        for i in range(a.shape[0]):
            for j in range(a.shape[1]):
                v = a[i, j]
                lo = v if v < lo else lo
                hi = v if v > hi else hi
    return lo, hi


def all_finite(const floating[:, ::1] a):
    """True when no entry of a is nan or +-inf."""
    cdef int ok
    with nogil:
        if floating is float:
            ok = fr_all_finite_f(&a[0, 0], a.shape[0] * a.shape[1])
        else:
            ok = fr_all_finite_d(&a[0, 0], a.shape[0] * a.shape[1])
    return ok != 0


include "_cells.pxi"


# ----------------------------------------------------------------------------- probes
# A single loop exposed for tests and the speed guard (checked against numpy).

def tanh_array(floating[::1] a):
    """a[:] = tanh(a), the kernel's vectorised tanh."""
    with nogil:
        tanh_inplace(&a[0], a.shape[0])

