"""Average pooling on the CPU (reference and math: ``minicnn/ops/avg_pool2d.py``).

One thread per plane (b, c). Forward sums each window clipped to the input and divides by
the window's count (the padded window clipped to H + ph, or its part inside the input).
Backward gathers: each input pixel adds dy / count of the outputs whose windows cover it,
output rows a with a*sh - ph <= h < a*sh - ph + kh, so no two threads write one element.
Sums accumulate in float64.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _count(o, stride, pad, kernel, size, include_pad):
    start = o * stride - pad
    end = min(start + kernel, size + pad)
    if include_pad:
        return end - start
    return min(end, size) - max(start, 0)


@njit(parallel=True, fastmath=False, cache=True)
def _avg_pool_forward(x, kh, kw, sh, sw, ph, pw, include_pad, y):
    planes, H, W = x.shape
    oh, ow = y.shape[1], y.shape[2]
    for p in prange(planes):
        for a in range(oh):
            h0 = a * sh - ph
            hs, he = max(h0, 0), min(h0 + kh, H)
            dh = _count(a, sh, ph, kh, H, include_pad)
            for b in range(ow):
                w0 = b * sw - pw
                ws, we = max(w0, 0), min(w0 + kw, W)
                total = 0.0
                for h in range(hs, he):
                    for w in range(ws, we):
                        total += x[p, h, w]
                y[p, a, b] = total / (dh * _count(b, sw, pw, kw, W, include_pad))


@njit(parallel=True, fastmath=False, cache=True)
def _avg_pool_backward(dy, kh, kw, sh, sw, ph, pw, include_pad, dx):
    planes, H, W = dx.shape
    oh, ow = dy.shape[1], dy.shape[2]
    for p in prange(planes):
        for h in range(H):
            a0, a1 = max(0, (h + ph - kh) // sh + 1), min(oh - 1, (h + ph) // sh)
            for w in range(W):
                b0, b1 = max(0, (w + pw - kw) // sw + 1), min(ow - 1, (w + pw) // sw)
                total = 0.0
                for a in range(a0, a1 + 1):
                    dh = _count(a, sh, ph, kh, H, include_pad)
                    for b in range(b0, b1 + 1):
                        total += dy[p, a, b] / (dh * _count(b, sw, pw, kw, W, include_pad))
                dx[p, h, w] = total


def avg_pool_forward(x, kh, kw, sh, sw, ph, pw, oh, ow, count_include_pad=True):
    n, C, H, W = x.shape
    y = np.empty((n, C, oh, ow), dtype=x.dtype)
    _avg_pool_forward(np.ascontiguousarray(x).reshape(n * C, H, W), kh, kw, sh, sw, ph, pw,
                      bool(count_include_pad), y.reshape(n * C, oh, ow))
    return y


def avg_pool_backward(dy, x_shape, kh, kw, sh, sw, ph, pw, count_include_pad=True):
    n, C, H, W = x_shape
    oh, ow = dy.shape[2:]
    dx = np.empty(tuple(x_shape), dtype=dy.dtype)
    _avg_pool_backward(np.ascontiguousarray(dy).reshape(n * C, oh, ow), kh, kw, sh, sw, ph, pw,
                       bool(count_include_pad), dx.reshape(n * C, H, W))
    return dx
