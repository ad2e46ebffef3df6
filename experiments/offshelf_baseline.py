"""The off-the-shelf baseline of the same year (Razavian et al. 2014, "CNN features
off-the-shelf": 73.9 mAP on VOC 2007 with OverFeat): a linear SVM per class on whole-image
features of a source network, beside the transfer method, on the same test images and classes.

    python experiments/offshelf_baseline.py --voc data/COCOVOC --year 2017 \
        --weights squeezenet.npz --layers fire9 conv10 --out runs/offshelf

For each image of the trainval and test sets: the whole image resized (aspect not kept) to
the network's input size, exactly as the transfer's ``whole-image`` variant renders it
(``PatchRenderer`` on ``whole_image_box``), through the preprocessing of the network's
``meta`` (channel order, mean, std); the output of each named top-level layer (and of the
ReLU/Dropout layers right after it, as the transfer's FC7 includes relu7: for SqueezeNet,
``conv10`` means relu(conv10)), averaged over space when it is a map, then L2-normalized to
unit length (Razavian et al. do so for every experiment). Per class a linear SVM (squared
hinge, L2-regularized, bias not regularized: liblinear's default L2-SVM, solved here with
SciPy's L-BFGS) on the trainval labels of the devkit's class files (difficult-only images
left out, as the devkit does); one C for all classes chosen by a 3-fold cross-validation on
trainval (pooled held-out scores, mean AP; the folds drawn by the seed), or ``--c``. Test AP with
``minicnn.evaluate`` (the devkit's metric of the tree's year), classes with fewer than
``--min-test-positives`` positive test images left out of the mAP as ``minicnn reproduce``
does, and 95% intervals from a bootstrap over the test images (1000 draws), per class and
for the mAP (the mAP's by ``minicnn.reproduce.bootstrap_map``, the same draws as reproduce).
The SVM is convex, so a seed changes only the folds (hence perhaps C): the spread over
seeds says how much that matters.

Features are kept in OUT/features-<layer>.npz (keyed by the weights file, the images and the
rendering) so that a rerun with other classifier settings does not forward again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np
from scipy.optimize import minimize

import minicnn as mc
from minicnn import layers as L
from minicnn.data.loader import ordered_map
from minicnn.data.preprocess import Preprocessing
from minicnn.data.voc import VOCDataset
from minicnn.errors import InputError
from minicnn.evaluate import default_metric
from minicnn.evaluate.items import evaluate_items
from minicnn.reproduce import bootstrap_map, reported_classes
from minicnn.transfer.patches import whole_image_box
from minicnn.transfer.patchset import PatchRenderer, build_patch_set, scored_images

C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
PASS_THROUGH = (L.ReLU, L.Dropout)  # layers taken with the named one (eval-mode dropout: identity)


# --- features --------------------------------------------------------------------------------
def layer_ends(net, names):
    """{name: index of the last top-level layer its features are read after}: the named
    layer and any ReLU/Dropout right after it."""
    ends = {}
    for name in names:
        if name not in net.names:
            raise InputError(f"--layers: the network has no top-level layer {name!r}; its layers: "
                             f"{', '.join(net.names)}")
        end = net.names.index(name)
        while end + 1 < len(net.layers) and isinstance(net.layers[end + 1], PASS_THROUGH):
            end += 1
        ends[name] = end
    return ends


def pooled(y):
    """(n, D) features: a (n, C, H, W) map averaged over space, anything else flattened."""
    y = mc.to_numpy(y)
    return y.mean(axis=(2, 3)) if y.ndim == 4 else y.reshape(len(y), -1)


def forward_features(net, x, ends):
    """{name: (n, D) pooled output at ``ends[name]``} of one forward pass in evaluation mode."""
    out, last = {}, max(ends.values())
    for i, layer in enumerate(net.layers[: last + 1]):
        x = layer.forward(x, train=False, keep_for_backward=False)
        for name, end in ends.items():
            if end == i:
                out[name] = pooled(x)
    return out


def whole_image_features(net, patches, ends, batch=16, workers=2, log=print):
    """({name: (n_images, D) float32}, seconds): every image of ``patches`` rendered whole at the
    network's input size through its meta's preprocessing, forwarded in batches."""
    size = int(net.input_shape[-1] if net.input_shape else net.meta["input_size"])
    prep = Preprocessing.of(net)
    renderer = PatchRenderer(patches, size, prep)
    n = len(patches.image_ids)

    def render(i):
        w, h = patches.sizes[i]
        return renderer.image_patches(i, whole_image_box(int(w), int(h)), keep=False, raw=True)[0]

    feats = {name: [] for name in ends}
    started = time.perf_counter()
    for s in range(0, n, batch):
        pixels = np.stack(list(ordered_map(render, range(s, min(s + batch, n)), workers=workers)))
        x = mc.asarray(prep(pixels))
        for name, f in forward_features(net, x, ends).items():
            feats[name].append(f.astype(np.float32))
        done = min(s + batch, n)
        rate = done / (time.perf_counter() - started)
        log(f"features: {done}/{n} images, {rate:.2f} images/s")
    return {k: np.concatenate(v) for k, v in feats.items()}, time.perf_counter() - started


def l2_normalize(x):
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


# --- classifier ------------------------------------------------------------------------------
def train_svm(x, y, c):
    """(w, b) minimizing 0.5 |w|^2 + c * sum_i max(0, 1 - y_i (w . x_i + b))^2, y in {-1, +1}."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    d = x.shape[1]

    def objective(wb):
        w, b = wb[:d], wb[d]
        slack = np.maximum(0.0, 1.0 - y * (x @ w + b))
        value = 0.5 * w @ w + c * slack @ slack
        coef = -2.0 * c * slack * y
        return value, np.concatenate([w + x.T @ coef, [coef.sum()]])

    result = minimize(objective, np.zeros(d + 1), jac=True, method="L-BFGS-B",
                      options={"maxiter": 5000, "ftol": 1e-14, "gtol": 1e-9})
    return result.x[:d], float(result.x[d])


