"""The feature cache's rate with a real ImageNet network on this machine: patches per second
of ``build_feature_cache`` (JPEG decoding, the sampler's crops resized to the network's input,
its preprocessing, the forward pass to the cut, the cut's map averaged over space), on the
first ``--images`` images of a VOC tree, and the projection to the full VOC 2007 set.

    python experiments/squeezenet_cache_rate.py --voc data/COCOVOC --year 2017 \
        --weights data/squeezenet.npz --cut fire9 --images 24

The cache is written under a temporary folder and thrown away. Until ``minicnn transfer``
takes any source network (issue 25), this builds the cache's extractor itself: the source's
layers up to the cut (and the ReLU/Dropout right after it), then an average over space.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import minicnn as mc
from minicnn import layers as L
from minicnn.data.preprocess import Preprocessing
from minicnn.data.voc import VOCDataset
from minicnn.transfer.features import build_feature_cache
from minicnn.transfer.patches import patch_counts
from minicnn.transfer.patchset import PatchRenderer, build_patch_set

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from offshelf_baseline import layer_ends  # noqa: E402

VOC2007_IMAGES = 9963   # trainval 5,011 + test 4,952
PAPER_PATCHES = 500     # "about 500" per image: the default sampler's 496 on 500 x 375


def extractor_to(net, cut, size):
    """The source's layers up to ``cut`` (with its ReLU/Dropout), then the map averaged over space."""
    end = layer_ends(net, [cut])[cut] + 1
    prefix = mc.Sequential(net.layers[:end], net.names[:end])
    shape = prefix.shapes((3, size, size))[-1]
    layers, names = list(prefix.layers), list(prefix.names)
    if len(shape) == 3:
        layers += [L.AvgPool2D(shape[1:]), L.Flatten()]
        names += ["cut_pool", "cut_flatten"]
    return mc.Sequential(layers, names)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--voc", required=True)
    p.add_argument("--year", type=int, default=2007)
    p.add_argument("--weights", required=True)
    p.add_argument("--cut", default="fire9")
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--size", type=int, default=None, help="patch side (default: the network's input size)")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.3, 1.6, 2.0, 2.4])
    p.add_argument("--stride", type=float, default=0.5)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--backend", default="cpu")
    args = p.parse_args(argv)
    mc.set_backend(args.backend)
    net = mc.Sequential.load(args.weights)
    size = args.size or int(net.meta.get("input_size") or net.input_shape[-1])
    extractor = extractor_to(net, args.cut, size)
    dataset = VOCDataset(args.voc, args.year)
    classes = dataset.listed_classes("trainval")
    dataset = VOCDataset(args.voc, args.year, classes=classes)
    ids = dataset.image_ids("test")[: args.images]
    patches = build_patch_set(dataset, classes, "cls", [], [], ids, "trainval", "test",
                              scales=tuple(args.scales), stride_fraction=args.stride)
    prep = Preprocessing.of(net)
    renderer = PatchRenderer(patches, size, prep)
    offsets = patches.offsets
    n = len(patches.patch_labels)
    with tempfile.TemporaryDirectory() as root:
        started = time.perf_counter()
        cpu = time.process_time()
        build_feature_cache(root, "rate", extractor, patches.image_ids,
                            lambda i: patches.patch_boxes[offsets[i]:offsets[i + 1]],
                            lambda i: patches.patch_labels[offsets[i]:offsets[i + 1]],
                            lambda i, boxes: renderer.image_patches(i, boxes, keep=False, raw=True),
                            {"size": size, **prep.to_meta()}, batch_size=args.batch, prepare=prep)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    rate = n / wall
    full = VOC2007_IMAGES * sum(patch_counts(500, 375).values())
    out = {"cut": args.cut, "size": size, "images": len(ids), "patches": n, "seconds": wall,
           "cpu_seconds": cpu,
           "patches_per_second": rate, "patches_per_cpu_second": n / cpu, "load_average": os.getloadavg(),
           "voc2007_patches": full, "voc2007_hours_at_this_rate": full / rate / 3600,
           "voc2007_hours_per_core": full / (n / cpu) / 3600}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
