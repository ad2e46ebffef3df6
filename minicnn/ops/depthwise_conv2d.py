"""Depthwise convolution: every input channel convolved with its own filters (``groups`` equal
to the input channels, so one input channel per group; MobileNet's 3x3 layers). For x
(N, C, H, W), weight w (O, 1, kh, kw) with O = m C (m filters per channel), bias b (O,):

    y[n, o, p, q] = b[o] + sum_{i, j} w[o, 0, i, j] * xpad[n, o // m, p*sh + i*dh, q*sw + j*dw]

(padding and output size as :mod:`minicnn.ops.conv2d`). Backward:

    dx[n, c, h, w] = sum_{o in c's m channels, p, q, i, j : p*sh + i*dh = h + pt, q*sw + j*dw = w + pl}
                     w[o, 0, i, j] dy[n, o, p, q]
    dw[o, 0, i, j] = sum_{n, p, q} dy[n, o, p, q] xpad[n, o // m, p*sh + i*dh, q*sw + j*dw]

Through im2col this would be C products of one row each (a Python loop over channels, or
a batched GEMM of tiny matrices): the work is kh*kw multiply-adds per output, which the
kernels do directly. The NumPy reference loops over the kh*kw kernel offsets only.
"""

from __future__ import annotations

from minicnn.backend import array_module, hot_path


def _padded(x, ph, pw, OH, OW, kh, kw, sh, sw, dil_h, dil_w):
    xp = array_module(x)
    N, C, H, W = x.shape
    eh, ew = (OH - 1) * sh + (kh - 1) * dil_h + 1, (OW - 1) * sw + (kw - 1) * dil_w + 1
    xpad = xp.zeros((N, C, max(eh, ph + H), max(ew, pw + W)), dtype=x.dtype)
    xpad[:, :, ph : ph + H, pw : pw + W] = x
    return xpad


def _window(xpad, i, j, sh, sw, dil_h, dil_w, OH, OW):
    rows = slice(i * dil_h, i * dil_h + sh * (OH - 1) + 1, sh)
    return xpad[:, :, rows, j * dil_w : j * dil_w + sw * (OW - 1) + 1 : sw]


@hot_path
def depthwise_forward(x, weight, bias, sh, sw, ph, pw, dil_h, dil_w, OH, OW):
    """y (N, O, OH, OW); ``bias`` may be None; ph, pw: the padding before (the padding
    after enters through OH, OW)."""
    xp = array_module(x)
    N, C = x.shape[:2]
    O, _, kh, kw = weight.shape
    m = O // C
    xpad = _padded(x, ph, pw, OH, OW, kh, kw, sh, sw, dil_h, dil_w)
    if m > 1:
        xpad = xp.repeat(xpad, m, axis=1)
    y = xp.zeros((N, O, OH, OW), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            y += weight[:, 0, i, j].reshape(1, O, 1, 1) * _window(xpad, i, j, sh, sw, dil_h, dil_w, OH, OW)
    if bias is not None:
        y += bias.reshape(1, O, 1, 1)
    return y


@hot_path
def depthwise_backward_input(dy, weight, x_shape, sh, sw, ph, pw, dil_h, dil_w):
    """dx of shape ``x_shape`` (N, C, H, W)."""
    xp = array_module(dy)
    N, C, H, W = x_shape
    O, _, kh, kw = weight.shape
    OH, OW = dy.shape[2:]
    m = O // C
    dxpad = _padded(xp.zeros(tuple(x_shape), dy.dtype), ph, pw, OH, OW, kh, kw, sh, sw, dil_h, dil_w)
    for i in range(kh):
        for j in range(kw):
            part = (weight[:, 0, i, j].reshape(1, O, 1, 1) * dy).reshape(N, C, m, OH, OW).sum(axis=2)
            _window(dxpad, i, j, sh, sw, dil_h, dil_w, OH, OW)[...] += part
    return xp.ascontiguousarray(dxpad[:, :, ph : ph + H, pw : pw + W])


@hot_path
def depthwise_backward_weight(dy, x, kh, kw, sh, sw, ph, pw, dil_h, dil_w):
    """dweight (O, 1, kh, kw)."""
    xp = array_module(x)
    N, C = x.shape[:2]
    O, OH, OW = dy.shape[1:]
    m = O // C
    xpad = _padded(x, ph, pw, OH, OW, kh, kw, sh, sw, dil_h, dil_w)
    if m > 1:
        xpad = xp.repeat(xpad, m, axis=1)
    dw = xp.empty((O, 1, kh, kw), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            dw[:, 0, i, j] = (dy * _window(xpad, i, j, sh, sw, dil_h, dil_w, OH, OW)).sum(axis=(0, 2, 3))
    return dw