def fit_classes(x, truth, c):
    """(W (C, D), b (C,)): one SVM per class on the items whose truth is 1 or -1 (0 is the
    devkit's difficult-only label: left out). A class without both labels scores 0."""
    weights, biases = np.zeros((truth.shape[1], x.shape[1])), np.zeros(truth.shape[1])
    for k in range(truth.shape[1]):
        used = truth[:, k] != 0
        labels = truth[used, k]
        if (labels == 1).any() and (labels == -1).any():
            weights[k], biases[k] = train_svm(x[used], labels, c)
    return weights, biases


def cross_validate(x, truth, classes, metric, seed, folds=3, grid=C_GRID):
    """(the C of ``grid`` with the best mean AP of pooled held-out scores, {C: that mAP})."""
    fold_of = np.random.default_rng(seed).permutation(len(x)) % folds
    table = {}
    for c in grid:
        scores = np.zeros(truth.shape, dtype=np.float64)
        for f in range(folds):
            w, b = fit_classes(x[fold_of != f], truth[fold_of != f], c)
            scores[fold_of == f] = x[fold_of == f] @ w.T + b
        table[c] = evaluate_items(scores, truth, classes, metric).map
    best = max(grid, key=lambda c: (table[c], -abs(np.log(c))))  # ties: the C nearest 1
    return best, table


def bootstrap_aps(scores, truth, names, metric, draws, seed):
    """{class: (2.5, 97.5) percentiles of its AP} over test items drawn with replacement."""
    rng = np.random.default_rng(seed)
    values = {n: [] for n in names}
    for _ in range(draws):
        pick = rng.integers(0, len(truth), len(truth))
        for name, r in evaluate_items(scores[pick], truth[pick], names, metric).results.items():
            values[name].append(r.ap)
    return {n: [float(v) for v in np.percentile(values[n], [2.5, 97.5])] if values[n] else [None, None]
            for n in names}


