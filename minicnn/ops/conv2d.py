"""2-D convolution (cross-correlation) with stride, dilation, zero padding and groups.

For input x (N, C, H, W), weight w (O, C/g, kh, kw), bias b (O,), groups g, dilation (dh, dw):

    y[n, o, p, q] = b[o] + sum_{c, i, j} w[o, c, i, j] * xpad[n, G(o) * C/g + c, p*sh + i*dh, q*sw + j*dw]

where G(o) = o // (O/g) is the group of output channel o, xpad is x with pt rows of zeros
above, pb below, pl columns left and pr right (``padding`` (ph, pw) pads both sides alike,
(pt, pl, pb, pr) each side on its own), and OH = (H + pt + pb - dh (kh - 1) - 1)//sh + 1.
Backward, with X the im2col columns of one group and Y = W X the group's output:

    dW = dY X^T,   dX = W^T dY (folded back by col2im),   db[o] = sum_{n,p,q} dy[n, o, p, q]

The batch is processed in chunks whose columns fit a reused workspace, so memory stays
bounded whatever the batch size; backward unfolds each chunk again instead of keeping
the columns of the whole batch, and adds each chunk's dW into one array (``gemm``'s
``accumulate``). Each product is one GEMM per group and chunk, over the
chunk's images at once: Y and dY are handled channel-major, (O, n*OH*OW), the layout the
columns give, and converted from and to NCHW by :func:`cnhw_to_nchw` and
:func:`nchw_to_cnhw` (hot paths: a kernel does each in one parallel pass). The products
go through :func:`gemm`, BLAS on every backend.

A depthwise convolution (one input channel per group) runs its own kernels
(:mod:`minicnn.ops.depthwise_conv2d`) on every backend, the "numpy" reference included.
On the backends named in ``WINOGRAD_BACKENDS``, convolutions with square r x r filters
(after space-to-depth for a stride s > 1: ceil(k / s)), r in ``WINOGRAD_TILE``, run
Winograd's algorithm instead (:mod:`minicnn.ops.winograd_conv`), with fewer
multiplications and float32 results within 1e-5 of the tensor's scale of the direct
sum's (``tests/test_winograd.py``). The "numpy" reference computes the definition above
through im2col (a depthwise one directly).
"""

from __future__ import annotations

import numpy as np

from minicnn.backend import array_module, get_backend, hot_path
from minicnn.ops import depthwise_conv2d as dw_op
from minicnn.ops import winograd_conv
from minicnn.ops.gemm import gemm
from minicnn.ops.im2col import col2im, conv_output_size, im2col, pair, quad
from minicnn.ops.workspace import batch_chunks, workspace

# Bytes of workspace per batch chunk (columns, or Winograd's transformed tiles). On a GPU
# (arrays not NumPy's) more: memory is there, and each chunk costs launches and smaller
# GEMMs (docs/gpu.md has the measured difference).
WORKSPACE_BYTES = 64 * 2**20
GPU_WORKSPACE_BYTES = 2**30
# filter size r -> output tile size m of Winograd's F(m x m, r x r), on the backends named:
# F(4x4, 3x3) and F(3x3, 5x5), 2.6 and 4.6 times fewer multiplications than the direct sum.
# () runs im2col everywhere, ("cpu",) on the GPU; {3: 2}: F(2x2, 3x3), whose transforms
# are exact in floating point.
WINOGRAD_TILE = {3: 4, 5: 3}
WINOGRAD_BACKENDS = ("cpu", "cuda")
# largest transformed input a training layer keeps for its backward (else recomputed there)
KEEP_BYTES = 512 * 2**20


def _workspace_bytes(x):
    return WORKSPACE_BYTES if array_module(x) is np else GPU_WORKSPACE_BYTES


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


def is_depthwise(weight_shape, groups) -> bool:
    """One input channel per group (groups == input channels > 1): the depthwise kernels
    (:mod:`minicnn.ops.depthwise_conv2d`) run it, on every backend."""
    return groups > 1 and weight_shape[1] == 1


