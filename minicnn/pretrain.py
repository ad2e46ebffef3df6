"""Source training (docs/method.md section 2): a network on a labelled image-folder set.

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
atomically (:func:`minicnn.training.fit`, the loop the adaptation layers use too);
``resume`` continues from it to the same bytes as the uninterrupted run. The final network
is saved with its class list, input size and preprocessing in its metadata (and the class
list beside it, ``.classes.txt``), and the per-epoch history as ``history.csv``.

Under MPI (``minicnn.distributed``) each rank loads its slice of every global batch
(:class:`RankLoader`: the crops and flips of its images are those the whole batch gets in
one process) and validates its part of the validation images; rank 0 writes the results.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from minicnn import backend, distributed, models
from minicnn.atomic import write_text
from minicnn.data.folders import read_folder, split_train_val, write_class_list
from minicnn.data.loader import ImageLoader, image_statistics, ordered_map
from minicnn.data.preprocess import Preprocessing
from minicnn.data.transforms import ImageTransform, decoded_size, describe_bad, scan_images
from minicnn.errors import InputError
from minicnn.plots import plot_training
from minicnn.training import SGDSettings, check_range, fit

MODELS = ("alexnet", "small")
# the widths of each model: conv1..conv5 and FC6/FC7, and its input size
MODEL_DEFAULTS = {"alexnet": {"input_size": 227, "channels": (96, 256, 384, 384, 256), "hidden": 4096},
                  "small": {"input_size": 32, "channels": (32, 64, 96, 96, 64), "hidden": 256}}


@dataclass
class PretrainSettings(SGDSettings):
    model: str = "alexnet"          # "alexnet" (224/227) or "small" (small_alexnet)
    input_size: int | None = None   # default: the model's (227; small: 32)
    resize: int | None = None       # shorter side before cropping; default 256 for 224/227 inputs
                                    # (Krizhevsky's), else round(input * 256 / 224)
    groups: int = 2
    channels: tuple | None = None   # conv1..conv5 widths; default: the model's
    hidden: int | None = None       # FC6/FC7 width; default: the model's
    epochs: int = 90
    val_fraction: float = 0.1
    workers: int = 2

    def __post_init__(self):
        super().__post_init__()
        if self.model not in MODELS:
            raise InputError(f"--model must be one of {', '.join(MODELS)}, got {self.model!r}")
        defaults = MODEL_DEFAULTS[self.model]
        for name in ("input_size", "channels", "hidden"):
            if getattr(self, name) is None:
                setattr(self, name, defaults[name])
        self.channels = tuple(self.channels)
        if len(self.channels) != 5 or not all(isinstance(c, int) and c >= 1 for c in self.channels):
            raise InputError(f"--channels needs 5 integer widths >= 1, got {self.channels}")
        if self.groups not in (1, 2):
            raise InputError(f"--groups must be 1 or 2, got {self.groups}")
        if any(c % self.groups for c in self.channels):
            raise InputError(f"--channels {self.channels}: every width must divide by --groups {self.groups}")
        check_range(self, "hidden", low=1, integer=True)
        check_range(self, "input_size", low=8, integer=True)
        check_range(self, "val_fraction", low=0, high=1, high_open=True)
        check_range(self, "workers", low=0, integer=True)
        if self.resize is None:
            self.resize = 256 if self.input_size in (224, 227) else round(self.input_size * 256 / 224)
        check_range(self, "resize", low=self.input_size, integer=True)

    def build(self, num_classes):
        build = models.alexnet if self.model == "alexnet" else models.small_alexnet
        try:
            return build(num_classes, input_size=self.input_size, groups=self.groups, channels=self.channels,
                         hidden=self.hidden)
        except ValueError as e:  # a layout the input size cannot hold
            raise InputError(f"--model {self.model} --input-size {self.input_size}: {e}") from None


def top_k_correct(logits, labels, k):
    """Number of samples whose label is among the k largest logits."""
    top = np.argpartition(-logits, min(k, logits.shape[1]) - 1, axis=1)[:, :k]
    return int((top == labels[:, None]).any(axis=1).sum())


def evaluate_classifier(net, loader, preprocessing: Preprocessing):
    """(top-1, top-5) accuracy of ``net`` over a loader's epoch."""
    n = top1 = top5 = 0
    for batch in loader.epoch(0):
        x = backend.asarray(preprocessing(batch.images))
        logits = backend.to_numpy(net.forward(x, train=False, keep_for_backward=False))
        top1 += top_k_correct(logits, batch.labels, 1)
        top5 += top_k_correct(logits, batch.labels, 5)
        n += len(batch.labels)
    if distributed.world().size > 1:  # each rank counted its part of the images
        n, top1, top5 = distributed.sum_values([n, top1, top5])
    return top1 / max(n, 1), top5 / max(n, 1)


