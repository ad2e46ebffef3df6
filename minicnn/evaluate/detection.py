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

from minicnn.evaluate.ap import cumulative_precision_recall, rank

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
