"""Rectified linear unit.

    y = max(x, 0),   dx = dy * [y > 0]

(the derivative at x = 0 is taken as 0, as PyTorch does).
"""

from __future__ import annotations

from minicnn.backend import array_module, hot_path


@hot_path
def relu_forward(x):
    return array_module(x).maximum(x, 0)


@hot_path
def relu_backward(y, dy):
    return dy * (y > 0)
