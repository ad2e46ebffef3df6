"""Winograd transforms on the GPU (reference and math: ``minicnn/ops/winograd.py``).

One thread per tile and channel: it reads its tile, applies the transform separably, A X
A^T as two products by A (``_product_transposed`` twice), and writes the result; the
index arithmetic (64-bit divisions) is paid once per tile, not once per entry. The
transformed arrays are indexed by tile fastest, so neighbouring threads write
neighbouring entries.

Each kernel is compiled for one transform matrix (and dtype), with the tile sizes and the
matrix entries as constants: the loops unroll and the tiles stay in registers (0 B of
local memory in ``experiments/cuda_ptx_check.py``). The products by zero coefficients
stay, as IEEE arithmetic requires (0 * x is NaN for an infinite x), which keeps NaN and
infinity propagating as in the reference; they cost arithmetic, which the GPU has to spare
in these memory-bound kernels. No fastmath: in numba.cuda it would also flush denormals.

The input adjoint runs in two passes so that it needs no atomics and is deterministic:
each tile's B dV B^T into a scratch array laid out like dV, then one thread per input
pixel sums the entries of the (at most ceil(n/m)^2) tiles that read it.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from numba import cuda

from minicnn.backend import array_module
from minicnn.ops.winograd import tiles_of

from .. import writable, written
from .launch import launch, scalar


@cuda.jit(device=True, inline=True)
def _product_transposed(A, transpose, X, zero, Y, p, q, s):
    """Y[j, i] = sum_{k < s} A'[i, k] X[k, j] for i < p, j < q: Y = (A' X)^T, where A' is A,
    or A^T if ``transpose``. Twice, Y = (A' (A' X)^T)^T = A' X A'^T."""
    for i in range(p):
        for j in range(q):
            acc = zero
            for k in range(s):
                acc += (A[k, i] if transpose else A[i, k]) * X[k, j]
            Y[j, i] = acc


@cuda.jit(device=True, inline=True)
def _tile_of(idx, N, T, TW, m):
    """(channel, column t = b*T + tile, image b, first row, first column) of work item idx,
    the items being (channel, image, tile), tile fastest."""
    t = idx % (N * T)
    tile = t % T
    return idx // (N * T), t, t // T, (tile // TW) * m, (tile % TW) * m


@cuda.jit(device=True, inline=True)
def _load_column(src, c, t, n, d):
    """d[i, j] = src[i*n + j, c, t]: one tile of a transformed array."""
    for i in range(n):
        for j in range(n):
            d[i, j] = src[i * n + j, c, t]


@cuda.jit(device=True, inline=True)
def _store_column(d, n, out, c, t):
    """out[i*n + j, c, t] = d[i, j]."""
    for i in range(n):
        for j in range(n):
            out[i * n + j, c, t] = d[i, j]


def _constant_rows(matrix):
    """A transform matrix as nested tuples: hashable, to key the compiled kernels."""
    return tuple(tuple(row) for row in np.asarray(matrix, dtype=np.float64).tolist())


@functools.cache
def _input_side(dtype, m, rows):
    """(input transform, tile adjoint) for B^T = ``rows`` and output tiles of m."""
    local = numba.from_dtype(dtype)
    zero = np.dtype(dtype).type(0)
    BT_host = np.array(rows, dtype=dtype)
    n = len(rows)

    @cuda.jit
    def input_transform(x, ph, pw, TH, TW, out):
        BT = cuda.const.array_like(BT_host)
        N, C, H, W = x.shape
        d = cuda.local.array((n, n), local)
        e = cuda.local.array((n, n), local)
        for idx in range(cuda.grid(1), C * N * TH * TW, cuda.gridsize(1)):
            c, t, b, y0, x0 = _tile_of(idx, N, TH * TW, TW, m)
            for i in range(n):
                for j in range(n):
                    h, w = y0 - ph + i, x0 - pw + j
                    d[i, j] = x[b, c, h, w] if 0 <= h < H and 0 <= w < W else zero
            _product_transposed(BT, False, d, zero, e, n, n, n)
            _product_transposed(BT, False, e, zero, d, n, n, n)
            _store_column(d, n, out, c, t)

    @cuda.jit
    def tile_adjoint(dV, out):
        BT = cuda.const.array_like(BT_host)
        d = cuda.local.array((n, n), local)
        e = cuda.local.array((n, n), local)
        _, C, NT = dV.shape
        for idx in range(cuda.grid(1), C * NT, cuda.gridsize(1)):
            c, t = idx // NT, idx % NT
            _load_column(dV, c, t, n, d)
            _product_transposed(BT, True, d, zero, e, n, n, n)
            _product_transposed(BT, True, e, zero, d, n, n, n)
            _store_column(d, n, out, c, t)

    return input_transform, tile_adjoint


@functools.cache
def _output_side(dtype, rows):
    """(output transform, output adjoint) for A^T = ``rows``."""
    local = numba.from_dtype(dtype)
    zero = np.dtype(dtype).type(0)
    AT_host = np.array(rows, dtype=dtype)
    m, n = AT_host.shape

    @cuda.jit
    def output_transform(M, bias, use_bias, TH, TW, out):
        AT = cuda.const.array_like(AT_host)
        N, O, OH, OW = out.shape
        d = cuda.local.array((n, n), local)
        e = cuda.local.array((n, n), local)
        for idx in range(cuda.grid(1), O * N * TH * TW, cuda.gridsize(1)):
            o, t, b, y0, x0 = _tile_of(idx, N, TH * TW, TW, m)
            _load_column(M, o, t, n, d)
            _product_transposed(AT, False, d, zero, e, m, n, n)
            _product_transposed(AT, False, e, zero, d, m, m, n)
            add = bias[o] if use_bias else zero
            for u in range(m):
                for v in range(m):
                    if y0 + u < OH and x0 + v < OW:
                        out[b, o, y0 + u, x0 + v] = d[u, v] + add

    @cuda.jit
    def output_adjoint(dy, TH, TW, out):
        AT = cuda.const.array_like(AT_host)
        N, O, OH, OW = dy.shape
        d = cuda.local.array((n, n), local)
        e = cuda.local.array((n, n), local)
        for idx in range(cuda.grid(1), O * N * TH * TW, cuda.gridsize(1)):
            o, t, b, y0, x0 = _tile_of(idx, N, TH * TW, TW, m)
            for u in range(m):
                for v in range(m):
                    y, x = y0 + u, x0 + v
                    d[u, v] = dy[b, o, y, x] if y < OH and x < OW else zero
            _product_transposed(AT, True, d, zero, e, n, m, m)
            _product_transposed(AT, True, e, zero, d, n, n, m)
            _store_column(d, n, out, o, t)

    return output_transform, output_adjoint


@cuda.jit
def _gather_tiles(dd, n, m, ph, pw, TH, TW, zero, out):
    """out[b, c, h, w] = sum of dd[(i, j), c, tile] over the tiles that read padded pixel
    (h + ph, w + pw) as their entry (i, j): ty*m <= h + ph < ty*m + n, likewise for w."""
    N, C, H, W = out.shape
    T = TH * TW
    for idx in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        w = idx % W
        r = idx // W
        h = r % H
        r = r // H
        c = r % C
        b = r // C
        hp, wp = h + ph, w + pw
        acc = zero
        for ty in range(max(0, (hp - n) // m + 1), min(TH - 1, hp // m) + 1):
            for tx in range(max(0, (wp - n) // m + 1), min(TW - 1, wp // m) + 1):
                acc += dd[(hp - ty * m) * n + wp - tx * m, c, b * T + ty * TW + tx]
        out[b, c, h, w] = acc


def winograd_input_transform(x, BT, m, ph, pw, TH, TW, out):
    xp = array_module(x)
    target = writable(out)
    kernel = _input_side(x.dtype, m, _constant_rows(BT))[0]
    launch(kernel, x.shape[1] * x.shape[0] * TH * TW, xp.ascontiguousarray(x), ph, pw, TH, TW, target)
    return written(target, out)


def winograd_input_adjoint(dV, BT, m, ph, pw, TH, TW, out):
    xp = array_module(dV)
    dV = xp.ascontiguousarray(dV)
    dd = xp.empty_like(dV)
    launch(_input_side(dV.dtype, m, _constant_rows(BT))[1], dV.shape[1] * dV.shape[2], dV, dd)
    target = writable(out)
    launch(_gather_tiles, out.size, dd, BT.shape[0], m, ph, pw, TH, TW, scalar(0, dV.dtype), target)
    return written(target, out)


def winograd_output_transform(M, AT, bias, out):
    xp = array_module(M)
    m = AT.shape[0]
    target = writable(out)
    use_bias = bias is not None
    b = xp.ascontiguousarray(bias, dtype=out.dtype) if use_bias else xp.zeros(1, dtype=out.dtype)
    TH, TW = tiles_of(out.shape[2], m), tiles_of(out.shape[3], m)
    launch(_output_side(M.dtype, _constant_rows(AT))[0], out.shape[1] * out.shape[0] * TH * TW,
           xp.ascontiguousarray(M), b, use_bias, TH, TW, target)
    return written(target, out)


def winograd_output_adjoint(dy, AT, out):
    xp = array_module(dy)
    m = AT.shape[0]
    target = writable(out)
    TH, TW = tiles_of(dy.shape[2], m), tiles_of(dy.shape[3], m)
    launch(_output_side(dy.dtype, _constant_rows(AT))[1], dy.shape[1] * dy.shape[0] * TH * TW,
           xp.ascontiguousarray(dy), TH, TW, target)
    return written(target, out)
