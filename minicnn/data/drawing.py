"""Drawing the embedded default dataset's images: scenes of target objects and
object-centred source images, built from the same parts (:mod:`minicnn.data.synthetic`
writes them as a VOC tree and an image folder).

Every object is a composition of **parts**: a shape (disc, square, triangle, diamond,
ring, cross, star, hexagon, bar) filled with a texture (plain, stripes, dots, checker,
bullseye, grid) in two random colours. A class is a fixed arrangement of parts (a
"lollipop" is a striped disc on a plain stick); instances vary in size, rotation, aspect,
part placement, colours, texture period and phase. The 10 target classes and the 30 source
classes are different arrangements of the same shapes and textures, so what a network
learns on the source set (textures, part shapes, how parts attach) is what the target task
needs, while no target class is a source class: the relation of ImageNet to Pascal VOC.

Drawing is vectorised NumPy over each part's bounding window, with edges antialiased
from signed distances. Image ``n`` of a set is drawn from its own generator seeded by
``(seed, set, n)``, so an image does not depend on which others are drawn, nor where.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image

# --- parts and classes --------------------------------------------------------------------


class Part(NamedTuple):
    """A shape filled with a texture, centred at (x, y) with half-extents (w, h), in the
    object's frame (the object spans about [-1, 1] x [-1, 1], y down)."""

    shape: str
    texture: str
    x: float
    y: float
    w: float
    h: float


def P(shape, texture, x=0.0, y=0.0, w=1.0, h=None):
    return Part(shape, texture, x, y, w, w if h is None else h)


SHAPES = ("disc", "square", "triangle", "diamond", "ring", "cross", "star", "hexagon", "bar")
TEXTURES = ("plain", "stripes", "dots", "checker", "bullseye", "grid")

TARGET_CLASSES: dict[str, tuple[Part, ...]] = {
    "lollipop": (P("disc", "stripes", 0, -0.38, 0.6), P("bar", "plain", 0, 0.6, 0.09, 0.4)),
    "house": (P("square", "checker", 0, 0.35, 0.72, 0.6), P("triangle", "plain", 0, -0.6, 0.9, 0.42)),
    "target": (P("ring", "plain", 0, 0, 1.0), P("disc", "dots", 0, 0, 0.5)),
    "flower": (P("star", "dots", 0, 0, 1.0), P("disc", "plain", 0, 0, 0.3)),
    "robot": (P("square", "stripes", 0, -0.62, 0.38, 0.34), P("square", "grid", 0, 0.35, 0.62, 0.62)),
    "key": (P("ring", "checker", -0.52, 0, 0.46), P("bar", "plain", 0.45, 0, 0.55, 0.13)),
    "kite": (P("diamond", "stripes", 0, -0.2, 0.62, 0.8), P("bar", "plain", 0, 0.8, 0.07, 0.3)),
    "sign": (P("triangle", "stripes", 0, -0.35, 0.7, 0.6), P("bar", "plain", 0, 0.6, 0.09, 0.4)),
    "boat": (P("triangle", "dots", 0.05, -0.3, 0.55, 0.68), P("bar", "checker", 0, 0.58, 0.92, 0.22)),
    "snowman": (P("disc", "dots", 0, 0.38, 0.6), P("disc", "plain", 0, -0.58, 0.42)),
}

