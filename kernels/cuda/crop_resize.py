"""Many boxes of one uploaded uint8 RGB image resampled to S x S on the GPU: the same pixels
as the CPU kernel (``minicnn.kernels.cpu.crop_resize``), i.e. Pillow's antialiased bilinear
resize of each box, bit for bit.

The weights are the CPU kernel's (:func:`~minicnn.kernels.cpu.crop_resize.axis_weights`,
computed on the host: a few kilobytes). One thread per output value ``(b, c, yy, xx)``
computes the 8-bit horizontal-pass values of the rows its vertical taps need, then their
vertical sum, with Pillow's integer rounding at both steps; nothing is shared between
threads, so nothing is synchronised (the horizontal pass is recomputed by the threads of
neighbouring rows: a few more multiply-adds, no intermediate image).
"""

from __future__ import annotations

import numpy as np
from minicnn.kernels.cpu.crop_resize import PRECISION_BITS, axis_weights
from numba import cuda

from .launch import SIMULATED, launch


@cuda.jit
def _crop_resize(image, x_of, y_of, xs, xn, xw, ys, yn, yw, out):
    M, C, S, _ = out.shape
    half = 1 << (PRECISION_BITS - 1)
    top = 255 << PRECISION_BITS
    for i in range(cuda.grid(1), M * C * S * S, cuda.gridsize(1)):
        xx = i % S
        yy = (i // S) % S
        c = (i // (S * S)) % C
        b = i // (S * S * C)
        g, h = x_of[b], y_of[b]
        x0, m = xs[g, xx], xn[g, xx]
        y0, n = ys[h, yy], yn[h, yy]
        acc = half
        for t in range(n):
            s = half
            for u in range(m):
                s += np.int32(image[y0 + t, x0 + u, c]) * xw[g, xx, u]
            # Pillow's clip8 of the horizontal pass: the 8-bit intermediate image
            v = 0 if s <= 0 else (255 if s >= top else s >> PRECISION_BITS)
            acc += v * yw[h, yy, t]
        out[b, c, yy, xx] = 0 if acc <= 0 else (255 if acc >= top else acc >> PRECISION_BITS)


def _xp():
    if SIMULATED:
        return np
    import cupy

    return cupy


def crop_resize_boxes_device(image, boxes, size, dtype=np.float32):
    """(M, 3, size, size) ``dtype`` array on the GPU (a CuPy array; NumPy under the
    simulator): the boxes (M, 4) ``[x1, y1, x2, y2]`` of ``image`` (H, W, 3) uint8 (host or
    device), each resampled as Pillow's antialiased bilinear resize of exactly that box
    (outside the image: black)."""
    xp = _xp()
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    out = xp.empty((len(boxes), 3, size, size), dtype=dtype)
    if len(boxes) == 0:
        return out
    image = xp.ascontiguousarray(xp.asarray(image, dtype=xp.uint8))
    if xp is np:  # Numba's simulator copies every NumPy argument back after the launch
        image = np.require(image, requirements=["W"])  # a decoded Pillow image is read-only
    H, W, _ = image.shape
    x_keys, x_of = np.unique(boxes[:, [0, 2]], axis=0, return_inverse=True)
    y_keys, y_of = np.unique(boxes[:, [1, 3]], axis=0, return_inverse=True)
    host = (x_of.reshape(-1).astype(np.int32), y_of.reshape(-1).astype(np.int32),
            *axis_weights(x_keys[:, 0], x_keys[:, 1], W, size),
            *axis_weights(y_keys[:, 0], y_keys[:, 1], H, size))
    launch(_crop_resize, out.size, image, *(xp.asarray(a) for a in host), out)
    return out
