"""Reused buffers for convolution's columns and transformed tiles, and the batch chunks
that fit them: a convolution's memory stays bounded whatever the batch size."""

from __future__ import annotations

_buffers: dict = {}


def workspace(xp, dtype, size: int, role: str = "cols"):
    """A reused flat buffer of at least ``size`` elements (one per array module, dtype and
    role, so that buffers used at the same time are distinct)."""
    key = (xp.__name__, str(dtype), role)
    buf = _buffers.get(key)
    if buf is None or buf.size < size:
        _buffers.pop(key, None)  # free the old buffer before allocating the larger one
        buf = xp.empty(size, dtype=dtype)
        _buffers[key] = buf
    return buf[:size]


def batch_chunks(n: int, bytes_per_image: int, budget: int) -> list[tuple[int, int]]:
    """[(start, end), ...] covering images 0..n-1, each chunk as many images as fit in
    ``budget`` bytes, and at least one."""
    step = max(1, min(n, budget // max(bytes_per_image, 1)))
    return [(s, min(n, s + step)) for s in range(0, n, step)]