class RankLoader(ImageLoader):
    """This rank's slice (:func:`minicnn.distributed.shard`) of every batch of the
    single-process order, each image cropped and flipped exactly as in one process.

    One process draws the crops of batch b from one generator, image after image, and the
    number of draws an image takes depends on its size; so this rank replays the draws of
    the images before its slice (their sizes from the headers, :func:`decoded_size`,
    remembered) before cropping its own. An empty slice is still yielded, so that every rank
    takes every step. (An image whose header reads but whose pixels do not, left out with
    --skip-bad, takes no draws in one process but is replayed here.)"""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._sizes = {}

    def epoch(self, epoch=0):
        order = self.order(epoch)
        jobs = [(epoch, b, order[i:i + self.batch_size]) for b, i in enumerate(range(0, len(order),
                                                                                     self.batch_size))]
        for batch, bad in ordered_map(self._make_batch, jobs, self.workers, self.prefetch):
            self.skipped.update(bad)
            yield batch

    def _make_batch(self, job):
        # ImageLoader._make_batch, on this rank's slice, its generator first advanced past
        # the images before the slice
        epoch, b, chunk = job
        mine = distributed.shard(len(chunk))
        rng = self._augment_rng(epoch, b)
        for i in chunk[:mine.start] if rng is not None else ():
            if i not in self._sizes:
                self._sizes[i] = decoded_size(self.paths[i], self.transform.resize)
            if self._sizes[i] is not None:
                self.transform.crop_box(*self._sizes[i], rng)
        return self._load(chunk[mine], rng)


def source_data(data_root, settings: PretrainSettings, list_file=None, skip_bad=False, classes=None):
    """(folder, train, validation) of a source set, every image's header read first: the
    unreadable ones are all named at once, or with ``skip_bad`` left out and listed in
    ``folder.skipped``. ``classes``: train on these classes only (a class list, e.g. of
    ``minicnn source-classes``), numbered in its order; with ``list_file`` its images of
    other classes are left out. Cheap; run before any long work."""
    s = settings
    exclude = ()
    if classes is not None and list_file is not None:
        exclude = _list_classes(list_file) - set(classes)
    folder = read_folder(data_root, list_file=list_file, classes=None if classes is None else list(classes),
                         exclude=exclude, skip_bad=skip_bad)
    bad = scan_images(folder.paths, workers=max(1, s.workers))
    if bad and not skip_bad:
        raise InputError(f"{data_root}: {describe_bad(bad)}")
    if bad:
        unreadable = {path for path, _ in bad}
        folder = folder.subset([i for i, p in enumerate(folder.paths) if p not in unreadable])
        folder.skipped.extend(bad)
    if len(folder.classes) < 2:
        raise InputError(f"{data_root}: a source set needs at least 2 classes, found {len(folder.classes)}")
    train, val = split_train_val(folder, s.val_fraction, seed=s.seed)
    return folder, train, val


def _list_classes(list_file) -> set[str]:
    """The first path components (classes) of a list file's lines; the file's errors are
    read_folder's to report."""
    try:
        with open(list_file, encoding="utf-8") as f:
            return {line.strip().replace("\\", "/").split("/")[0] for line in f if line.strip()}
    except (OSError, UnicodeDecodeError):
        return set()