# --- the experiment --------------------------------------------------------------------------
def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def cached_features(net, patches, layers, out, weights, batch, workers, log):
    """{layer: (n_images, D)} from OUT/features-<layer>.npz where their key matches, else computed
    (all missing layers in one pass) and written; and the seconds spent forwarding (0 if cached)."""
    size = int(net.input_shape[-1] if net.input_shape else net.meta["input_size"])
    key = json.dumps({"weights": file_digest(weights), "paths": patches.paths, "size": size,
                      **Preprocessing.of(net).to_meta()}, sort_keys=True)
    key = hashlib.sha256(key.encode()).hexdigest()[:16]
    found, missing = {}, []
    for name in layers:
        path = os.path.join(out, f"features-{name}.npz")
        if os.path.exists(path):
            with np.load(path) as f:
                if str(f["key"]) == key:
                    found[name] = f["features"]
                    continue
        missing.append(name)
    seconds = 0.0
    if missing:
        computed, seconds = whole_image_features(net, patches, layer_ends(net, missing), batch, workers, log)
        for name, feats in computed.items():
            np.savez(os.path.join(out, f"features-{name}.npz"), features=feats, key=key)
        found.update(computed)
    return found, seconds


def run(args, log=print) -> dict:
    mc.set_backend(args.backend)
    net = mc.Sequential.load(args.weights)
    layer_ends(net, args.layers)  # a wrong name refused before any work
    classes = args.classes or VOCDataset(args.voc, args.year).listed_classes(args.train_set)
    dataset = VOCDataset(args.voc, args.year, classes=classes)
    train_ids, test_ids = dataset.image_ids(args.train_set), dataset.image_ids(args.test_set)
    patches = build_patch_set(dataset, classes, "cls", train_ids, [], test_ids, args.train_set, args.test_set,
                              whole_image=True)
    train_items = scored_images(dataset, patches, classes, args.train_set, train_ids)
    test_items = patches.items["test"]
    if test_items.truth is None:
        raise InputError(f"{args.test_set}: the test images have no annotations; the baseline needs them")
    position = {image_id: i for i, image_id in enumerate(patches.image_ids)}
    train_rows = np.array([position[i] for i in train_ids])
    test_rows = np.array([position[i] for i in test_ids])
    os.makedirs(args.out, exist_ok=True)
    feats, seconds = cached_features(net, patches, args.layers, args.out, args.weights, args.batch,
                                     args.workers, log)
    metric = args.metric or default_metric(args.year)
    kept, left_out = reported_classes(test_items.truth, classes, args.min_test_positives)
    names = [classes[c] for c in kept]
    report = {"weights": os.path.abspath(args.weights), "voc": os.path.abspath(args.voc), "year": args.year,
              "train_images": len(train_ids), "test_images": len(test_ids), "metric": metric,
              "classes": names, "classes_left_out": left_out, "seeds": args.seeds, "draws": args.draws,
              "feature_seconds": seconds, "backend": args.backend,
              "images_per_second": len(patches.image_ids) / seconds if seconds else None, "layers": {}}
    for name in args.layers:
        x = l2_normalize(feats[name].astype(np.float64))
        x_train, x_test = x[train_rows], x[test_rows]
        per_seed = []
        for seed in args.seeds:
            if args.c is None:
                c, table = cross_validate(x_train, train_items.truth, classes, metric, seed, grid=args.c_grid)
            else:
                c, table = args.c, {}
            w, b = fit_classes(x_train, train_items.truth, c)
            scores = (x_test @ w.T + b)[:, kept]
            truth = test_items.truth[:, kept]
            result = evaluate_items(scores, truth, names, metric)
            per_seed.append({"seed": seed, "C": c, "cv_map": {str(k): v for k, v in table.items()},
                             "map": 100 * result.map,
                             "ap": {n: 100 * r.ap for n, r in result.results.items()},
                             "map_interval": [100 * v for v in bootstrap_map(scores, truth, names, metric,
                                                                             args.draws, seed)],
                             "ap_interval": {n: [100 * v for v in iv] for n, iv in
                                             bootstrap_aps(scores, truth, names, metric, args.draws,
                                                           seed).items()}})
            log(f"{name} seed {seed}: C {c}, mAP {100 * result.map:.1f} "
                f"({per_seed[-1]['map_interval'][0]:.1f} - {per_seed[-1]['map_interval'][1]:.1f})")
        report["layers"][name] = {
            "features": int(feats[name].shape[1]),
            "map": float(np.mean([s["map"] for s in per_seed])),
            "map_seed_spread": float(np.std([s["map"] for s in per_seed])),
            "map_interval": [float(np.mean([s["map_interval"][i] for s in per_seed])) for i in (0, 1)],
            "ap": {n: float(np.mean([s["ap"][n] for s in per_seed])) for n in names},
            "ap_interval": {n: [float(np.mean([s["ap_interval"][n][i] for s in per_seed])) for i in (0, 1)]
                            for n in names},
            "per_seed": per_seed}
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(markdown(report))
    return report


