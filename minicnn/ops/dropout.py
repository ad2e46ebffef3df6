"""Inverted dropout.

In training, each element is kept with probability 1 - p and scaled so that the mean is
preserved; the mask drawn in forward is the one backward uses:

    m = [u >= p] / (1 - p),  u ~ U[0, 1)     y = x * m,     dx = dy * m

In evaluation (or p = 0) dropout is the identity.

Data-parallel training (``minicnn.distributed``): a rank holds rows ``first:first + n`` of a
global batch of ``total`` rows. Inside :func:`global_batch` the mask is drawn for the whole
global batch, exactly as a single process draws it, and the rank keeps its rows, so sample
i's mask does not depend on how many ranks share the batch or which one holds it.
"""

from __future__ import annotations

import contextlib

from minicnn.backend import get_backend, hot_path

_rows = None  # (first, total) inside global_batch, else None: the batch is the whole batch


@contextlib.contextmanager
def global_batch(first, total):
    """Within the block, the batches that reach dropout are rows ``first:`` of batches of
    ``total`` rows (the same for every layer of one forward pass)."""
    global _rows
    _rows = (int(first), int(total))
    try:
        yield
    finally:
        _rows = None


def dropout_mask(shape, p, dtype):
    """A fresh scaled mask drawn from the current backend's generator."""
    rng = get_backend().rng
    if _rows is None:
        u = rng.random(shape, dtype=dtype)
    else:
        first, total = _rows
        u = rng.random((total, *shape[1:]), dtype=dtype)[first : first + shape[0]]
    return (u >= p).astype(dtype) * dtype.type(1.0 / (1.0 - p))


@hot_path
def dropout_apply(x, mask):
    return x * mask
