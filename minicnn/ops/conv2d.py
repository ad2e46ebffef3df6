"""2-D convolution (cross-correlation) with stride, zero padding and groups.

For input x (N, C, H, W), weight w (O, C/g, kh, kw), bias b (O,), groups g:

    y[n, o, p, q] = b[o] + sum_{c, i, j} w[o, c, i, j] * xpad[n, G(o) * C/g + c, p*sh + i, q*sw + j]

where G(o) = o // (O/g) is the group of output channel o, and OH = (H + 2 ph - kh)//sh + 1.
Backward, with X the im2col columns of one group and Y = W X the group's output:

    dW = dY X^T,   dX = W^T dY (folded back by col2im),   db[o] = sum_{n,p,q} dy[n, o, p, q]

The batch is processed in chunks whose columns fit a reused workspace, so memory stays
bounded whatever the batch size; backward unfolds each chunk again instead of keeping
the columns of the whole batch. Each product is one GEMM per group and chunk, over the
chunk's images at once: Y and dY are handled channel-major, (O, n*OH*OW), the layout the
columns give, and converted from and to NCHW by :func:`cnhw_to_nchw` and
:func:`nchw_to_cnhw` (hot paths: a kernel does each in one parallel pass). The products
go through :func:`gemm`, BLAS on every backend (the cpu backend splits it into one
single-threaded GEMM per thread, see ``kernels/cpu/gemm.py``).
"""

from __future__ import annotations

from minicnn.backend import array_module, hot_path
from minicnn.ops.gemm import gemm
from minicnn.ops.im2col import col2im, conv_output_size, im2col

# Bytes of column workspace per chunk; at least one image is always processed.
WORKSPACE_BYTES = 64 * 2**20
_workspaces: dict = {}


def workspace(xp, dtype, size: int, role: str = "cols"):
    """A reused flat buffer of at least ``size`` elements (one per array module, dtype and
    role, so that buffers used at the same time are distinct)."""
    key = (xp.__name__, str(dtype), role)
    buf = _workspaces.get(key)
    if buf is None or buf.size < size:
        _workspaces.pop(key, None)  # free the old buffer before allocating the larger one
        buf = xp.empty(size, dtype=dtype)
        _workspaces[key] = buf
    return buf[:size]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _chunks(n, rows, cols_per_image, itemsize):
    per_image = rows * cols_per_image * itemsize
    step = max(1, min(n, WORKSPACE_BYTES // max(per_image, 1)))
    return [(s, min(n, s + step)) for s in range(0, n, step)]


@hot_path
def nchw_to_cnhw(x, out):
    """out (C, n*H*W) <- x (n, C, H, W) with out[c, (b, h, w)] = x[b, c, h, w]; returns out."""
    n, C, H, W = x.shape
    out.reshape(C, n, H, W)[...] = x.transpose(1, 0, 2, 3)
    return out


@hot_path
def cnhw_to_nchw(a, bias, out):
    """out (n, C, H, W) <- a (C, n*H*W) plus bias[c] (bias may be None); returns out."""
    n, C, H, W = out.shape
    out[...] = a.reshape(C, n, H, W).transpose(1, 0, 2, 3)
    if bias is not None:
        out += bias.reshape(1, C, 1, 1)
    return out


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
        ycols = workspace(xp, x.dtype, O * n * L, "out").reshape(O, n * L)
        for g in range(groups):
            gemm(w2[g], cols[g * K : (g + 1) * K], ycols[g * Og : (g + 1) * Og])
        cnhw_to_nchw(ycols, bias, y[s:e])
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
    chunks = _chunks(N, C * kh * kw, L, x.itemsize)
    dx = xp.empty_like(x) if need_dx and len(chunks) > 1 else None
    dw = xp.empty((groups, Og, K), dtype=weight.dtype) if need_dw else None
    dw_chunk = xp.empty((Og, K), dtype=weight.dtype) if need_dw and len(chunks) > 1 else None
    db = xp.zeros(O, dtype=dy.dtype) if need_dw else None
    for s, e in chunks:
        n = e - s
        # the chunk's output gradient as a matrix per group: (O, n*L)
        dyc = nchw_to_cnhw(dy[s:e], workspace(xp, dy.dtype, O * n * L, "out").reshape(O, n * L))
        if need_dw:
            cols = im2col(x[s:e], kh, kw, sh, sw, ph, pw,
                          workspace(xp, x.dtype, C * kh * kw * n * L).reshape(C * kh * kw, n * L))
            for g in range(groups):
                if s == 0:
                    gemm(dyc[g * Og : (g + 1) * Og], cols[g * K : (g + 1) * K].T, dw[g])
                else:
                    dw[g] += gemm(dyc[g * Og : (g + 1) * Og], cols[g * K : (g + 1) * K].T, dw_chunk)
            db += dyc.sum(axis=1)
        if need_dx:
            dcols = workspace(xp, x.dtype, C * kh * kw * n * L, "dcols").reshape(C * kh * kw, n * L)
            for g in range(groups):
                gemm(w2[g].T, dyc[g * Og : (g + 1) * Og], dcols[g * K : (g + 1) * K])
            dx_chunk = col2im(dcols, (n, C, H, W), kh, kw, sh, sw, ph, pw)
            if len(chunks) == 1:
                dx = dx_chunk
            else:
                dx[s:e] = dx_chunk
    return dx, (dw.reshape(weight.shape) if need_dw else None), db
