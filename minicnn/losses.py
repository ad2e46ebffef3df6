"""Losses of the public surface (``mc.losses``)."""

from minicnn.ops.softmax_xent import softmax, softmax_cross_entropy

__all__ = ["softmax", "softmax_cross_entropy"]
