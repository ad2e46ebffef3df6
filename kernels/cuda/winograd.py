"""Winograd transforms on the GPU (reference and math: ``minicnn/ops/winograd.py``).

One thread per tile and channel: it reads its tile into local memory and applies the
transform separably, A X A^T as two products by A (``_product_transposed`` twice), with
zero coefficients skipped; the index arithmetic (64-bit divisions) is paid once per tile,
not once per entry. The transformed arrays are indexed by tile fastest, so neighbouring
threads write neighbouring entries.

The input adjoint runs in two passes so that it needs no atomics and is deterministic:
each tile's B dV B^T into a scratch array laid out like dV, then one thread per input
pixel sums the entries of the (at most ceil(n/m)^2) tiles that read it.
"""

from __future__ import annotations

import functools

import numba
from numba import cuda

from minicnn.backend import array_module
from minicnn.ops.winograd import constant

from .. import writable, written
from .launch import launch, scalar

# the largest n = m + r - 1 that minicnn.ops.winograd.matrices builds (9 points and infinity):
# the size of the threads' local tiles
NMAX = 10


@cuda.jit(device=True)
def _product_transposed(A, transpose, X, zero, Y, p, q, s):
    """Y[j, i] = sum_{k < s} A'[i, k] X[k, j] for i < p, j < q: Y = (A' X)^T, where A' is A,
    or A^T if ``transpose``. Twice, Y = (A' (A' X)^T)^T = A' X A'^T."""
    for i in range(p):
        for j in range(q):
            acc = zero
            for k in range(s):
                a = A[k, i] if transpose else A[i, k]
                if a != 0:
                    acc += a * X[k, j]
            Y[j, i] = acc


@cuda.jit(device=True)
def _tile_of(idx, N, T, TW, m):
    """(channel, column t = b*T + tile, image b, first row, first column) of work item idx,
    the items being (channel, image, tile), tile fastest."""
    t = idx % (N * T)
    tile = t % T
    return idx // (N * T), t, t // T, (tile // TW) * m, (tile % TW) * m


@cuda.jit(device=True)
def _load_column(src, c, t, n, d):
    """d[i, j] = src[i*n + j, c, t]: one tile of a transformed array."""
    for i in range(n):
        for j in range(n):
            d[i, j] = src[i * n + j, c, t]


@cuda.jit(device=True)
def _store_column(d, n, out, c, t):
    """out[i*n + j, c, t] = d[i, j]."""
    for i in range(n):
        for j in range(n):
            out[i * n + j, c, t] = d[i, j]


@functools.cache
def _kernels(dtype):
    """The kernels for arrays of ``dtype`` (their local tiles must have it at compile time)."""
    local = numba.from_dtype(dtype)

    @cuda.jit
    def input_transform(x, BT, m, ph, pw, TH, TW, zero, out):
        N, C, H, W = x.shape
        n = BT.shape[0]
        d = cuda.local.array((NMAX, NMAX), local)
        e = cuda.local.array((NMAX, NMAX), local)
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
    def tile_adjoint(dV, BT, zero, out):
        n = BT.shape[0]
        d = cuda.local.array((NMAX, NMAX), local)
        e = cuda.local.array((NMAX, NMAX), local)
        _, C, NT = dV.shape
        for idx in range(cuda.grid(1), C * NT, cuda.gridsize(1)):
            c, t = idx // NT, idx % NT
            _load_column(dV, c, t, n, d)
            _product_transposed(BT, True, d, zero, e, n, n, n)
            _product_transposed(BT, True, e, zero, d, n, n, n)
            _store_column(d, n, out, c, t)

    @cuda.jit
    def output_transform(M, AT, bias, use_bias, TH, TW, zero, out):
        N, O, OH, OW = out.shape
        m, n = AT.shape
        d = cuda.local.array((NMAX, NMAX), local)
        e = cuda.local.array((NMAX, NMAX), local)
        for idx in range(cuda.grid(1), O * N * TH * TW, cuda.gridsize(1)):
            o, t, b, y0, x0 = _tile_of(idx, N, TH * TW, TW, m)
            _load_column(M, o, t, n, d)
            _product_transposed(AT, False, d, zero, e, m, n, n)
            _product_transposed(AT, False, e, zero, d, m, m, n)
            add = bias[o] if use_bias else zero
            for u in range(min(m, OH - y0)):
                for v in range(min(m, OW - x0)):
                    out[b, o, y0 + u, x0 + v] = d[u, v] + add

    @cuda.jit
    def output_adjoint(dy, AT, TH, TW, zero, out):
        N, O, OH, OW = dy.shape
        m, n = AT.shape
        d = cuda.local.array((NMAX, NMAX), local)
        e = cuda.local.array((NMAX, NMAX), local)
        for idx in range(cuda.grid(1), O * N * TH * TW, cuda.gridsize(1)):
            o, t, b, y0, x0 = _tile_of(idx, N, TH * TW, TW, m)
            for u in range(m):
                for v in range(m):
                    y, x = y0 + u, x0 + v
                    d[u, v] = dy[b, o, y, x] if y < OH and x < OW else zero
            _product_transposed(AT, True, d, zero, e, n, m, m)
            _product_transposed(AT, True, e, zero, d, n, n, m)
            _store_column(d, n, out, o, t)

    return input_transform, tile_adjoint, output_transform, output_adjoint


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
    launch(_kernels(x.dtype)[0], x.shape[1] * x.shape[0] * TH * TW, xp.ascontiguousarray(x),
           constant(xp, BT, x.dtype), m, ph, pw, TH, TW, scalar(0, x.dtype), target)
    return written(target, out)


def winograd_input_adjoint(dV, BT, m, ph, pw, TH, TW, out):
    xp = array_module(dV)
    dV = xp.ascontiguousarray(dV)
    dd = xp.empty_like(dV)
    launch(_kernels(dV.dtype)[1], dV.shape[1] * dV.shape[2], dV, constant(xp, BT, dV.dtype),
           scalar(0, dV.dtype), dd)
    target = writable(out)
    launch(_gather_tiles, out.size, dd, BT.shape[0], m, ph, pw, TH, TW, scalar(0, dV.dtype), target)
    return written(target, out)


def winograd_output_transform(M, AT, bias, out):
    xp = array_module(M)
    m = AT.shape[0]
    target = writable(out)
    use_bias = bias is not None
    b = xp.ascontiguousarray(bias) if use_bias else xp.zeros(1, dtype=out.dtype)
    TH, TW = -(-out.shape[2] // m), -(-out.shape[3] // m)
    launch(_kernels(M.dtype)[2], out.shape[1] * out.shape[0] * TH * TW, xp.ascontiguousarray(M),
           constant(xp, AT, M.dtype), b, use_bias, TH, TW, scalar(0, M.dtype), target)
    return written(target, out)


def winograd_output_adjoint(dy, AT, out):
    xp = array_module(dy)
    m = AT.shape[0]
    target = writable(out)
    TH, TW = -(-dy.shape[2] // m), -(-dy.shape[3] // m)
    launch(_kernels(dy.dtype)[3], dy.shape[1] * dy.shape[0] * TH * TW, xp.ascontiguousarray(dy),
           constant(xp, AT, dy.dtype), TH, TW, scalar(0, dy.dtype), target)
    return written(target, out)
