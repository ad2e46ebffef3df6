"""Localization from patch scores (docs/method.md section 8).

Score maps: each pixel gets the mean of p(c|P)^k over the patches covering it
(:func:`minicnn.transfer.scores.score_map`). Boxes: the patches themselves are candidate
boxes of class c with score p(c|P); the best ones, after greedy non-maximum suppression
(a patch overlapping an already kept one by IoU > ``nms_iou`` is dropped), are the
detections, evaluated with the VOC detection protocol.
"""

from __future__ import annotations

import numpy as np

from minicnn.transfer.labels import box_area, intersection_areas


def non_maximum_suppression(boxes, scores, iou=0.3, limit=None):
    """Indices of the kept boxes, best score first."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    boxes = np.asarray(boxes, dtype=np.float64)
    keep = []
    while len(order) and (limit is None or len(keep) < limit):
        best, rest = order[0], order[1:]
        keep.append(int(best))
        inter = intersection_areas(boxes[best : best + 1], boxes[rest])[0]
        union = box_area(boxes[best]) + box_area(boxes[rest]) - inter
        order = rest[inter / np.maximum(union, 1e-12) <= iou]
    return np.array(keep, dtype=np.int64)


def patch_detections(boxes, probs, num_classes, per_class=5, nms_iou=0.3):
    """For each class c < num_classes: (scores, boxes) of the best patches after NMS; boxes
    in 0-based end-exclusive pixels."""
    out = []
    for c in range(num_classes):
        keep = non_maximum_suppression(boxes, probs[:, c], nms_iou, per_class)
        out.append((probs[keep, c], boxes[keep]))
    return out


def voc_boxes(pixel_boxes):
    """0-based end-exclusive boxes -> VOC 1-based inclusive boxes (rounded to pixels)."""
    b = np.rint(np.asarray(pixel_boxes, dtype=np.float64)).reshape(-1, 4)
    return b + np.array([1.0, 1.0, 0.0, 0.0])


def image_patch_probabilities(net, image, scales, stride_fraction, batch_size=256):
    """(boxes, probs) of every patch of a PIL ``image`` through a transfer network (softmax
    over the target classes and background), inputs preprocessed as the network was trained."""
    from minicnn.data.preprocess import Preprocessing
    from minicnn.data.transforms import crop_patches
    from minicnn.transfer.patches import sample_patches
    from minicnn.transfer.train import patch_probabilities

    boxes = sample_patches(image.width, image.height, scales, stride_fraction)
    # uint8 patches, preprocessed a batch at a time: a quarter of the bytes of float32 inputs
    # (500 patches of 227 pixels: 77 MB instead of 309 MB)
    raw = crop_patches(image, boxes, int(net.input_shape[-1]), dtype=np.uint8)
    prepare = Preprocessing.of(net)
    return boxes, patch_probabilities(net, lambda idx: prepare(raw[idx]), np.arange(len(raw)), batch_size)


def whole_image_detections(width, height, image_scores):
    """The localization baseline: for each class, one box, the whole image, scored with the
    image's class score (the mean of p^k over its patches). Returns, per class, (scores (1,),
    boxes (1, 4)) in 0-based end-exclusive pixels, as :func:`patch_detections`."""
    box = np.array([[0.0, 0.0, float(width), float(height)]])
    return [(np.array([float(s)]), box) for s in np.asarray(image_scores, dtype=np.float64)]
