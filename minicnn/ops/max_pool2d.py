"""2-D max pooling with PyTorch's output-size rules, argmax kept for backward.

    y[n, c, p, q] = max_{0 <= i < kh, 0 <= j < kw} xpad[n, c, p*sh + i, q*sw + j]

with padding by -inf (a window never lies wholly in padding). Output size, as PyTorch:

    floor mode: OH = floor((H + 2 ph - kh) / sh) + 1
    ceil mode:  OH = ceil((H + 2 ph - kh) / sh) + 1, minus 1 if the last window would
                start at or past H + ph (it must start inside the input or left padding)

PyTorch requires ph <= kh / 2. Backward routes each dy to the input element that won its
window (the first maximum in row-major window order on ties):

    dx[n, c, h, w] = sum_{(p, q): argmax[n, c, p, q] = h * W + w} dy[n, c, p, q]
"""

from __future__ import annotations

import math

from minicnn.backend import array_module, hot_path


def pool_output_size(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool,
                     padding_after: int | None = None) -> int:
    """Windows along one axis of ``size``, padded by ``padding`` before and ``padding_after``
    (default: the same) after; in ceil mode the last window must start inside the input or
    the padding before it (PyTorch's rule, ONNX's too)."""
    after = padding if padding_after is None else padding_after
    span = size + padding + after - kernel
    if span < 0:
        raise ValueError(f"pooling window {kernel} larger than padded input {size + padding + after}")
    if not ceil_mode:
        return span // stride + 1
    out = math.ceil(span / stride) + 1
    if (out - 1) * stride >= size + padding:
        out -= 1
    return out


@hot_path
def max_pool_forward(x, kh, kw, sh, sw, ph, pw, oh, ow):
    """Return (y, argmax): y (n, C, oh, ow); argmax the flat index h * W + w in each plane."""
    xp = array_module(x)
    n, C, H, W = x.shape
    # pad enough on the bottom/right for ceil mode's last window
    pad_b = max(0, (oh - 1) * sh + kh - H - ph)
    pad_r = max(0, (ow - 1) * sw + kw - W - pw)
    xpad = xp.pad(x, ((0, 0), (0, 0), (ph, pad_b), (pw, pad_r)), constant_values=-xp.inf)
    s0, s1, s2, s3 = xpad.strides
    windows = xp.lib.stride_tricks.as_strided(
        xpad, shape=(n, C, oh, ow, kh, kw), strides=(s0, s1, s2 * sh, s3 * sw, s2, s3)
    ).reshape(n, C, oh, ow, kh * kw)
    a = windows.argmax(axis=-1)
    y = xp.take_along_axis(windows, a[..., None], axis=-1)[..., 0]
    row = xp.arange(oh).reshape(oh, 1) * sh - ph + a // kw
    col = xp.arange(ow).reshape(1, ow) * sw - pw + a % kw
    return y, (row * W + col).astype(xp.int64)


@hot_path
def max_pool_backward(dy, argmax, x_shape):
    """Return dx of shape ``x_shape``: each dy added to its window's argmax."""
    xp = array_module(dy)
    n, C, H, W = x_shape
    planes = xp.arange(n * C, dtype=xp.int64).reshape(n, C, 1, 1) * (H * W)
    dx = xp.bincount((planes + argmax).ravel(), weights=dy.ravel(), minlength=n * C * H * W)
    return dx.astype(dy.dtype, copy=False).reshape(x_shape)