def pretrain(data_root, out_dir, settings: PretrainSettings, list_file=None, skip_bad=False,
             resume=False, log=print, data=None, classes=None):
    """Train a source network; returns {"weights": path, "history": [...], "classes": [...],
    "images": {"train", "val"}, "skipped": [(item, reason)]}. ``data``: what
    :func:`source_data` returned, if the caller has already checked the set; ``classes``:
    train on these classes only (see :func:`source_data`)."""
    s = settings
    folder, train, val = data or source_data(data_root, settings, list_file, skip_bad, classes=classes)
    log(f"{folder.summary()}; {len(train)} for training, {len(val)} for validation")
    test_tf = ImageTransform(s.input_size, resize=s.resize)
    mean, std = image_statistics(train.paths, test_tf, max_images=1000, seed=s.seed, workers=s.workers,
                                 skip_bad=skip_bad)
    preprocessing = Preprocessing(mean=mean.mean(axis=(1, 2)), std=std)
    log(f"per-channel mean {[round(m, 1) for m in preprocessing.mean]}, "
        f"standard deviation {[round(v, 1) for v in preprocessing.std]}")
    world = distributed.world()
    train_loader = (RankLoader if world.size > 1 else ImageLoader)(
        train.paths, train.labels, ImageTransform(s.input_size, resize=s.resize, random_crop=True, flip=True),
        batch_size=s.batch_size, shuffle=True, seed=s.seed, workers=s.workers, skip_bad=skip_bad)
    # each rank validates whole batches of the single-process validation (the same sums)
    mine = _whole_batches(len(val), 256)
    val_loader = ImageLoader(val.paths[mine], val.labels[mine], test_tf, batch_size=256, workers=s.workers,
                             skip_bad=skip_bad)
    backend.seed(s.seed)
    net = s.build(len(folder.classes))
    net.meta.update(classes=list(folder.classes), input_size=s.input_size,
                    source=os.path.abspath(os.fspath(data_root)), **preprocessing.to_meta())

    def epoch_batches(epoch):
        batches = train_loader.epoch(epoch)
        return len(train_loader), ((preprocessing(b.images), b.labels, None) for b in batches)

    def validate(net):
        top1, top5 = evaluate_classifier(net, val_loader, preprocessing)
        return {"val_top1": top1, "val_top5": top5}

    if world.is_root:
        os.makedirs(out_dir, exist_ok=True)
    history = fit(net, epoch_batches, s, validate=validate if len(val) else None, monitor="val_top1",
                  mode="max", checkpoint=os.path.join(out_dir, "checkpoint.npz"), resume=resume, log=log,
                  desc="pretrain")
    weights = os.path.join(out_dir, "source.npz")
    if world.is_root:
        net.save(weights)
        write_class_list(weights, folder.classes)
        write_history_csv(os.path.join(out_dir, "history.csv"), history)
        plot_training(os.path.join(out_dir, "training.png"), {"source network": history},
                      metric=["val_top1", "val_top5"], metric_label="validation accuracy",
                      title="source training: loss and validation accuracy per epoch")
    loaded = {k: v for part in distributed.allgather({**train_loader.skipped, **val_loader.skipped})
              for k, v in part.items()}  # each rank read its own part of the images
    skipped = [*folder.skipped, *loaded.items()]
    return {"weights": weights, "history": history, "classes": list(folder.classes),
            "images": {"train": len(train), "val": len(val)}, "skipped": skipped}


def _whole_batches(n, batch_size):
    """This rank's part of ``n`` items in batches of ``batch_size``: whole batches of one
    process's order, so that every forward pass sees what it sees in one process."""
    batches = distributed.shard(-(-n // batch_size))
    return slice(batches.start * batch_size, min(n, batches.stop * batch_size))


def write_history_csv(path, history):
    """One row per epoch, one column per figure the history holds."""
    columns = list(dict.fromkeys(k for record in history for k in record))
    rows = [",".join(columns)] + [",".join(f"{r.get(c, '')}" for c in columns) for r in history]
    write_text(path, "\n".join(rows) + "\n")
