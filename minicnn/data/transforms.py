"""Image decoding and the geometric transforms of training and testing (Pillow + NumPy).

Every image is decoded to 8-bit RGB in its display orientation: greyscale and palette
images are expanded, CMYK is converted, an alpha channel is composited over white, 16-bit
images are scaled to 8 bits, and the EXIF orientation tag is applied. Outputs are NCHW
float32 arrays with pixel values in [0, 255]; the mean is subtracted afterwards
(:func:`subtract_mean`), as in Caffe.

Crops are expressed as boxes in the decoded image, ``[x1, y1, x2, y2]`` 0-based and
end-exclusive in continuous pixel coordinates (docs/method.md section 5), and cut out with
one Pillow resize each (antialiased), so "resize the shorter side, then crop" never builds
the resized full image.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps

from minicnn.errors import InputError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")

# EXIF orientations 5-8 turn the image by 90 degrees: width and height swap.
_EXIF_ORIENTATION = 0x0112
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB: alpha (also a palette's transparency) is composited over
    white, CMYK/YCbCr/greyscale/palette are converted, 16-bit and float greyscale are
    scaled to 8 bits."""
    if image.mode == "RGB":
        return image
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image, dtype=np.int64)
        # 16-bit files store 0..65535; mode I holds the same values widened to 32 bits
        image = Image.fromarray((np.clip(values, 0, 65535) // 257).astype(np.uint8), "L")
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8), "L")
    if image.mode in ("LA", "La", "PA", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, image).convert("RGB")
    return image.convert("RGB")


def _open(path, draft_side=None, max_reduction=None):
    """Decode ``path`` as RGB in display orientation. Returns the image and the size
    (width, height) the full-resolution image has in display orientation. A JPEG may be
    decoded at 1/2, 1/4 or 1/8 scale (much faster): at most ``max_reduction`` times
    smaller, and with both sides still >= ``draft_side``."""
    try:
        with Image.open(path) as f:
            raw_w, raw_h = f.size
            orientation = f.getexif().get(_EXIF_ORIENTATION, 1)
            width, height = (raw_h, raw_w) if orientation in _SWAPPING_ORIENTATIONS else (raw_w, raw_h)
            reduction = max_reduction or 1.0
            if draft_side:
                reduction = min(raw_w, raw_h) / draft_side
            if reduction >= 2 and f.format == "JPEG":
                f.draft("RGB", (int(np.ceil(raw_w / reduction)), int(np.ceil(raw_h / reduction))))
            f.load()  # the pixels stay valid after the file closes
            image = to_rgb(ImageOps.exif_transpose(f) if orientation != 1 else f)
    except FileNotFoundError:
        raise InputError(f"{os.fspath(path)}: no such image file") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"{os.fspath(path)}: cannot read image ({type(e).__name__}: {e})") from None
    return image, (width, height)


def load_image(path, draft_side=None) -> Image.Image:
    """Decode an image file to RGB in display orientation (see the module docstring).
    ``draft_side``: a JPEG may be decoded at reduced scale as long as both sides stay at
    least this long (much faster when a small network input is cut from a large photo).
    An unreadable, truncated or corrupt file raises :class:`InputError` naming it."""
    return _open(path, draft_side)[0]


def image_size(path) -> tuple[int, int]:
    """(width, height) in display orientation, from the header only."""
    try:
        with Image.open(path) as f:
            width, height = f.size
            if f.getexif().get(_EXIF_ORIENTATION, 1) in _SWAPPING_ORIENTATIONS:
                width, height = height, width
            return width, height
    except FileNotFoundError:
        raise InputError(f"{os.fspath(path)}: no such image file") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"{os.fspath(path)}: cannot read image ({type(e).__name__}: {e})") from None


