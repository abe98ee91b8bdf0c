# ----------------------------------------------------------------------------- probes
# A single loop exposed for tests and the speed guard (checked against numpy).

def tanh_array(floating[::1] a):
    """a[:] = tanh(a), the kernel's vectorised tanh."""
    with nogil:
        tanh_inplace(&a[0], a.shape[0])
