"""Source training (METHOD.md section 2): a network on a labelled image-folder set.

Krizhevsky's recipe, scaled by arguments for small machines: SGD with momentum 0.9,
weight decay 5e-4, batch 128, learning rate 0.01 divided by 10 when the validation error
stops improving; images resized to ``resize`` on the shorter side (256 for 224/227
inputs), random crops of the input size and horizontal flips for training, centre crops
for validation.

Preprocessing (a default we chose): the per-channel mean of the training images is
subtracted (a mean image would not fit the patches of every size and place that
transfer feeds the network) and the result divided by the per-channel standard
deviation, so that inputs are of unit scale for the He-initialised layers. Both are kept
in the network's metadata (``mean``, ``std``) and applied to every patch later.

Each epoch reports validation top-1 and top-5 accuracy and writes a checkpoint
atomically; ``resume`` continues from it. The final network is saved with its class list,
input size and mean in its metadata (and the class list beside it, ``.classes.txt``).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

import numpy as np

from minicnn import backend, models
from minicnn.checkpoint import load_checkpoint, save_checkpoint
from minicnn.data.folders import read_folder, split_train_val, write_class_list
from minicnn.data.loader import ImageLoader, image_statistics
from minicnn.data.transforms import ImageTransform
from minicnn.errors import InputError
from minicnn.losses import softmax_cross_entropy
from minicnn.optim import SGD, PlateauLR


@dataclass
class PretrainSettings:
    model: str = "alexnet"          # "alexnet" (224/227) or "small" (small_alexnet)
    input_size: int = 227
    resize: int | None = None       # shorter side before cropping; default 256 for 224/227 inputs
                                    # (Krizhevsky's), else round(input * 256 / 224)
    groups: int = 2
    channels: tuple = (96, 256, 384, 384, 256)
    hidden: int = 4096
    epochs: int = 90
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_factor: float = 0.1
    lr_patience: int = 2
    val_fraction: float = 0.1
    workers: int = 2
    seed: int = 0

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        if self.model not in ("alexnet", "small"):
            raise InputError(f"model must be 'alexnet' or 'small', got {self.model!r}")
        if self.resize is None:
            self.resize = 256 if self.input_size in (224, 227) else round(self.input_size * 256 / 224)

    def build(self, num_classes):
        if self.model == "alexnet":
            return models.alexnet(num_classes, input_size=self.input_size, groups=self.groups,
                                  channels=self.channels, hidden=self.hidden)
        return models.small_alexnet(num_classes, input_size=self.input_size, groups=self.groups,
                                    channels=self.channels, hidden=self.hidden)


def top_k_correct(logits, labels, k):
    """Number of samples whose label is among the k largest logits."""
    top = np.argpartition(-logits, min(k, logits.shape[1]) - 1, axis=1)[:, :k]
    return int((top == labels[:, None]).any(axis=1).sum())


def evaluate_classifier(net, loader, scale=1.0):
    """(top-1, top-5) accuracy of ``net`` over a loader's epoch (inputs multiplied by ``scale``)."""
    n = top1 = top5 = 0
    for batch in loader.epoch(0):
        x = backend.asarray(batch.images * scale)
        logits = backend.to_numpy(net.forward(x, train=False, keep_for_backward=False))
        top1 += top_k_correct(logits, batch.labels, 1)
        top5 += top_k_correct(logits, batch.labels, 5)
        n += len(batch.labels)
    return top1 / max(n, 1), top5 / max(n, 1)


def pretrain(data_root, out_dir, settings: PretrainSettings, list_file=None, skip_bad=False,
             resume=False, log=print):
    """Train a source network; returns {"weights": path, "history": [...], "classes": [...]}."""
    folder = read_folder(data_root, list_file=list_file, skip_bad=skip_bad)
    if len(folder.classes) < 2:
        raise InputError(f"{data_root}: a source set needs at least 2 classes, found {len(folder.classes)}")
    train, val = split_train_val(folder, settings.val_fraction, seed=settings.seed)
    log(f"{folder.summary()}; {len(train)} for training, {len(val)} for validation")
    s = settings
    test_tf = ImageTransform(s.input_size, resize=s.resize)
    mean, std = image_statistics(train.paths, test_tf, max_images=1000, seed=s.seed, workers=s.workers)
    mean = mean.mean(axis=(1, 2))
    log(f"per-channel mean {[round(float(m), 1) for m in mean]}, "
        f"standard deviation {[round(float(v), 1) for v in std]}")
    scale = (1.0 / std).reshape(1, 3, 1, 1)
    train_loader = ImageLoader(train.paths, train.labels,
                               ImageTransform(s.input_size, resize=s.resize, random_crop=True, flip=True),
                               batch_size=s.batch_size, shuffle=True, seed=s.seed, mean=mean,
                               workers=s.workers, skip_bad=skip_bad, progress=True)
    val_loader = ImageLoader(val.paths, val.labels, test_tf, batch_size=256, mean=mean,
                             workers=s.workers, skip_bad=skip_bad)
    backend.seed(s.seed)
    net = s.build(len(folder.classes))
    net.meta.update(classes=list(folder.classes), mean=[float(m) for m in mean], std=[float(v) for v in std],
                    input_size=s.input_size, source=os.path.abspath(os.fspath(data_root)))
    opt = SGD(net, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    schedule = PlateauLR(opt, factor=s.lr_factor, patience=s.lr_patience, mode="min")
    os.makedirs(out_dir, exist_ok=True)
    checkpoint = os.path.join(out_dir, "checkpoint.npz")
    history, start = [], 0
    if resume and os.path.exists(checkpoint):
        _, state = load_checkpoint(checkpoint, net, opt)
        history, start = state["history"], state["epoch"]
        schedule.best, schedule.bad_epochs = state["schedule"]
        log(f"resumed from {checkpoint} after epoch {start}")
    for epoch in range(start, s.epochs):
        t0, total, n = time.perf_counter(), 0.0, 0  # the loss stays on the device until the epoch ends
        for batch in train_loader.epoch(epoch):
            batch.images[...] *= scale
            loss, dlogits = softmax_cross_entropy(net.forward(backend.asarray(batch.images), train=True),
                                                  batch.labels)
            net.backward(dlogits)
            opt.step()
            total = total + loss * len(batch.labels)
            n += len(batch.labels)
        total = float(total)
        if not np.isfinite(total):
            raise InputError(f"pretrain: the loss became {total} in epoch {epoch + 1}; lower --lr "
                             f"(now {opt.lr:g})")
        top1, top5 = evaluate_classifier(net, val_loader, scale) if len(val) else (float("nan"),) * 2
        record = {"epoch": epoch + 1, "loss": total / max(n, 1), "val_top1": top1, "val_top5": top5,
                  "lr": opt.lr, "seconds": time.perf_counter() - t0}
        history.append(record)
        log(f"pretrain epoch {epoch + 1}/{s.epochs}: loss {record['loss']:.4f}, validation top-1 "
            f"{top1:.3f}, top-5 {top5:.3f}, lr {opt.lr:g}, {record['seconds']:.1f} s")
        if len(val):
            schedule.step(1.0 - top1)
        save_checkpoint(checkpoint, net, opt, {"epoch": epoch + 1, "history": history,
                                               "schedule": [schedule.best, schedule.bad_epochs],
                                               "settings": asdict(s)})
    weights = os.path.join(out_dir, "source.npz")
    net.save(weights)
    write_class_list(weights, folder.classes)
    return {"weights": weights, "history": history, "classes": list(folder.classes)}