def winograd_tile(weight_shape, stride, padding=0, dilation=1, groups=1) -> int | None:
    """The Winograd output tile size m for this convolution on the current backend, or None
    when it runs through im2col. A stride s > 1 counts as the stride-1 convolution of its
    space-to-depth form, with filters of ceil(k / s) (:mod:`minicnn.ops.winograd_conv`).
    Dilated convolutions, padding that differs per side and depthwise ones (one filter per
    channel, where the transforms outweigh the products) run through im2col."""
    kh, kw = weight_shape[2:]
    sh, sw = pair(stride)
    pt, pl, pb, pr = quad(padding)
    if get_backend().name not in WINOGRAD_BACKENDS or sh != sw or kh != kw or pair(dilation) != (1, 1) \
            or (pt, pl) != (pb, pr) or is_depthwise(weight_shape, groups):
        return None
    return WINOGRAD_TILE.get(-(-kh // sh))


def output_size(x_shape, weight_shape, stride=1, padding=0, dilation=1) -> tuple[int, int]:
    """(OH, OW) of the convolution of an input of ``x_shape`` (N, C, H, W) by ``weight_shape``."""
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = pair(stride), pair(dilation), quad(padding)
    kh, kw = weight_shape[2:]
    return (conv_output_size(x_shape[2], kh, sh, pt, dh, pb),
            conv_output_size(x_shape[3], kw, sw, pl, dw, pr))


def _products(a, b, out, accumulate=False):
    """out[g] (+)= a[g] @ b[g] for each group g (stacks of matrices), one GEMM per group.
    (Not one batched GEMM: the cpu backend's blocks of a product depend on its shape alone,
    so that results do not depend on the number of threads. Depthwise convolutions, where
    this loop would be one tiny product per channel, have their own kernels.)"""
    for g in range(a.shape[0]):
        gemm(a[g], b[g], out[g], accumulate=accumulate)


def conv2d_forward(x, weight, bias, stride=1, padding=0, groups=1, keep=None, dilation=1):
    """y; ``keep``, a dict, receives what :func:`conv2d_backward` can reuse for this same x
    if given the dict (Winograd's transformed input: a training step then transforms each
    input once; the buffer is reused from step to step)."""
    if is_depthwise(weight.shape, groups):
        (sh, sw), (dil_h, dil_w), (ph, pw, _, _) = pair(stride), pair(dilation), quad(padding)
        return dw_op.depthwise_forward(x, weight, bias, sh, sw, ph, pw, dil_h, dil_w,
                                       *output_size(x.shape, weight.shape, stride, padding, dilation))
    m = winograd_tile(weight.shape, stride, padding, dilation, groups)
    if m:
        return winograd_conv.forward(x, weight, bias, stride, quad(padding)[:2], groups, m,
                                     budget=_workspace_bytes(x), keep=keep, keep_bytes=KEEP_BYTES)
    xp = array_module(x)
    (sh, sw), (dil_h, dil_w), (ph, pw, _, _) = pair(stride), pair(dilation), quad(padding)
    N, C, H, W = x.shape
    O, Cg, kh, kw = weight.shape
    OH, OW = output_size(x.shape, weight.shape, stride, padding, dilation)
    L, Og, K = OH * OW, O // groups, Cg * kh * kw
    y = xp.empty((N, O, OH, OW), dtype=x.dtype)
    w2 = weight.reshape(groups, Og, K)
    for s, e in batch_chunks(N, C * kh * kw * L * x.itemsize, _workspace_bytes(x)):
        n = e - s
        cols = im2col(x[s:e], kh, kw, sh, sw, ph, pw,
                      workspace(xp, x.dtype, C * kh * kw * n * L).reshape(C * kh * kw, n * L),
                      dil_h, dil_w, OH, OW)
        ycols = workspace(xp, x.dtype, O * n * L, "out").reshape(O, n * L)
        _products(w2, cols.reshape(groups, K, n * L), ycols.reshape(groups, Og, n * L))
        cnhw_to_nchw(ycols, bias, y[s:e])
    return y


def conv2d_backward(dy, x, weight, stride=1, padding=0, groups=1, need_dx=True, need_dw=True,
                    kept=None, dilation=1):
    """Return (dx, dweight, dbias); the ones not asked for are None. ``kept``: the forward's
    ``keep`` dict, used only if it was filled for this x."""
    if is_depthwise(weight.shape, groups):
        (sh, sw), (dil_h, dil_w), (ph, pw, _, _) = pair(stride), pair(dilation), quad(padding)
        geometry = (sh, sw, ph, pw, dil_h, dil_w)
        dx = dw_op.depthwise_backward_input(dy, weight, x.shape, *geometry) if need_dx else None
        dw = dw_op.depthwise_backward_weight(dy, x, *weight.shape[2:], *geometry) if need_dw else None
        return dx, dw, (dy.sum(axis=(0, 2, 3)) if need_dw else None)
    m = winograd_tile(weight.shape, stride, padding, dilation, groups)
    if m:
        return winograd_conv.backward(dy, x, weight, stride, quad(padding)[:2], groups, m, need_dx,
                                      need_dw, budget=_workspace_bytes(x), kept=kept)
    xp = array_module(x)
    (sh, sw), (dil_h, dil_w), (ph, pw, _, _) = pair(stride), pair(dilation), quad(padding)
    N, C, H, W = x.shape
    O, Cg, kh, kw = weight.shape
    OH, OW = dy.shape[2], dy.shape[3]
    L, Og, K = OH * OW, O // groups, Cg * kh * kw
    w2 = weight.reshape(groups, Og, K)
    chunks = batch_chunks(N, C * kh * kw * L * x.itemsize, _workspace_bytes(x))
    dx = xp.empty_like(x) if need_dx and len(chunks) > 1 else None
    dw = xp.empty((groups, Og, K), dtype=weight.dtype) if need_dw else None
    db = xp.zeros(O, dtype=dy.dtype) if need_dw else None
    for s, e in chunks:
        n = e - s
        # the chunk's output gradient as a matrix per group: (O, n*L)
        dyc = nchw_to_cnhw(dy[s:e], workspace(xp, dy.dtype, O * n * L, "out").reshape(O, n * L))
        if need_dw:
            cols = im2col(x[s:e], kh, kw, sh, sw, ph, pw,
                          workspace(xp, x.dtype, C * kh * kw * n * L).reshape(C * kh * kw, n * L),
                          dil_h, dil_w, OH, OW)
            # the first chunk writes dW, the others add to it
            _products(dyc.reshape(groups, Og, n * L), cols.reshape(groups, K, n * L).transpose(0, 2, 1),
                      dw, accumulate=s > 0)
            db += dyc.sum(axis=1)
        if need_dx:
            dcols = workspace(xp, x.dtype, C * kh * kw * n * L, "dcols").reshape(C * kh * kw, n * L)
            _products(w2.transpose(0, 2, 1), dyc.reshape(groups, Og, n * L), dcols.reshape(groups, K, n * L))
            dx_chunk = col2im(dcols, (n, C, H, W), kh, kw, sh, sw, ph, pw, dil_h, dil_w, OH, OW)
            if len(chunks) == 1:
                dx = dx_chunk
            else:
                dx[s:e] = dx_chunk
    return dx, (dw.reshape(weight.shape) if need_dw else None), db
