# ----------------------------------------------------------------------------- optimizers
# One pass per parameter over 1-D views (p.reshape(-1)); g is read as clip(g, -clip, clip) *
# scale (clip = inf: none; scale < 1: global-norm clipping). Twin: reference.UpdatePlan.

cdef class UpdatePlan:
    """The optimizer's arrays, bound once, so that a step over every parameter is one call.

    At the classic char-RNN size (hidden 100) a step updates five small arrays; acquiring four
    buffers per array and dispatching on dtype every step costs more than the arithmetic. A plan
    takes a list of (p, g, slots) 1-D C-contiguous arrays of one dtype (checked by optim.py,
    which builds a plan only for a set of arrays it has validated), keeps references to them,
    and runs the one-pass loops of fastrnn_simd.h over all of them. Keeping the references is
    what keeps the data pointers valid: numpy refuses to resize an array that is referenced
    elsewhere.
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
        """p -= lr * g for every entry."""
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
