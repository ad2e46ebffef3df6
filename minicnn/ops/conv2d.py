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
single-threaded GEMM per thread, see ``kernels/cpu/gemm.py``); Winograd's, below, through
:func:`gemm_batched`, one call for all positions and groups.

On the backends named in ``WINOGRAD_BACKENDS`` ("cpu", "cuda"), convolutions with square
r x r filters, r in ``WINOGRAD_TILE``, run Winograd's algorithm instead
(:mod:`minicnn.ops.winograd`): F(4x4, 3x3) and F(3x3, 5x5) by default, 2.6 and 4.6 times
fewer multiplications, float32 results within 1e-5 of the tensor's scale of the direct
sum's (``tests/test_winograd.py``). A stride s > 1 goes through :func:`space_to_depth`
first, as a stride-1 convolution with filters ceil(k / s) wide (AlexNet's conv1: 3x3). In
training (``keep``) the forward keeps the transformed filters and, up to ``KEEP_BYTES``
per layer, the batch's transformed input for the backward. The "numpy" reference always
computes the definition above through im2col. To run without Winograd:
``WINOGRAD_BACKENDS = ()`` (or ``("cpu",)``: im2col on the GPU only); F(2x2, 3x3), whose
transforms are exact in floating point: ``WINOGRAD_TILE[3] = 2``.
"""

from __future__ import annotations

import numpy as np

from minicnn.backend import array_module, get_backend, hot_path
from minicnn.ops import winograd
from minicnn.ops.gemm import gemm, gemm_batched
from minicnn.ops.im2col import col2im, conv_output_size, im2col

# Bytes of column workspace per chunk; at least one image is always processed. On a GPU
# (arrays not NumPy's) more: memory is there, and each chunk costs launches and smaller GEMMs
# (AlexNet on an H200, batch 256: 64 MiB chunks trained at 0.46-0.54x the speed of 1 GiB ones).
WORKSPACE_BYTES = 64 * 2**20
GPU_WORKSPACE_BYTES = 2**30
_workspaces: dict = {}
# filter size r -> output tile size m of Winograd's F(m x m, r x r); backends that use it
# (on an H200, AlexNet at batch 256 trained 1.5x and extracted FC7 1.7-1.8x as fast as with im2col)
WINOGRAD_TILE = {3: 4, 5: 3}
WINOGRAD_BACKENDS = ("cpu", "cuda")
# largest transformed input a training layer keeps for its backward (else recomputed there)
KEEP_BYTES = 512 * 2**20


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


def _chunks(xp, n, rows, cols_per_image, itemsize):
    per_image = rows * cols_per_image * itemsize
    budget = WORKSPACE_BYTES if xp is np else GPU_WORKSPACE_BYTES
    step = max(1, min(n, budget // max(per_image, 1)))
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


def winograd_tile(weight_shape, stride) -> int | None:
    """The Winograd output tile size m for this convolution on the current backend, or None
    when it runs through im2col. A stride s > 1 counts as the stride-1 convolution of its
    space-to-depth form, with filters of ceil(k / s) (:func:`space_to_depth`)."""
    kh, kw = weight_shape[2:]
    sh, sw = _pair(stride)
    if get_backend().name not in WINOGRAD_BACKENDS or sh != sw or kh != kw:
        return None
    return WINOGRAD_TILE.get(-(-kh // sh))


def space_to_depth(x, s, ph, pw, Hs, Ws):
    """x (N, C, H, W), zero-padded by (ph, pw) before and up to (Hs*s, Ws*s) after, as
    (N, C*s*s, Hs, Ws) with xs[n, (c, a, b), i, j] = xpad[n, c, i*s + a, j*s + b]. Then the
    stride-s convolution by w (O, C, k, k) is the stride-1 convolution of xs by
    ws[o, (c, a, b), p, q] = w[o, c, p*s + a, q*s + b] (zero beyond k: :func:`filter_to_depth`),
    whose filters are ceil(k / s) wide: conv1 of AlexNet (11x11, stride 4) becomes a 3x3
    convolution of 48 channels, fit for Winograd."""
    xp = array_module(x)
    N, C, H, W = x.shape
    xpad = xp.zeros((N, C, Hs * s, Ws * s), dtype=x.dtype)
    xpad[:, :, ph : ph + H, pw : pw + W] = x
    return xp.ascontiguousarray(
        xpad.reshape(N, C, Hs, s, Ws, s).transpose(0, 1, 3, 5, 2, 4).reshape(N, C * s * s, Hs, Ws))


def depth_to_space(xs, s, ph, pw, H, W):
    """The adjoint of :func:`space_to_depth`: (N, C*s*s, Hs, Ws) back to (N, C, H, W)."""
    xp = array_module(xs)
    N, Cs, Hs, Ws = xs.shape
    C = Cs // (s * s)
    xpad = xs.reshape(N, C, s, s, Hs, Ws).transpose(0, 1, 4, 2, 5, 3).reshape(N, C, Hs * s, Ws * s)
    return xp.ascontiguousarray(xpad[:, :, ph : ph + H, pw : pw + W])


def filter_to_depth(w, s):
    """ws (O, C*s*s, ceil(k/s), ceil(k/s)) of :func:`space_to_depth` from w (O, C, k, k)."""
    xp = array_module(w)
    O, C, k, _ = w.shape
    kd = -(-k // s)
    wpad = xp.zeros((O, C, kd * s, kd * s), dtype=w.dtype)
    wpad[:, :, :k, :k] = w
    return xp.ascontiguousarray(
        wpad.reshape(O, C, kd, s, kd, s).transpose(0, 1, 3, 5, 2, 4).reshape(O, C * s * s, kd, kd))


def depth_to_filter(ws, s, k):
    """The adjoint of :func:`filter_to_depth`: the gradient of w from that of ws."""
    xp = array_module(ws)
    O, Cs, kd, _ = ws.shape
    C = Cs // (s * s)
    wpad = ws.reshape(O, C, s, s, kd, kd).transpose(0, 1, 4, 2, 5, 3).reshape(O, C, kd * s, kd * s)
    return xp.ascontiguousarray(wpad[:, :, :k, :k])


def _depth_sizes(x_shape, k, s, padding):
    """(Hs, Ws) of the space-to-depth input: the padded input, and room for every output."""
    H, W = x_shape[2:]
    ph, pw = padding
    kd = -(-k // s)
    return (max(-(-(H + 2 * ph) // s), conv_output_size(H, k, s, ph) + kd - 1),
            max(-(-(W + 2 * pw) // s), conv_output_size(W, k, s, pw) + kd - 1))


def conv2d_forward(x, weight, bias, stride=1, padding=0, groups=1, keep=None):
    """y; ``keep``, a dict, receives what :func:`conv2d_backward` can reuse for this same x
    if given the dict (Winograd's transformed input: a training step then transforms each
    input once; the buffer is reused from step to step)."""
    m = winograd_tile(weight.shape, stride)
    if m and _pair(stride)[0] > 1:
        s, k, padding = _pair(stride)[0], weight.shape[2], _pair(padding)
        N, _, H, W = x.shape
        xs = space_to_depth(x, s, *padding, *_depth_sizes(x.shape, k, s, padding))
        if keep is not None:
            keep["source"] = x
        y = _winograd_forward(xs, filter_to_depth(weight, s), bias, (0, 0), groups, m, keep)
        OH, OW = conv_output_size(H, k, s, padding[0]), conv_output_size(W, k, s, padding[1])
        return y if y.shape[2:] == (OH, OW) else array_module(x).ascontiguousarray(y[:, :, :OH, :OW])
    if m:
        return _winograd_forward(x, weight, bias, _pair(padding), groups, m, keep)
    xp = array_module(x)
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    N, C, H, W = x.shape
    O, Cg, kh, kw = weight.shape
    OH, OW = conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)
    L, Og, K = OH * OW, O // groups, Cg * kh * kw
    y = xp.empty((N, O, OH, OW), dtype=x.dtype)
    w2 = weight.reshape(groups, Og, K)
    for s, e in _chunks(xp, N, C * kh * kw, L, x.itemsize):
        n = e - s
        cols = im2col(x[s:e], kh, kw, sh, sw, ph, pw,
                      workspace(xp, x.dtype, C * kh * kw * n * L).reshape(C * kh * kw, n * L))
        ycols = workspace(xp, x.dtype, O * n * L, "out").reshape(O, n * L)
        for g in range(groups):
            gemm(w2[g], cols[g * K : (g + 1) * K], ycols[g * Og : (g + 1) * Og])
        cnhw_to_nchw(ycols, bias, y[s:e])
    return y


def conv2d_backward(dy, x, weight, stride=1, padding=0, groups=1, need_dx=True, need_dw=True,
                    kept=None):
    """Return (dx, dweight, dbias); the ones not asked for are None. ``kept``: the forward's
    ``keep`` dict, used only if it was filled for this x."""
    m = winograd_tile(weight.shape, stride)
    if m and _pair(stride)[0] > 1:
        s, k, padding = _pair(stride)[0], weight.shape[2], _pair(padding)
        kept = kept if kept is not None and kept.get("source") is x else None
        xs = kept["x"] if kept else space_to_depth(x, s, *padding, *_depth_sizes(x.shape, k, s, padding))
        xp = array_module(x)
        kd = -(-k // s)
        OHs, OWs = xs.shape[2] - kd + 1, xs.shape[3] - kd + 1
        if (OHs, OWs) != dy.shape[2:]:  # outputs beyond the strided ones: zero gradient
            dys = xp.zeros(dy.shape[:2] + (OHs, OWs), dtype=dy.dtype)
            dys[:, :, : dy.shape[2], : dy.shape[3]] = dy
        else:
            dys = dy
        dxs, dws, db = _winograd_backward(dys, xs, filter_to_depth(weight, s), (0, 0), groups, m,
                                          need_dx, need_dw, kept)
        dx = depth_to_space(dxs, s, *padding, *x.shape[2:]) if need_dx else None
        return dx, (depth_to_filter(dws, s, k) if need_dw else None), db
    if m:
        kept = kept if kept is not None and kept.get("x") is x else None
        return _winograd_backward(dy, x, weight, _pair(padding), groups, m, need_dx, need_dw, kept)
    xp = array_module(x)
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    N, C, H, W = x.shape
    O, Cg, kh, kw = weight.shape
    OH, OW = dy.shape[2], dy.shape[3]
    L, Og, K = OH * OW, O // groups, Cg * kh * kw
    w2 = weight.reshape(groups, Og, K)
    chunks = _chunks(xp, N, C * kh * kw, L, x.itemsize)
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


def _winograd_setup(x, weight, padding, m):
    """Sizes, matrices and batch chunks of a Winograd convolution."""
    N, C, H, W = x.shape
    O, Cg, r, _ = weight.shape
    OH, OW = conv_output_size(H, r, 1, padding[0]), conv_output_size(W, r, 1, padding[1])
    TH, TW = winograd.tiles_of(OH, m), winograd.tiles_of(OW, m)
    AT, G, BT = winograd.matrices(m, r)
    n = G.shape[0]
    # the workspaces hold (n*n, channels, chunk tiles), channels the larger of C and O
    chunks = _chunks(array_module(x), N, n * n * max(C, O), TH * TW, x.itemsize)
    return (N, C, O, Cg, OH, OW, TH, TW), (AT, G, BT), chunks


def _by_group(a, groups):
    """(n*n, channels, k) as (n*n, groups, channels/groups, k): a view, each group a stack."""
    return a.reshape(a.shape[0], groups, a.shape[1] // groups, a.shape[2])


def _transposed(stacks):
    return stacks.transpose(0, 1, 3, 2)


def _winograd_forward(x, weight, bias, padding, groups, m, keep=None):
    xp = array_module(x)
    (N, C, O, Cg, OH, OW, TH, TW), (AT, G, BT), chunks = _winograd_setup(x, weight, padding, m)
    n2, T = G.shape[0] ** 2, TH * TW
    U = winograd.filter_transform(weight, G, keep.get("U") if keep is not None else None)
    y = xp.empty((N, O, OH, OW), dtype=x.dtype)
    V_all = None
    if keep is not None:
        keep.update(x=x, U=U)
        V_all = keep.pop("V", None)
        if n2 * C * N * T * x.itemsize <= KEEP_BYTES:  # the batch's transformed input, once
            if V_all is None or V_all.shape != (n2, C, N * T) or V_all.dtype != x.dtype:
                V_all = None  # free the old buffer before allocating the new one
                V_all = xp.empty((n2, C, N * T), dtype=x.dtype)
            keep["V"] = winograd.winograd_input_transform(x, BT, m, *padding, TH, TW, V_all)
        else:
            V_all = None
    for s, e in chunks:
        nt = (e - s) * T
        if V_all is not None:
            V = V_all[:, :, s * T : e * T]
        else:
            V = winograd.winograd_input_transform(
                x[s:e], BT, m, *padding, TH, TW, workspace(xp, x.dtype, n2 * C * nt).reshape(n2, C, nt))
        M = workspace(xp, x.dtype, n2 * O * nt, "out").reshape(n2, O, nt)
        gemm_batched(_by_group(U, groups), _by_group(V, groups), _by_group(M, groups))
        winograd.winograd_output_transform(M, AT, bias, y[s:e])
    return y


def _winograd_backward(dy, x, weight, padding, groups, m, need_dx, need_dw, kept=None):
    """``kept``: the forward's keep dict for this x (its transformed input and filters), or None."""
    xp = array_module(x)
    (N, C, O, Cg, OH, OW, TH, TW), (AT, G, BT), chunks = _winograd_setup(x, weight, padding, m)
    n2, T = G.shape[0] ** 2, TH * TW
    V_all, U = (kept.get("V"), kept.get("U")) if kept else (None, None)
    if need_dx and U is None:
        U = winograd.filter_transform(weight, G)
    dU = xp.empty((n2, O, Cg), dtype=weight.dtype) if need_dw else None
    dU_chunk = xp.empty((n2, O, Cg), dtype=weight.dtype) if need_dw and len(chunks) > 1 else None
    dx = xp.empty_like(x) if need_dx else None
    for s, e in chunks:
        nt = (e - s) * T
        dM = winograd.winograd_output_adjoint(
            dy[s:e], AT, workspace(xp, dy.dtype, n2 * O * nt, "out").reshape(n2, O, nt))
        if need_dw:
            if V_all is not None:
                V = V_all[:, :, s * T : e * T]
            else:
                V = winograd.winograd_input_transform(
                    x[s:e], BT, m, *padding, TH, TW, workspace(xp, x.dtype, n2 * C * nt).reshape(n2, C, nt))
            target = dU if s == 0 else dU_chunk
            gemm_batched(_by_group(dM, groups), _transposed(_by_group(V, groups)), _by_group(target, groups))
            if s:
                dU += dU_chunk
        if need_dx:
            dV = workspace(xp, x.dtype, n2 * C * nt, "dcols").reshape(n2, C, nt)
            gemm_batched(_transposed(_by_group(U, groups)), _by_group(dM, groups), _by_group(dV, groups))
            winograd.winograd_input_adjoint(dV, BT, m, *padding, TH, TW, dx[s:e])
    dw = winograd.filter_adjoint(dU, G) if need_dw else None
    db = dy.sum(axis=(0, 2, 3)) if need_dw else None
    return dx, dw, db
