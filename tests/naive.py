"""Naive loop implementations, written independently of minicnn's ops, as test oracles."""

import math

import numpy as np


def conv2d(x, w, b, stride, padding, groups):
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, padding
    OH, OW = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    Og = O // groups
    y = np.zeros((N, O, OH, OW))
    for n in range(N):
        for o in range(O):
            g = o // Og
            for p in range(OH):
                for q in range(OW):
                    acc = b[o]
                    for c in range(Cg):
                        for i in range(kh):
                            for j in range(kw):
                                r, s = p * sh + i - ph, q * sw + j - pw
                                if 0 <= r < H and 0 <= s < W:
                                    acc += w[o, c, i, j] * x[n, g * Cg + c, r, s]
                    y[n, o, p, q] = acc
    return y


def max_pool2d(x, k, s, p, ceil_mode):
    N, C, H, W = x.shape

    def out_size(size):
        if ceil_mode:
            o = math.ceil((size + 2 * p - k) / s) + 1
            if (o - 1) * s >= size + p:
                o -= 1
            return o
        return (size + 2 * p - k) // s + 1

    OH, OW = out_size(H), out_size(W)
    y = np.full((N, C, OH, OW), -np.inf)
    for n in range(N):
        for c in range(C):
            for a in range(OH):
                for b in range(OW):
                    for i in range(k):
                        for j in range(k):
                            r, q = a * s - p + i, b * s - p + j
                            if 0 <= r < H and 0 <= q < W:
                                y[n, c, a, b] = max(y[n, c, a, b], x[n, c, r, q])
    return y


def lrn(x, size, alpha, beta, k):
    N, C, H, W = x.shape
    y = np.empty_like(x)
    for c in range(C):
        lo, hi = max(0, c - size // 2), min(C - 1, c + (size - 1) // 2)
        s = (x[:, lo : hi + 1] ** 2).sum(axis=1)
        y[:, c] = x[:, c] / (k + alpha / size * s) ** beta
    return y


def softmax_xent(z, t):
    z = np.asarray(z, dtype=np.float64)
    out = 0.0
    for n in range(len(t)):
        m = max(z[n])
        lse = m + math.log(sum(math.exp(v - m) for v in z[n]))
        out += lse - z[n, t[n]]
    return out / len(t)
