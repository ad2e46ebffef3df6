"""ImageNet-size pretraining input: `minicnn prepare` throughput (threads vs processes) and
the loader's images/s per core on prepared images, against the GPU's training step.

1. Source images: ``--images DIR`` (JPEGs, any tree), else ``--count`` photo-like 500 x 375
   JPEGs (quality 90): random crops of a real photo (matplotlib's sample
   ``grace_hopper.jpg``, mirrored and colour-shifted) when it is installed, else generated.
2. ``prepare`` (shorter side 256, JPEG 90) with 1 and 2 workers, threads and processes:
   images/s.
3. The loader, ``ImageLoader`` with ``ImageTransform(227, resize=256, random_crop=True,
   flip=True)``, batch 128, on the prepared images and on the originals: worker threads
   0 / 1 / 2, Pillow's JPEG draft mode on / off (a no-op on prepared images, whose shorter
   side is already 256; 1000 x 750 originals show what it does), and ``one-copy``: the same batches (checked
   equal) with each crop written straight into the float32 batch (the loader builds a uint8
   batch, then converts it: two copies). Per core = images/s / max(1, workers).
4. Cores needed to feed one H200's measured AlexNet training step at batch 256
   (7,351-7,546 img/s, docs/gpu.md) = those figures / the best images/s per core.

    python experiments/loader_throughput.py
    python experiments/loader_throughput.py --images ILSVRC2012/train --count 2000 --json loader.json
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import tempfile
import time

import numpy as np
from patch_throughput import photo_jpegs  # experiments/, beside this script
from PIL import Image

import minicnn.data.loader as loader_module
from minicnn.data.loader import _AUGMENT, Batch, ImageLoader
from minicnn.data.prepare import prepare_folder
from minicnn.data.transforms import ImageTransform, crop_resize, load_image

H200_STEP = (7351, 7546)  # AlexNet training step, batch 256, img/s (docs/gpu.md, GPU backend)


def _cpu_seconds():
    """CPU time of this process and of its finished children (the process pool's)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class OneCopyLoader(ImageLoader):
    """The loader's batches, each crop written straight into the float32 batch: a prepared
    image's crop is a plain crop (no resampling), taken as a view of the decoded pixels."""

    def __init__(self, *args, draft=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.draft = draft

    def _make_batch(self, job):
        epoch, b, indices = job
        t = self.transform
        rng = np.random.default_rng([self.seed, epoch, _AUGMENT, b]) if t.is_random else None
        images = np.empty((len(indices), 3, t.size, t.size), np.float32)
        for k, i in enumerate(indices):
            image = load_image(self.paths[i], draft_side=t.resize if self.draft else None)
            box, mirrored = t.crop_box(*image.size, rng)  # draws as ImageTransform.__call__ does
            x1, y1, x2, y2 = box
            if x2 - x1 == t.size and y2 - y1 == t.size and float(x1).is_integer() and float(y1).is_integer():
                x, y = int(x1), int(y1)
                pixels = np.asarray(image)[y:y + t.size, x:x + t.size]
            else:
                pixels = crop_resize(image, box, t.size)
            if mirrored:
                pixels = pixels[:, ::-1]
            images[k] = pixels.transpose(2, 0, 1)  # the one copy: uint8 HWC -> float32 CHW
        return Batch(images, self.labels[indices], np.asarray(indices, np.int64)), {}


def images_per_second(make, paths, repeats):
    """(images/s of wall-clock time, images per CPU-second of this process: per core), the
    best of ``repeats`` epochs. CPU time counts every thread of the process and not what
    other jobs on the machine take, so the per-core figure holds on a shared machine."""
    loader = make(paths)
    wall = cpu = 0.0
    for epoch in range(repeats):
        start, cpu_start, count = time.perf_counter(), time.process_time(), 0
        for batch in loader.epoch(epoch):
            count += len(batch.labels)
        wall = max(wall, count / (time.perf_counter() - start))
        cpu = max(cpu, count / max(time.process_time() - cpu_start, 1e-9))
    return wall, cpu


def loader_rates(paths, workers_list, repeats):
    transform = ImageTransform(227, resize=256, random_crop=True, flip=True)
    labels = np.zeros(len(paths))
    real_load = loader_module.load_image

    def no_draft(path, draft_side=None):
        return real_load(path)

    rows = []
    for workers in workers_list:
        for draft in (True, False):
            loader_module.load_image = real_load if draft else no_draft
            try:
                rate = images_per_second(lambda p, w=workers: ImageLoader(
                    p, labels, transform, batch_size=128, shuffle=True, workers=w), paths, repeats)
            finally:
                loader_module.load_image = real_load
            rows.append(("ImageLoader", workers, draft, *rate))
            rate = images_per_second(lambda p, w=workers, d=draft: OneCopyLoader(
                p, labels, transform, batch_size=128, shuffle=True, workers=w, draft=d), paths, repeats)
            rows.append(("one-copy", workers, draft, *rate))
    return rows


def same_batches(paths):
    transform = ImageTransform(227, resize=256, random_crop=True, flip=True)
    labels = np.zeros(len(paths))
    a = next(iter(ImageLoader(paths[:64], labels[:64], transform, batch_size=32, shuffle=True,
                              workers=0).epoch(3)))
    b = next(iter(OneCopyLoader(paths[:64], labels[:64], transform, batch_size=32, shuffle=True,
                                workers=0).epoch(3)))
    return bool(np.array_equal(a.images, b.images) and np.array_equal(a.indices, b.indices))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", help="folder of source JPEGs (any tree); default: photo-like ones")
    parser.add_argument("--count", type=int, default=768, help="source images (default %(default)s)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="loader threads")
    parser.add_argument("--large", type=int, default=256,
                        help="also time this many 1000 x 750 originals (the draft mode at work; "
                             "default %(default)s)")
    parser.add_argument("--repeats", type=int, default=2, help="epochs per configuration; the best counts")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    figures = {"cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        if args.images:
            paths = sorted(p for p in glob.glob(os.path.join(args.images, "**", "*"), recursive=True)
                           if p.lower().endswith((".jpg", ".jpeg")))[:args.count]
            src, what = args.images, args.images
        else:
            src = os.path.join(tmp, "src")
            paths, what = photo_jpegs(os.path.join(src, "c"), args.count)
        sizes = [Image.open(p).size for p in paths[:200]]
        print(f"{len(paths)} source images ({what}), e.g. {sizes[0][0]}x{sizes[0][1]}; "
              f"cpu count {os.cpu_count()}")
        figures["source"] = {"images": len(paths), "what": what}
        # 2. prepare: threads vs processes
        out = os.path.join(tmp, "prepared")
        figures["prepare"] = []
        for workers in (1, 2):
            for pool in ("thread", "process"):
                start, cpu_start = time.perf_counter(), _cpu_seconds()
                result = prepare_folder(src, out, short_side=256, quality=90, workers=workers, pool=pool,
                                        redo=True, log=lambda *a: None)
                done = result.written + result.copied
                rate = done / (time.perf_counter() - start)
                per_cpu = done / max(_cpu_seconds() - cpu_start, 1e-9)
                figures["prepare"].append({"workers": workers, "pool": pool, "images_per_s": rate,
                                           "per_cpu_second": per_cpu})
                print(f"prepare, {workers} {pool}{'s' if workers > 1 else ''}: {rate:7.0f} images/s, "
                      f"{per_cpu:5.0f} per CPU-second")
        prepared = sorted(glob.glob(os.path.join(out, "**", "*.jp*g"), recursive=True))
        print(f"prepared: e.g. {Image.open(prepared[0]).size}, "
              f"{np.mean([os.path.getsize(p) for p in prepared]) / 1024:.0f} KiB on average "
              f"(sources {np.mean([os.path.getsize(p) for p in paths]) / 1024:.0f} KiB)")
        print(f"one-copy batches equal the loader's: {same_batches(prepared)}")
        # 3. the loader
        figures["loader"] = []
        best = 0.0
        print("loader (batch 128, 227 crops of the shorter side resized to 256, flips); per core = "
              "images per CPU-second of the process")
        sets = [("prepared", prepared), ("originals", paths)]
        if args.large and not args.images:
            large, _ = photo_jpegs(os.path.join(tmp, "large", "c"), args.large, seed=1, width=1000,
                                   height=750)
            sets.append(("1000x750", large))  # where the draft mode decodes at 1/2 scale
        for label, files in sets:
            for kind, workers, draft, rate, per_core in loader_rates(files, args.workers, args.repeats):
                if label == "prepared":
                    best = max(best, per_core)
                figures["loader"].append({"images": label, "loader": kind, "workers": workers, "draft": draft,
                                          "images_per_s": rate, "per_core": per_core})
                print(f"{label:9s} {kind:11s} workers {workers} draft {'on ' if draft else 'off'}: "
                      f"{rate:7.0f} images/s, {per_core:6.0f} per core")
        cores = [round(s / best, 1) for s in H200_STEP]
        figures["cores_per_h200"] = {"step_images_per_s": H200_STEP, "best_per_core": best, "cores": cores}
        print(f"cores to feed one H200 training step ({H200_STEP[0]}-{H200_STEP[1]} img/s) at "
              f"{best:.0f} img/s per core: {cores[0]}-{cores[1]}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
