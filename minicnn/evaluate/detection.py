"""Detection precision/recall as the devkit's ``VOCevaldet.m`` computes it.

Boxes are VOC boxes ``(x1, y1, x2, y2)``, 1-based inclusive, so widths carry a +1:

    iw = min(x2, x2') - max(x1, x1') + 1,   ih likewise
    overlap = iw*ih / ((x2-x1+1)(y2-y1+1) + (x2'-x1'+1)(y2'-y1'+1) - iw*ih)   if iw > 0 and ih > 0

Detections are taken by decreasing score (stable: equal scores keep file order). Each is
compared with every ground-truth box of its class in its image, difficult ones included,
and goes to the first box of largest overlap. If that overlap is >= 0.5 (exactly 0.5
counts): a difficult box makes the detection neither true nor false positive; an unclaimed
box makes it a true positive and claims the box; a box already claimed makes it a false
positive (duplicate). Otherwise it is a false positive. ``npos`` counts the non-difficult
boxes; images without detections add only to ``npos``.
"""

from __future__ import annotations

import numpy as np

from minicnn.evaluate.ap import average_precision, cumulative_precision_recall, rank

MIN_OVERLAP = 0.5


def box_overlaps(box, gt_boxes) -> np.ndarray:
    """Overlap of one box with each of ``gt_boxes`` (G, 4), -inf where they do not
    intersect (the devkit never computes those), in the devkit's order of operations."""
    bb = np.asarray(box, dtype=np.float64)
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(bb[2], gt[:, 2]) - np.maximum(bb[0], gt[:, 0]) + 1
    ih = np.minimum(bb[3], gt[:, 3]) - np.maximum(bb[1], gt[:, 1]) + 1
    hit = (iw > 0) & (ih > 0)
    ua = ((bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1)
          + (gt[:, 2] - gt[:, 0] + 1) * (gt[:, 3] - gt[:, 1] + 1)
          - iw * ih)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(hit, iw * ih / ua, -np.inf)


def detection_precision_recall(ground_truth, det_images, det_scores, det_boxes, min_overlap=MIN_OVERLAP):
    """rec, prec in rank order, and the per-rank (tp, fp) flags.

    ``ground_truth``: image id -> (boxes (G, 4), difficult (G,) bool) for every image of the
    set (objects of the evaluated class only). ``det_images``, ``det_scores``,
    ``det_boxes`` (N, 4): the detections in file order; every id must be a key of
    ``ground_truth``.
    """
    det_scores = np.asarray(det_scores, dtype=np.float64).ravel()
    det_boxes = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
    npos = sum(int(np.count_nonzero(~np.asarray(d, dtype=bool))) for _, d in ground_truth.values())
    claimed = {image_id: np.zeros(len(d), dtype=bool) for image_id, (_, d) in ground_truth.items()}
    order = rank(det_scores)
    tp = np.zeros(order.size)
    fp = np.zeros(order.size)
    for k, d in enumerate(order):
        image_id = det_images[d]
        gt_boxes, difficult = ground_truth[image_id]
        overlaps = box_overlaps(det_boxes[d], gt_boxes)
        best = int(np.argmax(overlaps)) if overlaps.size else -1  # first of the largest, as '>' in a loop
        if best >= 0 and overlaps[best] >= min_overlap:
            if not difficult[best]:
                if not claimed[image_id][best]:
                    tp[k] = 1
                    claimed[image_id][best] = True
                else:
                    fp[k] = 1
        else:
            fp[k] = 1
    rec, prec = cumulative_precision_recall(tp, fp, npos)
    return rec, prec, tp, fp


def resampled_detection_map(classes, counts, metric) -> float:
    """The detection mAP of the set in which image i appears ``counts[i]`` times (0: left out).

    ``classes``: one ``(tp, fp, images, npos)`` per class: the per-rank flags of
    :func:`detection_precision_recall` on the whole set, the index of each ranked
    detection's image, and each image's count of non-difficult boxes. A detection is matched
    within its own image only, so each copy of an image keeps its detections' flags, and the
    copies of a detection rank side by side (equal scores): the cumulative sums weighted by
    ``counts`` give the curve of the set with the copies written out, each copy's detections
    next to the original's in the results file (with another order, detections of exactly
    equal scores may rank otherwise). The mean is over the classes with a
    positive box in the resampled set (NaN if none has one)."""
    counts = np.asarray(counts, dtype=np.int64)
    aps = []
    for tp, fp, images, npos in classes:
        positives = int(counts @ np.asarray(npos))
        if positives == 0:
            continue
        weight = counts[images]
        kept = weight > 0  # a left-out detection only repeats the previous point of the curve
        rec, prec = cumulative_precision_recall(tp[kept] * weight[kept], fp[kept] * weight[kept], positives)
        aps.append(average_precision(rec, prec, metric))
    return float(np.mean(aps)) if aps else float("nan")


def bootstrap_detection_map(classes, n_images, metric, draws=1000, seed=0):
    """(2.5, 97.5) percentiles of :func:`resampled_detection_map` over ``draws`` resamplings
    of the ``n_images`` images with replacement: the 95% interval of the detection mAP that
    another draw of test images of the same kind would give."""
    rng = np.random.default_rng(seed)
    values = [resampled_detection_map(classes, np.bincount(rng.integers(0, n_images, n_images),
                                                           minlength=n_images), metric)
              for _ in range(draws)]
    values = [v for v in values if not np.isnan(v)]
    return [float(v) for v in np.percentile(values, [2.5, 97.5])] if values else [None, None]
