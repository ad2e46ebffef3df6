"""Softmax cross-entropy on the GPU (math: ``minicnn.ops.softmax_xent``).

One block per row: its threads stride over the logits, then reduce the row's maximum and
the sum of exponentials in shared memory (a fixed tree, so every run adds in the same
order), and write the row's loss and gradient. A second kernel, one block, reduces the rows'
losses into the mean. Sums are accumulated in float64.

Labels already on the device are not range-checked on the host (that would wait for the
GPU at every step); a label outside [0, K) makes its row's loss and gradient NaN, so the
loss reads NaN and the training loop's NaN check stops.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from minicnn.backend import array_module

from .launch import ROW_THREADS, launch_rows


@cuda.jit(device=True)
def _block_reduce(shared, t, take_max):
    """Reduce shared[0:ROW_THREADS] into shared[0] (max or sum); all threads must call it."""
    width = ROW_THREADS // 2
    while width > 0:
        if t < width:
            if take_max:
                shared[t] = max(shared[t], shared[t + width])
            else:
                shared[t] += shared[t + width]
        cuda.syncthreads()
        width //= 2


@cuda.jit
def _softmax_xent_rows(logits, labels, weights, weighted, nll, grad):
    shared = cuda.shared.array(ROW_THREADS, float64)
    n, K = logits.shape
    t = cuda.threadIdx.x
    for r in range(cuda.blockIdx.x, n, cuda.gridDim.x):
        m = -math.inf
        for k in range(t, K, ROW_THREADS):
            m = max(m, float(logits[r, k]))
        shared[t] = m
        cuda.syncthreads()
        _block_reduce(shared, t, True)
        m = shared[0]
        cuda.syncthreads()
        total = 0.0
        for k in range(t, K, ROW_THREADS):
            total += math.exp(float(logits[r, k]) - m)
        shared[t] = total
        cuda.syncthreads()
        _block_reduce(shared, t, False)
        total = shared[0]
        cuda.syncthreads()
        label = labels[r]
        w = float(weights[r]) if weighted else 1.0
        scale = w / n
        if label < 0 or label >= K:
            for k in range(t, K, ROW_THREADS):
                grad[r, k] = math.nan
            if t == 0:
                nll[r] = math.nan
        else:
            for k in range(t, K, ROW_THREADS):
                p = math.exp(float(logits[r, k]) - m) / total
                grad[r, k] = (p - (1.0 if k == label else 0.0)) * scale
            if t == 0:
                nll[r] = w * (math.log(total) - (float(logits[r, label]) - m))


@cuda.jit
def _mean(values, out):
    shared = cuda.shared.array(ROW_THREADS, float64)
    t = cuda.threadIdx.x
    acc = 0.0
    for i in range(t, values.size, ROW_THREADS):
        acc += values[i]
    shared[t] = acc
    cuda.syncthreads()
    _block_reduce(shared, t, False)
    if t == 0:
        out[0] = shared[0] / values.size


def softmax_xent(logits, labels, weights):
    """Return (loss as a 0-d array, dlogits); ``weights`` may be None."""
    xp = array_module(logits)
    n = logits.shape[0]
    nll = xp.empty(n, dtype=np.float64)
    grad = xp.empty(logits.shape, dtype=logits.dtype)
    loss = xp.empty(1, dtype=logits.dtype)
    if n == 0:
        return xp.full((), np.nan, dtype=logits.dtype), grad
    weighted = weights is not None
    launch_rows(_softmax_xent_rows, n, logits, labels, weights if weighted else nll, weighted, nll, grad)
    launch_rows(_mean, 1, nll, loss)
    return loss.reshape(()), grad
