# Fused-type front doors to the vectorised C loops: fastrnn_simd.h (elementwise loops, softmax,
# optimizer updates, finiteness) and fastrnn_gates.h (the LSTM and GRU gate loops). The kernel's
# parts call these, never the _f/_d C functions, except where a loop dispatches on dtype by hand
# (UpdatePlan, all_finite).
#
# A .pxd like _blas.pxd: it holds only extern declarations and cdef inline functions, which is
# all a front door is, so every included part of _kernel.pyx can cimport them by name.
from libc.string cimport memset

from ._blas cimport floating

cdef extern from "fastrnn_simd.h" nogil:
    void fr_tanh_inplace_f(float *a, Py_ssize_t n)
    void fr_tanh_inplace_d(double *a, Py_ssize_t n)
    void fr_add_f(float *dst, const float *src, const float *bias, Py_ssize_t n)
    void fr_add_d(double *dst, const double *src, const double *bias, Py_ssize_t n)
    void fr_accumulate_f(float *acc, const float *src, Py_ssize_t n)
    void fr_accumulate_d(double *acc, const double *src, Py_ssize_t n)
    void fr_tanh_backward_f(float *dh, const float *h, Py_ssize_t n)
    void fr_tanh_backward_d(double *dh, const double *h, Py_ssize_t n)
    void fr_subtract_max_f(float *row, Py_ssize_t n)
    void fr_subtract_max_d(double *row, Py_ssize_t n)
    void fr_exp_nonpos_inplace_f(float *a, Py_ssize_t n)
    void fr_exp_nonpos_inplace_d(double *a, Py_ssize_t n)
    double fr_normalize_f(float *row, Py_ssize_t n)
    double fr_normalize_d(double *row, Py_ssize_t n)
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
    float fr_max_f(const float *x, Py_ssize_t n)
    double fr_max_d(const double *x, Py_ssize_t n)
    void fr_sampling_weights_f(double *w, const float *x, Py_ssize_t n, double r, double m,
                               double cutoff)
    void fr_sampling_weights_d(double *w, const double *x, Py_ssize_t n, double r, double m,
                               double cutoff)
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


cdef inline void subtract_max(floating *row, Py_ssize_t n) noexcept nogil:
    """row -= max(row)"""
    if floating is float:
        fr_subtract_max_f(row, n)
    else:
        fr_subtract_max_d(row, n)


cdef inline void exp_nonpos_inplace(floating *a, Py_ssize_t n) noexcept nogil:
    """a = exp(a) for a <= 0"""
    if floating is float:
        fr_exp_nonpos_inplace_f(a, n)
    else:
        fr_exp_nonpos_inplace_d(a, n)


cdef inline double normalize(floating *row, Py_ssize_t n) noexcept nogil:
    """row /= sum(row); returns the sum"""
    if floating is float:
        return fr_normalize_f(row, n)
    else:
        return fr_normalize_d(row, n)


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


cdef extern from "fastrnn_gates.h" nogil:
    void fr_mul_f(float *dst, const float *a, const float *b, Py_ssize_t n)
    void fr_mul_d(double *dst, const double *a, const double *b, Py_ssize_t n)
    void fr_scale_f(float *a, const float *b, Py_ssize_t n)
    void fr_scale_d(double *a, const double *b, Py_ssize_t n)
    void fr_lstm_forward_f(float *gates, Py_ssize_t stride, const float *c_prev, float *c,
                           float *tc, float *h, Py_ssize_t n)
    void fr_lstm_forward_d(double *gates, Py_ssize_t stride, const double *c_prev, double *c,
                           double *tc, double *h, Py_ssize_t n)
    void fr_lstm_backward_f(float *gates, Py_ssize_t stride, const float *c_prev,
                            const float *tc, const float *dh, float *dc, Py_ssize_t n)
    void fr_lstm_backward_d(double *gates, Py_ssize_t stride, const double *c_prev,
                            const double *tc, const double *dh, double *dc, Py_ssize_t n)
    void fr_gru_forward_f(float *gates, Py_ssize_t stride, const float *hn, const float *h_prev,
                          float *h, Py_ssize_t n)
    void fr_gru_forward_d(double *gates, Py_ssize_t stride, const double *hn,
                          const double *h_prev, double *h, Py_ssize_t n)
    void fr_gru_backward_f(float *gates, Py_ssize_t stride, float *hn, const float *h_prev,
                           const float *dh, float *dh_prev, Py_ssize_t n)
    void fr_gru_backward_d(double *gates, Py_ssize_t stride, double *hn, const double *h_prev,
                           const double *dh, double *dh_prev, Py_ssize_t n)


