"""Readable results of transfer runs: AP tables side by side, heat maps of patch scores."""

from __future__ import annotations

import numpy as np

from minicnn.transfer.scores import score_map


def ap_table(summaries: dict, classes, metric="voc07") -> str:
    """Per-class AP (%) of several runs side by side, with the mean; ``summaries`` maps a
    column name to a summary dict holding ``ap`` {class: AP} and ``map``. A class a run has
    no AP for (no positive test item: left out of its mean) shows "-", and a last line names
    those classes, so that a mean over fewer classes is seen as such."""
    names = list(summaries)
    width = max(len(c) for c in [*classes, "mean"])
    cols = [max(len(n), 7) for n in names]
    header = f"{'class':<{width}}  " + "  ".join(n.rjust(w) for n, w in zip(names, cols, strict=True))
    lines = [f"AP in % ({metric})", header]
    left_out = [c for c in classes if any(c not in (summaries[n].get("ap") or {}) for n in names)]
    for c in [*classes, "mean"]:
        cells = []
        for n, w in zip(names, cols, strict=True):
            value = summaries[n]["map"] if c == "mean" else (summaries[n].get("ap") or {}).get(c)
            text = "-" if value is None else f"{100 * value:.2f}" if value == value else "nan"
            cells.append(text.rjust(w))
        if c == "mean":
            lines.append("-" * len(lines[1]))
        lines.append(f"{c:<{width}}  " + "  ".join(cells))
    if left_out:
        lines.append(f"left out of the mean (no positive test item): {', '.join(left_out)}")
    return "\n".join(lines)


def heatmaps(path, image, boxes, probs, classes, k=5.0, top=3, gt_boxes=(), per_class=1, nms_iou=0.3):
    """Write the heat maps of one image (docs/method.md section 8): the image, then for its ``top``
    best-scoring classes the per-pixel mean of p(c|P)^k over the patches covering each pixel,
    with that class's best patches after non-maximum suppression (``per_class`` boxes) and
    the ground truth ``gt_boxes`` ((x1, y1, x2, y2, label), 0-based end-exclusive)."""
    from minicnn.plots import plot_heatmaps
    from minicnn.transfer.localize import patch_detections

    values = np.asarray(probs, dtype=np.float64)[:, : len(classes)] ** k
    maps = score_map(boxes, values, image.width, image.height)
    image_scores = values.mean(axis=0)
    detections = patch_detections(np.asarray(boxes), np.asarray(probs), len(classes), per_class, nms_iou)
    panels = []
    for c in np.argsort(-image_scores)[:top]:
        scores, kept = detections[c]
        panels.append({"title": f"{classes[c]}: score {image_scores[c]:.3g}", "map": maps[c],
                       "boxes": [(*b, s) for b, s in zip(kept.tolist(), scores.tolist(), strict=True)]})
    return plot_heatmaps(path, image, panels, gt_boxes=gt_boxes,
                         scale_label=f"mean of p^{k:g} over covering patches",
                         title=f"mean of p^{k:g} over covering patches; boxes: best patches")


def ground_truth_boxes(annotation, names=None):
    """(x1, y1, x2, y2, label) of an annotation's objects (of ``names``), in the 0-based
    end-exclusive pixels of :func:`plot_heatmaps`; difficult ones marked so."""
    from minicnn.data.voc import pixel_boxes

    objects = [o for o in annotation.objects if names is None or o.name in names]
    return [(*b, o.name + (" (difficult)" if o.difficult else ""))
            for o, b in zip(objects, pixel_boxes([o.box for o in objects]).tolist(), strict=True)]
