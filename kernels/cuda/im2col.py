"""im2col / col2im on the GPU (math and layout: ``minicnn.ops.im2col``).

im2col: one thread per (channel, output pixel) writes that pixel's kh*kw column entries
(Caffe's layout of the work), so the index arithmetic is paid once per kh*kw entries;
neighbouring threads handle neighbouring output pixels, so every write coalesces.

col2im gathers: one thread per input pixel sums the column entries that read it, walking
the windows that cover it in the reference's (i, j) order (so the sum is the same bit for
bit, on every run), with no atomics.
"""

from __future__ import annotations

from numba import cuda

from minicnn.backend import array_module
from minicnn.ops.im2col import conv_output_size

from .launch import launch, scalar


@cuda.jit
def _im2col(x, kh, kw, sh, sw, ph, pw, OH, OW, out):
    n, C, H, W = x.shape
    for idx in range(cuda.grid(1), C * n * OH * OW, cuda.gridsize(1)):
        ox = idx % OW
        t = idx // OW
        oy = t % OH
        t = t // OH
        b = t % n
        c = t // n
        col = (b * OH + oy) * OW + ox
        h0 = oy * sh - ph
        w0 = ox * sw - pw
        row = c * kh * kw
        for i in range(kh):
            h = h0 + i
            for j in range(kw):
                w = w0 + j
                if 0 <= h < H and 0 <= w < W:
                    out[row, col] = x[b, c, h, w]
                else:
                    out[row, col] = 0
                row += 1


@cuda.jit
def _col2im(cols, kh, kw, sh, sw, ph, pw, OH, OW, zero, dx):
    n, C, H, W = dx.shape
    for idx in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        w = idx % W
        t = idx // W
        h = t % H
        t = t // H
        c = t % C
        b = t // C
        hp = h + ph
        wp = w + pw
        # windows oy that hold padded row hp: oy * sh <= hp < oy * sh + kh; kernel row
        # i = hp - oy * sh rises as oy falls, so walking oy downwards keeps the reference's
        # order (i ascending, then j ascending)
        oy_first = min(hp // sh, OH - 1)
        oy_last = max((hp - kh) // sh + 1, 0)
        ox_first = min(wp // sw, OW - 1)
        ox_last = max((wp - kw) // sw + 1, 0)
        acc = zero
        for oy in range(oy_first, oy_last - 1, -1):
            row = (c * kh + hp - oy * sh) * kw + wp
            base = (b * OH + oy) * OW
            for ox in range(ox_first, ox_last - 1, -1):
                acc += cols[row - ox * sw, base + ox]
        dx[b, c, h, w] = acc


def im2col(x, kh, kw, sh, sw, ph, pw, out):
    """Write the columns of ``x`` into ``out`` (C*kh*kw, n*OH*OW) and return ``out``."""
    _, _, H, W = x.shape
    OH, OW = conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)
    x = array_module(x).ascontiguousarray(x)  # a no-op for the batch chunks conv2d passes
    launch(_im2col, x.shape[1] * x.shape[0] * OH * OW, x, kh, kw, sh, sw, ph, pw, OH, OW, out)
    return out


def col2im(cols, x_shape, kh, kw, sh, sw, ph, pw):
    """Fold ``cols`` (C*kh*kw, n*OH*OW) back into a new array of shape ``x_shape``."""
    xp = array_module(cols)
    _, _, H, W = x_shape
    OH, OW = conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)
    dx = xp.empty(tuple(x_shape), dtype=cols.dtype)
    launch(_col2im, dx.size, xp.ascontiguousarray(cols), kh, kw, sh, sw, ph, pw, OH, OW,
           scalar(0, cols.dtype), dx)
    return dx
