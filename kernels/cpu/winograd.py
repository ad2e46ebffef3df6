"""Winograd transforms on the CPU (reference and math: ``minicnn/ops/winograd.py``).

One thread per (channel, block of IMAGES images). The block's planes are split by phase,

    P[qr, qc, (image, i, j)] = xpad[image, i*m + qr, j*m + qc]    (rows of Wq = TW + e)

so that entry (a, b) of every tile of the block is one contiguous run of P, shifted by
(a // m, b // m). Each n x n transform is then done separably as a few long
``dst += coef * src`` runs over the whole block, with zero coefficients (most of them, the
rest being mostly +-1) skipped; the few entries of the runs that straddle a row or an
image are never read back. The order of the sums differs from the reference's only.

Inner loops index with unsigned integers: with a signed index Numba must allow for
Python's negative indexing, a test per element that stops vectorisation.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .. import writable, written

# images per thread job: long runs for the vector units, scratch that stays in L1/L2
IMAGES = 8


@njit(inline="always")
def _axpy(dst, d0, coef, src, s0, count):
    """dst[d0 : d0 + count] += coef * src[s0 : s0 + count] (flat arrays, offsets instead of
    slices: a view per call costs more than these short runs)."""
    d, s = np.uint64(d0), np.uint64(s0)
    for q in range(np.uint64(count)):
        dst[d + q] += coef * src[s + q]


@njit(inline="always")
def _copy(dst, d0, dstep, src, s0, sstep, count):
    """dst[d0 + q * dstep] = src[s0 + q * sstep] for q < count (flat arrays)."""
    d, ds, s, ss = np.uint64(d0), np.uint64(dstep), np.uint64(s0), np.uint64(sstep)
    for q in range(np.uint64(count)):
        dst[d + q * ds] = src[s + q * ss]


@njit(inline="always")
def _job(job, blocks, N):
    """(channel, first image, image count) of thread job ``job``: a channel's block of images."""
    b0 = (job % blocks) * IMAGES
    return job // blocks, b0, min(IMAGES, N - b0)


@njit(inline="always")
def _input_tiles(N, TH, TW, n, m):
    """(e, Wq, L, S, jobs per channel): a tile reaches e = (n - 1) // m phase rows and columns
    past its own, P's rows are Wq = TW + e wide, an image has L = TH * TW tiles and a run of
    S = (TH + e) * Wq in P."""
    e = (n - 1) // m
    return e, TW + e, TH * TW, (TH + e) * (TW + e), (N + IMAGES - 1) // IMAGES


@njit(inline="always")
def _output_tiles(N, OH, OW, m):
    """(TH, TW, TH * TW, jobs per channel) of an OH x OW output in m x m tiles."""
    TH, TW = (OH + m - 1) // m, (OW + m - 1) // m
    return TH, TW, TH * TW, (N + IMAGES - 1) // IMAGES


