"""Image decoding and the geometric transforms of training and testing (Pillow + NumPy).

Every image is decoded to 8-bit RGB in its display orientation: greyscale and palette
images are expanded, CMYK is converted, an alpha channel is composited over white, 16-bit
images are scaled to 8 bits, and the EXIF orientation tag is applied. Outputs are NCHW
float32 arrays with pixel values in [0, 255]; the mean is subtracted afterwards
(:func:`subtract_mean`), as in Caffe.

Crops are expressed as boxes in the decoded image, ``[x1, y1, x2, y2]`` 0-based and
end-exclusive in continuous pixel coordinates (docs/method.md section 5), and cut out with
one Pillow resize each (antialiased), so "resize the shorter side, then crop" never builds
the resized full image. The many patches of one image (:func:`crop_patches`,
:func:`read_patches`) get the same pixels from a Numba kernel that resamples all boxes at once.
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
    """Decode ``path`` as RGB in display orientation. Returns the image, the size (width,
    height) the full-resolution image has in display orientation, and the JPEG reduction
    ``scale`` (1, 2, 4 or 8) it was decoded at: decoded pixel ``i`` covers full-resolution
    pixels ``scale * i .. scale * (i + 1)``. A JPEG may be decoded at 1/2, 1/4 or 1/8 scale
    (much faster): at most ``max_reduction`` times smaller, and with both sides still >=
    ``draft_side``. (Pillow picks ``scale = min(w // want_w, h // want_h)`` for the size
    asked, ``ceil(side / reduction)``, so ``scale <= reduction`` always.)"""
    try:
        with Image.open(path) as f:
            raw_w, raw_h = f.size
            orientation = f.getexif().get(_EXIF_ORIENTATION, 1)
            width, height = (raw_h, raw_w) if orientation in _SWAPPING_ORIENTATIONS else (raw_w, raw_h)
            scale = _draft(f, draft_side, max_reduction)
            f.load()  # the pixels stay valid after the file closes
            image = to_rgb(ImageOps.exif_transpose(f) if orientation != 1 else f)
    except FileNotFoundError:
        raise InputError(f"{os.fspath(path)}: no such image file") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"{os.fspath(path)}: cannot read image ({type(e).__name__}: {e})") from None
    return image, (width, height), scale


def _draft(f, draft_side=None, max_reduction=None):
    """Ask an open JPEG to decode at reduced scale (see :func:`_open`); returns the scale."""
    raw_w, raw_h = f.size
    reduction = min(raw_w, raw_h) / draft_side if draft_side else (max_reduction or 1.0)
    if reduction < 2 or f.format != "JPEG":
        return 1
    f.draft("RGB", (int(np.ceil(raw_w / reduction)), int(np.ceil(raw_h / reduction))))
    return next((s for s in (8, 4, 2, 1) if f.size == (-(-raw_w // s), -(-raw_h // s))),
                raw_w / f.size[0])  # (Pillow's draft scales are 1/2, 1/4, 1/8)


def decoded_size(path, draft_side=None):
    """(width, height) of ``load_image(path, draft_side)`` from the header alone (no
    decoding); None if the header is unreadable."""
    try:
        with Image.open(path) as f:
            orientation = f.getexif().get(_EXIF_ORIENTATION, 1)
            _draft(f, draft_side)
            width, height = f.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    return (height, width) if orientation in _SWAPPING_ORIENTATIONS else (width, height)


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


def scan_images(paths, workers=4, decode=False) -> list[tuple[str, str]]:
    """(path, reason) of every file of ``paths`` whose image header cannot be read: a cheap
    check run before long work, so that all bad files are reported at once. With ``decode``
    every image is decoded too (a JPEG at 1/8 scale: about a millisecond, and it reads the
    whole file), so that a file truncated or damaged after its header is found before the
    run starts rather than half-way through it."""
    from concurrent.futures import ThreadPoolExecutor

    def problem(path):
        try:
            if decode:
                _open(path, max_reduction=8)
            else:
                image_size(path)
        except InputError as e:
            return str(path), str(e)
        return None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return [p for p in pool.map(problem, list(paths), chunksize=64) if p is not None]


def describe_bad(bad, remedy="fix or remove them, or pass --skip-bad to leave them out") -> str:
    """One line for a list of unreadable files (the first few named) and what to do."""
    shown = "; ".join(reason for _, reason in bad[:3])
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    return f"{len(bad)} unreadable image(s): {shown}{more}; {remedy}"


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


def _patch_boxes(image_size, boxes, full_size):
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    width, height = image_size
    if full_size is not None:
        fx, fy = width / full_size[0], height / full_size[1]
        boxes = boxes * np.array([fx, fy, fx, fy])
    sides = np.round(boxes[:, 2:] - boxes[:, :2], 6)
    if np.any(sides <= 0):
        bad = int(np.argmax(np.any(sides <= 0, axis=1)))
        # boxes come from the patch sampler or from checked annotations: an empty one is a bug
        raise ValueError(f"crop_patches: box {bad} {boxes[bad].tolist()} is empty")
    return boxes


def _pixels(image) -> np.ndarray:
    pixels = np.asarray(image)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"crop_patches: need an RGB image or (H, W, 3) uint8 pixels, got "
                         f"{getattr(image, 'mode', pixels.dtype)} of shape {pixels.shape}")
    return pixels


def crop_patches(image, boxes, size: int, full_size=None, dtype=np.float32, device=False, threads=1):
    """Square patches of ``image`` resized to ``size``: (M, 3, size, size) ``dtype``
    (float32 by default; uint8 holds the same values).

    ``image``: an RGB Pillow image or its (H, W, 3) uint8 pixels (on the GPU too: a CuPy
    array, with ``device=True``). ``boxes`` (M, 4) float,
    ``[x1, y1, x2, y2]`` 0-based end-exclusive, in the coordinates of an image of
    ``full_size`` (width, height), by default the image's own size (a JPEG decoded at
    reduced scale keeps the boxes of the full image). Parts outside the image are black.

    Every patch is exactly :func:`crop_resize` of its box (Pillow's antialiased bilinear
    resize of the box), bit for bit, computed for all boxes at once by the Numba kernel
    ``minicnn.kernels.cpu.crop_resize`` (boxes of one column share the horizontal pass;
    ``threads`` Python threads share the work: the kernel releases the GIL, and it is safe
    to call from several threads at once). ``device=True`` runs the numba.cuda kernel instead on
    the image uploaded to the GPU and returns a CuPy array (NumPy under the simulator).
    """
    on_gpu = type(image).__module__.startswith("cupy")  # pixels already uploaded (device=True)
    pixels = image if on_gpu else _pixels(image)
    boxes = _patch_boxes((pixels.shape[1], pixels.shape[0]), boxes, full_size)
    if device or on_gpu:
        from minicnn.kernels.cuda.crop_resize import crop_resize_boxes_device

        return crop_resize_boxes_device(pixels, boxes, int(size), dtype)
    from minicnn.kernels.cpu.crop_resize import crop_resize_boxes

    out = np.empty((len(boxes), 3, size, size), dtype=dtype)
    return crop_resize_boxes(pixels, boxes, int(size), out, threads=threads)


def read_patches(path, boxes, size: int, dtype=np.float32, threads=1) -> np.ndarray:
    """:func:`crop_patches` of the image file ``path`` (boxes in its full-resolution
    display coordinates). A JPEG is decoded at the smallest scale (1/2, 1/4, 1/8) at which
    the smallest box side still covers ``size`` decoded pixels, so that no patch is made from
    fewer pixels than it has; the boxes are then mapped exactly (divided by the scale)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    smallest = float(np.min(boxes[:, 2:] - boxes[:, :2])) if len(boxes) else 0.0
    image, _, scale = _open(path, max_reduction=smallest / size if smallest > 0 else None)
    return crop_patches(image, boxes / scale, size, dtype=dtype, threads=threads)
