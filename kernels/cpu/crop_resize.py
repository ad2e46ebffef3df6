"""Many boxes of one uint8 RGB image resampled to S x S at once, on the CPU: the pixels of
Pillow's antialiased ``image.resize((S, S), Image.BILINEAR, box=box)`` for each box
(reference: :func:`minicnn.data.transforms.crop_resize`).

Pillow resamples in two passes with fixed-point weights: horizontally into an 8-bit image of
the rows the box needs, then vertically. Each output pixel's weights come from the box alone
(``precompute_coeffs`` in Pillow's Resample.c: a triangle filter widened by the reduction
factor, truncated to the image and normalised, then rounded to 22 fractional bits), so the
horizontal pass of a box depends only on its ``x1, x2``: boxes of one column (a sampler's
grid, one scale) share it. Here:

1. :func:`axis_weights` computes each distinct interval's weights as Pillow does (the box
   as C floats, in the coordinates of the image padded with black when the box leaves it,
   as ``crop_resize`` pads it; taps on the black padding are then dropped: they add zero);
2. :func:`_horizontal` runs the horizontal pass once per distinct ``x1, x2`` over the rows
   its boxes use, into (rows, 3, S) uint8;
3. :func:`_vertical` runs every box's vertical pass from its column's rows, writing
   (3, S, S) planes directly: uint8 or float32.

Both passes split their work over ``threads`` Python threads (the kernels release the GIL).

Same integer arithmetic, same rounding, same order: the result equals Pillow's bit for bit
(tests/test_patch_resample.py bounds the difference anyway, so that another Pillow version's
rounding would still pass).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

PRECISION_BITS = 22  # Pillow's 8-bit resampling: 32 - 8 - 2


@njit(cache=True)
def _weights_into(padded_size, lo, span, out_size, offset, length, start, count, weights):
    """Pillow's precompute_coeffs + normalize_coeffs_8bpc for the box [lo, lo + span) of a
    line of ``padded_size`` pixels, of which ``offset .. offset + length`` are the image: per
    output pixel the first image pixel, the number of taps and their int32 weights (taps on
    the black padding dropped). ``lo`` and ``span`` are C floats, as Pillow has them."""
    scale = span / out_size
    filterscale = scale if scale > 1.0 else 1.0
    support = 1.0 * filterscale  # the bilinear (triangle) filter has support 1
    ss = 1.0 / filterscale
    k = np.empty(weights.shape[1] + 2, np.float64)
    for xx in range(out_size):
        center = lo + (xx + 0.5) * scale
        xmin = int(center - support + 0.5)  # C's (int): truncation, as in Pillow
        if xmin < 0:
            xmin = 0
        xmax = int(center + support + 0.5)
        if xmax > padded_size:
            xmax = padded_size
        xmax -= xmin
        ww = 0.0
        for x in range(xmax):
            t = (x + xmin - center + 0.5) * ss
            if t < 0.0:
                t = -t
            w = 1.0 - t if t < 1.0 else 0.0
            k[x] = w
            ww += w
        if ww != 0.0:
            for x in range(xmax):
                k[x] /= ww
        first = max(xmin, offset)
        last = min(xmin + xmax, offset + length)
        n = max(0, last - first)
        start[xx] = first - offset if n > 0 else 0
        count[xx] = n
        for j in range(n):
            v = k[first - xmin + j] * (1 << PRECISION_BITS)
            weights[xx, j] = int(v - 0.5) if k[first - xmin + j] < 0 else int(v + 0.5)


@njit(cache=True)
def _all_weights(lo, hi, length, out_size, start, count, weights):
    for i in range(len(lo)):
        # the box Pillow sees: shifted into the padded image (crop_resize pads by whole
        # pixels), as C floats, its width subtracted in single precision (precompute_coeffs
        # takes ``float in0, float in1``)
        pad_lo = int(np.ceil(max(0.0, -lo[i])))
        pad_hi = int(np.ceil(max(0.0, hi[i] - length)))
        a = np.float32(lo[i] + pad_lo)
        b = np.float32(hi[i] + pad_lo)
        span = np.float32(b - a)
        _weights_into(length + pad_lo + pad_hi, np.float64(a), np.float64(span), out_size, pad_lo, length,
                      start[i], count[i], weights[i])


def axis_weights(lo, hi, length, out_size):
    """Weights of the intervals ``[lo[i], hi[i])`` (float, image pixels; may reach outside
    ``0 .. length``) resampled to ``out_size`` pixels: ``start`` (n, S) int32 first image
    pixel, ``count`` (n, S) int32 taps, ``weights`` (n, S, K) int32 with 22 fraction bits.

    As ``crop_resize``: a box reaching outside the image resizes the image padded with black
    by the whole pixels it needs (``ceil``); Pillow takes the box as C floats."""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    n = len(lo)
    # Pillow's ksize, ceil(support) * 2 + 1, plus a margin for the C-float rounding
    widest = float(np.max(hi - lo)) if n else 0.0
    K = int(np.ceil(max(widest / out_size, 1.0))) * 2 + 3
    start = np.zeros((n, out_size), np.int32)
    count = np.zeros((n, out_size), np.int32)
    weights = np.zeros((n, out_size, K), np.int32)
    _all_weights(lo, hi, int(length), int(out_size), start, count, weights)
    return start, count, weights


BLOCK = 16  # output columns of one horizontal work item


@njit(nogil=True, cache=True)
def _horizontal(image_t, group_lo, group_rows, group_off, xs, xn, xw, tmp, item_lo, item_hi):
    """The horizontal pass of x-intervals ``g`` over image rows ``group_lo[g] .. +
    group_rows[g]``, into ``tmp[group_off[g] + j, c, xx]`` (R, 3, S) uint8, for the work
    items ``item_lo .. item_hi`` (item = g * blocks + block of BLOCK output columns).

    ``image_t`` is the image transposed, (W, H, 3): one image column's rows and channels are
    contiguous, so each tap is a multiply-add over all of them (vectorised); the block of
    output columns is then transposed into ``tmp``."""
    _, C, S = tmp.shape
    half = np.int32(1 << (PRECISION_BITS - 1))
    blocks = (S + BLOCK - 1) // BLOCK
    max_len = 0
    for item in range(item_lo, item_hi):
        max_len = max(max_len, group_rows[item // blocks] * C)
    acc = np.empty(max_len, np.int32)
    block = np.empty((BLOCK, max_len), np.uint8)
    for item in range(item_lo, item_hi):
        g, k = item // blocks, item % blocks
        lo, n_rows, off = group_lo[g], group_rows[g], group_off[g]
        if n_rows <= 0:
            continue
        L = n_rows * C
        first, last = k * BLOCK, min(k * BLOCK + BLOCK, S)
        for q in range(last - first):
            xx = first + q
            a = acc[:L]
            a[:] = half
            x0 = xs[g, xx]
            for t in range(xn[g, xx]):
                w = xw[g, xx, t]
                src = image_t[x0 + t, lo:lo + n_rows].reshape(L)
                for i in range(L):
                    a[i] += np.int32(src[i]) * w
            b = block[q]
            for i in range(L):
                b[i] = min(max(a[i] >> PRECISION_BITS, 0), 255)
        # transpose the block into tmp; flat unsigned indices (no negative-index checks)
        width = np.uint64(last - first)
        flat_block = block.reshape(-1)
        flat_tmp = tmp.reshape(-1)
        stride = np.uint64(max_len)
        for i in range(np.uint64(L)):
            at = (np.uint64(off) * np.uint64(C) + i) * np.uint64(S) + np.uint64(first)
            for q in range(width):
                flat_tmp[at + q] = flat_block[q * stride + i]


@njit(nogil=True, cache=True)
def _vertical(tmp, box_rows, box_y, ys, yn, yw, out, b_lo, b_hi):
    """out[b, c, yy, :] = the vertical pass of boxes ``b_lo .. b_hi`` over their column's rows
    of ``tmp``: ``box_rows[b]`` is the row of ``tmp`` holding image row 0 of its column (rows
    it does not use need not exist), ``box_y[b]`` its y-interval's weights. Up to three taps
    (every enlargement, and reductions by up to 1.5) are summed in registers; more through
    ``acc``."""
    _, C, S, _ = out.shape
    half = np.int32(1 << (PRECISION_BITS - 1))
    acc = np.empty(S, np.int32)
    for b in range(b_lo, b_hi):
        base, g = box_rows[b], box_y[b]
        for c in range(C):
            for yy in range(S):
                y0, n = ys[g, yy], yn[g, yy]
                o = out[b, c, yy]
                if n == 0:
                    o[:] = 0
                    continue
                r0 = tmp[base + y0, c]
                w0 = yw[g, yy, 0]
                if n == 1:
                    for xx in range(S):
                        o[xx] = min(max((half + np.int32(r0[xx]) * w0) >> PRECISION_BITS, 0), 255)
                    continue
                r1 = tmp[base + y0 + 1, c]
                w1 = yw[g, yy, 1]
                if n == 2:
                    for xx in range(S):
                        v = half + np.int32(r0[xx]) * w0 + np.int32(r1[xx]) * w1
                        o[xx] = min(max(v >> PRECISION_BITS, 0), 255)
                    continue
                r2 = tmp[base + y0 + 2, c]
                w2 = yw[g, yy, 2]
                if n == 3:
                    for xx in range(S):
                        v = half + np.int32(r0[xx]) * w0 + np.int32(r1[xx]) * w1 + np.int32(r2[xx]) * w2
                        o[xx] = min(max(v >> PRECISION_BITS, 0), 255)
                    continue
                for xx in range(S):
                    acc[xx] = half + np.int32(r0[xx]) * w0 + np.int32(r1[xx]) * w1 + np.int32(r2[xx]) * w2
                for t in range(3, n):
                    w = yw[g, yy, t]
                    r = tmp[base + y0 + t, c]
                    for xx in range(S):
                        acc[xx] += np.int32(r[xx]) * w
                for xx in range(S):
                    o[xx] = min(max(acc[xx] >> PRECISION_BITS, 0), 255)


_pools: dict = {}


def _run(fn, n_items, threads):
    """fn(lo, hi) over 0 .. n_items, in ``threads`` contiguous chunks on a thread pool (the
    kernels release the GIL); one chunk runs in this thread."""
    threads = max(1, min(int(threads), n_items))
    if threads == 1:
        fn(0, n_items)
        return
    pool = _pools.get(threads)
    if pool is None:
        pool = _pools[threads] = ThreadPoolExecutor(threads - 1, thread_name_prefix="minicnn-crop")
    bounds = np.linspace(0, n_items, threads + 1).round().astype(int)
    futures = [pool.submit(fn, bounds[i], bounds[i + 1]) for i in range(1, threads)]
    fn(bounds[0], bounds[1])
    for f in futures:
        f.result()


def crop_resize_boxes(image, boxes, size, out, threads=1):
    """Write into ``out`` (M, 3, size, size) (uint8 or float32) the boxes (M, 4)
    ``[x1, y1, x2, y2]`` of ``image`` (H, W, 3) uint8, each resampled as Pillow's antialiased
    bilinear resize of exactly that box (outside the image: black). Returns ``out``.

    ``threads`` > 1 splits each pass over that many Python threads (the kernels are serial
    and release the GIL). Numba's own parallel loops are not used: their "workqueue" pool
    aborts the process when two threads launch parallel kernels at once, and patches are
    rendered in a background thread while the network runs."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    H, W, _ = image.shape
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return out
    x_keys, x_of = np.unique(boxes[:, [0, 2]], axis=0, return_inverse=True)
    y_keys, y_of = np.unique(boxes[:, [1, 3]], axis=0, return_inverse=True)
    x_of, y_of = x_of.reshape(-1), y_of.reshape(-1).astype(np.int64)
    xs, xn, xw = axis_weights(x_keys[:, 0], x_keys[:, 1], W, size)
    ys, yn, yw = axis_weights(y_keys[:, 0], y_keys[:, 1], H, size)
    # rows each y-interval uses, then the union of those rows per x-interval (column)
    used = yn > 0
    first = np.where(used, ys, H).min(axis=1)
    last = np.where(used, ys + yn, 0).max(axis=1)
    lo = np.full(len(x_keys), H, np.int64)
    hi = np.zeros(len(x_keys), np.int64)
    np.minimum.at(lo, x_of, first[y_of])
    np.maximum.at(hi, x_of, last[y_of])
    rows = np.maximum(hi - lo, 0)
    offsets = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
    tmp = np.empty((max(int(offsets[-1]), 1), 3, size), np.uint8)
    image_t = np.ascontiguousarray(image.transpose(1, 0, 2))
    items = len(x_keys) * (-(-size // BLOCK))
    _run(lambda a, b: _horizontal(image_t, lo, rows, offsets[:-1], xs, xn, xw, tmp, a, b), items, threads)
    box_rows = (offsets[:-1] - lo)[x_of].astype(np.int64)
    _run(lambda a, b: _vertical(tmp, box_rows, y_of, ys, yn, yw, out, a, b), len(boxes), threads)
    return out
