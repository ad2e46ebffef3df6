"""PNG plots of results, drawn with matplotlib: precision/recall curves, AP per class,
training curves and heat maps of patch scores over an image.

    plot_pr_curve("car_pr.png", rec, prec, 0.812, title="car: AP 0.812 (voc07)")
    plot_pr_curves("pr.png", {"car": (rec, prec, 0.812), "dog": (rec2, prec2, 0.64)})
    plot_ap_bars("ap.png", {"car": 0.812, "dog": 0.64}, title="VOC2007 test")
    plot_training("training.png", {"transfer": history}, metric="val_map")
    plot_k_curve("map_k.png", {"transfer": {1: 40.2, 5: 45.1, "max": 41.0}})
    plot_heatmaps("000001.png", image, [{"title": "car", "map": m, "boxes": [(4, 8, 40, 30, 0.9)]}],
                  gt_boxes=[(5, 7, 42, 31, "car")])

Each function writes one PNG atomically (``minicnn.atomic.atomic_open``) and returns the
``matplotlib.figure.Figure`` it drew, so that a caller (or a test) can read the axes back.
Figures are drawn on their own Agg canvas: nothing here selects a backend, opens a window
or changes matplotlib's global settings, so a user's pyplot session is left as it was.
Non-finite values (NaN AP, a NaN metric of an epoch) are left out of the plot, never drawn
as zero.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator
from PIL import Image

from minicnn.atomic import atomic_open

DPI = 120
COLORS = tuple(colormaps["tab10"].colors)  # one colour per class or run
MAX_CURVES_ON_ONE_AXES = 10  # more classes than this: one small panel per class
HEAT_CMAP = "inferno"  # perceptually ordered, dark (low score) to bright yellow (high)
HEAT_ALPHA = 0.55  # weight of the score colour over the image
GT_COLOR = "#00e676"  # ground-truth boxes: green, absent from the heat colour scale
PRED_COLOR = "#00b0ff"  # predicted boxes: sky blue, also absent from it
MEAN_COLOR = "#d62728"


def plot_pr_curve(path, recall, precision, ap, title):
    """One class's precision/recall curve: the raw precision at each rank (``recall`` and
    ``precision`` in rank order, as ``precision_recall`` returns them) and, under it, the
    interpolated precision (the best precision at this recall or higher, as ``VOCap.m``
    integrates it) as stairs; ``ap`` in the legend; both axes 0..1, labelled."""
    fig = _figure((5.0, 4.9))
    ax = fig.add_subplot()
    _draw_pr(ax, recall, precision, COLORS[0], label=f"precision (AP {_fraction(ap)})", envelope=True)
    _pr_axes(ax)
    ax.legend(loc="lower left")
    ax.set_title(title)
    return _save(fig, path)


def plot_pr_curves(path, curves, title=""):
    """Precision/recall curves of several classes: ``curves`` maps a class name to
    ``(recall, precision, ap)``. Up to ten classes share one axes, one coloured line each,
    named with its AP in a legend beside the axes; more classes get one small panel each
    (five to a row, raw curve and interpolated stairs, AP in the panel's title)."""
    curves = dict(curves)
    if len(curves) <= MAX_CURVES_ON_ONE_AXES:
        fig = _figure((7.4, 4.8))
        ax = fig.add_subplot()
        for i, (name, (rec, prec, ap)) in enumerate(curves.items()):
            _draw_pr(ax, rec, prec, COLORS[i % len(COLORS)], label=f"{name} (AP {_fraction(ap)})")
        _pr_axes(ax)
        if curves:
            ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
        ax.set_title(title)
        return _save(fig, path)
    columns = 5
    rows = math.ceil(len(curves) / columns)
    fig = _figure((2.3 * columns + 0.6, 2.2 * rows + (0.9 if title else 0.5)))
    axes = fig.subplots(rows, columns, sharex=True, sharey=True, squeeze=False).ravel()
    for ax, (name, (rec, prec, ap)) in zip(axes, curves.items(), strict=False):
        _draw_pr(ax, rec, prec, COLORS[0], envelope=True)
        _pr_axes(ax, labels=False)
        ax.set_title(f"{name}  AP {_fraction(ap)}", fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in axes[len(curves):]:
        ax.set_visible(False)
    fig.supxlabel("recall")
    fig.supylabel("precision")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_ap_bars(path, aps, title="", mean=None):
    """A bar per class (``aps`` maps a class to its AP, a fraction 0..1) with its value
    above it, and a dashed horizontal line at the mean, labelled "mean 0.xxx" in the legend.
    ``mean`` defaults to the mean of the finite APs. A NaN AP gets no bar, only "n/a" at its
    place; a NaN mean gets no line and the label "mean n/a"."""
    names = list(aps)
    values = np.array([float(aps[n]) for n in names], dtype=np.float64)
    finite = np.isfinite(values)
    if mean is None:
        mean = float(values[finite].mean()) if finite.any() else float("nan")
    mean = float(mean)
    fig = _figure((max(4.8, 1.4 + 0.42 * len(names)), 4.6))
    ax = fig.add_subplot()
    positions = np.arange(len(names), dtype=np.float64)
    bars = ax.bar(positions[finite], values[finite], width=0.7, color=COLORS[0])
    ax.bar_label(bars, fmt="%.2f", padding=2, fontsize=8)
    for x in positions[~finite]:
        ax.text(x, 0.01, "n/a", ha="center", va="bottom", fontsize=8, color="#666666")
    if np.isfinite(mean):
        ax.axhline(mean, color=MEAN_COLOR, linestyle="--", linewidth=1.5, label=f"mean {mean:.3f}")
    else:
        ax.plot([], [], color=MEAN_COLOR, linestyle="--", label="mean n/a")
    ax.set_xticks(positions, names)
    if len(names) > 8 or max((len(n) for n in names), default=0) > 8:
        ax.tick_params(axis="x", labelrotation=45)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylim(0.0, 1.12)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("AP")
    ax.grid(axis="y", color="#e3e3e3")
    ax.set_axisbelow(True)
    # above the axes, right-aligned, so that it never covers a bar or its value
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=9, frameon=False, borderaxespad=0.2)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_training(path, histories, metric="val_map", metric_label="validation mAP", title=""):
    """Training curves side by side: the training loss per epoch (left) and the validation
    metric per epoch (right), one line per run with a marker per epoch. ``histories`` maps a
    run name to its history, a list of per-epoch dicts with "epoch", "loss" and the metric
    key(s). ``metric`` is a key or a list of keys (["val_top1", "val_top5"]); with several
    keys each gets its own line style, named by the key less its "val_" prefix. Epochs
    without a key, or with a non-finite value, are left out of that line."""
    keys = [metric] if isinstance(metric, str) else list(metric)
    styles = ("-", "--", ":", "-.")
    markers = ("o", "s", "^", "D")
    fig = _figure((11.0, 4.4))
    loss_ax, metric_ax = fig.subplots(1, 2)
    for i, (run, history) in enumerate(histories.items()):
        color = COLORS[i % len(COLORS)]
        epochs, losses = _points(history, "loss")
        if epochs.size:
            loss_ax.plot(epochs, losses, color=color, marker="o", markersize=4, label=run)
        for j, key in enumerate(keys):
            epochs, values = _points(history, key)
            if not epochs.size:
                continue
            short = key.removeprefix("val_")
            label = run if len(keys) == 1 else (short if len(histories) == 1 else f"{run} {short}")
            metric_ax.plot(epochs, values, color=color, linestyle=styles[j % len(styles)],
                           marker=markers[j % len(markers)], markersize=4, label=label)
    for ax, ylabel in ((loss_ax, "training loss"), (metric_ax, metric_label)):
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(color="#e3e3e3")
        if ax.lines:
            ax.legend(loc="best", fontsize=9)
        else:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="#666666")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_k_curve(path, curves, title=""):
    """mAP (in %) against the k of the image score, one line per run: ``curves`` maps a run
    to {k: mAP}, k a number or "max" (drawn last, at the right, as "max")."""
    fig = _figure((6.4, 4.4))
    ax = fig.add_subplot()
    ks = list(next(iter(curves.values()), {}))
    positions = np.arange(len(ks))
    for i, (run, curve) in enumerate(curves.items()):
        values = np.array([curve.get(k, np.nan) for k in ks], dtype=np.float64)
        ax.plot(positions, values, color=COLORS[i % len(COLORS)], marker="o", markersize=4, label=run)
    ax.set_xticks(positions, [str(k) for k in ks])
    ax.set_xlabel("k (image score: mean of p^k over the patches)")
    ax.set_ylabel("mAP (%)")
    ax.grid(color="#e3e3e3")
    if ax.lines:
        ax.legend(loc="best", fontsize=9)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_heatmaps(path, image, panels, gt_boxes=(), title="", name=None, scale_label="score"):
    """An image and its score maps: the image first, titled "image NAME" (``name``, by
    default the file name of ``path`` less its suffix: the image id), then one panel per
    entry of ``panels`` (dicts ``{"title", "map", "boxes"}``): the image with ``map`` (H, W),
    of the image's size, laid over it in the ``HEAT_CMAP`` colour scale (weight
    ``HEAT_ALPHA``). Every panel shares one scale, from min(0, the maps' minimum) to the maps'
    maximum, so that panels compare; one colour bar, labelled ``scale_label``, gives it.
    The panel's predicted ``boxes`` ``(x1, y1, x2, y2, score)`` are drawn in ``PRED_COLOR``
    with their score inside the bottom-right corner. ``gt_boxes`` ``(x1, y1, x2, y2, label)``
    are drawn on every panel, the image's too, in ``GT_COLOR`` with their label inside the
    top-left corner, above every prediction, so that no predicted box hides it (nor the
    image's edge). Boxes are in pixel coordinates, 0-based and end-exclusive: (0, 0, W, H) is
    the whole image. ``image``: a PIL image or an (H, W, 3) uint8 array. Up to four panels to
    a row."""
    picture = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if picture.ndim != 3 or picture.shape[2] != 3:
        raise ValueError(f"plot_heatmaps: image must be (H, W, 3), got shape {picture.shape}")
    height, width = picture.shape[:2]
    maps = [np.asarray(p["map"], dtype=np.float64) for p in panels]
    for p, values in zip(panels, maps, strict=True):
        if values.shape != (height, width):
            raise ValueError(f"plot_heatmaps: map of panel {p.get('title', '')!r} has shape {values.shape}, "
                             f"the image is ({height}, {width})")
    count = 1 + len(maps)
    columns = min(count, 4)
    rows = math.ceil(count / columns)
    panel_w = 3.4
    panel_h = panel_w * height / width * 0.88 + 0.5  # the colour bar takes part of the width
    fig = _figure((panel_w * columns, panel_h * rows + (0.7 if title else 0.3)))
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    extent = (0, width, height, 0)  # pixel i covers [i, i + 1): boxes land on pixel edges
    axes[0].imshow(picture, extent=extent, interpolation="antialiased")
    axes[0].set_title(f"image {Path(path).stem if name is None else name}", fontsize=10)
    finite = np.concatenate([values[np.isfinite(values)] for values in maps]) if maps else np.zeros(0)
    low = min(0.0, float(finite.min())) if finite.size else 0.0
    high = float(finite.max()) if finite.size else 1.0
    norm = Normalize(vmin=low, vmax=high if high > low else low + 1.0)  # one scale for every panel
    for ax, panel, values in zip(axes[1:], panels, maps, strict=False):
        ax.imshow(picture, extent=extent, interpolation="antialiased")
        ax.imshow(values, extent=extent, interpolation="nearest", cmap=HEAT_CMAP, alpha=HEAT_ALPHA, norm=norm)
        for x1, y1, x2, y2, score in panel.get("boxes", ()):
            _box(ax, (x1, y1, x2, y2), f"{float(score):.2f}", PRED_COLOR, at_top=False)
        ax.set_title(panel.get("title", ""), fontsize=10)
    if maps:  # the scale at full strength, not faded by the overlay's alpha
        scale = fig.colorbar(ScalarMappable(norm, colormaps[HEAT_CMAP]), ax=list(axes[1:count]),
                             fraction=0.05 / min(len(maps), columns - 1 or 1), pad=0.02, aspect=25 * rows)
        scale.set_label(scale_label, fontsize=8)
        scale.ax.tick_params(labelsize=7)
    for ax in axes[:count]:
        for x1, y1, x2, y2, label in gt_boxes:
            _box(ax, (x1, y1, x2, y2), str(label), GT_COLOR, at_top=True)
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[count:]:
        ax.set_visible(False)
    if any(p.get("boxes") for p in panels) or len(gt_boxes):
        fig.legend(handles=[Line2D([], [], color=GT_COLOR, linewidth=2, label="ground truth"),
                            Line2D([], [], color=PRED_COLOR, linewidth=2, label="predicted (score)")],
                   loc="outside lower center", ncols=2, fontsize=9, frameon=False)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


