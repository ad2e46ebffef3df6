"""Clipping to [lo, hi] (ReLU6 is lo = 0, hi = 6; ONNX's Clip, PyTorch's hardtanh):

    y = min(max(x, lo), hi),   dx = dy * [lo < y < hi]

(the derivative at either bound is taken as 0, as PyTorch's hardtanh does). A missing bound
is -inf or inf.
"""

from __future__ import annotations

from minicnn.backend import array_module, hot_path


@hot_path
def clip_forward(x, lo, hi):
    return array_module(x).clip(x, lo, hi)


@hot_path
def clip_backward(y, dy, lo, hi):
    return dy * ((y > lo) & (y < hi))
