"""From patch scores to image scores and score maps (docs/method.md sections 6 and 8).

Image score of class c over the M patches of an image, with y(c|P) the softmax output:

    score(c | I) = (1/M) sum_i y(c | P_i)^k

k = 5 by default (k = 1 is the plain mean; a large k tends to the maximum, and k = inf
gives the maximum itself, max_i y(c | P_i), the limit of the score's k-th root).

Score map of class c: each pixel gets the mean of y(c|P)^k over the patches covering it
(pixels no patch covers get 0).
"""

from __future__ import annotations

import numpy as np

DEFAULT_K = 5.0


def aggregate_scores(patch_probs, k=DEFAULT_K):
    """(M, C) patch probabilities -> (C,) image scores, the mean of p**k."""
    p = np.asarray(patch_probs, dtype=np.float64)
    if p.ndim != 2 or not len(p):
        raise ValueError(f"aggregate_scores: need a non-empty (M, C) array, got shape {p.shape}")
    return (p ** k).mean(axis=0)


def aggregate_by_image(patch_probs, image_index, num_images, k=DEFAULT_K):
    """Image scores of many images at once: (num_images, C) from (M, C) probabilities and the
    (M,) image each patch belongs to. Images without patches get NaN; ``k = inf``: the
    maximum over the image's patches."""
    image_index = np.asarray(image_index, dtype=np.int64)
    counts = np.bincount(image_index, minlength=num_images)[:, None].astype(np.float64)
    if np.isinf(k):
        highest = np.full((num_images, np.shape(patch_probs)[1]), -np.inf)
        np.maximum.at(highest, image_index, np.asarray(patch_probs, dtype=np.float64))
        return np.where(counts > 0, highest, np.nan)
    p = np.asarray(patch_probs, dtype=np.float64) ** k
    sums = np.zeros((num_images, p.shape[1]))
    np.add.at(sums, image_index, p)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def score_items(split_probs, items, k=DEFAULT_K):
    """(n_items, K) scores of a split's items (:class:`~minicnn.transfer.patchset.ScoredItems`):
    item j's mean of p^k over its patches. ``split_probs`` (S, K) are the probabilities of
    the patches ``items.patches``, in that order."""
    return aggregate_by_image(np.asarray(split_probs)[items.pair_patch], items.pair_item, len(items.keys), k)


def score_map(boxes, values, width, height):
    """(C, height, width) per-pixel mean of ``values`` (M, C) over the patches covering each
    pixel. Patch edges are rounded to whole pixels; built with 2-D prefix sums, so the cost
    does not grow with the patch size."""
    values = np.asarray(values, dtype=np.float64).reshape(len(boxes), -1)
    b = np.rint(np.asarray(boxes, dtype=np.float64)).astype(np.int64)
    x1, y1 = np.clip(b[:, 0], 0, width), np.clip(b[:, 1], 0, height)
    x2, y2 = np.clip(b[:, 2], 0, width), np.clip(b[:, 3], 0, height)
    C = values.shape[1]
    acc = np.zeros((C + 1, height + 1, width + 1))
    vals = np.concatenate([values, np.ones((len(values), 1))], axis=1).T  # last row counts
    for ys, xs, sign in ((y1, x1, 1), (y1, x2, -1), (y2, x1, -1), (y2, x2, 1)):
        np.add.at(acc, (slice(None), ys, xs), sign * vals)
    acc = acc.cumsum(axis=1).cumsum(axis=2)[:, :height, :width]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(acc[-1] > 0, acc[:-1] / acc[-1], 0.0)
