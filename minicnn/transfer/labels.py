"""Patch labels from ground-truth boxes (docs/method.md section 5) and background re-sampling.

For a patch P and an object box B (areas continuous, boxes 0-based end-exclusive):

    P matches B  <=>  |P n B| >= 0.2 |P|   and   |P n B| >= 0.6 |B|

Let m be the objects P matches. If any of m is difficult, or |m| > 1 (even of one class):
discard (label -1). If |m| = 1: that object's class. If m is empty: background
(label ``num_classes``).

A VOC box (1-based, inclusive) ``x1 y1 x2 y2`` covers the pixel square
``[x1 - 1, x2) x [y1 - 1, y2)``: :func:`minicnn.data.voc.pixel_boxes` converts.
"""

from __future__ import annotations

import numpy as np

DISCARD = -1
MIN_PATCH_FRACTION = 0.2   # the object fills at least 20% of the patch
MIN_OBJECT_FRACTION = 0.6  # the patch holds at least 60% of the object


def box_area(boxes):
    b = np.asarray(boxes, dtype=np.float64)
    return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)


def intersection_areas(a, b):
    """(len(a), len(b)) intersection areas of two sets of boxes."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def match_matrix(patches, gt_boxes, min_patch=MIN_PATCH_FRACTION, min_object=MIN_OBJECT_FRACTION):
    """(M, G) bool: patch i satisfies both overlap rules for object j."""
    inter = intersection_areas(patches, gt_boxes)
    fills_patch = inter >= min_patch * box_area(patches)[:, None]
    holds_object = inter >= min_object * box_area(gt_boxes)[None, :]
    return fills_patch & holds_object


def label_patches(boxes, gt_boxes, gt_classes, gt_difficult, num_classes,
                  min_patch=MIN_PATCH_FRACTION, min_object=MIN_OBJECT_FRACTION):
    """(M,) int64 labels: a class index, ``num_classes`` for background, -1 for discarded."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    gt_classes = np.asarray(gt_classes, np.int64).reshape(-1)
    gt_difficult = np.asarray(gt_difficult, bool).reshape(-1)
    if not len(gt_classes) == len(gt_difficult) == len(gt_boxes):
        raise ValueError(f"label_patches: {len(gt_boxes)} boxes, {len(gt_classes)} classes and "
                         f"{len(gt_difficult)} difficult flags must agree")
    if len(gt_classes) and (gt_classes.min() < 0 or gt_classes.max() >= num_classes):
        raise ValueError(f"label_patches: classes must lie in [0, {num_classes})")
    labels = np.full(len(boxes), num_classes, dtype=np.int64)
    if not len(gt_boxes):
        return labels
    match = match_matrix(boxes, gt_boxes, min_patch, min_object)
    count = match.sum(axis=1)
    single = count == 1
    labels[single] = gt_classes[match[single].argmax(axis=1)]
    labels[(count > 1) | (match & gt_difficult[None, :]).any(axis=1)] = DISCARD
    return labels


def patches_on_box(patches, box, min_patch=MIN_PATCH_FRACTION, min_object=MIN_OBJECT_FRACTION):
    """(M,) bool: the patches that score an object given by its box (the action task's person,
    docs/method.md 7): those satisfying both overlap rules for it; failing that, those holding
    ``min_object`` of it; failing that, all of them."""
    patches = np.asarray(patches, np.float64).reshape(-1, 4)
    box = np.asarray(box, np.float64).reshape(1, 4)
    chosen = match_matrix(patches, box, min_patch, min_object)[:, 0]
    if not chosen.any():
        chosen = intersection_areas(patches, box)[:, 0] >= min_object * box_area(box)[0]
    if not chosen.any():
        chosen = np.ones(len(patches), dtype=bool)
    return chosen


def resample_background(labels, background, fraction, rng):
    """Indices of one epoch's training patches: every object patch and a fresh random
    ``fraction`` of the background patches (discarded patches never)."""
    labels = np.asarray(labels)
    objects = np.flatnonzero((labels >= 0) & (labels != background))
    bg = np.flatnonzero(labels == background)
    keep = bg[rng.random(len(bg)) < fraction] if fraction < 1 else bg
    return np.sort(np.concatenate([objects, keep]))


def background_weights(labels, background, fraction, dtype=np.float32):
    """The re-weighting alternative: every non-discarded patch is used, a background patch
    weighs ``fraction`` (what re-sampling keeps in expectation), an object patch 1."""
    labels = np.asarray(labels)
    return np.where(labels == background, fraction, 1.0).astype(dtype)