def to_chw(pixels: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) uint8 pixels -> (..., 3, H, W) float32."""
    return np.moveaxis(pixels, -1, -3).astype(np.float32)


def subtract_mean(batch: np.ndarray, mean) -> np.ndarray:
    """Subtract a per-channel mean (3,) or a mean image (3, H, W) from an NCHW batch, in
    place; returns the batch."""
    mean = np.asarray(mean, dtype=batch.dtype)
    if mean.shape == (3,):
        mean = mean[:, None, None]
    if mean.shape != (3, 1, 1) and mean.shape != batch.shape[1:]:
        raise InputError(f"mean of shape {mean.shape} does not fit batches of shape {batch.shape[1:]}; "
                         f"give a per-channel mean (3,) or a mean image {batch.shape[1:]}")
    batch -= mean
    return batch


def crop_resize(image: Image.Image, box, size: int) -> np.ndarray:
    """The region ``box`` = (x1, y1, x2, y2) of ``image`` resized to ``size`` x ``size``:
    (size, size, 3) uint8. Parts of the box outside the image are black. An integer box
    of exactly ``size`` pixels is a plain crop (no resampling)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    width, height = image.size
    if x2 - x1 == size and y2 - y1 == size and x1.is_integer() and y1.is_integer():
        # Pillow fills the outside of a plain crop with zeros, as required
        return np.asarray(image.crop((int(x1), int(y1), int(x2), int(y2))))
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        # Pillow's box must lie inside the image: pad it with black first
        left, top = int(np.ceil(max(0.0, -x1))), int(np.ceil(max(0.0, -y1)))
        right, bottom = int(np.ceil(max(0.0, x2 - width))), int(np.ceil(max(0.0, y2 - height)))
        padded = Image.new("RGB", (width + left + right, height + top + bottom))
        padded.paste(image, (left, top))
        image, x1, y1, x2, y2 = padded, x1 + left, y1 + top, x2 + left, y2 + top
    return np.asarray(image.resize((size, size), Image.BILINEAR, box=(x1, y1, x2, y2)))


class ImageTransform:
    """Resize the shorter side to ``resize`` (default: ``size``), cut a ``size`` x
    ``size`` crop (random position if ``random_crop``, else centred), mirror it with
    probability 0.5 if ``flip``. Krizhevsky's training transform is
    ``ImageTransform(224, resize=256, random_crop=True, flip=True)``, its test transform
    ``ImageTransform(224, resize=256)``.

    The crop is computed in the coordinates of the decoded image and cut with one
    resampling step (:func:`crop_resize`); no resized full image is built.
    """

    def __init__(self, size: int, resize: int | None = None, random_crop=False, flip=False):
        self.size = int(size)
        self.resize = int(resize) if resize is not None else self.size
        if self.size < 1 or self.resize < self.size:
            raise InputError(f"ImageTransform: need 1 <= size <= resize, got size {size}, resize {resize}")
        self.random_crop, self.flip = bool(random_crop), bool(flip)

    def __repr__(self):
        return (f"ImageTransform(size={self.size}, resize={self.resize}, random_crop={self.random_crop}, "
                f"flip={self.flip})")

    @property
    def is_random(self) -> bool:
        return self.random_crop or self.flip

    def crop_box(self, width: int, height: int, rng=None):
        """The box in an image of ``width`` x ``height`` that becomes the output, and
        whether the output is mirrored. Offsets are whole pixels of the resized image."""
        scale = self.resize / min(width, height)
        resized_w = max(self.resize, round(width * scale))
        resized_h = max(self.resize, round(height * scale))
        if self.random_crop:
            ox = int(rng.integers(0, resized_w - self.size + 1))
            oy = int(rng.integers(0, resized_h - self.size + 1))
        else:
            ox, oy = (resized_w - self.size) // 2, (resized_h - self.size) // 2
        sx, sy = width / resized_w, height / resized_h
        box = (ox * sx, oy * sy, (ox + self.size) * sx, (oy + self.size) * sy)
        mirrored = bool(self.flip and rng.random() < 0.5)
        return box, mirrored

    def __call__(self, image: Image.Image, rng=None) -> np.ndarray:
        """(size, size, 3) uint8 pixels of the transformed ``image``; ``rng`` (a NumPy
        Generator) draws the crop position and the flip."""
        if self.is_random and rng is None:
            raise ValueError("ImageTransform: a random crop or flip needs rng")
        box, mirrored = self.crop_box(*image.size, rng)
        pixels = crop_resize(image, box, self.size)
        return pixels[:, ::-1] if mirrored else pixels


