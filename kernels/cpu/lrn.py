"""Local response normalisation on the CPU (reference and math: ``minicnn/ops/lrn.py``).

One thread per image row (b, h). Along the channels a running window sum (add the term
of the channel entering the window, subtract that of the one leaving) costs O(1) per
element whatever the window size. A plain running sum would keep the rounding error of
every large term that ever passed through the window; this one is kept in double-double
(Knuth's TwoSum: a float64 sum plus its exact rounding error), so each term leaves
exactly as it entered and the sum equals the direct one to float64 precision.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


@njit(inline="always")
def _inverse_power(s, beta):
    """s ** -beta; AlexNet's beta = 0.75 as two square roots, several times cheaper than pow."""
    if beta == 0.75:
        return 1.0 / math.sqrt(s * math.sqrt(s))
    return s ** -beta


@njit(inline="always")
def _add(hi, lo, w, t):
    """(hi[w], lo[w]) += t, with the rounding error of hi + t carried into lo (TwoSum)."""
    a = hi[w]
    s = a + t
    back = s - a
    lo[w] += (a - (s - back)) + (t - back)
    hi[w] = s


@njit(inline="always")
def _window_term_forward(x, b, c, h, w):
    v = np.float64(x[b, c, h, w])
    return v * v


@njit(inline="always")
def _window_term_backward(dy, y, scale, b, c, h, w):
    return np.float64(dy[b, c, h, w]) * y[b, c, h, w] / scale[b, c, h, w]


@njit(parallel=True, fastmath=False, cache=True)
def _lrn_forward(x, size, alpha, beta, k, y, scale):
    n, C, H, W = x.shape
    before, after = size // 2, (size - 1) // 2
    coeff = alpha / size
    for p in prange(n * H):
        b, h = p // H, p % H
        hi, lo = np.zeros(W), np.zeros(W)
        for c in range(min(after, C)):
            for w in range(W):
                _add(hi, lo, w, _window_term_forward(x, b, c, h, w))
        for c in range(C):
            enter, leave = c + after, c - before - 1
            if enter < C:
                for w in range(W):
                    _add(hi, lo, w, _window_term_forward(x, b, enter, h, w))
            if leave >= 0:
                for w in range(W):
                    _add(hi, lo, w, -_window_term_forward(x, b, leave, h, w))
            for w in range(W):
                s = k + coeff * (hi[w] + lo[w])
                scale[b, c, h, w] = s
                y[b, c, h, w] = x[b, c, h, w] * _inverse_power(s, beta)


@njit(parallel=True, fastmath=False, cache=True)
def _lrn_backward(x, y, scale, dy, size, alpha, beta, dx):
    n, C, H, W = x.shape
    # the channels i whose window holds c are those in [c - after, c + before]
    before, after = (size - 1) // 2, size // 2
    coeff = 2.0 * alpha * beta / size
    for p in prange(n * H):
        b, h = p // H, p % H
        hi, lo = np.zeros(W), np.zeros(W)
        for c in range(min(after, C)):
            for w in range(W):
                _add(hi, lo, w, _window_term_backward(dy, y, scale, b, c, h, w))
        for c in range(C):
            enter, leave = c + after, c - before - 1
            if enter < C:
                for w in range(W):
                    _add(hi, lo, w, _window_term_backward(dy, y, scale, b, enter, h, w))
            if leave >= 0:
                for w in range(W):
                    _add(hi, lo, w, -_window_term_backward(dy, y, scale, b, leave, h, w))
            for w in range(W):
                s = np.float64(scale[b, c, h, w])
                dx[b, c, h, w] = dy[b, c, h, w] * _inverse_power(s, beta) - coeff * x[b, c, h, w] * (
                    hi[w] + lo[w])


def lrn_forward(x, size, alpha, beta, k):
    x = np.ascontiguousarray(x)
    y, scale = np.empty_like(x), np.empty_like(x)
    _lrn_forward(x, int(size), float(alpha), float(beta), float(k), y, scale)
    return y, scale


def lrn_backward(x, y, scale, dy, size, alpha, beta):
    dx = np.empty(x.shape, dtype=dy.dtype)
    _lrn_backward(np.ascontiguousarray(x), np.ascontiguousarray(y), np.ascontiguousarray(scale),
                  np.ascontiguousarray(dy), int(size), float(alpha), float(beta), dx)
    return dx
