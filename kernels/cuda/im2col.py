"""im2col / col2im on the GPU (math and layout: ``minicnn.ops.im2col``).

im2col: one thread per column-matrix entry, consecutive threads along a row of ``out``
(consecutive output pixels) so that writes coalesce. col2im gathers: one thread per input
pixel sums the column entries that read it, in the reference's (i, j) order, so it needs
no atomics and gives the same sum on every run.
"""

from __future__ import annotations

from numba import cuda

from minicnn.backend import array_module
from minicnn.ops.im2col import conv_output_size

from .launch import launch, scalar


@cuda.jit
def _im2col(x, kh, kw, sh, sw, ph, pw, OH, OW, out):
    n, C, H, W = x.shape
    ncols = out.shape[1]
    for idx in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        col = idx % ncols
        row = idx // ncols
        ox = col % OW
        t = col // OW
        oy = t % OH
        b = t // OH
        j = row % kw
        t = row // kw
        i = t % kh
        c = t // kh
        h = oy * sh + i - ph
        w = ox * sw + j - pw
        if 0 <= h < H and 0 <= w < W:
            out[row, col] = x[b, c, h, w]
        else:
            out[row, col] = 0


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
        acc = zero
        for i in range(kh):
            yy = h + ph - i  # = oy * sh for the windows that read row h with kernel row i
            if yy < 0:
                break
            if yy % sh != 0 or yy // sh >= OH:
                continue
            for j in range(kw):
                xx = w + pw - j
                if xx < 0:
                    break
                if xx % sw != 0 or xx // sw >= OW:
                    continue
                acc += cols[(c * kh + i) * kw + j, (b * OH + yy // sh) * OW + xx // sw]
        dx[b, c, h, w] = acc


def im2col(x, kh, kw, sh, sw, ph, pw, out):
    """Write the columns of ``x`` into ``out`` (C*kh*kw, n*OH*OW) and return ``out``."""
    _, _, H, W = x.shape
    OH, OW = conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)
    x = array_module(x).ascontiguousarray(x)  # a no-op for the batch chunks conv2d passes
    launch(_im2col, out.size, x, kh, kw, sh, sw, ph, pw, OH, OW, out)
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
