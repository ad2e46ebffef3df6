"""Matrix product, the GEMM of convolution and linear layers:

    out[m, n] = sum_k a[m, k] * b[k, n]

BLAS through ``xp.matmul`` on every backend; ``a`` and ``b`` may be transposed views.
The cpu backend runs it as one single-threaded GEMM per thread on blocks of the output
(``kernels/cpu/gemm.py`` says why).
"""

from __future__ import annotations

from minicnn.backend import array_module, hot_path


@hot_path
def gemm(a, b, out):
    """Write a @ b into ``out`` (M, N) and return ``out``."""
    return array_module(a).matmul(a, b, out=out)


@hot_path
def gemm_batched(a, b, out):
    """out[i] = a[i] @ b[i] for every index i of the leading (batch) dimensions: independent
    products, such as Winograd's one per transformed position and group; returns out."""
    return array_module(a).matmul(a, b, out=out)
