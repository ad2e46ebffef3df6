"""The embedded default dataset: a VOC-format scene set and a source classification set
built from the same parts (drawn by :mod:`minicnn.data.drawing`), generated
deterministically from a seed (no download).

- ``DIR/source/<class>/<class>_<n>.jpg``: object-centred images (default 32 x 32) over
  textured clutter with distractor parts.
- ``DIR/VOCdevkit/VOC2007``: scenes (default 160 x 120) with 1-4 objects, occluding each
  other or cut by the border, over clutter with distractor parts that are no object;
  ``Annotations/*.xml`` in VOC 2007 format (the box is the visible extent, 1-based,
  inclusive; ``truncated`` when the border cuts the object, ``difficult`` when it is
  tiny or mostly hidden), ``ImageSets/Main/{train,val,trainval,test}.txt`` and
  ``<class>_<set>.txt`` (1 / -1 / 0 for difficult-only).

Each image comes from its own generator seeded by ``(seed, set, n)`` and the JPEG encoder
settings are fixed, so the files are the same whatever the number of worker processes.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from minicnn.data.drawing import (
    SOURCE_CLASSES,
    SPLIT_STREAM,
    TARGET_CLASSES,
    draw_scene,
    draw_source_image,
    source_classes,
    target_classes,
)
from minicnn.errors import InputError


@dataclass(frozen=True)
class DataConfig:
    """Sizes of the generated dataset (all arguments of ``minicnn make-data``)."""

    seed: int = 0
    source_per_class: int = 150
    source_size: int = 32
    trainval: int = 250
    test: int = 250
    scene_width: int = 160
    scene_height: int = 120
    max_objects: int = 4
    jpeg_quality: int = 90

    def check(self):
        for name in ("source_per_class", "trainval", "test"):
            if getattr(self, name) < 0:
                raise InputError(f"make-data: {name} must be >= 0, got {getattr(self, name)}")
        if self.trainval < 2:
            raise InputError(f"make-data: trainval must be >= 2 (a train and a val image), "
                             f"got {self.trainval}")
        if self.source_size < 8 or min(self.scene_width, self.scene_height) < 32:
            raise InputError("make-data: source images need >= 8 pixels and scenes >= 32 pixels a side")
        if not 1 <= self.max_objects <= 10:
            raise InputError(f"make-data: max_objects must be in 1..10, got {self.max_objects}")


MANIFEST = "minicnn-data.json"
GENERATOR_VERSION = 1


def _save_jpeg(pixels, path, quality):
    # fixed encoder settings: same pixels -> same bytes
    Image.fromarray(pixels).save(path, "JPEG", quality=quality, subsampling=0, optimize=False)


def _write_source_image(job):
    config, out, class_name, index = job
    pixels = draw_source_image(config.seed, class_name, index, config.source_size)
    _save_jpeg(pixels, os.path.join(out, "source", class_name, f"{class_name}_{index:04d}.jpg"),
               config.jpeg_quality)


def _write_scene(job):
    config, out, index, image_id = job
    pixels, objects = draw_scene(config.seed, index, config.scene_width, config.scene_height,
                                 config.max_objects)
    voc = os.path.join(out, "VOCdevkit", "VOC2007")
    _save_jpeg(pixels, os.path.join(voc, "JPEGImages", f"{image_id}.jpg"), config.jpeg_quality)
    with open(os.path.join(voc, "Annotations", f"{image_id}.xml"), "w", encoding="utf-8") as f:
        f.write(annotation_xml(image_id, config.scene_width, config.scene_height, objects))
    return [(o.name, o.difficult) for o in objects]


def annotation_xml(image_id, width, height, objects) -> str:
    """A VOC 2007 annotation file's text."""
    lines = ["<annotation>", "\t<folder>VOC2007</folder>", f"\t<filename>{image_id}.jpg</filename>",
             "\t<source>", "\t\t<database>minicnn synthetic</database>",
             "\t\t<annotation>minicnn make-data</annotation>", "\t\t<image>generated</image>", "\t</source>",
             "\t<size>", f"\t\t<width>{width}</width>", f"\t\t<height>{height}</height>",
             "\t\t<depth>3</depth>", "\t</size>", "\t<segmented>0</segmented>"]
    for o in objects:
        xmin, ymin, xmax, ymax = o.box
        lines += ["\t<object>", f"\t\t<name>{o.name}</name>", "\t\t<pose>Unspecified</pose>",
                  f"\t\t<truncated>{o.truncated}</truncated>", f"\t\t<difficult>{o.difficult}</difficult>",
                  "\t\t<bndbox>", f"\t\t\t<xmin>{xmin}</xmin>", f"\t\t\t<ymin>{ymin}</ymin>",
                  f"\t\t\t<xmax>{xmax}</xmax>", f"\t\t\t<ymax>{ymax}</ymax>", "\t\t</bndbox>", "\t</object>"]
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


