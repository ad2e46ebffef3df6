"""Matrix product on the CPU (reference and math: ``minicnn/ops/gemm.py``): BLAS
through numpy.matmul, as one single-threaded GEMM per thread, each on its own block of
the output, instead of one multi-threaded GEMM.

Why: the threads of one OpenBLAS GEMM wait for each other many times per call. When
another process holds one of the cores, every such wait lasts until the descheduled
thread runs again, and the threaded GEMM becomes many times slower than a single-threaded
one (figures: docs/performance.md). Independent blocks never wait for each other, and on an
idle machine they run as fast as the threaded GEMM. The blocks are cut by the shapes alone,
never by the number of threads: BLAS rounds a block's products differently from a wider
block's (its kernels are chosen and blocked by shape), so a cut that followed the threads
would make the results depend on them; cut by shape, they are the same bits with any
number of threads. ``gemm_batched`` goes one step further for a stack of independent products:
each thread takes whole products, an equal share of them, and nobody waits until the last
one is done. With ``accumulate`` each block adds its product to its block of ``out``.

The products run single-threaded because the BLAS is limited to one thread while the cpu
backend is the current one (:func:`single_threaded_blas`, called by ``set_backend``):
OpenBLAS's own threads, woken by any threaded call (an einsum, a small product), spin for
a while afterwards, taking CPU time from the kernels' threads.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

# below this many multiply-adds one call does it all: the hand-over would cost more
MIN_SPLIT_WORK = 1 << 22
# the output's longer side is cut into at most BLOCKS blocks of at least MIN_BLOCK rows or
# columns, whatever the number of threads: one block per core of the machine (so that all
# its cores can take part), at most 16 (more would repack the shared operand for little)
BLOCKS, MIN_BLOCK = max(2, min(16, os.cpu_count() or 1)), 32
_state = {"executor": None, "workers": 0}
_lock = threading.Lock()


def single_threaded_blas():
    """Limit every BLAS loaded to one thread; return the callable that restores the previous
    limits. (A new look at the loaded libraries each time: SciPy or PyTorch may bring their own.)"""
    import threadpoolctl

    return threadpoolctl.threadpool_limits(limits=1, user_api="blas").restore_original_limits


def _product(a, b, out, accumulate):
    if accumulate:
        out += np.matmul(a, b)
    else:
        np.matmul(a, b, out=out)


def _products(share, accumulate):
    for a, b, out in share:
        _product(a, b, out, accumulate)


def _run_shares(shares, accumulate):
    """Run each share, a list of (a, b, out) products, on a thread of its own (the first on
    this one) and wait for all."""
    with _lock:
        if _state["workers"] < len(shares) - 1:
            if _state["executor"] is not None:
                _state["executor"].shutdown(wait=True)
            _state["executor"] = ThreadPoolExecutor(len(shares) - 1, thread_name_prefix="minicnn-gemm")
            _state["workers"] = len(shares) - 1
        executor = _state["executor"]
    futures = [executor.submit(_products, share, accumulate) for share in shares[1:]]
    _products(shares[0], accumulate)
    for f in futures:
        f.result()


def _bounds(size, parts, align=16):
    """Split [0, size) into ``parts`` ranges whose inner boundaries are multiples of ``align``."""
    step = -(-size // parts)
    step = -(-step // align) * align
    return [(s, min(size, s + step)) for s in range(0, size, step)]


def gemm(a, b, out, accumulate=False):
    threads = numba.get_num_threads()
    M, K = a.shape
    N = b.shape[1]
    parts = min(BLOCKS, max(M, N) // MIN_BLOCK)
    if M * N * K < MIN_SPLIT_WORK or parts < 2:
        _product(a, b, out, accumulate)
        return out
    # cut the longer side of the output: the operand read whole by every block is then
    # the smaller one
    if M >= N:
        blocks = [(a[s:e], b, out[s:e]) for s, e in _bounds(M, parts)]
    else:
        blocks = [(a, b[:, s:e], out[:, s:e]) for s, e in _bounds(N, parts)]
    if threads < 2:
        _products(blocks, accumulate)
    else:
        _run_shares([blocks[t::threads] for t in range(min(threads, len(blocks)))], accumulate)
    return out


def gemm_batched(a, b, out, accumulate=False):
    products = [(a[i], b[i], out[i]) for i in np.ndindex(a.shape[:-2])]
    threads = numba.get_num_threads()
    if threads < 2 or len(products) < threads:
        for p in products:
            gemm(*p, accumulate)
        return out
    # the stack's products all have one shape: an equal number to each thread
    _run_shares([products[t::threads] for t in range(threads)], accumulate)
    return out