SOURCE_CLASSES: dict[str, tuple[Part, ...]] = {
    # single parts: every shape and every texture appears
    "striped_disc": (P("disc", "stripes"),),
    "dotted_square": (P("square", "dots", w=0.85),),
    "striped_triangle": (P("triangle", "stripes"),),
    "plain_ring": (P("ring", "plain"),),
    "grid_hexagon": (P("hexagon", "grid"),),
    "bullseye_square": (P("square", "bullseye", w=0.85),),
    "dotted_star": (P("star", "dots"),),
    "striped_cross": (P("cross", "stripes"),),
    "striped_diamond": (P("diamond", "stripes"),),
    "plain_star": (P("star", "plain"),),
    "striped_hexagon": (P("hexagon", "stripes"),),
    "checker_ring": (P("ring", "checker"),),
    "grid_disc": (P("disc", "grid"),),
    "bullseye_disc": (P("disc", "bullseye"),),
    "plain_cross": (P("cross", "plain"),),
    # arrangements of two or three parts
    "balloon": (P("disc", "checker", 0, -0.38, 0.6), P("bar", "plain", 0, 0.6, 0.05, 0.4)),
    "tower": (P("square", "stripes", 0, 0.3, 0.5, 0.7), P("triangle", "dots", 0, -0.7, 0.6, 0.3)),
    "eye": (P("ring", "dots", 0, 0, 1.0, 0.7), P("disc", "plain", 0, 0, 0.35)),
    "sun": (P("star", "plain", 0, 0, 1.0), P("disc", "stripes", 0, 0, 0.45)),
    "cart": (P("square", "checker", 0, -0.2, 0.9, 0.5), P("disc", "plain", -0.55, 0.6, 0.3),
             P("disc", "plain", 0.55, 0.6, 0.3)),
    "hammer": (P("bar", "plain", 0, 0.25, 0.1, 0.75), P("square", "grid", 0, -0.6, 0.6, 0.3)),
    "pin": (P("diamond", "dots", 0, -0.3, 0.5, 0.65), P("bar", "stripes", 0, 0.6, 0.12, 0.35)),
    "badge": (P("hexagon", "checker", 0, 0, 1.0), P("star", "plain", 0, 0, 0.5)),
    "lantern": (P("hexagon", "stripes", 0, 0.15, 0.6, 0.75), P("ring", "plain", 0, -0.78, 0.22)),
    "stack": (P("square", "dots", 0, 0.45, 0.7, 0.45), P("square", "stripes", 0, -0.45, 0.5, 0.4)),
    "rattle": (P("ring", "stripes", 0.45, -0.4, 0.5), P("bar", "plain", -0.35, 0.4, 0.55, 0.1)),
    "crown": (P("bar", "checker", 0, 0.45, 0.9, 0.3), P("triangle", "plain", -0.55, -0.15, 0.3, 0.35),
              P("triangle", "plain", 0.55, -0.15, 0.3, 0.35)),
    "shield": (P("diamond", "grid", 0, 0, 0.8, 1.0), P("cross", "plain", 0, 0, 0.45)),
    "mushroom": (P("disc", "dots", 0, -0.35, 0.95, 0.5), P("bar", "plain", 0, 0.45, 0.22, 0.45)),
    "arrow": (P("bar", "grid", -0.25, 0, 0.7, 0.14), P("triangle", "plain", 0.7, 0, 0.3, 0.35)),
}

# Appearance ranges (in object units: an object spans about 2)
TEXTURE_PERIOD = (0.45, 0.6)
COLOUR_CONTRAST = 0.3                 # least luminance difference of a part's two colours
ROTATION = 0.45                       # largest rotation of an object, radians
DISTRACTOR_OPACITY = (0.3, 0.6)
SOURCE_DISTRACTORS = (0, 3)           # [low, high) distractor parts per source image
SOURCE_DISTRACTOR_SIZE = (0.15, 0.35)  # fraction of the image side
SOURCE_OBJECT_SIZE = (0.65, 0.95)     # fraction of the image side
SCENE_DISTRACTORS = (3, 8)
SCENE_DISTRACTOR_SIZE = (0.1, 0.35)  # fraction of the shorter side
SCENE_OBJECT_SIZE = (0.2, 0.7)       # fraction of the shorter side


def target_classes() -> list[str]:
    """Class names of the generated VOC-format (target) set, in annotation order."""
    return list(TARGET_CLASSES)


def source_classes() -> list[str]:
    """Class names of the generated source set (sorted, as an image folder numbers them)."""
    return sorted(SOURCE_CLASSES)


# --- drawing ------------------------------------------------------------------------------


