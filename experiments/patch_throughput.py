"""Patch extraction throughput (patches/s, per core) and pixel error, side by side in one run.

For every image: decode the JPEG, cut the default sampler's patches
(``minicnn.transfer.patches.sample_patches``: 496 on a 500 x 375 image) resized to
``--size`` (227) as (M, 3, S, S) arrays, by each method:

- ``pillow-per-box``: one Pillow resize per box (``crop_resize``, what ``crop_patches``
  would be done box by box), then float32 NCHW;
- ``shared-resize``: the code before issue 18 (frozen below): one resized copy of the image
  per scale, patches gathered from it with their corners rounded to its pixels;
- ``kernel``: ``read_patches`` today (the Numba kernel, float32 out), and ``kernel-uint8``
  (the same pixels as uint8: what it costs to write float32).

Images are processed by ``--threads`` Python threads (one image each; every method
releases the GIL in its pixel work); with ``--kernel-threads`` the kernel instead splits
each image over that many threads. "per core" = patches per CPU-second of the process (all
its threads), which a load from other jobs on the machine does not change. The mean absolute
difference to the exact resize (Pillow's antialiased bilinear resize of exactly the box,
``crop_resize``, from the fully decoded image) is measured on ``--check`` images.

Without ``--images`` it writes 500 x 375 JPEGs (quality 90) to a temporary folder: random
crops of a real photo (matplotlib's sample ``grace_hopper.jpg``) when matplotlib is there,
else generated photo-like ones (smooth gradients, shapes, texture, noise).

    python experiments/patch_throughput.py --threads 1
    python experiments/patch_throughput.py --threads 2 --images VOCdevkit/VOC2007/JPEGImages --count 40
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from minicnn.data.transforms import _open, crop_resize, load_image, read_patches, to_chw
from minicnn.transfer.patches import sample_patches


# --- the code before issue 18, frozen for the comparison --------------------------------------
def shared_resize_patches(image, boxes, size, full_size=None):
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    width, height = image.size
    fx, fy = (1.0, 1.0) if full_size is None else (width / full_size[0], height / full_size[1])
    boxes = boxes * np.array([fx, fy, fx, fy])
    out = np.empty((len(boxes), 3, size, size), dtype=np.float32)
    sides = np.round(boxes[:, 2:] - boxes[:, :2], 6)
    keys, group_of = np.unique(sides, axis=0, return_inverse=True)
    group_of = group_of.reshape(-1)
    for g, (box_w, box_h) in enumerate(keys):
        members = np.flatnonzero(group_of == g)
        if len(members) < 4:
            for i in members:
                out[i] = to_chw(crop_resize(image, boxes[i], size))
            continue
        out[members] = _patches_of_one_size(image, boxes[members], box_w, box_h, size)
    return out


def _patches_of_one_size(image, boxes, box_w, box_h, size):
    width, height = image.size
    resized_w = max(1, round(width * size / box_w))
    resized_h = max(1, round(height * size / box_h))
    resized = np.asarray(image.resize((resized_w, resized_h), Image.BILINEAR, reducing_gap=3.0))
    sx, sy = resized_w / width, resized_h / height
    ox = np.rint(boxes[:, 0] * sx).astype(np.int64)
    oy = np.rint(boxes[:, 1] * sy).astype(np.int64)
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
    return windows[oy + top, ox + left].astype(np.float32)


def _decoded(path, boxes, size):
    """The image as read_patches decodes it (the same draft rule), boxes in its pixels."""
    smallest = float(np.min(boxes[:, 2:] - boxes[:, :2]))
    image, _, scale = _open(path, max_reduction=smallest / size)
    return image, boxes / scale


# --- the methods: path, boxes, size -> (M, 3, S, S) --------------------------------------------
def pillow_per_box(path, boxes, size, kernel_threads=1):
    image, boxes = _decoded(path, boxes, size)
    out = np.empty((len(boxes), 3, size, size), np.float32)
    for i, box in enumerate(boxes):
        out[i] = to_chw(crop_resize(image, box, size))
    return out


def shared_resize(path, boxes, size, kernel_threads=1):
    image, boxes = _decoded(path, boxes, size)
    return shared_resize_patches(image, boxes, size)


def kernel(path, boxes, size, kernel_threads=1):
    return read_patches(path, boxes, size, threads=kernel_threads)


def kernel_uint8(path, boxes, size, kernel_threads=1):
    return read_patches(path, boxes, size, dtype=np.uint8, threads=kernel_threads)


METHODS = {"pillow-per-box": pillow_per_box, "shared-resize": shared_resize, "kernel": kernel,
           "kernel-uint8": kernel_uint8}


# --- images -------------------------------------------------------------------------------------
def photo_like(rng, width=500, height=375):
    """Smooth colour gradients, a few blurred shapes, fine texture and sensor-like noise."""
    coarse = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(4, 10))):
        x, y = rng.integers(0, width), rng.integers(0, height)
        w, h = rng.integers(20, width // 2), rng.integers(20, height // 2)
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([int(x), int(y), int(x + w), int(y + h)], fill=fill)
    image = image.filter(ImageFilter.GaussianBlur(1.2))
    pixels = np.asarray(image).astype(np.float32)
    texture = Image.fromarray(rng.integers(0, 256, (height // 4, width // 4), dtype=np.uint8)).resize(
        (width, height), Image.BILINEAR)
    pixels += (np.asarray(texture, np.float32)[..., None] - 128) * 0.15
    pixels += rng.normal(0, 6, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def photo_jpegs(folder, count, seed=0, width=500, height=375):
    """``count`` photo-like ``width`` x ``height`` JPEGs (quality 90) in ``folder``: random
    crops of a real photo (matplotlib's sample ``grace_hopper.jpg``, enlarged 1.3x or more, mirrored
    half the time, colour-shifted) when matplotlib is installed, else :func:`photo_like`.
    Returns the paths and what they are."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    photo = None
    try:
        import matplotlib

        sample = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
        if os.path.exists(sample):
            with Image.open(sample) as f:
                photo = f.convert("RGB")
            grow = max(1.3, 1.1 * width / photo.width, 1.1 * height / photo.height)
            photo = photo.resize((int(photo.width * grow), int(photo.height * grow)), Image.BICUBIC)
    except ImportError:
        pass
    paths = []
    for i in range(count):
        if photo is not None:
            x, y = int(rng.integers(0, photo.width - width)), int(rng.integers(0, photo.height - height))
            image = photo.crop((x, y, x + width, y + height))
            if rng.random() < 0.5:
                image = image.transpose(Image.FLIP_LEFT_RIGHT)
            shifted = np.asarray(image, np.int16) + rng.integers(-30, 31, 3)
            image = Image.fromarray(np.clip(shifted, 0, 255).astype(np.uint8))
        else:
            image = photo_like(rng, width, height)
        path = os.path.join(folder, f"{i:05d}.jpg")
        image.save(path, quality=90)
        paths.append(path)
    what = ("random crops of matplotlib's photo grace_hopper.jpg" if photo is not None
            else "generated photo-like images")
    return paths, f"{what}, {width}x{height} JPEG quality 90"


