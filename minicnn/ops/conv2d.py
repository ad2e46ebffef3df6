"""2-D convolution (cross-correlation) with stride, zero padding and groups.

For input x (N, C, H, W), weight w (O, C/g, kh, kw), bias b (O,), groups g:

    y[n, o, p, q] = b[o] + sum_{c, i, j} w[o, c, i, j] * xpad[n, G(o) * C/g + c, p*sh + i, q*sw + j]

where G(o) = o // (O/g) is the group of output channel o, and OH = (H + 2 ph - kh)//sh + 1.
Backward, with X the im2col columns of one group and Y = W X the group's output:

    dW = dY X^T,   dX = W^T dY (folded back by col2im),   db[o] = sum_{n,p,q} dy[n, o, p, q]

The batch is processed in chunks whose columns fit a reused workspace, so memory stays
bounded whatever the batch size; backward unfolds each chunk again instead of keeping
the columns of the whole batch.
"""

from __future__ import annotations

from minicnn.backend import array_module
from minicnn.ops.im2col import col2im, conv_output_size, im2col

# Bytes of column workspace per chunk; at least one image is always processed.
WORKSPACE_BYTES = 64 * 2**20
_workspaces: dict = {}


def workspace(xp, dtype, size: int):
    """A reused flat buffer of at least ``size`` elements (one per array module and dtype)."""
    key = (xp.__name__, str(dtype))
    buf = _workspaces.get(key)
    if buf is None or buf.size < size:
        buf = xp.empty(size, dtype=dtype)
        _workspaces[key] = buf
    return buf[:size]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _chunks(n, rows, cols_per_image, itemsize):
    per_image = rows * cols_per_image * itemsize
    step = max(1, min(n, WORKSPACE_BYTES // max(per_image, 1)))
    return [(s, min(n, s + step)) for s in range(0, n, step)]


def conv2d_forward(x, weight, bias, stride=1, padding=0, groups=1):
    xp = array_module(x)
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    N, C, H, W = x.shape
    O, Cg, kh, kw = weight.shape
    OH, OW = conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)
    L, Og, K = OH * OW, O // groups, Cg * kh * kw
    y = xp.empty((N, O, OH, OW), dtype=x.dtype)
    w2 = weight.reshape(groups, Og, K)
    for s, e in _chunks(N, C * kh * kw, L, x.itemsize):
        n = e - s
        cols = im2col(x[s:e], kh, kw, sh, sw, ph, pw,
                      workspace(xp, x.dtype, C * kh * kw * n * L).reshape(C * kh * kw, n * L))
        for g in range(groups):
            yg = w2[g] @ cols[g * K : (g + 1) * K]  # (Og, n*L)
            y[s:e, g * Og : (g + 1) * Og] = yg.reshape(Og, n, OH, OW).transpose(1, 0, 2, 3)
    if bias is not None:
        y += bias.reshape(1, O, 1, 1)
    return y


def conv2d_backward(dy, x, weight, stride=1, padding=0, groups=1, need_dx=True, need_dw=True):
    """Return (dx, dweight, dbias); the ones not asked for are None."""
    xp = array_module(x)
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    N, C, H, W = x.shape
    O, Cg, kh, kw = weight.shape
    OH, OW = dy.shape[2], dy.shape[3]
    L, Og, K = OH * OW, O // groups, Cg * kh * kw
    w2 = weight.reshape(groups, Og, K)
    dx = xp.empty_like(x) if need_dx else None
    dw = xp.zeros((groups, Og, K), dtype=weight.dtype) if need_dw else None
    for s, e in _chunks(N, C * kh * kw, L, x.itemsize):
        n = e - s
        # (n, O, OH, OW) -> (O, n*L): the output of each group as a matrix
        dyc = dy[s:e].transpose(1, 0, 2, 3).reshape(O, n * L)
        if need_dw:
            cols = im2col(x[s:e], kh, kw, sh, sw, ph, pw,
                          workspace(xp, x.dtype, C * kh * kw * n * L).reshape(C * kh * kw, n * L))
            for g in range(groups):
                dw[g] += dyc[g * Og : (g + 1) * Og] @ cols[g * K : (g + 1) * K].T
        if need_dx:
            dcols = xp.empty((C * kh * kw, n * L), dtype=x.dtype)
            for g in range(groups):
                xp.matmul(w2[g].T, dyc[g * Og : (g + 1) * Og], out=dcols[g * K : (g + 1) * K])
            dx[s:e] = col2im(dcols, (n, C, H, W), kh, kw, sh, sw, ph, pw)
    db = dy.sum(axis=(0, 2, 3)) if need_dw else None
    return dx, (dw.reshape(weight.shape) if need_dw else None), db
