"""Multi-scale square patches (docs/method.md section 4).

At each scale lambda, patches are squares of side ``s = min(w, h) / lambda`` laid on a
regular grid: along each axis ``n = ceil((L - s) / (r s)) + 1`` positions spread evenly
from 0 to ``L - s``, so neighbours are at most ``r s`` apart (``r = stride_fraction``;
``r <= 0.5`` keeps at least 50% overlap). The count depends on the aspect ratio only.

Default we choose (the paper says "about 500"): the nine scales of the paper and
``r = 0.346``, which gives 496 patches on a 500 x 375 image (and on 375 x 500).

Boxes are float [x1, y1, x2, y2], 0-based, end-exclusive, in image pixels.
"""

from __future__ import annotations

import math

import numpy as np

SCALES = (1.0, 1.3, 1.6, 2.0, 2.4, 2.8, 3.2, 3.6, 4.0)
STRIDE_FRACTION = 0.346


def _positions(length, side, stride_fraction):
    n = math.ceil((length - side) / (stride_fraction * side) - 1e-9) + 1
    return np.linspace(0.0, length - side, max(n, 1))


def _check(width, height, scales, stride_fraction):
    if width <= 0 or height <= 0:
        raise ValueError(f"sample_patches: image size must be positive, got {width} x {height}")
    if not 0 < stride_fraction <= 0.5:
        raise ValueError(f"sample_patches: stride_fraction must be in (0, 0.5] (at least 50% overlap), "
                         f"got {stride_fraction}")
    if any(s < 1 for s in scales):
        raise ValueError(f"sample_patches: scales must be >= 1 (a patch fits in the image), got {scales}")


def sample_patches(width, height, scales=SCALES, stride_fraction=STRIDE_FRACTION):
    """(M, 4) float64 boxes [x1, y1, x2, y2] of the square patches of a width x height image,
    ordered by scale (largest patches first), then row, then column."""
    _check(width, height, scales, stride_fraction)
    out = []
    for lam in scales:
        side = min(width, height) / lam
        ys, xs = np.meshgrid(_positions(height, side, stride_fraction),
                             _positions(width, side, stride_fraction), indexing="ij")
        x1, y1 = xs.ravel(), ys.ravel()
        out.append(np.stack([x1, y1, x1 + side, y1 + side], axis=1))
    return np.concatenate(out)


def patch_counts(width, height, scales=SCALES, stride_fraction=STRIDE_FRACTION):
    """{scale: number of patches} for a width x height image (what the sampler reports)."""
    _check(width, height, scales, stride_fraction)
    counts = {}
    for lam in scales:
        side = min(width, height) / lam
        counts[lam] = (len(_positions(width, side, stride_fraction))
                       * len(_positions(height, side, stride_fraction)))
    return counts


def describe_sampler(width=500, height=375, scales=SCALES, stride_fraction=STRIDE_FRACTION) -> str:
    """One line stating the rule and the count it gives on a width x height image."""
    counts = patch_counts(width, height, scales, stride_fraction)
    per_scale = ", ".join(f"{lam:g}:{n}" for lam, n in counts.items())
    return (f"{sum(counts.values())} patches on {width}x{height}: side min(w,h)/lambda, grid stride "
            f"{stride_fraction:g} x side, per scale {per_scale}")


def whole_image_box(width, height):
    """The single 'patch' of the whole-image baseline: the full image (resized, not square)."""
    return np.array([[0.0, 0.0, float(width), float(height)]])
