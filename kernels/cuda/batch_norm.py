"""Batch normalisation's evaluation map on the GPU, y = x scale[c] + shift[c], one thread per
element (math: ``minicnn.ops.batch_norm``)."""

from __future__ import annotations

from numba import cuda

from minicnn.backend import array_module

from .launch import launch


@cuda.jit
def _channel_affine(x, scale, shift, plane, y):
    C = scale.size
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        c = (i // plane) % C
        y[i] = x[i] * scale[c] + shift[c]


def channel_affine(x, scale, shift):
    xp = array_module(x)
    x = xp.ascontiguousarray(x)
    y = xp.empty_like(x)
    plane = x.size // (x.shape[0] * x.shape[1]) if x.size else 1
    launch(_channel_affine, x.size, x.reshape(-1), xp.ascontiguousarray(scale, dtype=x.dtype),
           xp.ascontiguousarray(shift, dtype=x.dtype), plane, y.reshape(-1))
    return y
