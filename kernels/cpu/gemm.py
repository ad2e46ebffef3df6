"""Matrix product on the CPU (reference and math: ``minicnn/ops/gemm.py``): BLAS
through numpy.matmul, as one single-threaded GEMM per thread, each on its own block of
the output, instead of one multi-threaded GEMM.

Why: the threads of one OpenBLAS GEMM wait for each other many times per call. When
another process holds one of the cores, every such wait lasts until the descheduled
thread runs again; on 2 cores with one busy elsewhere, conv1's weight gradient (96 x 363
outputs, 45375-long sums) took 1.7 s with 2 BLAS threads and 0.08 s with 1. Independent
blocks never wait for each other, and on an idle machine they run as fast as the
threaded GEMM. Each output element is still one BLAS dot product over the whole inner
dimension, so the result does not depend on the number of threads.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

# below this many multiply-adds one call does it all: the hand-over would cost more
MIN_SPLIT_WORK = 1 << 22
_state = {"executor": None, "workers": 0, "controller": None}
_lock = threading.Lock()


def _executor_and_controller(workers):
    with _lock:
        if _state["workers"] < workers:
            if _state["executor"] is not None:
                _state["executor"].shutdown(wait=True)
            _state["executor"] = ThreadPoolExecutor(workers, thread_name_prefix="minicnn-gemm")
            _state["workers"] = workers
        if _state["controller"] is None:
            import threadpoolctl

            _state["controller"] = threadpoolctl.ThreadpoolController()
        return _state["executor"], _state["controller"]


def _bounds(size, parts, align=16):
    """Split [0, size) into ``parts`` ranges whose inner boundaries are multiples of ``align``."""
    step = -(-size // parts)
    step = -(-step // align) * align
    return [(s, min(size, s + step)) for s in range(0, size, step)]


def gemm(a, b, out):
    threads = numba.get_num_threads()
    M, K = a.shape
    N = b.shape[1]
    if threads < 2 or M * N * K < MIN_SPLIT_WORK or max(M, N) < 32:
        return np.matmul(a, b, out=out)
    # split the longer side of the output: the operand read whole by every block is then
    # the smaller one
    if M >= N:
        blocks = [(a[s:e], b, out[s:e]) for s, e in _bounds(M, threads)]
    else:
        blocks = [(a, b[:, s:e], out[:, s:e]) for s, e in _bounds(N, threads)]
    executor, controller = _executor_and_controller(threads - 1)
    with controller.limit(limits=1, user_api="blas"):
        futures = [executor.submit(np.matmul, *block[:2], out=block[2]) for block in blocks[1:]]
        np.matmul(*blocks[0][:2], out=blocks[0][2])
        for f in futures:
            f.result()
    return out
