"""Small VOC trees whose answers the tests know: images written as lossless files (PNG bytes
under the devkit's .jpg names; the loaders read images by content), annotations with their
sizes, Main image sets, and head networks that stand in for FCa/FCb."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from voc_tree import annotation_xml, obj, write_lines

import minicnn as mc
from minicnn import layers as L


def write_tree(root, images, splits, year=2007):
    """``images``: {image id: (pixels (H, W, 3) uint8, [(class, (x1, y1, x2, y2) VOC 1-based,
    difficult), ...])}; ``splits``: {set name: [image ids]}. Returns the devkit root."""
    voc = Path(root) / f"VOC{year}"
    (voc / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (voc / "Annotations").mkdir(parents=True, exist_ok=True)
    for image_id, (pixels, objects) in images.items():
        Image.fromarray(pixels).save(voc / "JPEGImages" / f"{image_id}.jpg", format="PNG")
        xml = annotation_xml(image_id, [obj(name, box, difficult=d) for name, box, d in objects],
                             width=pixels.shape[1], height=pixels.shape[0])
        (voc / "Annotations" / f"{image_id}.xml").write_text(xml)
    for name, ids in splits.items():
        write_lines(voc / "ImageSets" / "Main" / f"{name}.txt", ids)
    return Path(root)


PAINT = np.array([(220, 40, 40), (40, 200, 40), (40, 60, 230), (230, 200, 30)], dtype=np.int64)


def boxes_tree(root, classes, n_trainval, n_test, size=(120, 90), side=40, seed=0, paint=False):
    """Images with one or two objects of ``classes`` each (squares of ``side`` pixels, apart),
    one in five of them with an extra difficult object; random pixels, or with ``paint``
    grey noise with each object's square filled in its class's colour (an easy target)."""
    rng = np.random.default_rng(seed)
    width, height = size
    images = {}
    for n in range(n_trainval + n_test):
        chosen = rng.choice(len(classes), size=1 + n % 2, replace=False)
        corners = [(1, 1), (width - side + 1, height - side + 1)]
        objects = [(classes[c], (x, y, x + side - 1, y + side - 1), False)
                   for c, (x, y) in zip(chosen, corners, strict=False)]
        if n % 5 == 0:
            other = classes[(chosen[0] + 1) % len(classes)]
            objects.append((other, (width // 2 - 7, 3, width // 2 + 8, 18), True))
        pixels = rng.integers(0, 256, (height, width, 3))
        if paint:
            pixels = 128 + (pixels - 128) // 4
            for name, (x1, y1, x2, y2), _ in objects:
                noise = rng.integers(-20, 21, (y2 - y1 + 1, x2 - x1 + 1, 3))
                pixels[y1 - 1:y2, x1 - 1:x2] = PAINT[classes.index(name)] + noise
        images[f"{n:04d}"] = (np.clip(pixels, 0, 255).astype(np.uint8), objects)
    ids = list(images)
    return write_tree(root, images, {"trainval": ids[:n_trainval], "test": ids[n_trainval:]})


def source_like(input_size=32, width=8):
    """A minimal source network (C1..FC7 names as pretrain writes them) for runs whose head
    the test replaces."""
    from minicnn.models import small_alexnet

    mc.seed(0)
    net = small_alexnet(4, input_size=input_size, channels=(width,) * 5, hidden=width)
    net.meta.update(input_size=input_size, mean=[128.0] * 3, std=[64.0] * 3)
    return net


def linear_head(weight):
    """A frozen one-layer head: logits = features @ weight.T (no bias)."""
    weight = np.asarray(weight, dtype=np.float32)
    layer = L.Linear(weight.shape[1], weight.shape[0])
    layer.params["weight"] = mc.asarray(weight)
    layer.params["bias"] = mc.asarray(np.zeros(weight.shape[0], np.float32))
    net = mc.Sequential([layer], names=["fcb"])
    net.freeze(net.names)
    return net


def with_head(run, head, features):
    """Make a Transfer run train and score ``head`` on ``features[patch index]`` instead of
    FCa/FCb on cached FC7 features: everything else (patches, labels, training loop,
    scoring, submission files, evaluation) stays the run's own."""
    def network_inputs():
        return head, lambda patches: np.asarray(features[np.asarray(patches)], dtype=np.float32)

    run.network_inputs = network_inputs
    return run
