"""2-D average pooling with PyTorch's (and Caffe's AVE) rules, written once with ``xp``.

Output size as :func:`minicnn.ops.max_pool2d.pool_output_size` (floor or ceil mode). The
window of output (p, q) starts at h0 = p*sh - ph, w0 = q*sw - pw and, clipped to the padded
input, ends at h1 = min(h0 + kh, H + ph), w1 = min(w0 + kw, W + pw):

    y[n, c, p, q] = (1 / d[p, q]) * sum_{h0 <= h < h1, w0 <= w < w1} x[n, c, h, w]

with x = 0 outside the input. The divisor counts the padding but never the part of a ceil
mode window that hangs past the padding:

    count_include_pad:     d[p, q] = (h1 - h0) * (w1 - w0)                  (Caffe AVE, PyTorch default)
    not count_include_pad: d[p, q] = (min(h1, H) - max(h0, 0)) * (min(w1, W) - max(w0, 0))

Backward spreads each dy evenly over its window:

    dx[n, c, h, w] = sum_{(p, q): (h, w) in window(p, q)} dy[n, c, p, q] / d[p, q]

The forward here is a sum of kh * kw strided slices and the backward adds them back (kh * kw
passes over the output); it runs on every backend through ``xp``. ``kernels/cpu`` and
``kernels/cuda`` hold kernels of the same names (a loop per window, and a gather per input
pixel for backward, so no two threads write one element).
"""

from __future__ import annotations

import numpy as np

from minicnn.backend import array_module, hot_path


def _divisor(size, out, kernel, stride, pad, include_pad):
    """d along one axis: (out,) counts of the window of each output position."""
    start = np.arange(out) * stride - pad
    end = np.minimum(start + kernel, size + pad)
    if not include_pad:
        start, end = np.maximum(start, 0), np.minimum(end, size)
    return (end - start).astype(np.float64)


def _padded_extent(size, out, kernel, stride, pad):
    """Zero padding on the far side so that the last (ceil mode) window fits."""
    return max(0, (out - 1) * stride + kernel - size - pad)


@hot_path
def avg_pool_forward(x, kh, kw, sh, sw, ph, pw, oh, ow, count_include_pad=True):
    """Return y (n, C, oh, ow)."""
    xp = array_module(x)
    n, C, H, W = x.shape
    pb, pr = _padded_extent(H, oh, kh, sh, ph), _padded_extent(W, ow, kw, sw, pw)
    xpad = xp.pad(x, ((0, 0), (0, 0), (ph, pb), (pw, pr)))
    total = xp.zeros((n, C, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            total += xpad[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
    d = np.outer(_divisor(H, oh, kh, sh, ph, count_include_pad),
                 _divisor(W, ow, kw, sw, pw, count_include_pad))
    return total * xp.asarray((1.0 / d).astype(x.dtype))


@hot_path
def avg_pool_backward(dy, x_shape, kh, kw, sh, sw, ph, pw, count_include_pad=True):
    """Return dx of shape ``x_shape``."""
    xp = array_module(dy)
    n, C, H, W = x_shape
    oh, ow = dy.shape[2:]
    pb, pr = _padded_extent(H, oh, kh, sh, ph), _padded_extent(W, ow, kw, sw, pw)
    d = np.outer(_divisor(H, oh, kh, sh, ph, count_include_pad),
                 _divisor(W, ow, kw, sw, pw, count_include_pad))
    share = dy * xp.asarray((1.0 / d).astype(dy.dtype))
    dxpad = xp.zeros((n, C, H + ph + pb, W + pw + pr), dtype=dy.dtype)
    for i in range(kh):
        for j in range(kw):
            dxpad[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] += share
    return xp.ascontiguousarray(dxpad[:, :, ph:ph + H, pw:pw + W])
