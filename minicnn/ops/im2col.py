"""im2col / col2im: unfold convolution windows into columns and fold them back.

For an input ``x`` of shape (n, C, H, W), kernel (kh, kw), stride (sh, sw), zero padding
(ph, pw), the output size is ``OH = (H + 2 ph - kh) // sh + 1`` (likewise OW) and

    cols[(c, i, j), (b, y, x)] = xpad[b, c, y * sh + i, x * sw + j]

with rows ordered (c, i, j) (so the rows of one convolution group are contiguous) and
columns ordered (b, y, x). ``col2im`` is its adjoint: every column entry is added back to
the input pixel it was read from, padding dropped.
"""

from __future__ import annotations

import numpy as np

from minicnn.backend import array_module, hot_path


def pair(v) -> tuple[int, int]:
    """A kernel size, stride or padding as (height, width): (v, v) for one number."""
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


@hot_path
def im2col(x, kh, kw, sh, sw, ph, pw, out):
    """Write the columns of ``x`` into ``out`` (C*kh*kw, n*OH*OW) and return ``out``."""
    xp = array_module(x)
    n, C, H, W = x.shape
    OH = conv_output_size(H, kh, sh, ph)
    OW = conv_output_size(W, kw, sw, pw)
    xpad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
    s0, s1, s2, s3 = xpad.strides
    windows = xp.lib.stride_tricks.as_strided(
        xpad, shape=(C, kh, kw, n, OH, OW), strides=(s1, s2, s3, s0, s2 * sh, s3 * sw)
    )
    out.reshape(C, kh, kw, n, OH, OW)[...] = windows
    return out


@hot_path
def col2im(cols, x_shape, kh, kw, sh, sw, ph, pw):
    """Fold ``cols`` (C*kh*kw, n*OH*OW) back into a new array of shape ``x_shape``."""
    xp = array_module(cols)
    n, C, H, W = x_shape
    OH = conv_output_size(H, kh, sh, ph)
    OW = conv_output_size(W, kw, sw, pw)
    dxpad = xp.zeros((n, C, H + 2 * ph, W + 2 * pw), dtype=cols.dtype)
    c6 = cols.reshape(C, kh, kw, n, OH, OW)
    for i in range(kh):
        for j in range(kw):
            dxpad[:, :, i : i + sh * OH : sh, j : j + sw * OW : sw] += c6[:, i, j].transpose(
                1, 0, 2, 3
            )
    return dxpad[:, :, ph : ph + H, pw : pw + W]
