"""Max pooling on the GPU (math and output sizes: ``minicnn.ops.max_pool2d``).

Forward: one thread per output element scans its window in row-major order and keeps the
first maximum (a NaN wins, as in NumPy's argmax), recording its flat index h * W + w.

Backward: the signature carries no window geometry, so a thread cannot find the windows
that cover an input pixel; instead one thread owns one (n, c) plane and adds that plane's
dy into dx in output order. No two threads write the same element, so there are no atomics
and the sum is the same on every run.
"""

from __future__ import annotations

from numba import cuda

from minicnn.backend import array_module

from .launch import launch


@cuda.jit
def _max_pool_forward(x, kh, kw, sh, sw, ph, pw, y, argmax):
    n, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    for idx in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        q = idx % OW
        t = idx // OW
        p = t % OH
        t = t // OH
        c = t % C
        b = t // C
        h0 = p * sh - ph
        w0 = q * sw - pw
        # A window always starts inside the input or its top/left padding, so its first
        # element inside the input is (max(h0, 0), max(w0, 0)).
        hs = max(h0, 0)
        ws = max(w0, 0)
        best = x[b, c, hs, ws]
        best_at = hs * W + ws
        for h in range(hs, min(h0 + kh, H)):
            for w in range(ws, min(w0 + kw, W)):
                v = x[b, c, h, w]
                if v > best or (v != v and best == best):
                    best = v
                    best_at = h * W + w
        y[b, c, p, q] = best
        argmax[b, c, p, q] = best_at


@cuda.jit
def _max_pool_backward(dy, argmax, dx):
    planes, outputs = dy.shape
    for plane in range(cuda.grid(1), planes, cuda.gridsize(1)):
        for j in range(outputs):
            dx[plane, argmax[plane, j]] += dy[plane, j]


def max_pool_forward(x, kh, kw, sh, sw, ph, pw, oh, ow):
    """Return (y, argmax): y (n, C, oh, ow); argmax the flat index h * W + w in each plane."""
    xp = array_module(x)
    n, C = x.shape[:2]
    y = xp.empty((n, C, oh, ow), dtype=x.dtype)
    argmax = xp.empty((n, C, oh, ow), dtype=xp.int64)
    launch(_max_pool_forward, y.size, xp.ascontiguousarray(x), kh, kw, sh, sw, ph, pw, y, argmax)
    return y, argmax


def max_pool_backward(dy, argmax, x_shape):
    """Return dx of shape ``x_shape``: each dy added to its window's argmax."""
    xp = array_module(dy)
    n, C, H, W = x_shape
    dx = xp.zeros((n * C, H * W), dtype=dy.dtype)
    planes = n * C
    launch(_max_pool_backward, planes, xp.ascontiguousarray(dy).reshape(planes, -1),
           xp.ascontiguousarray(argmax).reshape(planes, -1), dx)
    return dx.reshape(tuple(x_shape))
