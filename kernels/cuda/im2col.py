"""im2col / col2im on the GPU (math and layout: ``minicnn.ops.im2col``).

im2col: one thread per (channel, output pixel) writes that pixel's kh*kw column entries
(Caffe's layout of the work), so the index arithmetic is paid once per kh*kw entries;
neighbouring threads handle neighbouring output pixels, so every write coalesces.

col2im gathers: one thread per input pixel sums the column entries that read it, walking
the kernel offsets (i, j) in the reference's order (so the sum is the same bit for bit, on
every run), with no atomics.
"""

from __future__ import annotations

from numba import cuda

from minicnn.backend import array_module
from minicnn.ops.im2col import output_sizes

from .launch import launch, scalar


@cuda.jit
def _im2col(x, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW, out):
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
            h = h0 + i * dh
            for j in range(kw):
                w = w0 + j * dw
                if 0 <= h < H and 0 <= w < W:
                    out[row, col] = x[b, c, h, w]
                else:
                    out[row, col] = 0
                row += 1


@cuda.jit
def _col2im(cols, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW, zero, dx):
    n, C, H, W = dx.shape
    for idx in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        w = idx % W
        t = idx // W
        h = t % H
        t = t // H
        c = t % C
        b = t // C
        # the windows that read padded pixel (h + ph, w + pw) at kernel offset (i, j):
        # oy * sh + i * dh = h + ph, within the output
        acc = zero
        for i in range(kh):
            ty = h + ph - i * dh
            if ty < 0 or ty % sh != 0 or ty // sh >= OH:
                continue
            oy = ty // sh
            for j in range(kw):
                tx = w + pw - j * dw
                if tx < 0 or tx % sw != 0 or tx // sw >= OW:
                    continue
                acc += cols[(c * kh + i) * kw + j, (b * OH + oy) * OW + tx // sw]
        dx[b, c, h, w] = acc


def im2col(x, kh, kw, sh, sw, ph, pw, out, dil_h=1, dil_w=1, oh=None, ow=None):
    """Write the columns of ``x`` into ``out`` (C*kh*kw, n*OH*OW) and return ``out``."""
    _, _, H, W = x.shape
    OH, OW = output_sizes(H, W, kh, kw, sh, sw, ph, pw, dil_h, dil_w, oh, ow)
    x = array_module(x).ascontiguousarray(x)  # a no-op for the batch chunks conv2d passes
    launch(_im2col, x.shape[1] * x.shape[0] * OH * OW, x, kh, kw, sh, sw, ph, pw, dil_h, dil_w, OH, OW, out)
    return out


def col2im(cols, x_shape, kh, kw, sh, sw, ph, pw, dil_h=1, dil_w=1, oh=None, ow=None):
    """Fold ``cols`` (C*kh*kw, n*OH*OW) back into a new array of shape ``x_shape``."""
    xp = array_module(cols)
    _, _, H, W = x_shape
    OH, OW = output_sizes(H, W, kh, kw, sh, sw, ph, pw, dil_h, dil_w, oh, ow)
    dx = xp.empty(tuple(x_shape), dtype=cols.dtype)
    launch(_col2im, dx.size, xp.ascontiguousarray(cols), kh, kw, sh, sw, ph, pw, dil_h, dil_w, OH, OW,
           scalar(0, cols.dtype), dx)
    return dx
