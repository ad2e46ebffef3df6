"""Max pooling with argmax on the CPU (reference and math: ``minicnn/ops/max_pool2d.py``).

One thread per plane (b, c). A window is clipped to the input instead of padded with
-inf, which picks the same element: the first maximum in row-major window order (the
first NaN, if any, as numpy's argmax has it). Backward adds each dy to its argmax
in output order, the reference's order, with no atomics.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, fastmath=False, cache=True)
def _max_pool_forward(x, kh, kw, sh, sw, ph, pw, y, argmax):
    planes, H, W = x.shape
    oh, ow = y.shape[1], y.shape[2]
    for p in prange(planes):
        plane = x[p]
        for q in range(oh):
            h0 = q * sh - ph
            hs, he = max(h0, 0), min(h0 + kh, H)
            for r in range(ow):
                w0 = r * sw - pw
                ws, we = max(w0, 0), min(w0 + kw, W)
                best = plane[hs, ws]
                where = hs * W + ws
                nan = False  # a branch-free test here; NaN windows are redone below
                for h in range(hs, he):
                    for w in range(ws, we):
                        v = plane[h, w]
                        nan |= v != v
                        if v > best:
                            best = v
                            where = h * W + w
                if nan:  # numpy's argmax: the first NaN is the maximum
                    for h in range(he - 1, hs - 1, -1):
                        for w in range(we - 1, ws - 1, -1):
                            if plane[h, w] != plane[h, w]:
                                best = plane[h, w]
                                where = h * W + w
                y[p, q, r] = best
                argmax[p, q, r] = where


@njit(parallel=True, fastmath=False, cache=True)
def _max_pool_backward(dy, argmax, dx):
    planes, L = dy.shape
    for p in prange(planes):
        dx[p, :] = 0
        for t in range(L):
            dx[p, argmax[p, t]] += dy[p, t]


def max_pool_forward(x, kh, kw, sh, sw, ph, pw, oh, ow):
    n, C, H, W = x.shape
    x3 = np.ascontiguousarray(x).reshape(n * C, H, W)
    y = np.empty((n, C, oh, ow), dtype=x.dtype)
    argmax = np.empty((n, C, oh, ow), dtype=np.int64)
    _max_pool_forward(x3, kh, kw, sh, sw, ph, pw, y.reshape(n * C, oh, ow), argmax.reshape(n * C, oh, ow))
    return y, argmax


def max_pool_backward(dy, argmax, x_shape):
    n, C, H, W = x_shape
    planes = n * C
    dx = np.empty(x_shape, dtype=dy.dtype)
    _max_pool_backward(np.ascontiguousarray(dy).reshape(planes, -1),
                       np.ascontiguousarray(argmax, dtype=np.int64).reshape(planes, -1),
                       dx.reshape(planes, H * W))
    return dx