# --- measuring ----------------------------------------------------------------------------------
def rates(methods, jobs, size, threads, kernel_threads, repeats):
    """Best patches/s (wall clock) and patches per CPU-second of this process (all its
    threads: per core) of each method over ``repeats`` passes over ``jobs`` ((path, boxes)
    pairs). The methods take turns pass by pass, so that a load from elsewhere on the machine
    falls on all of them alike; CPU time does not count what other jobs take."""
    best = dict.fromkeys(methods, 0.0)
    per_cpu = dict.fromkeys(methods, 0.0)
    patches = sum(len(b) for _, b in jobs)
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for name in methods:
            METHODS[name](*jobs[0], size, kernel_threads)  # warm-up (Numba's cache, Pillow's tables)
        for _ in range(repeats):
            for name in methods:
                method = METHODS[name]
                start, cpu_start = time.perf_counter(), time.process_time()
                if threads <= 1:
                    for path, boxes in jobs:
                        method(path, boxes, size, kernel_threads)
                else:
                    list(pool.map(lambda job, m=method: m(job[0], job[1], size, kernel_threads).shape, jobs))
                best[name] = max(best[name], patches / (time.perf_counter() - start))
                per_cpu[name] = max(per_cpu[name], patches / max(time.process_time() - cpu_start, 1e-9))
    return best, per_cpu