# --- shared pieces -----------------------------------------------------------------------------

def _figure(size):
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    """Write ``fig`` to ``path`` as PNG at the figure's own dpi, so that its transforms give
    the saved image's pixel positions."""
    with atomic_open(Path(path), "wb") as f:
        fig.savefig(f, format="png", dpi=DPI)
    return fig


def _fraction(value):
    return f"{float(value):.3f}" if np.isfinite(value) else "n/a"


def _interpolated(recall, precision):
    """The interpolated precision as stairs (x, y): on (rec[i-1], rec[i]] the best precision
    at rank i or later; 0 beyond the last recall."""
    rec = np.concatenate([[0.0], recall, [1.0]])
    envelope = np.fmax.accumulate(np.concatenate([[0.0], precision, [0.0]])[::-1])[::-1]
    return np.repeat(rec, 2)[1:-1], np.repeat(envelope[1:], 2)


def _draw_pr(ax, recall, precision, color, label=None, envelope=False):
    recall = np.asarray(recall, dtype=np.float64).ravel()
    precision = np.asarray(precision, dtype=np.float64).ravel()
    if recall.shape != precision.shape:
        raise ValueError(f"{recall.size} recall values but {precision.size} precision values")
    if envelope:
        x, y = _interpolated(recall, precision)
        ax.plot(x, y, color=color, alpha=0.35, linewidth=4, solid_joinstyle="miter",
                label="interpolated precision" if label else None)
    ax.plot(recall, precision, color=color, linewidth=1.6, label=label)