def _split(config):
    """Image ids of train, val and test: ids 000001.. shuffled over the sets by seed."""
    total = config.trainval + config.test
    ids = [f"{i:06d}" for i in range(1, total + 1)]
    order = np.random.default_rng([config.seed, SPLIT_STREAM]).permutation(total)
    trainval = sorted(ids[i] for i in order[:config.trainval])
    test = sorted(ids[i] for i in order[config.trainval:])
    half = np.random.default_rng([config.seed, SPLIT_STREAM, 1]).permutation(len(trainval))
    n_train = (len(trainval) + 1) // 2
    train = sorted(trainval[i] for i in half[:n_train])
    val = sorted(trainval[i] for i in half[n_train:])
    return {"train": train, "val": val, "trainval": trainval, "test": test}


def _write_image_sets(voc, sets, labels_of):
    main = os.path.join(voc, "ImageSets", "Main")
    os.makedirs(main, exist_ok=True)
    for set_name, ids in sets.items():
        with open(os.path.join(main, f"{set_name}.txt"), "w") as f:
            f.write("".join(f"{i}\n" for i in ids))
        for name in TARGET_CLASSES:
            with open(os.path.join(main, f"{name}_{set_name}.txt"), "w") as f:
                for i in ids:
                    flags = [difficult for n, difficult in labels_of[i] if n == name]
                    label = -1 if not flags else (1 if not all(flags) else 0)
                    f.write(f"{i} {label:2d}\n")


def _map(fn, jobs, workers):
    if workers <= 1:
        return [fn(job) for job in jobs]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, jobs, chunksize=max(1, len(jobs) // (8 * workers))))


def is_generated(out, config: DataConfig) -> bool:
    """Whether ``out`` holds a complete dataset generated with ``config``."""
    try:
        with open(os.path.join(out, MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return False
    return manifest.get("config") == asdict(config) and manifest.get("version") == GENERATOR_VERSION


def generate(out, config: DataConfig = DataConfig(), workers=None, force=False, progress=None) -> dict:
    """Write the dataset to ``out`` (``VOCdevkit/VOC2007`` and ``source``) and a manifest
    ``minicnn-data.json``; returns the manifest. Files are first written to a temporary
    folder inside ``out`` and moved into place when complete. An existing dataset is
    replaced only with ``force`` (an error names it otherwise). ``workers`` processes
    draw the images (default: the CPU count)."""
    config.check()
    out = os.fspath(out)
    targets = [os.path.join(out, "VOCdevkit"), os.path.join(out, "source"), os.path.join(out, MANIFEST)]
    existing = [p for p in targets if os.path.exists(p)]
    if existing and not force:
        raise InputError(f"{existing[0]} exists; choose another --out or replace it with --force")
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    say = progress or (lambda message: None)
    start = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    tmp = os.path.join(out, f".make-data-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for name in SOURCE_CLASSES:
            os.makedirs(os.path.join(tmp, "source", name))
        voc = os.path.join(tmp, "VOCdevkit", "VOC2007")
        os.makedirs(os.path.join(voc, "JPEGImages"))
        os.makedirs(os.path.join(voc, "Annotations"))
        say(f"source set: {len(SOURCE_CLASSES)} classes x {config.source_per_class} images of "
            f"{config.source_size}x{config.source_size}")
        _map(_write_source_image, [(config, tmp, name, i) for name in SOURCE_CLASSES
                                   for i in range(config.source_per_class)], workers)
        sets = _split(config)
        ids = sorted(sets["trainval"] + sets["test"])
        say(f"target set: {len(ids)} scenes of {config.scene_width}x{config.scene_height} "
            f"({config.trainval} trainval, {config.test} test), {len(TARGET_CLASSES)} classes")
        objects = _map(_write_scene, [(config, tmp, int(i) - 1, i) for i in ids], workers)
        labels_of = dict(zip(ids, objects, strict=True))
        _write_image_sets(voc, sets, labels_of)
        counts = {name: sum(n == name for objs in objects for n, _ in objs) for name in TARGET_CLASSES}
        manifest = {"version": GENERATOR_VERSION, "config": asdict(config),
                    "source_classes": source_classes(), "target_classes": target_classes(),
                    "source_images": len(SOURCE_CLASSES) * config.source_per_class,
                    "scenes": {k: len(v) for k, v in sets.items()}, "objects": counts,
                    "difficult": sum(d for objs in objects for _, d in objs)}
        with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
        for path in existing:
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
        for path in targets:
            os.replace(os.path.join(tmp, os.path.basename(path)), path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"wrote {out} in {time.perf_counter() - start:.1f} s")
    return manifest
