"""ReLU on the GPU, one thread per element (math: ``minicnn.ops.relu``)."""

from __future__ import annotations

from numba import cuda

from minicnn.backend import array_module

from .launch import launch


@cuda.jit
def _relu_forward(x, y):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        y[i] = 0 if v < 0 else v  # NaN passes through, as with maximum(x, 0)


@cuda.jit
def _relu_backward(y, dy, dx):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        dx[i] = dy[i] * (y[i] > 0)


def relu_forward(x):
    xp = array_module(x)
    x = xp.ascontiguousarray(x)
    y = xp.empty_like(x)
    launch(_relu_forward, x.size, x.reshape(-1), y.reshape(-1))
    return y


def relu_backward(y, dy):
    xp = array_module(dy)
    dy = xp.ascontiguousarray(dy)
    dx = xp.empty_like(dy)
    launch(_relu_backward, dy.size, xp.ascontiguousarray(y).reshape(-1), dy.reshape(-1), dx.reshape(-1))
    return dx