def errors(method, jobs, size):
    """Mean and max |method - exact resize of the full decode| over the patches of ``jobs``."""
    total, count, worst = 0.0, 0, 0
    for path, boxes in jobs:
        image = load_image(path)
        got = method(path, boxes, size).astype(np.int16)
        for patch, box in zip(got, boxes, strict=True):
            exact = crop_resize(image, box, size).transpose(2, 0, 1).astype(np.int16)
            diff = np.abs(patch - exact)
            total += float(diff.sum())
            count += diff.size
            worst = max(worst, int(diff.max()))
    return total / count, worst


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", help="folder of JPEGs (default: generate photo-like 500x375 ones)")
    parser.add_argument("--count", type=int, default=12, help="images to time (default %(default)s)")
    parser.add_argument("--size", type=int, default=227, help="patch side (default %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="images processed at once (default 1)")
    parser.add_argument("--kernel-threads", type=int, default=1,
                        help="threads the kernel splits one image over (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="passes per method; the best counts")
    parser.add_argument("--check", type=int, default=2, help="images on which the pixel error is measured")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    import numba

    numba.set_num_threads(max(1, min(numba.config.NUMBA_NUM_THREADS, args.kernel_threads)))
    with tempfile.TemporaryDirectory() as tmp:
        if args.images:
            paths = sorted(p for ext in ("jpg", "jpeg", "JPG", "JPEG")
                           for p in glob.glob(os.path.join(args.images, f"*.{ext}")))[:args.count]
            if not paths:
                sys.exit(f"patch_throughput: no JPEGs in {args.images}")
            source = args.images
        else:
            paths, source = photo_jpegs(tmp, args.count)
        jobs = []
        for path in paths:
            width, height = Image.open(path).size
            jobs.append((path, sample_patches(width, height)))
        patches = sum(len(b) for _, b in jobs)
        print(f"{len(jobs)} images ({source}), {patches} patches ({patches / len(jobs):.0f} per image) "
              f"of {args.size} px; threads {args.threads}, kernel threads {args.kernel_threads}; "
              f"cpu count {os.cpu_count()}")
        results = {}
        speed, per_cpu = rates(args.methods, jobs, args.size, args.threads, args.kernel_threads, args.repeats)
        for name in args.methods:
            mad, worst = errors(METHODS[name], jobs[:args.check], args.size)
            results[name] = {"patches_per_s": speed[name], "per_core": per_cpu[name], "mean_abs_diff": mad,
                             "max_abs_diff": worst}
        base = results.get("pillow-per-box", {}).get("per_core")
        print("per core = patches per CPU-second of the process (all threads); x pillow compares those")
        print(f"{'method':16s} {'patches/s':>10s} {'per core':>9s} {'x pillow':>9s} {'mean |d|':>9s} "
              f"{'max |d|':>8s}")
        for name, r in results.items():
            ratio = f"{r['per_core'] / base:9.2f}" if base else f"{'':9s}"
            print(f"{name:16s} {r['patches_per_s']:10.0f} {r['per_core']:9.0f} {ratio} "
                  f"{r['mean_abs_diff']:9.3f} {r['max_abs_diff']:8d}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"source": source, "images": len(jobs), "patches": patches, "size": args.size,
                           "threads": args.threads, "kernel_threads": args.kernel_threads,
                           "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
