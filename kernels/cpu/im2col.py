"""im2col / col2im on the CPU (reference and math: ``minicnn/ops/im2col.py``).

im2col runs one thread per column row (c, i, j): each writes its own contiguous row.
col2im runs one thread per input plane (b, c), adding the (i, j) contributions in the
reference's order, so the result is the same bit for bit and needs no atomics.

Both work on flat arrays with unsigned offsets: with a signed index Numba must allow for
Python's negative indexing, a test per element that also stops vectorisation.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from minicnn.ops.im2col import output_sizes


@njit(inline="always")
def valid_range(offset, stride, size, count):
    """[lo, hi): the output positions t in [0, count) with 0 <= t * stride + offset < size."""
    lo = 0 if offset >= 0 else (-offset + stride - 1) // stride
    hi = 0 if size - offset <= 0 else (size - offset - 1) // stride + 1
    return min(lo, count), max(min(hi, count), min(lo, count))


@njit(inline="always")
def _zero(a, start, stop):
    for t in range(np.uint64(start), np.uint64(stop)):
        a[t] = 0


@njit(parallel=True, fastmath=False, cache=True)
def _im2col(x, n, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, cols):
    """x flat (n, C, H, W); cols flat (C*kh*kw, n*oh*ow)."""
    L = oh * ow
    for r in prange(C * kh * kw):
        c, i, j = r // (kh * kw), (r // kw) % kh, r % kw
        ylo, yhi = valid_range(i * dh - ph, sh, H, oh)
        xlo, xhi = valid_range(j * dw - pw, sw, W, ow)
        for b in range(n):
            for y in range(oh):
                dst = (r * n + b) * L + y * ow
                if y < ylo or y >= yhi:
                    _zero(cols, dst, dst + ow)
                    continue
                _zero(cols, dst, dst + xlo)
                # x index of output column t: src + t * sw, within the input for t in [xlo, xhi)
                src = ((b * C + c) * H + y * sh + i * dh - ph) * W + j * dw - pw
                d, s = np.uint64(dst + xlo), np.uint64(src + xlo * sw)
                if sw == 1:
                    for t in range(np.uint64(xhi - xlo)):
                        cols[d + t] = x[s + t]
                else:
                    step = np.uint64(sw)
                    for t in range(np.uint64(xhi - xlo)):
                        cols[d + t] = x[s + t * step]
                _zero(cols, dst + xhi, dst + ow)


@njit(parallel=True, fastmath=False, cache=True)
def _col2im(cols, n, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, dx):
    """cols flat (C*kh*kw, n*oh*ow); dx flat (n, C, H, W), overwritten."""
    L = oh * ow
    for p in prange(n * C):
        b, c = p // C, p % C
        _zero(dx, p * H * W, (p + 1) * H * W)
        for i in range(kh):
            ylo, yhi = valid_range(i * dh - ph, sh, H, oh)
            for j in range(kw):
                xlo, xhi = valid_range(j * dw - pw, sw, W, ow)
                r = (c * kh + i) * kw + j
                for y in range(ylo, yhi):
                    s = np.uint64((r * n + b) * L + y * ow + xlo)
                    d = np.uint64(p * H * W + (y * sh + i * dh - ph) * W + xlo * sw + j * dw - pw)
                    if sw == 1:
                        for t in range(np.uint64(xhi - xlo)):
                            dx[d + t] += cols[s + t]
                    else:
                        step = np.uint64(sw)
                        for t in range(np.uint64(xhi - xlo)):
                            dx[d + t * step] += cols[s + t]


def im2col(x, kh, kw, sh, sw, ph, pw, out, dil_h=1, dil_w=1, oh=None, ow=None):
    n, C, H, W = x.shape
    oh, ow = output_sizes(H, W, kh, kw, sh, sw, ph, pw, dil_h, dil_w, oh, ow)
    target = out if out.flags.c_contiguous else np.empty(out.shape, out.dtype)
    _im2col(np.ascontiguousarray(x).reshape(-1), n, C, H, W, kh, kw, sh, sw, ph, pw, dil_h, dil_w,
            oh, ow, target.reshape(-1))
    if target is not out:
        out[...] = target
    return out


def col2im(cols, x_shape, kh, kw, sh, sw, ph, pw, dil_h=1, dil_w=1, oh=None, ow=None):
    n, C, H, W = x_shape
    oh, ow = output_sizes(H, W, kh, kw, sh, sw, ph, pw, dil_h, dil_w, oh, ow)
    dx = np.empty(x_shape, dtype=cols.dtype)
    _col2im(np.ascontiguousarray(cols).reshape(-1), n, C, H, W, kh, kw, sh, sw, ph, pw, dil_h, dil_w,
            oh, ow, dx.reshape(-1))
    return dx
