"""Fully connected layer.

    y = x W^T + b,   dx = dy W,   dW = dy^T x,   db = sum_n dy[n]

x (N, in), W (out, in), b (out,).
"""

from __future__ import annotations

from minicnn.backend import array_module
from minicnn.ops.gemm import gemm


def _product(a, b):
    xp = array_module(a)
    return gemm(a, b, xp.empty((a.shape[0], b.shape[1]), dtype=xp.result_type(a, b)))


def linear_forward(x, weight, bias):
    y = _product(x, weight.T)
    if bias is not None:
        y += bias
    return y


def linear_backward(dy, x, weight, need_dx=True, need_dw=True):
    """Return (dx, dweight, dbias); the ones not asked for are None."""
    dx = _product(dy, weight) if need_dx else None
    if not need_dw:
        return dx, None, None
    return dx, _product(dy.T, x), dy.sum(axis=0)