def markdown(report) -> str:
    layers = list(report["layers"])
    lines = [f"Off-the-shelf baseline (linear SVM on L2-normalized whole-image features) of "
             f"{os.path.basename(report['weights'])}: {report['train_images']} trainval and "
             f"{report['test_images']} test images, metric {report['metric']}, seeds {report['seeds']}, "
             f"95% bootstrap intervals over test images ({report['draws']} draws).", "",
             "| class | " + " | ".join(layers) + " |", "|---|" + "---|" * len(layers)]
    for c in report["classes"]:
        cells = [f"{r['ap'][c]:.1f} ({r['ap_interval'][c][0]:.1f} - {r['ap_interval'][c][1]:.1f})"
                 for r in report["layers"].values()]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    cells = [f"**{r['map']:.1f}** ({r['map_interval'][0]:.1f} - {r['map_interval'][1]:.1f}; "
             f"spread {r['map_seed_spread']:.2f})" for r in report["layers"].values()]
    lines.append("| mAP | " + " | ".join(cells) + " |")
    if report["classes_left_out"]:
        lines += ["", "Left out (fewer positive test images than asked): "
                  + ", ".join(f"{c} {n}" for c, n in sorted(report["classes_left_out"].items()))]
    return "\n".join(lines) + "\n"


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--voc", required=True, help="devkit root (holds VOC<year>/)")
    p.add_argument("--year", type=int, default=2007)
    p.add_argument("--weights", required=True, help="source network .npz (minicnn save / import-weights)")
    p.add_argument("--layers", nargs="+", required=True, help="top-level layers whose output is the feature")
    p.add_argument("--out", required=True)
    p.add_argument("--classes", type=lambda s: s.split(","), default=None, help="a,b,c (default: the set's)")
    p.add_argument("--train-set", default="trainval")
    p.add_argument("--test-set", default="test")
    p.add_argument("--metric", choices=("voc07", "area"), default=None, help="default: the year's")
    p.add_argument("--min-test-positives", type=int, default=5)
    p.add_argument("--c", type=float, default=None, help="the SVM's C (default: cross-validated on trainval)")
    p.add_argument("--c-grid", type=float, nargs="+", default=C_GRID, help="the Cs cross-validation tries")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--draws", type=int, default=1000, help="bootstrap draws")
    p.add_argument("--backend", default="cpu", choices=("numpy", "cpu", "cuda"))
    p.add_argument("--batch", type=int, default=16, help="images per forward")
    p.add_argument("--workers", type=int, default=2, help="decoding threads")
    return p.parse_args(argv)


def main(argv=None) -> int:
    try:
        report = run(parse(argv))
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
