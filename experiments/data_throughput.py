"""Decode + augment throughput of the image loader (images/s), by number of worker threads.

Without arguments it writes two small temporary sets of smooth random JPEGs, 32 x 32 and
256 x 256 (JPEG quality 90), and times Krizhevsky-style training batches over them
(resize the shorter side, random crop, random flip; batch 128). With ``--folder DIR`` it
times a real image folder (``root/<class>/<image>``, optionally ``--list FILE``) instead.

    python experiments/data_throughput.py
    python experiments/data_throughput.py --folder /work/realdata/cifar10/train --size 28 --resize 32
    python experiments/data_throughput.py --folder /work/realdata/caltech101/101_ObjectCategories \
        --list /work/realdata/caltech101/train.txt --exclude BACKGROUND_Google --size 224 --resize 256
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from PIL import Image

from minicnn.data.folders import read_folder
from minicnn.data.loader import ImageLoader
from minicnn.data.transforms import ImageTransform
from minicnn.errors import InputError


def write_jpegs(root, side, count, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "c"), exist_ok=True)
    paths = []
    for i in range(count):
        coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
        path = os.path.join(root, "c", f"{i:05d}.jpg")
        coarse.resize((side, side), Image.BICUBIC).save(path, quality=90)
        paths.append(path)
    return paths


def images_per_second(paths, transform, workers, repeats=2):
    loader = ImageLoader(paths, np.zeros(len(paths)), transform, batch_size=128, shuffle=True,
                         workers=workers)
    best = 0.0
    for epoch in range(repeats):
        start, count = time.perf_counter(), 0
        for batch in loader.epoch(epoch):
            count += len(batch.labels)
        best = max(best, count / (time.perf_counter() - start))
    return best


def report(label, paths, transform, workers_list):
    rates = {w: images_per_second(paths, transform, w) for w in workers_list}
    print(f"{label}: {len(paths)} images, {transform}")
    for w, rate in rates.items():
        print(f"  workers {w}: {rate:8.0f} images/s")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", help="image folder root/<class>/<image> to time")
    parser.add_argument("--list", help="list file of the images to take (relative to --folder)")
    parser.add_argument("--size", type=int, default=224, help="crop size for --folder")
    parser.add_argument("--resize", type=int, default=256, help="shorter side before cropping, for --folder")
    parser.add_argument("--max-images", type=int, default=5000, help="time at most this many images")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--exclude", action="append", default=[],
                        help="class folder to leave out (repeatable), e.g. BACKGROUND_Google")
    parser.add_argument("--skip-bad", action="store_true", help="skip unreadable images (counted)")
    args = parser.parse_args()
    print(f"cpu count {os.cpu_count()}")
    if args.folder:
        try:
            folder = read_folder(args.folder, list_file=args.list, exclude=args.exclude,
                                 skip_bad=args.skip_bad)
        except InputError as e:
            raise SystemExit(f"data_throughput: error: {e}") from None
        print(folder.summary())
        chosen = np.random.default_rng(0).permutation(len(folder))[:args.max_images]
        report(args.folder, [folder.paths[i] for i in chosen],
               ImageTransform(args.size, resize=args.resize, random_crop=True, flip=True), args.workers)
        return
    with tempfile.TemporaryDirectory() as tmp:
        small = write_jpegs(os.path.join(tmp, "32"), 32, 4096)
        report("32-pixel JPEGs", small, ImageTransform(28, resize=32, random_crop=True, flip=True),
               args.workers)
        large = write_jpegs(os.path.join(tmp, "256"), 256, 1024)
        report("256-pixel JPEGs", large, ImageTransform(224, resize=256, random_crop=True, flip=True),
               args.workers)


if __name__ == "__main__":
    main()