# ----------------------------------------------------------------------------- gate loops
# Fused-type front doors to fastrnn_gates.h. A *_cell_* loop handles one stream's whole row of
# H units; a *_units_* loop the n units of a row that a thread owns in a shared recurrence, its
# gate blocks `stride` (= H) apart (see fastrnn_gates.h).

cdef inline void mul(floating *dst, const floating *a, const floating *b,
                     Py_ssize_t n) noexcept nogil:
    if floating is float:
        fr_mul_f(dst, a, b, n)
    else:
        fr_mul_d(dst, a, b, n)


cdef inline void scale(floating *a, const floating *b, Py_ssize_t n) noexcept nogil:
    if floating is float:
        fr_scale_f(a, b, n)
    else:
        fr_scale_d(a, b, n)


cdef inline void lstm_units_forward(floating *gates, Py_ssize_t stride, const floating *c_prev,
                                    floating *c, floating *tc, floating *h,
                                    Py_ssize_t n) noexcept nogil:
    if floating is float:
        fr_lstm_forward_f(gates, stride, c_prev, c, tc, h, n)
    else:
        fr_lstm_forward_d(gates, stride, c_prev, c, tc, h, n)


cdef inline void lstm_units_backward(floating *gates, Py_ssize_t stride, const floating *c_prev,
                                     const floating *tc, const floating *dh, floating *dc,
                                     Py_ssize_t n) noexcept nogil:
    if floating is float:
        fr_lstm_backward_f(gates, stride, c_prev, tc, dh, dc, n)
    else:
        fr_lstm_backward_d(gates, stride, c_prev, tc, dh, dc, n)


cdef inline void gru_units_forward(floating *gates, Py_ssize_t stride, const floating *hn,
                                   const floating *h_prev, floating *h,
                                   Py_ssize_t n) noexcept nogil:
    if floating is float:
        fr_gru_forward_f(gates, stride, hn, h_prev, h, n)
    else:
        fr_gru_forward_d(gates, stride, hn, h_prev, h, n)


cdef inline void gru_units_backward(floating *gates, Py_ssize_t stride, floating *hn,
                                    const floating *h_prev, const floating *dh,
                                    floating *dh_prev, Py_ssize_t n) noexcept nogil:
    if floating is float:
        fr_gru_backward_f(gates, stride, hn, h_prev, dh, dh_prev, n)
    else:
        fr_gru_backward_d(gates, stride, hn, h_prev, dh, dh_prev, n)


cdef inline void lstm_cell_forward(floating *gates, const floating *c_prev, floating *c,
                                   floating *tc, floating *h, Py_ssize_t n) noexcept nogil:
    lstm_units_forward(gates, n, c_prev, c, tc, h, n)


cdef inline void gru_cell_forward(floating *gates, const floating *hn, const floating *h_prev,
                                  floating *h, Py_ssize_t n) noexcept nogil:
    gru_units_forward(gates, n, hn, h_prev, h, n)


cdef inline double max_value(const floating *x, Py_ssize_t n) noexcept nogil:
    """max(x[0:n]), n >= 1."""
    if floating is float:
        return fr_max_f(x, n)
    else:
        return fr_max_d(x, n)


cdef inline void sampling_weights(double *w, const floating *x, Py_ssize_t n, double r,
                                  double m, double cutoff) noexcept nogil:
    """w = where(x * r >= cutoff and x * r - m > -708, exp(x * r - m), 0) in double, for
    m = max(x) * r."""
    if floating is float:
        fr_sampling_weights_f(w, x, n, r, m, cutoff)
    else:
        fr_sampling_weights_d(w, x, n, r, m, cutoff)
