"""Layout changes around convolution's GEMMs on the CPU (reference: ``minicnn/ops/conv2d.py``):
NCHW <-> channel-major (C, n*H*W), with the bias added on the way back. One thread per
(image, channel) plane, each copying a contiguous run of H*W elements."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, fastmath=False, cache=True)
def _nchw_to_cnhw(x, out):
    n, C, L = x.shape
    for p in prange(n * C):
        b, c = p // C, p % C
        out[c, b * L : (b + 1) * L] = x[b, c]


@njit(parallel=True, fastmath=False, cache=True)
def _cnhw_to_nchw(a, bias, use_bias, out):
    n, C, L = out.shape
    for p in prange(n * C):
        b, c = p // C, p % C
        src = a[c, b * L : (b + 1) * L]
        dst = out[b, c]
        if use_bias:
            for t in range(L):
                dst[t] = src[t] + bias[c]
        else:
            dst[:] = src


def nchw_to_cnhw(x, out):
    n, C, H, W = x.shape
    target = out if out.flags.c_contiguous else np.empty(out.shape, out.dtype)
    _nchw_to_cnhw(np.ascontiguousarray(x).reshape(n, C, H * W), target.reshape(C, n * H * W))
    if target is not out:
        out[...] = target
    return out


def cnhw_to_nchw(a, bias, out):
    n, C, H, W = out.shape
    target = out if out.flags.c_contiguous else np.empty(out.shape, out.dtype)
    use_bias = bias is not None
    b = np.ascontiguousarray(bias, dtype=out.dtype) if use_bias else np.zeros(1, out.dtype)
    _cnhw_to_nchw(np.ascontiguousarray(a).reshape(C, n * H * W), b, use_bias, target.reshape(n, C, H * W))
    if target is not out:
        out[...] = target
    return out
