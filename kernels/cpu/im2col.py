"""im2col / col2im on the CPU (reference and math: ``minicnn/ops/im2col.py``).

im2col runs one thread per column row (c, i, j): each writes its own contiguous row.
col2im runs one thread per input plane (b, c), adding the (i, j) contributions in the
reference's order, so the result is the same bit for bit and needs no atomics.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(inline="always")
def valid_range(offset, stride, size, count):
    """[lo, hi): the output positions t in [0, count) with 0 <= t * stride + offset < size."""
    lo = 0 if offset >= 0 else (-offset + stride - 1) // stride
    hi = 0 if size - offset <= 0 else (size - offset - 1) // stride + 1
    return min(lo, count), max(min(hi, count), min(lo, count))


@njit(parallel=True, fastmath=False, cache=True)
def _im2col(x, kh, kw, sh, sw, ph, pw, oh, ow, cols):
    n, C, H, W = x.shape
    L = oh * ow
    for r in prange(C * kh * kw):
        c = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        ylo, yhi = valid_range(i - ph, sh, H, oh)
        xlo, xhi = valid_range(j - pw, sw, W, ow)
        for b in range(n):
            for y in range(oh):
                row = cols[r, b * L + y * ow : b * L + (y + 1) * ow]
                if y < ylo or y >= yhi:
                    row[:] = 0
                    continue
                h = y * sh + i - ph
                row[:xlo] = 0
                for t in range(xlo, xhi):
                    row[t] = x[b, c, h, t * sw + j - pw]
                row[xhi:] = 0


@njit(parallel=True, fastmath=False, cache=True)
def _col2im(cols, kh, kw, sh, sw, ph, pw, oh, ow, dx):
    n, C, H, W = dx.shape
    L = oh * ow
    for p in prange(n * C):
        b = p // C
        c = p % C
        plane = dx[b, c]
        plane[:] = 0
        for i in range(kh):
            ylo, yhi = valid_range(i - ph, sh, H, oh)
            for j in range(kw):
                xlo, xhi = valid_range(j - pw, sw, W, ow)
                r = (c * kh + i) * kw + j
                for y in range(ylo, yhi):
                    h = y * sh + i - ph
                    src = b * L + y * ow
                    for t in range(xlo, xhi):
                        plane[h, t * sw + j - pw] += cols[r, src + t]


def _output_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def im2col(x, kh, kw, sh, sw, ph, pw, out):
    n, C, H, W = x.shape
    oh, ow = _output_size(H, kh, sh, ph), _output_size(W, kw, sw, pw)
    x = np.ascontiguousarray(x)
    target = out if out.flags.c_contiguous else np.empty(out.shape, out.dtype)
    _im2col(x, kh, kw, sh, sw, ph, pw, oh, ow, target.reshape(C * kh * kw, n * oh * ow))
    if target is not out:
        out[...] = target
    return out


def col2im(cols, x_shape, kh, kw, sh, sw, ph, pw):
    n, C, H, W = x_shape
    oh, ow = _output_size(H, kh, sh, ph), _output_size(W, kw, sw, pw)
    dx = np.empty(x_shape, dtype=cols.dtype)
    _col2im(np.ascontiguousarray(cols), kh, kw, sh, sw, ph, pw, oh, ow, dx)
    return dx
