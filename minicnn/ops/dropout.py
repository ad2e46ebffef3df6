"""Inverted dropout.

In training, each element is kept with probability 1 - p and scaled so that the mean is
preserved; the mask drawn in forward is the one backward uses:

    m = [u >= p] / (1 - p),  u ~ U[0, 1)     y = x * m,     dx = dy * m

In evaluation (or p = 0) dropout is the identity.
"""

from __future__ import annotations

from minicnn.backend import get_backend, hot_path


def dropout_mask(shape, p, dtype):
    """A fresh scaled mask drawn from the current backend's generator."""
    u = get_backend().rng.random(shape, dtype=dtype)
    return (u >= p).astype(dtype) * dtype.type(1.0 / (1.0 - p))


@hot_path
def dropout_apply(x, mask):
    return x * mask
