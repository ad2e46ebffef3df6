"""im2col / col2im: unfold convolution windows into columns and fold them back.

For an input ``x`` of shape (n, C, H, W), kernel (kh, kw), stride (sh, sw), dilation
(dh, dw), zero padding (pt, pl) before and (pb, pr) after, the output size is
``OH = (H + pt + pb - dh (kh - 1) - 1) // sh + 1`` (likewise OW) and

    cols[(c, i, j), (b, y, x)] = xpad[b, c, y * sh + i * dh, x * sw + j * dw]

with rows ordered (c, i, j) (so the rows of one convolution group are contiguous) and
columns ordered (b, y, x). The padding after the input enters only through the output size:
a window reading past the input reads zeros. So the functions take the leading padding
(ph, pw) and the output size (oh, ow); without it, the padding after is taken equal to the
padding before. ``col2im`` is its adjoint: every column entry is added back to the input
pixel it was read from, padding dropped.
"""

from __future__ import annotations

import numpy as np

from minicnn.backend import array_module, hot_path


def pair(v) -> tuple[int, int]:
    """A kernel size, stride or padding as (height, width): (v, v) for one number."""
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def quad(v) -> tuple[int, int, int, int]:
    """A padding as (top, left, bottom, right): one number, (height, width) for both sides
    alike, or the four sides (ONNX's begin/end order: top, left, bottom, right)."""
    if np.isscalar(v):
        return (int(v),) * 4
    v = [int(p) for p in v]
    if len(v) == 2:
        return (v[0], v[1], v[0], v[1])
    if len(v) == 4:
        return tuple(v)
    raise ValueError(f"padding must be one number, (height, width) or (top, left, bottom, right), got {v}")


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1,
                     padding_after: int | None = None) -> int:
    after = padding if padding_after is None else padding_after
    return (size + padding + after - dilation * (kernel - 1) - 1) // stride + 1


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's SAME padding (before, after) of one axis: ceil(size / stride) outputs, the
    odd pad after (ONNX's SAME_UPPER; SAME_LOWER swaps the two)."""
    span = dilation * (kernel - 1) + 1
    total = max((-(-size // stride) - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def output_sizes(H, W, kh, kw, sh, sw, ph, pw, dil_h, dil_w, oh, ow):
    if oh is None:
        oh = conv_output_size(H, kh, sh, ph, dil_h)
    if ow is None:
        ow = conv_output_size(W, kw, sw, pw, dil_w)
    return oh, ow


@hot_path
def im2col(x, kh, kw, sh, sw, ph, pw, out, dil_h=1, dil_w=1, oh=None, ow=None):
    """Write the columns of ``x`` into ``out`` (C*kh*kw, n*OH*OW) and return ``out``."""
    xp = array_module(x)
    n, C, H, W = x.shape
    OH, OW = output_sizes(H, W, kh, kw, sh, sw, ph, pw, dil_h, dil_w, oh, ow)
    # padded up to the last row and column a window reads (or cut, when the padding after
    # is negative: an input row no window reaches)
    eh, ew = (OH - 1) * sh + (kh - 1) * dil_h + 1, (OW - 1) * sw + (kw - 1) * dil_w + 1
    xpad = xp.zeros((n, C, max(eh, ph + H), max(ew, pw + W)), dtype=x.dtype)
    xpad[:, :, ph : ph + H, pw : pw + W] = x
    s0, s1, s2, s3 = xpad.strides
    windows = xp.lib.stride_tricks.as_strided(
        xpad, shape=(C, kh, kw, n, OH, OW), strides=(s1, s2 * dil_h, s3 * dil_w, s0, s2 * sh, s3 * sw)
    )
    out.reshape(C, kh, kw, n, OH, OW)[...] = windows
    return out


@hot_path
def col2im(cols, x_shape, kh, kw, sh, sw, ph, pw, dil_h=1, dil_w=1, oh=None, ow=None):
    """Fold ``cols`` (C*kh*kw, n*OH*OW) back into a new array of shape ``x_shape``."""
    xp = array_module(cols)
    n, C, H, W = x_shape
    OH, OW = output_sizes(H, W, kh, kw, sh, sw, ph, pw, dil_h, dil_w, oh, ow)
    eh, ew = (OH - 1) * sh + (kh - 1) * dil_h + 1, (OW - 1) * sw + (kw - 1) * dil_w + 1
    dxpad = xp.zeros((n, C, max(eh, ph + H), max(ew, pw + W)), dtype=cols.dtype)
    c6 = cols.reshape(C, kh, kw, n, OH, OW)
    for i in range(kh):
        for j in range(kw):
            dxpad[:, :, i * dil_h : i * dil_h + sh * OH : sh, j * dil_w : j * dil_w + sw * OW : sw] += \
                c6[:, i, j].transpose(1, 0, 2, 3)
    return dxpad[:, :, ph : ph + H, pw : pw + W]
