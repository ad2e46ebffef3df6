"""Winograd transforms on the GPU (reference and math: ``minicnn/ops/winograd.py``).

One thread per entry written, each a short sum over the small transform matrices, read
from global memory where the cache keeps them (zero coefficients skipped):

    input transform   V[(xi, nu), c, tile] = sum_{i,j} B^T[xi, i] d[i, j] B^T[nu, j]
    output adjoint   dM[(xi, nu), o, tile] = sum_{u,v} A^T[u, xi] dY[u, v] A^T[v, nu]
    output transform  Y[u, v]              = sum_{xi,nu} A^T[u, xi] M[(xi, nu)] A^T[v, nu]
    input adjoint    dx[h, w]              = the same sum over the tiles that read (h, w)

The transformed arrays are indexed by tile fastest, so neighbouring threads write
neighbouring entries; the input adjoint gathers over the (at most ceil(n/m)^2) tiles
that read its pixel instead of scattering with atomics, so it is deterministic. Every
thread repeats n^2 (or m^2) multiply-adds that a separable pass would share: a few
GFLOP at AlexNet's sizes, against the tens of the products between the transforms.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from minicnn.backend import array_module

from .. import writable, written
from .launch import launch, scalar

_matrices: dict = {}


@cuda.jit
def _input_transform(x, BT, m, ph, pw, TH, TW, zero, out):
    N, C, H, W = x.shape
    n = BT.shape[0]
    T = TH * TW
    for idx in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        t = idx % (N * T)
        r = idx // (N * T)
        c = r % C
        k = r // C
        xi, nu = k // n, k % n
        b, tile = t // T, t % T
        h0, w0 = (tile // TW) * m - ph, (tile % TW) * m - pw
        acc = zero
        for i in range(n):
            ci = BT[xi, i]
            h = h0 + i
            if ci != 0 and 0 <= h < H:
                row = zero
                for j in range(n):
                    w = w0 + j
                    if BT[nu, j] != 0 and 0 <= w < W:
                        row += BT[nu, j] * x[b, c, h, w]
                acc += ci * row
        out[k, c, t] = acc


@cuda.jit
def _input_adjoint(dV, BT, m, ph, pw, TH, TW, zero, out):
    N, C, H, W = out.shape
    n = BT.shape[0]
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
        # the tiles whose n x n window holds padded row hp: ty*m <= hp < ty*m + n
        for ty in range(max(0, (hp - n) // m + 1), min(TH - 1, hp // m) + 1):
            i = hp - ty * m
            for tx in range(max(0, (wp - n) // m + 1), min(TW - 1, wp // m) + 1):
                j = wp - tx * m
                t = b * T + ty * TW + tx
                for xi in range(n):
                    ci = BT[xi, i]
                    if ci != 0:
                        row = zero
                        for nu in range(n):
                            if BT[nu, j] != 0:
                                row += BT[nu, j] * dV[xi * n + nu, c, t]
                        acc += ci * row
        out[b, c, h, w] = acc


@cuda.jit
def _output_transform(M, AT, bias, use_bias, TW, zero, out):
    N, O, OH, OW = out.shape
    m, n = AT.shape
    T = ((OH + m - 1) // m) * TW
    for idx in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        ox = idx % OW
        r = idx // OW
        oy = r % OH
        r = r // OH
        o = r % O
        b = r // O
        u, v = oy % m, ox % m
        t = b * T + (oy // m) * TW + ox // m
        acc = zero
        for xi in range(n):
            cu = AT[u, xi]
            if cu != 0:
                row = zero
                for nu in range(n):
                    if AT[v, nu] != 0:
                        row += AT[v, nu] * M[xi * n + nu, o, t]
                acc += cu * row
        out[b, o, oy, ox] = acc + bias[o] if use_bias else acc


@cuda.jit
def _output_adjoint(dy, AT, TH, TW, zero, out):
    N, O, OH, OW = dy.shape
    m, n = AT.shape
    T = TH * TW
    for idx in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        t = idx % (N * T)
        r = idx // (N * T)
        o = r % O
        k = r // O
        xi, nu = k // n, k % n
        b, tile = t // T, t % T
        y0, x0 = (tile // TW) * m, (tile % TW) * m
        acc = zero
        for u in range(m):
            cu = AT[u, xi]
            if cu != 0 and y0 + u < OH:
                row = zero
                for v in range(m):
                    if AT[v, nu] != 0 and x0 + v < OW:
                        row += AT[v, nu] * dy[b, o, y0 + u, x0 + v]
                acc += cu * row
        out[k, o, t] = acc


def _on_device(xp, matrix, dtype):
    """The (small, cached, read-only) transform matrix as a device array of ``dtype``."""
    key = (xp.__name__, matrix.shape, matrix.tobytes(), np.dtype(dtype).str)
    a = _matrices.get(key)
    if a is None:
        a = _matrices[key] = xp.array(matrix, dtype=dtype)  # a writable copy
    return a


def winograd_input_transform(x, BT, m, ph, pw, TH, TW, out):
    xp = array_module(x)
    target = writable(out)
    launch(_input_transform, out.size, xp.ascontiguousarray(x), _on_device(xp, BT, x.dtype), m, ph, pw,
           TH, TW, scalar(0, x.dtype), target)
    return written(target, out)


def winograd_input_adjoint(dV, BT, m, ph, pw, TH, TW, out):
    xp = array_module(dV)
    target = writable(out)
    launch(_input_adjoint, out.size, xp.ascontiguousarray(dV), _on_device(xp, BT, dV.dtype), m, ph, pw,
           TH, TW, scalar(0, dV.dtype), target)
    return written(target, out)


def winograd_output_transform(M, AT, bias, out):
    xp = array_module(M)
    target = writable(out)
    use_bias = bias is not None
    b = xp.ascontiguousarray(bias) if use_bias else xp.zeros(1, dtype=out.dtype)
    launch(_output_transform, out.size, xp.ascontiguousarray(M), _on_device(xp, AT, M.dtype), b, use_bias,
           -(-out.shape[3] // AT.shape[0]), scalar(0, M.dtype), target)
    return written(target, out)


def winograd_output_adjoint(dy, AT, out):
    xp = array_module(dy)
    target = writable(out)
    m = AT.shape[0]
    TH, TW = -(-dy.shape[2] // m), -(-dy.shape[3] // m)
    launch(_output_adjoint, out.size, xp.ascontiguousarray(dy), _on_device(xp, AT, dy.dtype), TH, TW,
           scalar(0, dy.dtype), target)
    return written(target, out)
