"""Readable results of transfer runs: AP tables side by side, heat maps of patch scores."""

from __future__ import annotations

import numpy as np

from minicnn.transfer.scores import score_map


def ap_table(summaries: dict, classes, metric="voc07") -> str:
    """Per-class AP (%) of several runs side by side, with the mean; ``summaries`` maps a
    column name to a summary dict holding ``ap`` {class: AP} and ``map``."""
    names = list(summaries)
    width = max(len(c) for c in [*classes, "mean"])
    cols = [max(len(n), 7) for n in names]
    header = f"{'class':<{width}}  " + "  ".join(n.rjust(w) for n, w in zip(names, cols, strict=True))
    lines = [f"AP in % ({metric})", header]
    for c in [*classes, "mean"]:
        cells = []
        for n, w in zip(names, cols, strict=True):
            value = summaries[n]["map"] if c == "mean" else summaries[n]["ap"].get(c, float("nan"))
            cells.append((f"{100 * value:.2f}" if value == value else "nan").rjust(w))
        if c == "mean":
            lines.append("-" * len(lines[1]))
        lines.append(f"{c:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)


def heatmaps(image, boxes, probs, classes, k=5.0, top=3, scale=2):
    """A row of heat maps for one image: the image, then the per-pixel mean of p(c|P)^k
    over covering patches (METHOD.md section 8) for its ``top`` best-scoring classes."""
    from minicnn.plots import grid_image, heatmap_overlay

    values = np.asarray(probs, dtype=np.float64)[:, : len(classes)] ** k
    maps = score_map(boxes, values, image.width, image.height)
    image_scores = values.mean(axis=0)
    best = np.argsort(-image_scores)[:top]
    tiles = [image.resize((image.width * scale, image.height * scale))]
    for c in best:
        tiles.append(heatmap_overlay(image, maps[c], vmax=max(float(maps.max()), 1e-12), scale=scale,
                                     title=f"{classes[c]} {image_scores[c]:.3g}"))
    return grid_image(tiles, len(tiles))
