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
def _max_pool_forward(x, H, W, kh, kw, sh, sw, ph, pw, y, argmax):
    """x flat (planes, H, W); y, argmax (planes, oh, ow)."""
    planes, oh, ow = y.shape
    for p in prange(planes):
        base = np.uint64(p * H * W)
        for q in range(oh):
            h0 = q * sh - ph
            hs, he = max(h0, 0), min(h0 + kh, H)
            for r in range(ow):
                w0 = r * sw - pw
                ws, we = max(w0, 0), min(w0 + kw, W)
                where = np.uint64(hs * W + ws)
                best = x[base + where]
                nan = False  # a branch-free test here; a window with a NaN is redone below
                for h in range(np.uint64(hs), np.uint64(he)):
                    for w in range(np.uint64(h * W + ws), np.uint64(h * W + we)):
                        v = x[base + w]
                        nan |= v != v
                        if v > best:
                            best = v
                            where = w
                if nan:  # numpy's argmax: the first NaN is the maximum
                    for h in range(he - 1, hs - 1, -1):
                        for w in range(h * W + we - 1, h * W + ws - 1, -1):
                            if x[base + np.uint64(w)] != x[base + np.uint64(w)]:
                                best = x[base + np.uint64(w)]
                                where = np.uint64(w)
                y[p, q, r] = best
                argmax[p, q, r] = where


@njit(parallel=True, fastmath=False, cache=True)
def _max_pool_backward(dy, argmax, dx):
    planes, L = dy.shape
    for p in prange(planes):
        dx[p, :] = 0
        for t in range(L):
            dx[p, np.uint64(argmax[p, t])] += dy[p, t]


def max_pool_forward(x, kh, kw, sh, sw, ph, pw, oh, ow):
    n, C, H, W = x.shape
    y = np.empty((n, C, oh, ow), dtype=x.dtype)
    argmax = np.empty((n, C, oh, ow), dtype=np.int64)
    _max_pool_forward(np.ascontiguousarray(x).reshape(-1), H, W, kh, kw, sh, sw, ph, pw,
                      y.reshape(n * C, oh, ow), argmax.reshape(n * C, oh, ow))
    return y, argmax


def max_pool_backward(dy, argmax, x_shape):
    n, C, H, W = x_shape
    planes = n * C
    dx = np.empty(x_shape, dtype=dy.dtype)
    _max_pool_backward(np.ascontiguousarray(dy).reshape(planes, -1),
                       np.ascontiguousarray(argmax, dtype=np.int64).reshape(planes, -1),
                       dx.reshape(planes, H * W))
    return dx
