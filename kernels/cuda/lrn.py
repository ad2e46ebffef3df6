"""Local response normalisation across channels on the GPU (math: ``minicnn.ops.lrn``).

One thread per element; each sums its channel window (forward) or the windows that hold
its channel (backward, a gather), in the reference's channel order.
"""

from __future__ import annotations

import math

from numba import cuda

from minicnn.backend import array_module

from .launch import launch, scalar


@cuda.jit
def _lrn_forward(x, before, after, k, alpha_over_size, neg_beta, zero, y, scale):
    n, C, S = x.shape
    for idx in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        s = idx % S
        t = idx // S
        c = t % C
        b = t // C
        acc = zero
        for cc in range(max(c - before, 0), min(c + after + 1, C)):
            v = x[b, cc, s]
            acc += v * v
        sc = k + alpha_over_size * acc
        scale[b, c, s] = sc
        y[b, c, s] = x[b, c, s] * math.pow(sc, neg_beta)


@cuda.jit
def _lrn_backward(x, y, scale, dy, before, after, neg_beta, coef, zero, dx):
    n, C, S = x.shape
    for idx in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        s = idx % S
        t = idx // S
        c = t % C
        b = t // C
        ratio = zero
        for cc in range(max(c - before, 0), min(c + after + 1, C)):
            ratio += dy[b, cc, s] * y[b, cc, s] / scale[b, cc, s]
        dx[b, c, s] = dy[b, c, s] * math.pow(scale[b, c, s], neg_beta) - coef * x[b, c, s] * ratio


def _planes(xp, a):
    n, C = a.shape[:2]
    return xp.ascontiguousarray(a).reshape(n, C, -1)


def lrn_forward(x, size, alpha, beta, k):
    """Return (y, scale) with scale = k + alpha/size * (window sum of x^2)."""
    xp = array_module(x)
    dt = x.dtype
    y = xp.empty(x.shape, dtype=dt)
    scale = xp.empty(x.shape, dtype=dt)
    launch(_lrn_forward, x.size, _planes(xp, x), size // 2, (size - 1) // 2, scalar(k, dt),
           scalar(alpha / size, dt), scalar(-beta, dt), scalar(0, dt), _planes(xp, y), _planes(xp, scale))
    return y, scale


def lrn_backward(x, y, scale, dy, size, alpha, beta):
    xp = array_module(x)
    dt = x.dtype
    dx = xp.empty(x.shape, dtype=dt)
    # channel c's gradient gathers from the channels whose window holds c: the window
    # mirrored, (size - 1) // 2 channels before and size // 2 after
    launch(_lrn_backward, x.size, _planes(xp, x), _planes(xp, y), _planes(xp, scale), _planes(xp, dy),
           (size - 1) // 2, size // 2, scalar(-beta, dt), scalar(2.0 * alpha * beta / size, dt),
           scalar(0, dt), _planes(xp, dx))
    return dx