@njit(inline="always")
def _phase_columns(W, Wq, m, pw, qc):
    """[lo, hi) of the P columns jj of phase qc that hold input columns jj*m + qc - pw."""
    lo = max(0, (pw - qc + m - 1) // m)
    hi = min(Wq, (W - 1 + pw - qc) // m + 1)
    return lo, max(lo, hi)


@njit(parallel=True, fastmath=False, cache=True)
def _input_transform(x4, BT, m, ph, pw, TH, TW, out3):
    N, C, H, W = x4.shape
    x, out, T = x4.reshape(-1), out3.reshape(-1), out3.shape[2]
    n = BT.shape[0]
    e, Wq, L, S, blocks = _input_tiles(N, TH, TW, n, m)
    for job in prange(C * blocks):
        c, b0, nb = _job(job, blocks, N)
        F = nb * S
        Fe = F + e
        P = np.zeros(m * m * Fe, dtype=x.dtype)  # P[qr, qc] at (qr * m + qc) * Fe
        R = np.zeros(n * m * F, dtype=x.dtype)  # R[nu, qr] = sum_b BT[nu, b] P[qr, b % m] >> b // m
        Z = np.empty(F, dtype=x.dtype)  # Z = sum_a BT[xi, a] R[nu, a % m] >> (a // m) rows
        for bi in range(nb):
            for i in range(H):
                qr, ii = (i + ph) % m, (i + ph) // m
                for qc in range(m):
                    lo, hi = _phase_columns(W, Wq, m, pw, qc)
                    _copy(P, (qr * m + qc) * Fe + bi * S + ii * Wq + lo, 1,
                          x, ((b0 + bi) * C + c) * H * W + i * W + lo * m + qc - pw, m, hi - lo)
        for nu in range(n):
            for qr in range(m):
                for bb in range(n):
                    if BT[nu, bb] != 0:
                        _axpy(R, (nu * m + qr) * F, BT[nu, bb], P, (qr * m + bb % m) * Fe + bb // m, F)
        for xi in range(n):
            for nu in range(n):
                Z[:] = 0
                for a in range(n):
                    if BT[xi, a] != 0:
                        off = (a // m) * Wq
                        _axpy(Z, 0, BT[xi, a], R, (nu * m + a % m) * F + off, F - off)
                base = ((xi * n + nu) * C + c) * T + b0 * L
                for bi in range(nb):
                    for th in range(TH):
                        _copy(out, base + bi * L + th * TW, 1, Z, bi * S + th * Wq, 1, TW)


@njit(parallel=True, fastmath=False, cache=True)
def _input_adjoint(dV3, BT, m, ph, pw, TH, TW, out4):
    N, C, H, W = out4.shape
    dV, out, T = dV3.reshape(-1), out4.reshape(-1), dV3.shape[2]
    n = BT.shape[0]
    e, Wq, L, S, blocks = _input_tiles(N, TH, TW, n, m)
    for job in prange(C * blocks):
        c, b0, nb = _job(job, blocks, N)
        F = nb * S
        Fe = F + e
        P = np.zeros(m * m * Fe, dtype=out.dtype)
        R = np.zeros(n * m * F, dtype=out.dtype)
        Z = np.zeros(F, dtype=out.dtype)  # entries off the tiles stay 0
        for xi in range(n):
            for nu in range(n):
                base = ((xi * n + nu) * C + c) * T + b0 * L
                for bi in range(nb):
                    for th in range(TH):
                        _copy(Z, bi * S + th * Wq, 1, dV, base + bi * L + th * TW, 1, TW)
                for a in range(n):
                    if BT[xi, a] != 0:
                        off = (a // m) * Wq
                        _axpy(R, (nu * m + a % m) * F + off, BT[xi, a], Z, 0, F - off)
        for nu in range(n):
            for qr in range(m):
                for bb in range(n):
                    if BT[nu, bb] != 0:
                        _axpy(P, (qr * m + bb % m) * Fe + bb // m, BT[nu, bb], R, (nu * m + qr) * F, F)
        for bi in range(nb):
            for i in range(H):
                qr, ii = (i + ph) % m, (i + ph) // m
                for qc in range(m):
                    lo, hi = _phase_columns(W, Wq, m, pw, qc)
                    _copy(out, ((b0 + bi) * C + c) * H * W + i * W + lo * m + qc - pw, m,
                          P, (qr * m + qc) * Fe + bi * S + ii * Wq + lo, 1, hi - lo)


@njit(parallel=True, fastmath=False, cache=True)
def _output_transform(M3, AT, bias, use_bias, out4):
    N, O, OH, OW = out4.shape
    M, out, T = M3.reshape(-1), out4.reshape(-1), M3.shape[2]
    m, n = AT.shape
    TH, TW, L, blocks = _output_tiles(N, OH, OW, m)
    for job in prange(O * blocks):
        o, b0, nb = _job(job, blocks, N)
        F = nb * L
        R = np.zeros(n * m * F, dtype=out.dtype)  # R[xi, v] = sum_nu AT[v, nu] M[(xi, nu)]
        Y = np.empty(m * m * F, dtype=out.dtype)  # Y[u, v] = sum_xi AT[u, xi] R[xi, v]
        for xi in range(n):
            for nu in range(n):
                base = ((xi * n + nu) * O + o) * T + b0 * L
                for v in range(m):
                    if AT[v, nu] != 0:
                        _axpy(R, (xi * m + v) * F, AT[v, nu], M, base, F)
        Y[:] = bias[o] if use_bias else 0
        for u in range(m):
            for xi in range(n):
                if AT[u, xi] != 0:
                    for v in range(m):
                        _axpy(Y, (u * m + v) * F, AT[u, xi], R, (xi * m + v) * F, F)
        for bi in range(nb):
            for th in range(TH):
                for u in range(min(m, OH - th * m)):
                    for v in range(min(m, OW)):
                        _copy(out, (((b0 + bi) * O + o) * OH + th * m + u) * OW + v, m,
                              Y, (u * m + v) * F + bi * L + th * TW, 1, (OW - v + m - 1) // m)


@njit(parallel=True, fastmath=False, cache=True)
def _output_adjoint(dy4, AT, out3):
    N, O, OH, OW = dy4.shape
    dy, out, T = dy4.reshape(-1), out3.reshape(-1), out3.shape[2]
    m, n = AT.shape
    TH, TW, L, blocks = _output_tiles(N, OH, OW, m)
    for job in prange(O * blocks):
        o, b0, nb = _job(job, blocks, N)
        F = nb * L
        Y = np.zeros(m * m * F, dtype=dy.dtype)  # entries beyond the output stay 0
        R = np.zeros(n * m * F, dtype=dy.dtype)
        for bi in range(nb):
            for th in range(TH):
                for u in range(min(m, OH - th * m)):
                    for v in range(min(m, OW)):
                        _copy(Y, (u * m + v) * F + bi * L + th * TW, 1,
                              dy, (((b0 + bi) * O + o) * OH + th * m + u) * OW + v, m, (OW - v + m - 1) // m)
        for u in range(m):
            for xi in range(n):
                if AT[u, xi] != 0:
                    for v in range(m):
                        _axpy(R, (xi * m + v) * F, AT[u, xi], Y, (u * m + v) * F, F)
        for xi in range(n):
            for nu in range(n):
                base = ((xi * n + nu) * O + o) * T + b0 * L
                out[base : base + F] = 0
                for v in range(m):
                    if AT[v, nu] != 0:
                        _axpy(out, base, AT[v, nu], R, (xi * m + v) * F, F)


def winograd_input_transform(x, BT, m, ph, pw, TH, TW, out):
    target = writable(out)
    _input_transform(np.ascontiguousarray(x), BT.astype(x.dtype), m, ph, pw, TH, TW, target)
    return written(target, out)


def winograd_input_adjoint(dV, BT, m, ph, pw, TH, TW, out):
    target = writable(out)
    _input_adjoint(np.ascontiguousarray(dV), BT.astype(dV.dtype), m, ph, pw, TH, TW, target)
    return written(target, out)


def winograd_output_transform(M, AT, bias, out):
    target = writable(out)
    use_bias = bias is not None
    b = np.ascontiguousarray(bias, dtype=out.dtype) if use_bias else np.zeros(1, out.dtype)
    _output_transform(np.ascontiguousarray(M), AT.astype(M.dtype), b, use_bias, target)
    return written(target, out)


def winograd_output_adjoint(dy, AT, out):
    target = writable(out)
    _output_adjoint(np.ascontiguousarray(dy), AT.astype(dy.dtype), target)
    return written(target, out)
