"""Clip forward and backward on the CPU (reference and math: ``minicnn/ops/clip.py``),
elementwise over the flattened array; a NaN stays a NaN, as numpy's clip keeps it."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, fastmath=False, cache=True)
def _clip_forward(x, lo, hi, y):
    for t in prange(x.size):
        v = x[t]
        if v < lo:
            v = lo
        elif v > hi:
            v = hi
        y[t] = v


@njit(parallel=True, fastmath=False, cache=True)
def _clip_backward(y, dy, lo, hi, dx):
    for t in prange(y.size):
        if y[t] > lo and y[t] < hi:
            dx[t] = dy[t]
        else:
            dx[t] = 0


def clip_forward(x, lo, hi):
    flat = np.ascontiguousarray(x).reshape(-1)
    y = np.empty_like(flat)
    _clip_forward(flat, flat.dtype.type(lo), flat.dtype.type(hi), y)
    return y.reshape(x.shape)


def clip_backward(y, dy, lo, hi):
    dtype = np.result_type(y.dtype, dy.dtype)
    dyf = np.ascontiguousarray(dy, dtype=dtype).reshape(-1)
    dx = np.empty_like(dyf)
    _clip_backward(np.ascontiguousarray(y, dtype=dtype).reshape(-1), dyf, dtype.type(lo), dtype.type(hi), dx)
    return dx.reshape(dy.shape)
