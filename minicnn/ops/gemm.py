"""Matrix product, the GEMM of convolution and linear layers:

    out[m, n] = sum_k a[m, k] * b[k, n]          or, with accumulate=True,
    out[m, n] = out[m, n] + sum_k a[m, k] * b[k, n]     (BLAS's beta = 1)

BLAS through ``xp.matmul`` on every backend; ``a`` and ``b`` may be transposed views.
Accumulating lets a weight gradient be summed over batch chunks in place, as MatConvNet's
``nnconv_blas`` does through beta. The cpu backend runs it as one single-threaded GEMM per
thread on blocks of the output (``kernels/cpu/gemm.py`` says why).
"""

from __future__ import annotations

from minicnn.backend import array_module, hot_path


@hot_path
def gemm(a, b, out, accumulate=False):
    """Write a @ b into ``out`` (M, N), or add it to ``out`` with ``accumulate``; return ``out``."""
    xp = array_module(a)
    if accumulate:
        out += xp.matmul(a, b)
        return out
    return xp.matmul(a, b, out=out)


@hot_path
def gemm_batched(a, b, out, accumulate=False):
    """out[i] = a[i] @ b[i] (or out[i] += a[i] @ b[i] with ``accumulate``) for every index i
    of the leading (batch) dimensions: independent products, such as Winograd's one per
    transformed position and group; returns out."""
    xp = array_module(a)
    if accumulate:
        out += xp.matmul(a, b)
        return out
    return xp.matmul(a, b, out=out)
