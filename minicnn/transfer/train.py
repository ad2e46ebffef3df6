"""Training on labelled patches, and scoring images from their patches.

One loop serves every variant: the adaptation layers on cached FC7 (or C5) features, and
whole networks on patch pixels (``update-fc67`` from C5 features, ``finetune``, ``scratch``).
What differs is only ``inputs_of(indices)``, which returns the network input of the
chosen patches (rows of a feature cache, or rendered pixels).

Each epoch keeps every object patch and a fresh random fraction of the background patches
(METHOD.md section 5; ``balance="reweight"`` instead uses every patch and weighs background
by that fraction), shuffles, and runs SGD. After each epoch the validation images are
scored (mean of p^k over their patches) and their mAP drives a plateau schedule; a
checkpoint is written atomically, so ``resume`` continues an interrupted run exactly.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
from tqdm import tqdm

from minicnn import backend
from minicnn.checkpoint import load_checkpoint, save_checkpoint
from minicnn.data.loader import ordered_map
from minicnn.losses import softmax, softmax_cross_entropy
from minicnn.optim import SGD, PlateauLR
from minicnn.transfer.labels import background_weights, resample_background
from minicnn.transfer.scores import DEFAULT_K, aggregate_by_image


@dataclass
class TrainSettings:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    background_fraction: float = 0.1   # METHOD.md 5: a fresh 10% of the background each epoch
    balance: str = "resample"          # or "reweight"
    lr_factor: float = 0.1             # divide by 10 when validation mAP stops improving
    lr_patience: int = 2
    k: float = DEFAULT_K
    metric: str = "voc07"
    seed: int = 0

    def __post_init__(self):
        if self.balance not in ("resample", "reweight"):
            raise ValueError(f"balance must be 'resample' or 'reweight', got {self.balance!r}")
        if not 0 < self.background_fraction <= 1:
            raise ValueError(f"background_fraction must be in (0, 1], got {self.background_fraction}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be positive")


def prefetched(inputs_of, batches):
    """(indices, inputs) of each batch, the next one prepared in a background thread while
    the network computes on the current one."""
    return ordered_map(lambda idx: (idx, inputs_of(idx)), batches, workers=1, prefetch=2)


def patch_probabilities(net, inputs_of, indices, batch_size=256):
    """(len(indices), K) softmax outputs of the patches ``indices`` (evaluation mode)."""
    out = []
    batches = [indices[s : s + batch_size] for s in range(0, len(indices), batch_size)]
    for _, x in prefetched(inputs_of, batches):
        scores = net.forward(backend.asarray(x), train=False, keep_for_backward=False)
        out.append(backend.to_numpy(softmax(scores)))
    return np.concatenate(out) if out else np.zeros((0, 0))


def score_images(net, inputs_of, patch_image, num_images, k=DEFAULT_K, batch_size=256):
    """(num_images, K) image scores: the mean of p^k over each image's patches; the last
    column is the background class."""
    probs = patch_probabilities(net, inputs_of, np.arange(len(patch_image)), batch_size)
    return aggregate_by_image(probs, patch_image, num_images, k)


def mean_ap(scores, gt, metric):
    """{class index: AP} and their mean, from image scores (n, C) and labels (n, C) in {1,-1,0}."""
    from minicnn.evaluate import voc_ap

    aps = {c: float(voc_ap(scores[:, c], gt[:, c], metric=metric))
           for c in range(gt.shape[1]) if (gt[:, c] == 1).any()}
    return aps, float(np.mean(list(aps.values()))) if aps else float("nan")


def train_patches(net, inputs_of, labels, background, settings: TrainSettings, validate=None,
                  checkpoint=None, resume=False, log=print, desc="train"):
    """Train ``net`` (its trainable layers) on the patches with ``labels`` (-1 = discarded,
    ``background`` = background class). ``validate(net) -> (aps, map)`` runs after each
    epoch. Returns the history: one dict per epoch (loss, samples, lr, val_map)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(settings.seed)
    opt = SGD(net, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)
    schedule = PlateauLR(opt, factor=settings.lr_factor, patience=settings.lr_patience, mode="max")
    history, start = [], 0
    if resume and checkpoint and os.path.exists(checkpoint):
        _, state = load_checkpoint(checkpoint, net, opt)
        history, start = state["history"], state["epoch"]
        rng.bit_generator.state = state["rng"]
        schedule.best, schedule.bad_epochs = state["schedule"]
        if state.get("backend_rng") and backend.get_backend().xp is np:
            backend.get_backend().rng.bit_generator.state = state["backend_rng"]
        log(f"{desc}: resumed from {checkpoint} after epoch {start}")
    weights_all = (background_weights(labels, background, settings.background_fraction)
                   if settings.balance == "reweight" else None)
    for epoch in range(start, settings.epochs):
        if settings.balance == "resample":
            chosen = resample_background(labels, background, settings.background_fraction, rng)
        else:
            chosen = np.flatnonzero(labels >= 0)
        chosen = rng.permutation(chosen)
        total, steps = None, 0
        batches = [chosen[s : s + settings.batch_size] for s in range(0, len(chosen), settings.batch_size)]
        bar = tqdm(prefetched(inputs_of, batches), total=len(batches), desc=f"{desc} epoch {epoch + 1}",
                   unit="batch", leave=False, disable=None)
        for idx, x in bar:
            x = backend.asarray(x)
            w = None if weights_all is None else backend.asarray(weights_all[idx])
            loss, dlogits = softmax_cross_entropy(net.forward(x, train=True), backend.asarray(labels[idx]), w)
            net.backward(dlogits)
            opt.step()
            total = loss if total is None else total + loss
            steps += 1
        mean_loss = float(total) / max(steps, 1) if total is not None else float("nan")
        if not np.isfinite(mean_loss):
            raise ValueError(f"{desc}: the loss became {mean_loss} in epoch {epoch + 1} "
                             f"(learning rate {opt.lr:g} too high?)")
        record = {"epoch": epoch + 1, "loss": mean_loss, "samples": int(len(chosen)), "lr": opt.lr}
        if validate is not None:
            _, record["val_map"] = validate(net)
            schedule.step(record["val_map"])
        history.append(record)
        log(f"{desc} epoch {epoch + 1}/{settings.epochs}: loss {mean_loss:.4f} on {len(chosen)} patches"
            + (f", validation mAP {record['val_map']:.4f}" if "val_map" in record else "")
            + f", lr {record['lr']:g}")
        if checkpoint:
            be_rng = backend.get_backend().rng
            save_checkpoint(checkpoint, net, opt, {
                "epoch": epoch + 1, "history": history, "rng": rng.bit_generator.state,
                "schedule": [schedule.best, schedule.bad_epochs], "settings": asdict(settings),
                "backend_rng": be_rng.bit_generator.state if backend.get_backend().xp is np else None,
            })
    return history
