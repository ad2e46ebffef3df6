"""Winograd transforms on the CPU (reference and math: ``minicnn/ops/winograd.py``).

One thread per (channel, block of IMAGES images). The block's planes are split by phase,

    P[qr, qc, (image, i, j)] = xpad[image, i*m + qr, j*m + qc]    (rows of Wq = TW + e)

so that entry (a, b) of every tile of the block is one contiguous run of P, shifted by
(a // m, b // m). Each n x n transform is then done separably as a few long
``dst += coef * src`` runs over the whole block, with zero coefficients (most of them, the
rest being mostly +-1) skipped; the few entries of the runs that straddle a row or an
image are never read back. The order of the sums differs from the reference's only.

Inner loops index with unsigned integers: with a signed index Numba must allow for
Python's negative indexing, a test per element that stops vectorisation (5x slower here).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# images per thread job: long runs for the vector units, scratch that stays in L1/L2
IMAGES = 8


@njit(inline="always")
def _axpy(dst, coef, src):
    for q in range(np.uint64(dst.size)):
        dst[q] += coef * src[q]


@njit(inline="always")
def _copy(dst, src):
    for q in range(np.uint64(dst.size)):
        dst[q] = src[q]


@njit(inline="always")
def _phase_columns(W, Wq, m, pw, qc):
    """[lo, hi) of the P columns jj of phase qc that hold input columns jj*m + qc - pw."""
    lo = max(0, (pw - qc + m - 1) // m)
    hi = min(Wq, (W - 1 + pw - qc) // m + 1)
    return lo, max(lo, hi)


@njit(parallel=True, fastmath=False, cache=True)
def _input_transform(x, BT, m, ph, pw, TH, TW, out):
    N, C, H, W = x.shape
    n = BT.shape[0]
    e = (n - 1) // m
    Wq, L = TW + e, TH * TW
    S = (TH + e) * Wq  # one image's P run
    blocks = (N + IMAGES - 1) // IMAGES
    for job in prange(C * blocks):
        c, b0 = job // blocks, (job % blocks) * IMAGES
        nb = min(IMAGES, N - b0)
        F = nb * S
        P = np.zeros((m, m, F + e), dtype=x.dtype)
        R = np.empty((n, m, F), dtype=x.dtype)  # R[nu, qr] = sum_b BT[nu, b] P[qr, b % m] >> b // m
        Z = np.empty(F, dtype=x.dtype)
        for bi in range(nb):
            for i in range(H):
                qr, ii = (i + ph) % m, (i + ph) // m
                for qc in range(m):
                    lo, hi = _phase_columns(W, Wq, m, pw, qc)
                    if hi > lo:
                        j0, row = lo * m + qc - pw, bi * S + ii * Wq
                        _copy(P[qr, qc, row + lo : row + hi],
                              x[b0 + bi, c, i, j0 : j0 + (hi - lo - 1) * m + 1 : m])
        for nu in range(n):
            for qr in range(m):
                R[nu, qr] = 0
                for bb in range(n):
                    if BT[nu, bb] != 0:
                        _axpy(R[nu, qr], BT[nu, bb], P[qr, bb % m, bb // m : bb // m + F])
        for xi in range(n):
            for nu in range(n):
                Z[:] = 0  # Z = sum_a BT[xi, a] R[nu, a % m] >> (a // m) rows
                for a in range(n):
                    if BT[xi, a] != 0:
                        off = (a // m) * Wq
                        _axpy(Z[: F - off], BT[xi, a], R[nu, a % m, off:])
                dst = out[xi * n + nu, c, b0 * L : (b0 + nb) * L]
                for bi in range(nb):
                    for th in range(TH):
                        _copy(dst[bi * L + th * TW : bi * L + (th + 1) * TW], Z[bi * S + th * Wq :])


@njit(parallel=True, fastmath=False, cache=True)
def _input_adjoint(dV, BT, m, ph, pw, TH, TW, out):
    N, C, H, W = out.shape
    n = BT.shape[0]
    e = (n - 1) // m
    Wq, L = TW + e, TH * TW
    S = (TH + e) * Wq
    blocks = (N + IMAGES - 1) // IMAGES
    for job in prange(C * blocks):
        c, b0 = job // blocks, (job % blocks) * IMAGES
        nb = min(IMAGES, N - b0)
        F = nb * S
        P = np.zeros((m, m, F + e), dtype=out.dtype)
        R = np.zeros((n, m, F), dtype=out.dtype)
        Z = np.zeros(F, dtype=out.dtype)  # entries off the tiles stay 0
        for xi in range(n):
            for nu in range(n):
                src = dV[xi * n + nu, c, b0 * L : (b0 + nb) * L]
                for bi in range(nb):
                    for th in range(TH):
                        _copy(Z[bi * S + th * Wq : bi * S + th * Wq + TW], src[bi * L + th * TW :])
                for a in range(n):
                    if BT[xi, a] != 0:
                        off = (a // m) * Wq
                        _axpy(R[nu, a % m, off:], BT[xi, a], Z[: F - off])
        for nu in range(n):
            for qr in range(m):
                for bb in range(n):
                    if BT[nu, bb] != 0:
                        _axpy(P[qr, bb % m, bb // m : bb // m + F], BT[nu, bb], R[nu, qr])
        for bi in range(nb):
            for i in range(H):
                qr, ii = (i + ph) % m, (i + ph) // m
                for qc in range(m):
                    lo, hi = _phase_columns(W, Wq, m, pw, qc)
                    if hi > lo:
                        j0, row = lo * m + qc - pw, bi * S + ii * Wq
                        _copy(out[b0 + bi, c, i, j0 : j0 + (hi - lo - 1) * m + 1 : m],
                              P[qr, qc, row + lo : row + hi])


@njit(parallel=True, fastmath=False, cache=True)
def _output_transform(M, AT, bias, use_bias, out):
    N, O, OH, OW = out.shape
    m, n = AT.shape
    TH, TW = (OH + m - 1) // m, (OW + m - 1) // m
    L = TH * TW
    blocks = (N + IMAGES - 1) // IMAGES
    for job in prange(O * blocks):
        o, b0 = job // blocks, (job % blocks) * IMAGES
        nb = min(IMAGES, N - b0)
        R = np.zeros((n, m, nb * L), dtype=out.dtype)  # R[xi, v] = sum_nu AT[v, nu] M[(xi, nu)]
        Y = np.empty((m, m, nb * L), dtype=out.dtype)  # Y[u, v] = sum_xi AT[u, xi] R[xi, v]
        for xi in range(n):
            for nu in range(n):
                src = M[xi * n + nu, o, b0 * L : (b0 + nb) * L]
                for v in range(m):
                    if AT[v, nu] != 0:
                        _axpy(R[xi, v], AT[v, nu], src)
        Y[:] = bias[o] if use_bias else 0
        for u in range(m):
            for xi in range(n):
                if AT[u, xi] != 0:
                    for v in range(m):
                        _axpy(Y[u, v], AT[u, xi], R[xi, v])
        for bi in range(nb):
            for th in range(TH):
                for u in range(min(m, OH - th * m)):
                    for v in range(min(m, OW)):
                        count = (OW - v + m - 1) // m  # tiles t with t*m + v < OW
                        _copy(out[b0 + bi, o, th * m + u, v : v + (count - 1) * m + 1 : m],
                              Y[u, v, bi * L + th * TW :])


@njit(parallel=True, fastmath=False, cache=True)
def _output_adjoint(dy, AT, out):
    N, O, OH, OW = dy.shape
    m, n = AT.shape
    TH, TW = (OH + m - 1) // m, (OW + m - 1) // m
    L = TH * TW
    blocks = (N + IMAGES - 1) // IMAGES
    for job in prange(O * blocks):
        o, b0 = job // blocks, (job % blocks) * IMAGES
        nb = min(IMAGES, N - b0)
        Y = np.zeros((m, m, nb * L), dtype=dy.dtype)  # entries beyond the output stay 0
        R = np.zeros((n, m, nb * L), dtype=dy.dtype)
        for bi in range(nb):
            for th in range(TH):
                for u in range(min(m, OH - th * m)):
                    for v in range(min(m, OW)):
                        count = (OW - v + m - 1) // m
                        _copy(Y[u, v, bi * L + th * TW : bi * L + th * TW + count],
                              dy[b0 + bi, o, th * m + u, v : v + (count - 1) * m + 1 : m])
        for u in range(m):
            for xi in range(n):
                if AT[u, xi] != 0:
                    for v in range(m):
                        _axpy(R[xi, v], AT[u, xi], Y[u, v])
        for xi in range(n):
            for nu in range(n):
                dst = out[xi * n + nu, o, b0 * L : (b0 + nb) * L]
                dst[:] = 0
                for v in range(m):
                    if AT[v, nu] != 0:
                        _axpy(dst, AT[v, nu], R[xi, v])


def _writable(out):
    """``out`` itself when a kernel can write it in place, else a contiguous stand-in."""
    return out if out.flags.c_contiguous else np.empty(out.shape, out.dtype)


def _done(target, out):
    if target is not out:
        out[...] = target
    return out


def winograd_input_transform(x, BT, m, ph, pw, TH, TW, out):
    target = _writable(out)
    _input_transform(np.ascontiguousarray(x), BT.astype(x.dtype), m, ph, pw, TH, TW, target)
    return _done(target, out)


def winograd_input_adjoint(dV, BT, m, ph, pw, TH, TW, out):
    target = _writable(out)
    _input_adjoint(np.ascontiguousarray(dV), BT.astype(dV.dtype), m, ph, pw, TH, TW, target)
    return _done(target, out)


def winograd_output_transform(M, AT, bias, out):
    target = _writable(out)
    use_bias = bias is not None
    b = np.ascontiguousarray(bias, dtype=out.dtype) if use_bias else np.zeros(1, out.dtype)
    _output_transform(np.ascontiguousarray(M), AT.astype(M.dtype), b, use_bias, target)
    return _done(target, out)


def winograd_output_adjoint(dy, AT, out):
    target = _writable(out)
    _output_adjoint(np.ascontiguousarray(dy), AT.astype(dy.dtype), target)
    return _done(target, out)