def _shape_distance(shape, u, v):
    """Signed distance (approximate, negative inside) of points (u, v) in a part's
    frame, where the part fills [-1, 1] x [-1, 1]."""
    au, av = np.abs(u), np.abs(v)
    if shape == "disc":
        return np.hypot(u, v) - 1.0
    if shape == "square":
        return np.maximum(au, av) - 1.0
    if shape == "bar":
        return np.maximum(au, av) - 1.0
    if shape == "diamond":
        return (au + av - 1.0) * 0.7071
    if shape == "ring":
        return np.abs(np.hypot(u, v) - 0.74) - 0.26
    if shape == "cross":
        return np.minimum(np.maximum(au - 1.0, av - 0.34), np.maximum(au - 0.34, av - 1.0))
    if shape == "triangle":  # apex at v = -1 (up), base at v = 1
        return np.maximum((2.0 * au - v - 1.0) * 0.4472, v - 1.0)
    if shape == "hexagon":
        return np.maximum(av * 0.866 + au * 0.5, au) - 0.92
    if shape == "star":
        angle = np.arctan2(v, u)
        radius = 0.62 + 0.38 * np.cos(5 * angle - np.pi / 2) ** 8 * np.sign(np.cos(5 * angle - np.pi / 2))
        return (np.hypot(u, v) - np.maximum(radius, 0.45)) * 0.7
    raise ValueError(f"unknown shape {shape!r}")


def _texture_value(texture, X, Y, period, angle, phase, pixels_per_unit):
    """Texture intensity in [0, 1] at object coordinates (X, Y); edges about one pixel
    wide (antialiased) whatever the scale."""
    sharp = period * pixels_per_unit / np.pi  # slope of sin at a zero crossing, in pixels
    c, s = np.cos(angle), np.sin(angle)
    a = (c * X + s * Y) / period + phase
    b = (-s * X + c * Y) / period + phase
    if texture == "plain":
        return np.zeros_like(X)
    if texture == "stripes":
        return np.clip(0.5 + sharp * np.sin(2 * np.pi * a) * 0.5, 0, 1)
    if texture == "checker":
        return np.clip(0.5 + 0.5 * sharp * np.sin(2 * np.pi * a) * np.sin(2 * np.pi * b), 0, 1)
    if texture == "dots":
        du, dv = a - np.round(a), b - np.round(b)
        return np.clip(0.5 - (np.hypot(du, dv) - 0.27) * period * pixels_per_unit, 0, 1)
    if texture == "grid":
        du, dv = np.abs(a - np.round(a)), np.abs(b - np.round(b))
        return np.clip(0.5 - (np.minimum(du, dv) - 0.12) * period * pixels_per_unit, 0, 1)
    if texture == "bullseye":
        r = np.hypot(X, Y) / period + phase
        return np.clip(0.5 + sharp * np.sin(2 * np.pi * r) * 0.5, 0, 1)
    raise ValueError(f"unknown texture {texture!r}")


def _random_colour_pair(rng):
    """Two colours (RGB in [0, 1]) whose luminances differ by at least 0.3, so that every
    texture is visible whatever the hue."""
    while True:
        pair = rng.random((2, 3))
        luma = pair @ np.array([0.299, 0.587, 0.114])
        if abs(luma[0] - luma[1]) >= COLOUR_CONTRAST:
            return pair


class Placement(NamedTuple):
    """Where an object or part sits in the image: centre (px), pixels per object unit,
    rotation (radians), aspect factors."""

    cx: float
    cy: float
    scale: float
    angle: float
    ax: float
    ay: float


def _part_corners(part, placement):
    """Pixel corners of the part's bounding square after rotation: (4, 2)."""
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    X = (part.x + corners[:, 0] * part.w) * placement.ax
    Y = (part.y + corners[:, 1] * part.h) * placement.ay
    c, s = np.cos(placement.angle), np.sin(placement.angle)
    return np.stack([placement.cx + placement.scale * (c * X - s * Y),
                     placement.cy + placement.scale * (s * X + c * Y)], axis=1)


def _part_alpha(part, placement, x0, y0, x1, y1, texture_params):
    """Coverage (alpha) and texture value of ``part`` over pixels [x0, x1) x [y0, y1)."""
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    dx, dy = xs + 0.5 - placement.cx, ys + 0.5 - placement.cy
    c, s = np.cos(placement.angle), np.sin(placement.angle)
    X = (c * dx + s * dy) / (placement.scale * placement.ax)
    Y = (-s * dx + c * dy) / (placement.scale * placement.ay)
    u, v = (X - part.x) / part.w, (Y - part.y) / part.h
    part_pixels = placement.scale * min(part.w * abs(placement.ax), part.h * abs(placement.ay))
    alpha = np.clip(0.5 - _shape_distance(part.shape, u, v) * part_pixels, 0.0, 1.0)
    period, angle, phase = texture_params
    t = _texture_value(part.texture, X, Y, period, angle, phase, placement.scale)
    return alpha, t


