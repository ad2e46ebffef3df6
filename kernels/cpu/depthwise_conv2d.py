"""Depthwise convolution on the CPU (reference and math: ``minicnn/ops/depthwise_conv2d.py``).

Forward: one thread per output plane (image, output channel), accumulating the kh*kw
kernel offsets into each output row in the reference's order (so a row's inner loop runs
along the row, contiguous for stride 1). Input gradient: one thread per input plane, adding
its m output channels' contributions (no two threads write one pixel: no atomics). Weight
gradient: one thread per output channel.
"""

from __future__ import annotations

import numpy as np
from minicnn.kernels.cpu.im2col import valid_range
from numba import njit, prange


@njit(parallel=True, fastmath=False, cache=True)
def _forward(x, w, bias, use_bias, sh, sw, ph, pw, dh, dw, y):
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    OH, OW = y.shape[2], y.shape[3]
    m = O // C
    for t in prange(N * O):
        b, o = t // O, t % O
        c = o // m
        plane = x[b, c]
        out = y[b, o]
        for p in range(OH):
            row = out[p]
            row[:] = 0
            for i in range(kh):
                h = p * sh + i * dh - ph
                if h < 0 or h >= H:
                    continue
                src = plane[h]
                for j in range(kw):
                    wij = w[o, 0, i, j]
                    lo, hi = valid_range(j * dw - pw, sw, W, OW)
                    off = j * dw - pw
                    if sw == 1:  # contiguous: vectorised
                        for q in range(lo, hi):
                            row[q] += wij * src[q + off]
                    else:
                        for q in range(lo, hi):
                            row[q] += wij * src[q * sw + off]
            if use_bias:
                for q in range(OW):
                    row[q] += bias[o]


@njit(parallel=True, fastmath=False, cache=True)
def _backward_input(dy, w, sh, sw, ph, pw, dh, dw, dx):
    N, C, H, W = dx.shape
    O, _, kh, kw = w.shape
    OH, OW = dy.shape[2], dy.shape[3]
    m = O // C
    for t in prange(N * C):
        b, c = t // C, t % C
        plane = dx[b, c]
        plane[:, :] = 0
        for k in range(m):
            o = c * m + k
            g = dy[b, o]
            for i in range(kh):
                for j in range(kw):
                    wij = w[o, 0, i, j]
                    lo, hi = valid_range(j * dw - pw, sw, W, OW)
                    off = j * dw - pw
                    for p in range(OH):
                        h = p * sh + i * dh - ph
                        if h < 0 or h >= H:
                            continue
                        dst = plane[h]
                        src = g[p]
                        for q in range(lo, hi):
                            dst[q * sw + off] += wij * src[q]


@njit(parallel=True, fastmath=False, cache=True)
def _backward_weight(dy, x, sh, sw, ph, pw, dh, dw, dwt):
    N, C, H, W = x.shape
    O, _, kh, kw = dwt.shape
    OH, OW = dy.shape[2], dy.shape[3]
    m = O // C
    for o in prange(O):
        c = o // m
        for i in range(kh):
            for j in range(kw):
                lo, hi = valid_range(j * dw - pw, sw, W, OW)
                off = j * dw - pw
                acc = 0.0  # float64, rounded once into the gradient
                for b in range(N):
                    for p in range(OH):
                        h = p * sh + i * dh - ph
                        if h < 0 or h >= H:
                            continue
                        src = x[b, c, h]
                        g = dy[b, o, p]
                        for q in range(lo, hi):
                            acc += g[q] * src[q * sw + off]
                dwt[o, 0, i, j] = acc


def depthwise_forward(x, weight, bias, sh, sw, ph, pw, dil_h, dil_w, OH, OW):
    N, O = x.shape[0], weight.shape[0]
    y = np.empty((N, O, OH, OW), dtype=x.dtype)
    use_bias = bias is not None
    b = np.ascontiguousarray(bias, dtype=x.dtype) if use_bias else np.zeros(1, x.dtype)
    _forward(np.ascontiguousarray(x), np.ascontiguousarray(weight, dtype=x.dtype), b, use_bias,
             sh, sw, ph, pw, dil_h, dil_w, y)
    return y


def depthwise_backward_input(dy, weight, x_shape, sh, sw, ph, pw, dil_h, dil_w):
    dx = np.empty(tuple(x_shape), dtype=dy.dtype)
    _backward_input(np.ascontiguousarray(dy), np.ascontiguousarray(weight, dtype=dy.dtype),
                    sh, sw, ph, pw, dil_h, dil_w, dx)
    return dx


def depthwise_backward_weight(dy, x, kh, kw, sh, sw, ph, pw, dil_h, dil_w):
    dwt = np.empty((dy.shape[1], 1, kh, kw), dtype=x.dtype)
    _backward_weight(np.ascontiguousarray(dy, dtype=x.dtype), np.ascontiguousarray(x),
                     sh, sw, ph, pw, dil_h, dil_w, dwt)
    return dwt
