"""Dropout on the GPU: applying the scaled mask, one thread per element (math:
``minicnn.ops.dropout``; the mask itself is drawn by the backend's generator on the device)."""

from __future__ import annotations

from numba import cuda

from minicnn.backend import array_module

from .launch import launch


@cuda.jit
def _multiply(x, mask, y):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        y[i] = x[i] * mask[i]


def dropout_apply(x, mask):
    xp = array_module(x)
    x = xp.ascontiguousarray(x)
    y = xp.empty_like(x)
    launch(_multiply, x.size, x.reshape(-1), xp.ascontiguousarray(mask).reshape(-1), y.reshape(-1))
    return y
