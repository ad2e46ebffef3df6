"""Batch normalisation's evaluation map on the CPU, y = x scale[c] + shift[c] (reference and
math: ``minicnn/ops/batch_norm.py``): one thread per (image, channel) plane."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, fastmath=False, cache=True)
def _channel_affine(x, scale, shift, y):
    n, C, L = x.shape
    for p in prange(n * C):
        b, c = p // C, p % C
        s, t = scale[c], shift[c]
        src, dst = x[b, c], y[b, c]
        for i in range(L):
            dst[i] = src[i] * s + t


def channel_affine(x, scale, shift):
    n, C = x.shape[:2]
    y = np.empty(x.shape, dtype=x.dtype)
    _channel_affine(np.ascontiguousarray(x).reshape(n, C, -1), np.ascontiguousarray(scale, dtype=x.dtype),
                    np.ascontiguousarray(shift, dtype=x.dtype), y.reshape(n, C, -1))
    return y
