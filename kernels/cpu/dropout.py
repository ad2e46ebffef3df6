"""Dropout's mask apply on the CPU (reference and math: ``minicnn/ops/dropout.py``)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, fastmath=False, cache=True)
def _multiply(x, mask, y):
    for t in prange(x.size):
        y[t] = x[t] * mask[t]


def dropout_apply(x, mask):
    if x.shape != mask.shape:
        raise ValueError(f"dropout_apply: x {x.shape} and mask {mask.shape} differ")
    dtype = np.result_type(x.dtype, mask.dtype)
    xf = np.ascontiguousarray(x, dtype=dtype).reshape(-1)
    y = np.empty_like(xf)
    _multiply(xf, np.ascontiguousarray(mask, dtype=dtype).reshape(-1), y)
    return y.reshape(x.shape)
