"""Small PNG plots drawn with Pillow (the project uses no matplotlib): line plots with axes,
ticks, grid, axis labels and a legend, and bar charts with an optional reference line.
Enough for precision/recall curves, training curves and per-class summaries.

    line_plot("pr.png", [("precision", recall, precision)], xlabel="recall", ylabel="precision",
              xlim=(0, 1), ylim=(0, 1), title="car: AP = 0.812")
    bar_chart("ap.png", classes, aps, ylabel="AP", ylim=(0, 1), reference=("mean", 0.77))

Non-finite points break a line; whatever falls outside the axes is clipped.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Tableau 10: distinct, readable on white
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
_GRID = "#e3e3e3"
_INK = "#222222"


def line_plot(path, series, *, title="", xlabel="", ylabel="", xlim=None, ylim=None,
              size=(640, 480), legend="best"):
    """Write a line plot to ``path`` (PNG).

    ``series``: (label, xs, ys) tuples, or (label, xs, ys, style) with style keys
    ``color`` and ``width``; a None label keeps the series out of the legend. ``xlim`` /
    ``ylim`` default to the data range. ``legend``: "best" (the corner with the fewest
    points), "upper right", "upper left", "lower right", "lower left" or None.
    """
    series = [_series(s, i) for i, s in enumerate(series)]
    xs = np.concatenate([s["x"] for s in series]) if series else np.zeros(0)
    ys = np.concatenate([s["y"] for s in series]) if series else np.zeros(0)
    xlim = xlim or _data_range(xs)
    ylim = ylim or _data_range(ys)
    font, small = _font(15), _font(13)
    canvas = _Canvas(size, font, small, title, xlabel, ylabel, xlim, ylim,
                     x_ticks=_nice_ticks(*xlim), x_labels=None)
    layer = Image.new("RGBA", canvas.area_size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for s in series:
        px, py = canvas.to_area(s["x"], s["y"])
        ok = np.isfinite(px) & np.isfinite(py)
        for run in np.split(np.arange(ok.size), np.flatnonzero(~ok)):
            run = run[ok[run]]
            if run.size == 1:
                x, y = px[run[0]], py[run[0]]
                draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=s["color"])
            elif run.size > 1:
                draw.line(list(zip(px[run].tolist(), py[run].tolist(), strict=True)), fill=s["color"],
                          width=s["width"], joint="curve")
    canvas.image.paste(layer, canvas.area_origin, layer)
    canvas.frame()
    entries = [(s["label"], s["color"]) for s in series if s["label"] is not None]
    if entries and legend:
        # points along every segment, so that "best" also avoids lines between data points
        t = np.linspace(0, 1, 33)[:, None]
        along_x = np.concatenate([(s["x"][:-1] + t * np.diff(s["x"])).ravel() for s in series])
        along_y = np.concatenate([(s["y"][:-1] + t * np.diff(s["y"])).ravel() for s in series])
        canvas.legend(entries, legend, along_x, along_y)
    canvas.save(path)


def bar_chart(path, labels, values, *, title="", ylabel="", ylim=None, reference=None,
              size=None, color=PALETTE[0], value_format="{:.2f}"):
    """Write a bar chart to ``path`` (PNG): one bar per label, its value printed above it.

    ``reference``: optional (label, value) drawn as a dashed horizontal line and named in
    the legend (a mean, a baseline). Long labels are written vertically. ``size`` defaults
    to a width that gives every bar room.
    """
    labels = [str(v) for v in labels]
    values = np.asarray(values, dtype=np.float64)
    if reference is not None and not np.isfinite(reference[1]):
        reference = None
    finite = values[np.isfinite(values)]
    low = min(0.0, float(finite.min())) if finite.size else 0.0
    high = float(finite.max()) if finite.size else 1.0
    if reference is not None:
        high = max(high, float(reference[1]))
    ylim = ylim or (low, high * 1.1 if high > 0 else 1.0)
    size = size or (max(480, 110 + 38 * len(labels)), 480)
    font, small = _font(15), _font(13)
    positions = np.arange(len(labels), dtype=np.float64)
    canvas = _Canvas(size, font, small, title, "", ylabel, (-0.6, len(labels) - 0.4), ylim,
                     x_ticks=positions, x_labels=labels)
    draw = ImageDraw.Draw(canvas.image)
    half = 0.35 * canvas.area_size[0] / max(len(labels), 1)
    base = canvas.to_canvas(np.zeros(1), np.array([max(ylim[0], 0.0)]))[1][0]
    if len(labels) != values.size:
        raise ValueError(f"{len(labels)} labels but {values.size} values")
    for pos, value in zip(positions, values, strict=True):
        if not np.isfinite(value):
            continue
        (cx,), (top,) = canvas.to_canvas(np.array([pos]), np.array([min(max(value, ylim[0]), ylim[1])]))
        draw.rectangle([cx - half, min(top, base), cx + half, max(top, base)], fill=color)
        text = value_format.format(value)
        w = draw.textlength(text, font=small)
        draw.text((cx - w / 2, min(top, base) - 16), text, fill=_INK, font=small)
    if reference is not None:
        y = canvas.to_canvas(np.zeros(1), np.array([float(reference[1])]))[1][0]
        x0, x1 = canvas.area_origin[0], canvas.area_origin[0] + canvas.area_size[0]
        for x in range(int(x0), int(x1), 12):
            draw.line([(x, y), (min(x + 7, x1), y)], fill=PALETTE[3], width=2)
    canvas.frame()
    if reference is not None:
        label = f"{reference[0]} = {value_format.format(float(reference[1]))}"
        canvas.legend([(label, PALETTE[3])], "upper right", np.zeros(0), np.zeros(0))
    canvas.save(path)


def heatmap_overlay(image, values, *, title="", vmax=None, alpha=0.55, scale=1):
    """``image`` (a PIL RGB image) with ``values`` (H, W), of the image's size, drawn over it
    in a dark-blue-to-yellow colour scale (0 transparent-ish blue, ``vmax`` yellow; default
    the map's maximum), upscaled by ``scale``, with ``title`` above. Returns a PIL image."""
    values = np.asarray(values, dtype=np.float64)
    top = float(vmax) if vmax else float(values.max()) or 1.0
    t = np.clip(values / top, 0.0, 1.0)
    # a perceptually ordered ramp: navy -> teal -> green -> yellow
    stops = np.array([[20, 20, 90], [30, 120, 160], [90, 190, 90], [250, 230, 40]], dtype=np.float64)
    pos = t * (len(stops) - 1)
    lo = np.minimum(pos.astype(np.int64), len(stops) - 2)
    frac = (pos - lo)[..., None]
    colours = stops[lo] * (1 - frac) + stops[lo + 1] * frac
    base = np.asarray(image.convert("RGB"), dtype=np.float64)
    blended = (1 - alpha) * base + alpha * colours
    out = Image.fromarray(blended.round().astype(np.uint8))
    if scale != 1:
        out = out.resize((out.width * scale, out.height * scale), Image.NEAREST)
    if not title:
        return out
    font = _font(13)
    framed = Image.new("RGB", (out.width, out.height + 20), "white")
    framed.paste(out, (0, 20))
    ImageDraw.Draw(framed).text((3, 2), title, fill=_INK, font=font)
    return framed


def grid_image(images, columns):
    """Tile PIL images (of any sizes) row by row into one white image."""
    columns = max(1, min(columns, len(images)))
    rows = [images[i:i + columns] for i in range(0, len(images), columns)]
    width = max(sum(im.width for im in row) + 4 * (len(row) - 1) for row in rows)
    height = sum(max(im.height for im in row) for row in rows) + 4 * (len(rows) - 1)
    out = Image.new("RGB", (width, height), "white")
    y = 0
    for row in rows:
        x = 0
        for im in row:
            out.paste(im, (x, y))
            x += im.width + 4
        y += max(im.height for im in row) + 4
    return out


# --- drawing machinery ------------------------------------------------------------------------

class _Canvas:
    """A white image with a plot area mapped to data limits, its grid, ticks and labels."""

    def __init__(self, size, font, small, title, xlabel, ylabel, xlim, ylim, x_ticks, x_labels):
        self.font, self.small = font, small
        self.xlim, self.ylim = (float(xlim[0]), float(xlim[1])), (float(ylim[0]), float(ylim[1]))
        self.image = Image.new("RGB", tuple(int(v) for v in size), "white")
        draw = ImageDraw.Draw(self.image)
        y_ticks = _nice_ticks(*self.ylim)
        y_texts = _tick_texts(y_ticks)
        x_texts = x_labels if x_labels is not None else _tick_texts(x_ticks)
        tick_w = max((draw.textlength(t, font=small) for t in y_texts), default=0)
        widest_x = max((draw.textlength(t, font=small) for t in x_texts), default=0)
        left = int(tick_w + 18 + (24 if ylabel else 6))
        top = 36 if title else 14
        width = self.image.width - left - 18
        self.vertical_x = x_labels is not None and widest_x > 0.9 * width / max(len(x_texts), 1)
        below = (widest_x + 12) if self.vertical_x else 22
        bottom = int(below + (26 if xlabel else 8))
        self.area_origin = (left, top)
        self.area_size = (max(width, 10), max(self.image.height - top - bottom, 10))
        x0, y0 = self.area_origin
        w, h = self.area_size
        if title:
            tw = draw.textlength(title, font=font)
            draw.text((x0 + (w - tw) / 2, 10), title, fill=_INK, font=font)
        for t, text in zip(y_ticks, y_texts, strict=True):
            y = self.to_canvas(np.zeros(1), np.array([t]))[1][0]
            draw.line([(x0, y), (x0 + w, y)], fill=_GRID)
            draw.line([(x0 - 5, y), (x0, y)], fill=_INK)
            draw.text((x0 - 8 - draw.textlength(text, font=small), y - 8), text, fill=_INK, font=small)
        for t, text in zip(x_ticks, x_texts, strict=True):
            x = self.to_canvas(np.array([t]), np.zeros(1))[0][0]
            if x_labels is None:
                draw.line([(x, y0), (x, y0 + h)], fill=_GRID)
            draw.line([(x, y0 + h), (x, y0 + h + 5)], fill=_INK)
            if self.vertical_x:
                self._paste_rotated(text, small, x, y0 + h + 8, anchor="top")
            else:
                tw = draw.textlength(text, font=small)
                draw.text((x - tw / 2, y0 + h + 7), text, fill=_INK, font=small)
        if xlabel:
            xw = draw.textlength(xlabel, font=font)
            draw.text((x0 + (w - xw) / 2, self.image.height - 24), xlabel, fill=_INK, font=font)
        if ylabel:
            self._paste_rotated(ylabel, font, 6, y0 + h / 2, anchor="middle")

    def to_area(self, xs, ys):
        """Data -> pixel coordinates inside the plot area."""
        xs = np.asarray(xs, dtype=np.float64)
        ys = np.asarray(ys, dtype=np.float64)
        (x0, x1), (y0, y1) = self.xlim, self.ylim
        w, h = self.area_size
        with np.errstate(invalid="ignore", divide="ignore"):
            px = (xs - x0) / (x1 - x0) * (w - 1)
            py = (h - 1) - (ys - y0) / (y1 - y0) * (h - 1)
        return px, py

    def to_canvas(self, xs, ys):
        px, py = self.to_area(xs, ys)
        return px + self.area_origin[0], py + self.area_origin[1]

    def frame(self):
        x0, y0 = self.area_origin
        w, h = self.area_size
        ImageDraw.Draw(self.image).rectangle([x0, y0, x0 + w - 1, y0 + h - 1], outline=_INK)

    def legend(self, entries, where, xs, ys):
        draw = ImageDraw.Draw(self.image)
        pad, swatch, line_h = 8, 22, 19
        width = int(pad * 3 + swatch + max(draw.textlength(t, font=self.small) for t, _ in entries))
        height = pad * 2 + line_h * len(entries)
        x0, y0 = self.area_origin
        w, h = self.area_size
        corners = {"upper right": (x0 + w - width - 8, y0 + 8), "upper left": (x0 + 8, y0 + 8),
                   "lower right": (x0 + w - width - 8, y0 + h - height - 8),
                   "lower left": (x0 + 8, y0 + h - height - 8)}
        if where == "best":
            px, py = self.to_canvas(xs, ys)

            def covered(name):
                cx, cy = corners[name]
                inside = (px >= cx) & (px <= cx + width) & (py >= cy) & (py <= cy + height)
                return int(np.count_nonzero(inside))
            where = min(corners, key=covered)
        lx, ly = corners[where]
        draw.rectangle([lx, ly, lx + width, ly + height], fill="white", outline="#999999")
        for k, (text, color) in enumerate(entries):
            cy = ly + pad + k * line_h + line_h / 2
            draw.line([(lx + pad, cy), (lx + pad + swatch, cy)], fill=color, width=3)
            draw.text((lx + pad * 2 + swatch, cy - 8), text, fill=_INK, font=self.small)

    def _paste_rotated(self, text, font, x, y, anchor):
        """Text turned 90 degrees counter-clockwise: centred at x; its top (anchor "top") or
        middle (anchor "middle") at y."""
        probe = ImageDraw.Draw(self.image)
        w = int(math.ceil(probe.textlength(text, font=font))) + 2
        h = int(font.size * 1.3) if hasattr(font, "size") else 14
        label = Image.new("L", (w, h), 0)
        ImageDraw.Draw(label).text((1, 0), text, fill=255, font=font)
        label = label.rotate(90, expand=True)
        ink = Image.new("RGB", label.size, _INK)
        top = y if anchor == "top" else y - label.height / 2
        left = x - label.width / 2 if anchor == "top" else x
        self.image.paste(ink, (int(left), int(top)), label)

    def save(self, path):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.image.save(path, format="PNG")


def _series(s, i):
    label, xs, ys = s[:3]
    style = s[3] if len(s) > 3 else {}
    xs = np.asarray(xs, dtype=np.float64).ravel()
    ys = np.asarray(ys, dtype=np.float64).ravel()
    if xs.shape != ys.shape:
        raise ValueError(f"series {label!r}: {xs.size} x values but {ys.size} y values")
    return {"label": label, "x": xs, "y": ys, "color": style.get("color", PALETTE[i % len(PALETTE)]),
            "width": int(style.get("width", 2))}


def _data_range(values):
    finite = values[np.isfinite(values)]
    if not finite.size:
        return (0.0, 1.0)
    lo, hi = float(finite.min()), float(finite.max())
    if lo == hi:
        return (lo - 0.5, hi + 0.5)
    return (lo, hi)


def _nice_ticks(lo, hi, target=6):
    """Round tick positions (steps of 1, 2 or 5 times a power of ten) within [lo, hi]."""
    span = hi - lo
    if not (np.isfinite(span) and span > 0):
        return np.array([lo])
    raw = span / target
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = np.arange(first, hi + step * 1e-9, step)
    return np.round(ticks / step) * step


def _tick_texts(ticks):
    ticks = np.asarray(ticks, dtype=np.float64)
    step = float(np.min(np.diff(ticks))) if ticks.size > 1 else 1.0
    decimals = max(0, -math.floor(math.log10(step))) if step > 0 else 0
    if ticks.size and np.all(np.abs(ticks) < 1e5) and decimals < 6:
        return [f"{t:.{decimals}f}" for t in ticks]
    return [f"{t:.3g}" for t in ticks]


def _font(size):
    try:
        return ImageFont.load_default(size=size)  # scalable font, Pillow >= 10.1
    except TypeError:
        return ImageFont.load_default()
