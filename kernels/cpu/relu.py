"""ReLU forward and backward on the CPU (reference and math: ``minicnn/ops/relu.py``).

Elementwise over the flattened array; testing ``v < 0`` rather than ``v > 0`` keeps a NaN
a NaN, as numpy's maximum does.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, fastmath=False, cache=True)
def _relu_forward(x, y):
    for t in prange(x.size):
        if x[t] < 0:
            y[t] = 0
        else:
            y[t] = x[t]


@njit(parallel=True, fastmath=False, cache=True)
def _relu_backward(y, dy, dx):
    for t in prange(y.size):
        if y[t] > 0:
            dx[t] = dy[t]
        else:
            dx[t] = 0


def relu_forward(x):
    flat = np.ascontiguousarray(x).reshape(-1)
    y = np.empty_like(flat)
    _relu_forward(flat, y)
    return y.reshape(x.shape)


def relu_backward(y, dy):
    if y.shape != dy.shape:
        raise ValueError(f"relu_backward: y {y.shape} and dy {dy.shape} differ")
    dtype = np.result_type(y.dtype, dy.dtype)
    dyf = np.ascontiguousarray(dy, dtype=dtype).reshape(-1)
    dx = np.empty_like(dyf)
    _relu_backward(np.ascontiguousarray(y, dtype=dtype).reshape(-1), dyf, dx)
    return dx.reshape(dy.shape)
