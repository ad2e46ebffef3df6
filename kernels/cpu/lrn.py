"""Local response normalisation on the CPU (reference and math: ``minicnn/ops/lrn.py``).

One thread per image; each channel plane is a contiguous run of H*W elements. Along the
channels a running window sum (add the term of the channel entering the window, subtract
that of the one leaving it) costs O(1) per element whatever the window size, kept in
float64. A running sum keeps the rounding error of every term that passed through the
window, relative to the largest: for float32 data that is far below float32's own
precision, but for float64 data it is not, so there the sum is kept in double-double
(Knuth's TwoSum: a float64 sum and its exact rounding error) and each term leaves exactly
as it entered, which matches the direct sum to float64 precision.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(inline="always")
def _add(acc, err, terms, sign, exact):
    """acc += sign * terms elementwise; if ``exact``, with each rounding error added to err."""
    if exact:
        for t in range(acc.size):
            a, v = acc[t], sign * np.float64(terms[t])
            s = a + v
            back = s - a
            err[t] += (a - (s - back)) + (v - back)
            acc[t] = s
    elif sign > 0:
        for t in range(acc.size):
            acc[t] += terms[t]
    else:
        for t in range(acc.size):
            acc[t] -= terms[t]


@njit(inline="always")
def _times_inverse_power(out, a, s, beta):
    """out = a * s ** -beta; AlexNet's beta = 0.75 as two square roots, which vectorise and
    cost several times less than pow."""
    if beta == 0.75:
        for t in range(out.size):
            out[t] = a[t] / np.sqrt(s[t] * np.sqrt(s[t]))
    else:
        for t in range(out.size):
            out[t] = a[t] * s[t] ** -beta


@njit(parallel=True, fastmath=False, cache=True)
def _lrn_forward(x, size, alpha, beta, k, exact, y, scale):
    n, C, L = x.shape
    before, after = size // 2, (size - 1) // 2
    coeff = alpha / size
    for b in prange(n):
        acc, err, squares = np.zeros(L), np.zeros(L), np.empty(L)
        for c in range(-after, C):  # acc holds the sum over channels [c - before, c + after]
            if c + after < C:
                for t in range(L):
                    v = np.float64(x[b, c + after, t])
                    squares[t] = v * v
                _add(acc, err, squares, 1.0, exact)
            if c - before - 1 >= 0:
                for t in range(L):
                    v = np.float64(x[b, c - before - 1, t])
                    squares[t] = v * v
                _add(acc, err, squares, -1.0, exact)
            if c >= 0:
                sc = scale[b, c]
                for t in range(L):
                    sc[t] = k + coeff * (acc[t] + err[t])
                _times_inverse_power(y[b, c], x[b, c], sc, beta)


@njit(parallel=True, fastmath=False, cache=True)
def _lrn_backward(x, y, scale, dy, size, alpha, beta, exact, dx):
    n, C, L = x.shape
    # the channels i whose window holds c are those in [c - after, c + before]
    before, after = (size - 1) // 2, size // 2
    coeff = 2.0 * alpha * beta / size
    for b in prange(n):
        acc, err, terms = np.zeros(L), np.zeros(L), np.empty(L)
        for c in range(-after, C):
            if c + after < C:
                i = c + after
                for t in range(L):
                    terms[t] = np.float64(dy[b, i, t]) * y[b, i, t] / scale[b, i, t]
                _add(acc, err, terms, 1.0, exact)
            if c - before - 1 >= 0:
                i = c - before - 1
                for t in range(L):
                    terms[t] = np.float64(dy[b, i, t]) * y[b, i, t] / scale[b, i, t]
                _add(acc, err, terms, -1.0, exact)
            if c >= 0:
                out = dx[b, c]
                _times_inverse_power(out, dy[b, c], scale[b, c], beta)
                xc = x[b, c]
                for t in range(L):
                    out[t] -= coeff * xc[t] * (acc[t] + err[t])


def _planes(a):
    n, C, H, W = a.shape
    return np.ascontiguousarray(a).reshape(n, C, H * W)


def lrn_forward(x, size, alpha, beta, k):
    y, scale = np.empty(x.shape, x.dtype), np.empty(x.shape, x.dtype)
    _lrn_forward(_planes(x), int(size), float(alpha), float(beta), float(k), x.dtype == np.float64,
                 _planes(y), _planes(scale))
    return y, scale


def lrn_backward(x, y, scale, dy, size, alpha, beta):
    dx = np.empty(x.shape, dtype=dy.dtype)
    _lrn_backward(_planes(x), _planes(y), _planes(scale), _planes(dy), int(size), float(alpha),
                  float(beta), dy.dtype == np.float64, _planes(dx))
    return dx
