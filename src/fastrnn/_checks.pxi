# Checks: what model.py's door of validation uses before any unchecked code runs.

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
