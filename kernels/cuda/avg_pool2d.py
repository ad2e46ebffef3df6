"""Average pooling on the GPU (math and output sizes: ``minicnn.ops.avg_pool2d``).

Forward: one thread per output element sums its window clipped to the input and divides by
the window's count. Backward: one thread per input element gathers dy / count from the
outputs whose windows cover it (rows a with a*sh - ph <= h < a*sh - ph + kh), so no two
threads write one element: no atomics, the same sum on every run. Sums accumulate in
float64.
"""

from __future__ import annotations

from numba import cuda

from minicnn.backend import array_module

from .launch import launch


@cuda.jit(device=True)
def _count(o, stride, pad, kernel, size, include_pad):
    start = o * stride - pad
    end = min(start + kernel, size + pad)
    if include_pad:
        return end - start
    return min(end, size) - max(start, 0)


@cuda.jit
def _avg_pool_forward(x, kh, kw, sh, sw, ph, pw, include_pad, y):
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
        total = 0.0
        for h in range(max(h0, 0), min(h0 + kh, H)):
            for w in range(max(w0, 0), min(w0 + kw, W)):
                total += x[b, c, h, w]
        count = _count(p, sh, ph, kh, H, include_pad) * _count(q, sw, pw, kw, W, include_pad)
        y[b, c, p, q] = total / count


@cuda.jit
def _avg_pool_backward(dy, kh, kw, sh, sw, ph, pw, include_pad, dx):
    n, C, H, W = dx.shape
    OH, OW = dy.shape[2], dy.shape[3]
    for idx in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        w = idx % W
        t = idx // W
        h = t % H
        t = t // H
        c = t % C
        b = t // C
        total = 0.0
        for p in range(max(0, (h + ph - kh) // sh + 1), min(OH - 1, (h + ph) // sh) + 1):
            dh = _count(p, sh, ph, kh, H, include_pad)
            for q in range(max(0, (w + pw - kw) // sw + 1), min(OW - 1, (w + pw) // sw) + 1):
                total += dy[b, c, p, q] / (dh * _count(q, sw, pw, kw, W, include_pad))
        dx[b, c, h, w] = total


def avg_pool_forward(x, kh, kw, sh, sw, ph, pw, oh, ow, count_include_pad=True):
    """Return y (n, C, oh, ow)."""
    xp = array_module(x)
    n, C = x.shape[:2]
    y = xp.empty((n, C, oh, ow), dtype=x.dtype)
    launch(_avg_pool_forward, y.size, xp.ascontiguousarray(x), kh, kw, sh, sw, ph, pw,
           int(bool(count_include_pad)), y)
    return y


def avg_pool_backward(dy, x_shape, kh, kw, sh, sw, ph, pw, count_include_pad=True):
    """Return dx of shape ``x_shape``."""
    xp = array_module(dy)
    dx = xp.empty(tuple(x_shape), dtype=dy.dtype)
    launch(_avg_pool_backward, dx.size, xp.ascontiguousarray(dy), kh, kw, sh, sw, ph, pw,
           int(bool(count_include_pad)), dx)
    return dx
