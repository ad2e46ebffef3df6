"""Convolution by Winograd's minimal filtering: the driver of the transforms of
:mod:`minicnn.ops.winograd` (their math is there) for the convolutions that
:mod:`minicnn.ops.conv2d` gives it, square r x r filters with output tiles m x m.

The batch is processed in chunks whose transformed tiles fit ``budget`` bytes of reused
workspace. Per chunk: the input transform V, one batched GEMM M = U V over the n^2
positions and the groups (:func:`gemm_batched`), the output transform; the backward runs
the adjoints over the same chunks.

A stride s > 1 is first rewritten as a stride-1 convolution (space to depth):

    xs[n, (c, a, b), i, j] = xpad[n, c, i*s + a, j*s + b]
    ws[o, (c, a, b), p, q] = w[o, c, p*s + a, q*s + b]      (zero beyond k)

so that the stride-s convolution of x by w is the stride-1 convolution of xs by ws, cropped,
with filters ceil(k / s) wide: AlexNet's conv1 (11x11, stride 4) becomes a 3x3 convolution
of 48 channels.

``keep``, a dict a layer reuses from step to step, receives in training the transformed
filters U and, up to ``keep_bytes``, the whole batch's transformed input V; the backward of
the same x then transforms neither again. Above that budget the backward transforms the
input again, chunk by chunk.
"""

from __future__ import annotations

from minicnn.backend import array_module
from minicnn.ops import winograd
from minicnn.ops.gemm import gemm_batched
from minicnn.ops.im2col import conv_output_size, pair
from minicnn.ops.workspace import batch_chunks, workspace


def forward(x, weight, bias, stride, padding, groups, m, *, budget, keep=None, keep_bytes=0):
    """y of the convolution of x (N, C, H, W) by weight (O, C/groups, k, k), plus bias."""
    (s, _), padding = pair(stride), pair(padding)
    if keep is not None:
        keep["x"] = x
    if s == 1:
        return _forward(x, weight, bias, padding, groups, m, budget, keep, keep_bytes)
    k = weight.shape[2]
    N, _, H, W = x.shape
    xs = space_to_depth(x, s, *padding, *_depth_sizes(x.shape, k, s, padding))
    if keep is not None:
        keep["xs"] = xs
    y = _forward(xs, filter_to_depth(weight, s), bias, (0, 0), groups, m, budget, keep, keep_bytes)
    OH, OW = conv_output_size(H, k, s, padding[0]), conv_output_size(W, k, s, padding[1])
    return y if y.shape[2:] == (OH, OW) else array_module(x).ascontiguousarray(y[:, :, :OH, :OW])


def backward(dy, x, weight, stride, padding, groups, m, need_dx=True, need_dw=True, *, budget,
             kept=None):
    """(dx, dweight, dbias), None where not asked for. ``kept``: the forward's ``keep``
    dict, used only if it was filled for this x."""
    (s, _), padding = pair(stride), pair(padding)
    kept = kept if kept is not None and kept.get("x") is x else None
    if s == 1:
        return _backward(dy, x, weight, padding, groups, m, need_dx, need_dw, budget, kept)
    k = weight.shape[2]
    xs = kept["xs"] if kept else space_to_depth(x, s, *padding, *_depth_sizes(x.shape, k, s, padding))
    kd = -(-k // s)
    OHs, OWs = xs.shape[2] - kd + 1, xs.shape[3] - kd + 1
    if (OHs, OWs) != dy.shape[2:]:  # outputs beyond the strided ones: zero gradient
        dys = array_module(dy).zeros(dy.shape[:2] + (OHs, OWs), dtype=dy.dtype)
        dys[:, :, : dy.shape[2], : dy.shape[3]] = dy
    else:
        dys = dy
    dxs, dws, db = _backward(dys, xs, filter_to_depth(weight, s), (0, 0), groups, m, need_dx, need_dw,
                             budget, kept)
    dx = depth_to_space(dxs, s, *padding, *x.shape[2:]) if need_dx else None
    return dx, (depth_to_filter(dws, s, k) if need_dw else None), db


def space_to_depth(x, s, ph, pw, Hs, Ws):
    """xs (N, C*s*s, Hs, Ws) of x (N, C, H, W), zero-padded by (ph, pw) before and up to
    (Hs*s, Ws*s) after (module doc)."""
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
    """ws (O, C*s*s, ceil(k/s), ceil(k/s)) of w (O, C, k, k) (module doc)."""
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


def _setup(x, weight, padding, m, budget):
    """Sizes, matrices and batch chunks of a stride-1 Winograd convolution."""
    N, C, H, W = x.shape
    O, Cg, r, _ = weight.shape
    OH, OW = conv_output_size(H, r, 1, padding[0]), conv_output_size(W, r, 1, padding[1])
    TH, TW = winograd.tiles_of(OH, m), winograd.tiles_of(OW, m)
    AT, G, BT = winograd.matrices(m, r)
    n = G.shape[0]
    # the workspaces hold (n*n, channels, chunk tiles), channels the larger of C and O
    chunks = batch_chunks(N, n * n * max(C, O) * TH * TW * x.itemsize, budget)
    return (N, C, O, Cg, OH, OW, TH, TW), (AT, G, BT), chunks


def _by_group(a, groups):
    """(n*n, channels, k) as (n*n, groups, channels/groups, k): a view, each group a stack."""
    return a.reshape(a.shape[0], groups, a.shape[1] // groups, a.shape[2])


def _transposed(stacks):
    return stacks.transpose(0, 1, 3, 2)


def _forward(x, weight, bias, padding, groups, m, budget, keep, keep_bytes):
    xp = array_module(x)
    (N, C, O, Cg, OH, OW, TH, TW), (AT, G, BT), chunks = _setup(x, weight, padding, m, budget)
    n2, T = G.shape[0] ** 2, TH * TW
    U = winograd.filter_transform(weight, G, keep.get("U") if keep is not None else None)
    y = xp.empty((N, O, OH, OW), dtype=x.dtype)
    V_all = None
    if keep is not None:
        keep["U"] = U
        V_all = keep.pop("V", None)
        if n2 * C * N * T * x.itemsize <= keep_bytes:  # the batch's transformed input, once
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


def _backward(dy, x, weight, padding, groups, m, need_dx, need_dw, budget, kept):
    """``kept``: the forward's keep dict for this x (its transformed input and filters), or None."""
    xp = array_module(x)
    (N, C, O, Cg, OH, OW, TH, TW), (AT, G, BT), chunks = _setup(x, weight, padding, m, budget)
    n2, T = G.shape[0] ** 2, TH * TW
    V_all, U = (kept.get("V"), kept.get("U")) if kept else (None, None)
    if need_dx and U is None:
        U = winograd.filter_transform(weight, G)
    dU = xp.empty((n2, O, Cg), dtype=weight.dtype) if need_dw else None
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
            # the first chunk writes dU, the others add to it
            gemm_batched(_by_group(dM, groups), _transposed(_by_group(V, groups)), _by_group(dU, groups),
                         accumulate=s > 0)
        if need_dx:
            dV = workspace(xp, x.dtype, n2 * C * nt, "dcols").reshape(n2, C, nt)
            gemm_batched(_transposed(_by_group(U, groups)), _by_group(dM, groups), _by_group(dV, groups))
            winograd.winograd_input_adjoint(dV, BT, m, *padding, TH, TW, dx[s:e])
    dw = winograd.filter_adjoint(dU, G) if need_dw else None
    db = dy.sum(axis=(0, 2, 3)) if need_dw else None
    return dx, dw, db
