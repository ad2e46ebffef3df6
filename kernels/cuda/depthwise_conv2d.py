"""Depthwise convolution on the GPU (math and reference: ``minicnn.ops.depthwise_conv2d``).

Forward: one thread per output element, summing its kh*kw taps. Input gradient: one thread
per input pixel, gathering the taps that read it (no atomics). Weight gradient: one thread
per weight entry, summing over the batch and the output plane.
"""

from __future__ import annotations

from numba import cuda

from minicnn.backend import array_module

from .launch import launch, scalar


@cuda.jit
def _forward(x, w, bias, use_bias, sh, sw, ph, pw, dh, dw, zero, y):
    N, O, OH, OW = y.shape
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    kh, kw = w.shape[2], w.shape[3]
    m = O // C
    for idx in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        q = idx % OW
        t = idx // OW
        p = t % OH
        t = t // OH
        o = t % O
        b = t // O
        c = o // m
        acc = zero
        for i in range(kh):
            h = p * sh + i * dh - ph
            if 0 <= h < H:
                for j in range(kw):
                    v = q * sw + j * dw - pw
                    if 0 <= v < W:
                        acc += w[o, 0, i, j] * x[b, c, h, v]
        if use_bias:
            acc += bias[o]
        y[b, o, p, q] = acc


@cuda.jit
def _backward_input(dy, w, sh, sw, ph, pw, dh, dw, zero, dx):
    N, C, H, W = dx.shape
    O, OH, OW = dy.shape[1], dy.shape[2], dy.shape[3]
    kh, kw = w.shape[2], w.shape[3]
    m = O // C
    for idx in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        v = idx % W
        t = idx // W
        h = t % H
        t = t // H
        c = t % C
        b = t // C
        acc = zero
        for k in range(m):
            o = c * m + k
            for i in range(kh):
                ty = h + ph - i * dh
                if ty < 0 or ty % sh != 0 or ty // sh >= OH:
                    continue
                for j in range(kw):
                    tx = v + pw - j * dw
                    if tx < 0 or tx % sw != 0 or tx // sw >= OW:
                        continue
                    acc += w[o, 0, i, j] * dy[b, o, ty // sh, tx // sw]
        dx[b, c, h, v] = acc


@cuda.jit
def _backward_weight(dy, x, sh, sw, ph, pw, dh, dw, zero, dwt):
    N, C, H, W = x.shape
    O, OH, OW = dy.shape[1], dy.shape[2], dy.shape[3]
    kh, kw = dwt.shape[2], dwt.shape[3]
    m = O // C
    for idx in range(cuda.grid(1), dwt.size, cuda.gridsize(1)):
        j = idx % kw
        t = idx // kw
        i = t % kh
        o = t // kh
        c = o // m
        acc = zero
        for b in range(N):
            for p in range(OH):
                h = p * sh + i * dh - ph
                if 0 <= h < H:
                    for q in range(OW):
                        v = q * sw + j * dw - pw
                        if 0 <= v < W:
                            acc += dy[b, o, p, q] * x[b, c, h, v]
        dwt[o, 0, i, j] = acc


def depthwise_forward(x, weight, bias, sh, sw, ph, pw, dil_h, dil_w, OH, OW):
    xp = array_module(x)
    y = xp.empty((x.shape[0], weight.shape[0], OH, OW), dtype=x.dtype)
    use_bias = bias is not None
    b = xp.ascontiguousarray(bias) if use_bias else xp.zeros(1, x.dtype)
    launch(_forward, y.size, xp.ascontiguousarray(x), xp.ascontiguousarray(weight), b, use_bias,
           sh, sw, ph, pw, dil_h, dil_w, scalar(0, x.dtype), y)
    return y


def depthwise_backward_input(dy, weight, x_shape, sh, sw, ph, pw, dil_h, dil_w):
    xp = array_module(dy)
    dx = xp.empty(tuple(x_shape), dtype=dy.dtype)
    launch(_backward_input, dx.size, xp.ascontiguousarray(dy), xp.ascontiguousarray(weight),
           sh, sw, ph, pw, dil_h, dil_w, scalar(0, dy.dtype), dx)
    return dx


def depthwise_backward_weight(dy, x, kh, kw, sh, sw, ph, pw, dil_h, dil_w):
    xp = array_module(x)
    dwt = xp.empty((dy.shape[1], 1, kh, kw), dtype=x.dtype)
    launch(_backward_weight, dwt.size, xp.ascontiguousarray(dy), xp.ascontiguousarray(x),
           sh, sw, ph, pw, dil_h, dil_w, scalar(0, x.dtype), dwt)
    return dwt
