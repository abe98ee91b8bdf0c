# cython: language_level=3
"""The compiled kernel of fastrnn: one extension module, its parts in included files by job.

    _blas.pxd       the typed BLAS shim: row-major gemm / gemv over scipy.linalg.cython_blas
    _loops.pxd      fused-type front doors to the C loops of fastrnn_simd.h and fastrnn_gates.h
    _recurrent.pxi  the packed recurrent product (fastrnn_recurrent.h): every recurrence's
                    h_{t-1} @ Whh and dpre_t @ Whh^T, its version choice and its test door
    _rnn.pxi        the single-layer rnn: rnn_forward / rnn_backward over one chunk and their
                    cdef helpers (embed, recurrence, output and weight gradients)
    _cells.pxi      stacked layers: rnn / LSTM / GRU layer forward and backward, input
                    projections, dropout, the output head, the input embedding (each a cdef
                    core on pointers and a def door over memoryviews)
    _generate.pxi   generation: stack_generate (every cell and depth, N streams; its head
                    product for N > 1 in fastrnn_rows.h), rnn_generate, sample_index
                    (temperature, top-k, greedy draws)
    _stack.pxi      the whole stack over one chunk: stack_forward / stack_backward (every cell
                    and depth, embedding, dropout, head and loss in one nogil region each)
    _optim.pxi      optimizer updates: UpdatePlan (SGD, Adagrad, RMSprop, Adam), clipped norms
    _checks.pxi     aids to model.py's validation: SameArrays, index_bounds, all_finite
    _probes.pxi     the vectorised tanh and the BLAS shim exposed to tests and the speed guard

The numpy twins: reference.py (_rnn.pxi, _generate.pxi, _optim.pxi) and reference_cells.py
(_cells.pxi, _stack.pxi, and stack_generate of _generate.pxi), function by function.
Dimension letters: B streams, T steps, H hidden, V vocabulary; time-major buffers. Every kernel
is fused over float32 / float64, runs its whole loop in one nogil region and allocates nothing;
model.py validates and allocates before calling.
"""
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.math cimport INFINITY, log
from libc.string cimport memcpy, memset

from cython.parallel cimport parallel
from openmp cimport omp_get_num_threads, omp_get_thread_num

from ._blas cimport floating, gemm, gemv
from ._loops cimport (
    accumulate, add_bias, column_sums, exp_nonpos_inplace, normalize, subtract_max, tanh_backward,
    tanh_inplace,
    gru_cell_forward, gru_units_backward, gru_units_forward, lstm_cell_forward,
    lstm_units_backward, lstm_units_forward, mul, scale,
    max_value, sampling_weights, fr_all_finite_d, fr_all_finite_f,
    fr_sgd_d, fr_sgd_f, fr_adagrad_d, fr_adagrad_f, fr_rmsprop_d, fr_rmsprop_f, fr_adam_d,
    fr_adam_f, fr_clipped_sq_norm_d, fr_clipped_sq_norm_f,
)

include "_recurrent.pxi"
include "_rnn.pxi"
include "_cells.pxi"
include "_generate.pxi"
include "_stack.pxi"
include "_optim.pxi"
include "_checks.pxi"
include "_probes.pxi"