def _window(corners):
    """Integer pixel window [x0, x1) x [y0, y1) around ``corners``, a pixel of margin."""
    x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 1
    return int(x0), int(y0), int(x1), int(y1)


def _draw_object(canvas, owner, owner_id, parts, placement, rng):
    """Paint ``parts`` at ``placement`` onto ``canvas`` (H, W, 3) float; pixels it covers
    (alpha > 0.5) become ``owner_id`` in ``owner``. Returns the pixel count the object
    would cover on an unbounded canvas and the count inside the image."""
    height, width = canvas.shape[:2]
    windows = [_window(_part_corners(part, placement)) for part in parts]
    # the whole object, also outside the image, to tell how much the border cuts
    ox0, oy0 = min(w[0] for w in windows), min(w[1] for w in windows)
    ox1, oy1 = max(w[2] for w in windows), max(w[3] for w in windows)
    covered = np.zeros((oy1 - oy0, ox1 - ox0), dtype=bool)
    for part, (fx0, fy0, fx1, fy1) in zip(parts, windows, strict=True):
        colours = _random_colour_pair(rng)
        texture_params = (rng.uniform(*TEXTURE_PERIOD), rng.uniform(0, np.pi), rng.random())
        x0, y0, x1, y1 = max(fx0, 0), max(fy0, 0), min(fx1, width), min(fy1, height)
        if owner is not None:
            alpha_full, _ = _part_alpha(part, placement, fx0, fy0, fx1, fy1, texture_params)
            covered[fy0 - oy0:fy1 - oy0, fx0 - ox0:fx1 - ox0] |= alpha_full > 0.5
        if x0 >= x1 or y0 >= y1:
            continue
        alpha, t = _part_alpha(part, placement, x0, y0, x1, y1, texture_params)
        colour = colours[0] + t[..., None] * (colours[1] - colours[0])
        region = canvas[y0:y1, x0:x1]
        region += alpha[..., None] * (colour - region)
        if owner is not None:
            owner[y0:y1, x0:x1][alpha > 0.5] = owner_id
    inside = covered[max(0, -oy0):max(0, height - oy0), max(0, -ox0):max(0, width - ox0)]
    return int(covered.sum()), int(inside.sum())


def _clutter(rng, width, height, distractors, size_range):
    """Background: smooth colour noise, then ``distractors`` random single parts of side
    ``size_range`` (fraction of the shorter side), at lower contrast than objects."""
    coarse = (rng.random((3, 4, 3)) * 255).astype(np.uint8)
    base = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
    canvas = np.asarray(base, dtype=np.float64) / 255.0
    canvas = 0.25 + 0.5 * canvas
    shorter = min(width, height)
    for _ in range(distractors):
        part = Part(SHAPES[rng.integers(len(SHAPES))], TEXTURES[rng.integers(len(TEXTURES))],
                    0.0, 0.0, 1.0, 1.0 if rng.random() < 0.7 else rng.uniform(0.15, 0.5))
        side = rng.uniform(*size_range) * shorter
        placement = Placement(rng.uniform(0, width), rng.uniform(0, height), side / 2,
                              rng.uniform(-np.pi, np.pi), 1.0, 1.0)
        layer = canvas.copy()
        _draw_object(layer, None, 0, (part,), placement, rng)
        # partly transparent: clutter, not objects
        canvas += rng.uniform(*DISTRACTOR_OPACITY) * (layer - canvas)
    return canvas


def _object_placement(rng, cx, cy, side):
    """An instance's random pose: ``side`` pixels across, small rotation (classes like
    "house" have an up), aspect within 20%, mirrored half the time."""
    aspect = np.exp(rng.uniform(-0.2, 0.2))
    mirror = -1.0 if rng.random() < 0.5 else 1.0
    return Placement(cx, cy, side / 2, rng.uniform(-ROTATION, ROTATION), mirror * np.sqrt(aspect),
                     1 / np.sqrt(aspect))


