"""Top-1 / top-5 accuracy of an imported (or any saved) network on an ImageNet-style folder.

Checks that an import works end to end on real images: the network file from
`minicnn import-weights` (BVLC AlexNet from Caffe, torchvision's AlexNet from ONNX), a folder
root/<class>/<image> the user brings (nothing is downloaded; e.g. EliSchwartz/imagenet-
sample-images sorted into one folder per synset, or part of the ILSVRC validation set), and
the network's class list (its meta, or --classes). A class-list line may carry a
description after the folder name, as Caffe's synset_words.txt does
("n01440764 tench, Tinca tinca"): the first word is matched to the folder names.

Or a labelled list (--list FILE, Caffe's val.txt style: "path index" or "path, index" per
line, the path relative to the list's folder, the index the network's output): e.g.
VeriSilicon/acuity-dataset's ILSVRC2012_VAL_SET/dataset.txt, 1,300 validation photographs
(227 x 227) labelled in Caffe's synset order (synset_words.txt).

Each result carries a bootstrap 95% interval of top-1 and top-5 (the images resampled with
replacement, 2,000 times, seed 0): the spread a sample of this size leaves.

Preprocessing is the network's own, from its meta: each image's shorter side resized to
--resize (256), the centre input_size crop, then minicnn.data.preprocess.Preprocessing
(RGB reordered to meta channel_order, BGR for Caffe models; meta mean subtracted and meta
std divided out, 0-255 scale, in the network's channel order). Caffe's published numbers
use the full 256 x 256 mean image and 10 crops, so a single centre crop with a per-channel
mean reads a little lower.

    python experiments/imagenet_topk.py --weights runs/bvlc/source.npz --data /data/imagenet-val \
        --backend cpu --out runs/bvlc/topk.json
    python experiments/imagenet_topk.py --weights squeezenet.npz \
        --list acuity-dataset/ILSVRC2012_VAL_SET/dataset.txt --resize 227 --backend cpu
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import minicnn as mc
from minicnn.data.folders import read_class_list, read_folder
from minicnn.data.loader import ImageLoader
from minicnn.data.preprocess import Preprocessing
from minicnn.data.transforms import ImageTransform
from minicnn.errors import InputError


def class_index(classes):
    """folder name -> output index: the whole line and its first word both name a class."""
    index = {}
    for i, line in enumerate(classes):
        index.setdefault(line, i)
        index.setdefault(line.split()[0], i)
    return index


def read_list(path, outputs):
    """(paths, output indices) of a labelled list: "path index" or "path, index" per line."""
    root = os.path.dirname(os.path.abspath(path))
    paths, targets = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            name, _, label = line.replace(",", " ").strip().rpartition(" ")
            if not name.strip() or not label.isdigit() or int(label) >= outputs:
                raise InputError(f"{path}: line {number} is not 'path index' with an index below {outputs}")
            paths.append(os.path.normpath(os.path.join(root, name.strip())))
            targets.append(int(label))
    return paths, np.array(targets, dtype=np.int64)


def bootstrap_interval(hits, rounds=2000, seed=0):
    """The 2.5th and 97.5th percentiles of the mean of ``hits`` (0/1 per image) over
    ``rounds`` resamples of the images with replacement."""
    hits = np.asarray(hits, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = hits[rng.integers(0, len(hits), (rounds, len(hits)))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def topk(net, data, classes, resize=256, batch_size=32, workers=2, limit=None, log=print, image_list=None):
    meta = net.meta
    size = int(net.input_shape[-1]) if net.input_shape else int(meta["input_size"])
    if image_list is not None:
        paths, targets = read_list(image_list, len(classes))
    else:
        folder = read_folder(data)
        index = class_index(classes)
        unknown = [name for name in folder.classes if name not in index]
        if unknown:
            raise InputError(f"{data}: class folders not in the network's class list: {unknown[:5]}"
                             f"{' ...' if len(unknown) > 5 else ''}")
        targets = np.array([index[folder.classes[label]] for label in folder.labels], dtype=np.int64)
        paths = list(folder.paths)
    if limit:
        chosen = np.random.default_rng(0).permutation(len(paths))[:limit]
        paths, targets = [paths[i] for i in chosen], targets[chosen]
    n_classes = len(set(targets.tolist()))
    preprocess = Preprocessing.of(net)  # channel order, mean, std: the network's own
    loader = ImageLoader(paths, targets, ImageTransform(size, resize=max(resize, size)),
                         batch_size=batch_size, workers=workers, progress="images")
    hits1, hits5 = [], []
    start = time.time()
    for batch in loader.epoch(0):
        logits = mc.to_numpy(net.forward(mc.asarray(preprocess(batch.images)), train=False,
                                         keep_for_backward=False))
        top = np.argsort(-logits, axis=1)[:, :5]
        hits1 += (top[:, 0] == batch.labels).tolist()
        hits5 += (top == batch.labels[:, None]).any(axis=1).tolist()
    seen = len(hits1)
    result = {"images": seen, "classes_in_folder": n_classes, "top1": float(np.mean(hits1)) if seen else 0.0,
              "top5": float(np.mean(hits5)) if seen else 0.0,
              "top1_interval95": bootstrap_interval(hits1) if seen else None,
              "top5_interval95": bootstrap_interval(hits5) if seen else None,
              "seconds": round(time.time() - start, 1),
              "input_size": size, "resize": resize, "channel_order": meta.get("channel_order", "RGB"),
              "mean": meta.get("mean"), "std": meta.get("std"), "source": meta.get("source"),
              "source_sha256": meta.get("source_sha256")}
    if seen:
        (a1, b1), (a5, b5) = result["top1_interval95"], result["top5_interval95"]
        log(f"{seen} images of {n_classes} classes: top-1 {result['top1']:.4f} [{a1:.4f}, {b1:.4f}], "
            f"top-5 {result['top5']:.4f} [{a5:.4f}, {b5:.4f}] (bootstrap 95%; {result['seconds']} s)")
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, help="network .npz (e.g. from minicnn import-weights)")
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", help="ImageNet-style folder: root/<class>/<image>")
    data.add_argument("--list", help="labelled list: 'path index' per line, paths relative to the list")
    p.add_argument("--classes", default=None, help="class list (default: the network's meta)")
    p.add_argument("--resize", type=int, default=256, help="shorter side before the centre crop")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--limit", type=int, default=None, help="score a random subset of this many images")
    p.add_argument("--backend", choices=("numpy", "cpu", "cuda"), default="cpu")
    p.add_argument("--out", default=None, help="write the result as JSON here")
    args = p.parse_args(argv)
    try:
        mc.set_backend(args.backend)
        net = mc.Sequential.load(args.weights).to(args.backend)
        classes = read_class_list(args.classes or args.weights)
        result = topk(net, args.data, classes, args.resize, args.batch_size, args.workers, args.limit,
                      image_list=args.list)
    except ValueError as e:
        print(f"imagenet_topk: error: {e}", file=sys.stderr)
        return 2
    if args.out:
        from minicnn.atomic import write_json

        write_json(args.out, {"weights": args.weights, "data": args.data or args.list, **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
