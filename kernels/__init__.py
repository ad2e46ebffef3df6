"""Kernels of the "cpu" (Numba) and "cuda" (numba.cuda) backends: see :mod:`minicnn.backend`."""

from minicnn.backend import array_module


def writable(out):
    """``out`` itself when a kernel can write it in place (C-contiguous), else a contiguous
    stand-in, handed back to :func:`written`."""
    return out if out.flags.c_contiguous else array_module(out).empty(out.shape, out.dtype)


def written(target, out):
    """``out``, holding what a kernel wrote into ``target`` (from :func:`writable`)."""
    if target is not out:
        out[...] = target
    return out