def _pr_axes(ax, labels=True):
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_aspect("equal")
    ax.grid(color="#e3e3e3")
    if labels:
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")


def _points(history, key):
    """(epochs, values) of the epochs whose ``key`` is present and finite."""
    pairs = [(h.get("epoch", i + 1), h[key]) for i, h in enumerate(history)
             if h.get(key) is not None and np.isfinite(float(h[key]))]
    if not pairs:
        return np.zeros(0), np.zeros(0)
    epochs, values = zip(*pairs, strict=True)
    return np.asarray(epochs, dtype=np.float64), np.asarray(values, dtype=np.float64)


def _box(ax, box, text, color, at_top):
    """A rectangle on ``ax`` and its text in a tag of its colour: inside its top-left corner
    (``at_top``, ground truth: drawn above every prediction) or inside its bottom-right
    corner (predictions), so that a ground-truth box and a prediction on the same object do
    not hide each other's text, and a box at the image's edge keeps its text in view."""
    x1, y1, x2, y2 = (float(v) for v in box)
    zorder = 4 if at_top else 3  # ground truth over predictions
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=2,
                           zorder=zorder))
    x, y, ha, va = (x1, y1, "left", "top") if at_top else (x2, y2, "right", "bottom")
    ax.text(x, y, text, fontsize=7, color="black", ha=ha, va=va, clip_on=True, zorder=zorder + 2,
            bbox={"facecolor": color, "edgecolor": "none", "pad": 1.0, "alpha": 0.85})
