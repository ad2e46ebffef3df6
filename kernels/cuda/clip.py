"""Clip on the GPU, one thread per element (math: ``minicnn.ops.clip``)."""

from __future__ import annotations

from numba import cuda

from minicnn.backend import array_module

from .launch import launch, scalar


@cuda.jit
def _clip_forward(x, lo, hi, y):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        if v < lo:
            v = lo
        elif v > hi:
            v = hi
        y[i] = v


@cuda.jit
def _clip_backward(y, dy, lo, hi, dx):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        v = y[i]
        dx[i] = dy[i] * (v > lo and v < hi)


def clip_forward(x, lo, hi):
    xp = array_module(x)
    x = xp.ascontiguousarray(x)
    y = xp.empty_like(x)
    launch(_clip_forward, x.size, x.reshape(-1), scalar(lo, x.dtype), scalar(hi, x.dtype), y.reshape(-1))
    return y


def clip_backward(y, dy, lo, hi):
    xp = array_module(dy)
    dy = xp.ascontiguousarray(dy)
    dx = xp.empty_like(dy)
    launch(_clip_backward, dy.size, xp.ascontiguousarray(y, dtype=dy.dtype).reshape(-1), dy.reshape(-1),
           scalar(lo, dy.dtype), scalar(hi, dy.dtype), dx.reshape(-1))
    return dx
