"""Local response normalisation across channels (Caffe / PyTorch convention).

    s[n, c] = k + (alpha / size) * sum_{c' in W(c)} x[n, c']^2
    y[n, c] = x[n, c] * s[n, c]^(-beta)

with the window W(c) = [c - floor(size/2), c + floor((size-1)/2)] clipped to the channels
(PyTorch's padding, so even sizes reach one channel further back than forward). The
AlexNet paper writes ``k + alpha * sum`` (k = 2, alpha = 1e-4): pass alpha * size to match.
Backward, where i runs over the channels whose window holds c:

    dx[c] = dy[c] * s[c]^(-beta)
            - (2 alpha beta / size) * x[c] * sum_{i: c in W(i)} dy[i] * y[i] / s[i]
"""

from __future__ import annotations

from minicnn.backend import array_module, hot_path


def _window_sum(a, before, after):
    """sum_{c' = c - before}^{c + after} a[:, c'] over the channel axis, zero outside."""
    xp = array_module(a)
    C = a.shape[1]
    widths = [(0, 0)] * a.ndim
    widths[1] = (before, after)
    padded = xp.pad(a, widths)
    total = xp.zeros_like(a)
    for offset in range(before + after + 1):
        total += padded[:, offset : offset + C]
    return total


@hot_path
def lrn_forward(x, size, alpha, beta, k):
    """Return (y, scale) with scale = s above (kept for backward)."""
    scale = k + (alpha / size) * _window_sum(x * x, size // 2, (size - 1) // 2)
    return x * scale ** (-beta), scale


@hot_path
def lrn_backward(x, y, scale, dy, size, alpha, beta):
    ratio = _window_sum(dy * y / scale, (size - 1) // 2, size // 2)
    return dy * scale ** (-beta) - (2.0 * alpha * beta / size) * x * ratio