def _jitter_parts(parts, rng):
    """Move and resize each part a little (within-class variation)."""
    return tuple(p._replace(x=p.x + rng.normal(0, 0.05), y=p.y + rng.normal(0, 0.05),
                            w=p.w * np.exp(rng.normal(0, 0.08)), h=p.h * np.exp(rng.normal(0, 0.08)))
                 for p in parts)


def _to_uint8(canvas, rng):
    noisy = canvas + rng.normal(0, 0.02, canvas.shape)
    return (np.clip(noisy, 0, 1) * 255 + 0.5).astype(np.uint8)


# --- one image of each kind ---------------------------------------------------------------

# distinct random streams: source images, scenes, the train/val/test split (minicnn.data.synthetic)
SOURCE_STREAM, SCENE_STREAM, SPLIT_STREAM = 1, 2, 3


def draw_source_image(seed, class_name, index, size=32):
    """Object-centred image ``index`` of source class ``class_name``: (size, size, 3) uint8."""
    class_index = source_classes().index(class_name)
    rng = np.random.default_rng([seed, SOURCE_STREAM, class_index, index])
    canvas = _clutter(rng, size, size, rng.integers(*SOURCE_DISTRACTORS), SOURCE_DISTRACTOR_SIZE)
    side = rng.uniform(*SOURCE_OBJECT_SIZE) * size
    cx, cy = size / 2 + rng.normal(0, 0.06 * size, 2)
    _draw_object(canvas, None, 0, _jitter_parts(SOURCE_CLASSES[class_name], rng),
                 _object_placement(rng, cx, cy, side), rng)
    return _to_uint8(canvas, rng)


class SceneObject(NamedTuple):
    name: str
    box: tuple[int, int, int, int]  # VOC: xmin, ymin, xmax, ymax, 1-based inclusive
    truncated: int
    difficult: int


def draw_scene(seed, index, width=160, height=120, max_objects=4):
    """Scene ``index``: (height, width, 3) uint8 pixels and its objects."""
    rng = np.random.default_rng([seed, SCENE_STREAM, index])
    canvas = _clutter(rng, width, height, rng.integers(*SCENE_DISTRACTORS), SCENE_DISTRACTOR_SIZE)
    owner = np.zeros((height, width), dtype=np.int32)
    shorter = min(width, height)
    names = list(TARGET_CLASSES)
    placed = []  # (name, box (x0, y0, x1, y1) float, areas)
    for _ in range(rng.integers(1, max_objects + 1)):
        for _attempt in range(20):
            side = rng.uniform(*SCENE_OBJECT_SIZE) * shorter
            # up to about 40% of the object may fall outside the image
            cx = rng.uniform(-0.1 * side, width + 0.1 * side)
            cy = rng.uniform(-0.1 * side, height + 0.1 * side)
            box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
            if all(_covered_fraction(other, box) < 0.5 and _covered_fraction(box, other) < 0.7
                   for _, other, _ in placed):
                break
        else:
            continue
        name = names[rng.integers(len(names))]
        owner_id = len(placed) + 1
        areas = _draw_object(canvas, owner, owner_id, _jitter_parts(TARGET_CLASSES[name], rng),
                             _object_placement(rng, cx, cy, side), rng)
        placed.append((name, box, areas))
    objects = []
    for owner_id, (name, _, (full_area, inside_area)) in enumerate(placed, 1):
        ys, xs = np.nonzero(owner == owner_id)
        if len(xs) < 16:  # hidden or cut away: nothing to annotate
            continue
        truncated = int(inside_area < 0.95 * full_area)
        difficult = int(len(xs) < 0.4 * full_area or np.sqrt(len(xs)) < 0.12 * shorter)
        box = (int(xs.min()) + 1, int(ys.min()) + 1, int(xs.max()) + 1, int(ys.max()) + 1)
        objects.append(SceneObject(name, box, truncated, difficult))
    return _to_uint8(canvas, rng), objects


def _covered_fraction(box, by):
    """Fraction of ``box``'s area inside ``by``."""
    w = max(0.0, min(box[2], by[2]) - max(box[0], by[0]))
    h = max(0.0, min(box[3], by[3]) - max(box[1], by[1]))
    return w * h / max((box[2] - box[0]) * (box[3] - box[1]), 1e-9)