def crop_patches(image: Image.Image, boxes, size: int, full_size=None) -> np.ndarray:
    """Square patches of ``image`` resized to ``size``: (M, 3, size, size) float32.

    ``boxes`` (M, 4) float, ``[x1, y1, x2, y2]`` 0-based end-exclusive, in the
    coordinates of an image of ``full_size`` (width, height), by default ``image.size``
    (a JPEG decoded at reduced scale keeps the boxes of the full image). Parts outside the
    image are black.

    Patches of one size (a sampler's scale) are cut from one resized copy of the image,
    their corners rounded to its nearest pixel (at most half an output pixel off); a size
    with fewer than ``_SHARED_RESIZE_MIN`` patches is resampled box by box, exactly.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    width, height = image.size
    fx, fy = (1.0, 1.0) if full_size is None else (width / full_size[0], height / full_size[1])
    boxes = boxes * np.array([fx, fy, fx, fy])
    out = np.empty((len(boxes), 3, size, size), dtype=np.float32)
    if len(boxes) == 0:
        return out
    sides = np.round(boxes[:, 2:] - boxes[:, :2], 6)
    if np.any(sides <= 0):
        bad = int(np.argmax(np.any(sides <= 0, axis=1)))
        # boxes come from the patch sampler or from checked annotations: an empty one is a bug
        raise ValueError(f"crop_patches: box {bad} {boxes[bad].tolist()} is empty")
    keys, group_of = np.unique(sides, axis=0, return_inverse=True)
    group_of = group_of.reshape(-1)
    for g, (box_w, box_h) in enumerate(keys):
        members = np.flatnonzero(group_of == g)
        if len(members) < _SHARED_RESIZE_MIN:
            for i in members:
                out[i] = to_chw(crop_resize(image, boxes[i], size))
            continue
        out[members] = _patches_of_one_size(image, boxes[members], box_w, box_h, size)
    return out


_SHARED_RESIZE_MIN = 4


def _patches_of_one_size(image, boxes, box_w, box_h, size):
    """Boxes of one size ``box_w`` x ``box_h``: resize the image once so they become
    ``size`` pixels, then gather the crops as views of it."""
    width, height = image.size
    resized_w = max(1, round(width * size / box_w))
    resized_h = max(1, round(height * size / box_h))
    resized = np.asarray(image.resize((resized_w, resized_h), Image.BILINEAR, reducing_gap=3.0))
    sx, sy = resized_w / width, resized_h / height
    ox = np.rint(boxes[:, 0] * sx).astype(np.int64)
    oy = np.rint(boxes[:, 1] * sy).astype(np.int64)
    # a box inside the image stays inside the resized copy despite rounding
    inside_x = (boxes[:, 0] >= 0) & (boxes[:, 2] <= width)
    inside_y = (boxes[:, 1] >= 0) & (boxes[:, 3] <= height)
    ox = np.where(inside_x, np.clip(ox, 0, max(0, resized_w - size)), ox)
    oy = np.where(inside_y, np.clip(oy, 0, max(0, resized_h - size)), oy)
    left, top = max(0, -int(ox.min())), max(0, -int(oy.min()))
    right = max(0, int(ox.max()) + size - resized_w)
    bottom = max(0, int(oy.max()) + size - resized_h)
    if left or top or right or bottom:
        resized = np.pad(resized, ((top, bottom), (left, right), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(resized, (size, size), axis=(0, 1))
    return windows[oy + top, ox + left].astype(np.float32)  # (n, 3, size, size)


def read_patches(path, boxes, size: int) -> np.ndarray:
    """:func:`crop_patches` of the image file ``path`` (boxes in its full-resolution
    display coordinates). A JPEG is decoded at the smallest scale at which the smallest
    box still covers ``size`` pixels."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    smallest = float(np.min(boxes[:, 2:] - boxes[:, :2])) if len(boxes) else 0.0
    image, full_size = _open(path, max_reduction=smallest / size if smallest > 0 else None)
    return crop_patches(image, boxes, size, full_size)
