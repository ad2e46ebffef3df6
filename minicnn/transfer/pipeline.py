"""The transfer method end to end (METHOD.md sections 3-6) on a VOC-format target set.

    source network ──> transfer_net: C1..FC7 copied (frozen), FCa, FCb
    trainval images ──> patches + labels ──> train (a held-out part validates each epoch)
    test images ──> patches ──> softmax ──> mean of p^k per image ──> comp1 files ──> VOC AP

With ``task="action"`` (METHOD.md 7, VOC 2012's action set) the persons play the objects, with
their action as class, and each test person is scored by the mean of p^k over the patches
that satisfy both overlap rules for its box (comp9 files).

Variants (``TransferSettings.variant``):

=============  ====================================================================
frozen         FCa/FCb trained on cached FC7 features (the paper's method; default)
update-fc67    FC6, FC7, FCa, FCb trained on cached C5 features (PRE-1512U)
finetune       every layer trained on patch pixels, starting from the source weights
scratch        the same architecture from a random initialisation, every layer trained
whole-image    frozen features of the whole image as one patch (claim 2's baseline)
=============  ====================================================================
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from minicnn import backend, models
from minicnn.data.voc import VOC_CHALLENGE_ACTIONS, VOCDataset, pixel_boxes
from minicnn.errors import InputError
from minicnn.evaluate import evaluate_voc, result_filename, write_action_results, write_cls_results
from minicnn.evaluate.submission import DEFAULT_COMPETITION, TASK_FOLDER
from minicnn.net import Sequential
from minicnn.transfer.features import build_feature_cache
from minicnn.transfer.labels import patches_on_box
from minicnn.transfer.patches import SCALES, STRIDE_FRACTION, describe_sampler
from minicnn.transfer.patchset import PatchRenderer, voc_patch_set
from minicnn.transfer.scores import aggregate_by_image
from minicnn.transfer.train import TrainSettings, mean_ap, patch_probabilities, train_patches

VARIANTS = ("frozen", "update-fc67", "finetune", "scratch", "whole-image")
# the layer whose output is cached, per cached variant
CACHE_CUT = {"frozen": "drop7", "whole-image": "drop7", "update-fc67": "flatten"}


@dataclass
class TransferSettings:
    variant: str = "frozen"
    task: str = "cls"                   # "cls" (objects, VOC Main) or "action" (persons, VOC Action)
    hidden: int = 2048                  # FCa width
    dropout: float = 0.5                # after FCa (a default we chose, METHOD.md 3)
    val_fraction: float = 0.2           # held-out part of trainval for per-epoch validation mAP
    train_split: str = "trainval"
    test_split: str = "test"
    scales: tuple = SCALES
    stride_fraction: float = STRIDE_FRACTION
    cache_dtype: str = "float32"
    eval_batch: int = 256
    competition: str | None = None      # default comp1 (cls) or comp9 (action)
    train: TrainSettings = field(default_factory=TrainSettings)

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise InputError(f"unknown variant {self.variant!r}; choose one of {', '.join(VARIANTS)}")
        if self.task not in ("cls", "action"):
            raise InputError(f"unknown task {self.task!r}; choose cls or action")
        if self.task == "action" and self.variant == "whole-image":
            raise InputError("the whole-image variant is a baseline of the classification task, not of "
                             "the action task (whose test samples are persons)")
        if isinstance(self.train, dict):
            self.train = TrainSettings(**self.train)
        self.scales = tuple(float(s) for s in self.scales)
        for name in ("dropout", "val_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise InputError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.hidden < 1:
            raise InputError(f"hidden (the width of FCa) must be >= 1, got {self.hidden}")


def build_network(source: Sequential, num_outputs, settings: TransferSettings):
    """The transfer network for ``settings.variant``, with its trainable layers set."""
    if settings.variant == "scratch":
        # same architecture, fresh random weights (the seed fixes them)
        source = Sequential([type(layer)(**layer.config()) for layer in source.layers], source.names,
                            input_shape=source.input_shape, meta=source.meta)
    net = models.transfer_net(source, num_outputs, hidden=settings.hidden, dropout=settings.dropout)
    if settings.variant in ("finetune", "scratch"):
        net.freeze(net.names, frozen=False)
    elif settings.variant == "update-fc67":
        net.freeze(net.names[net.names.index("fc6"):], frozen=False)
    return net


def split_trainval(image_ids, val_fraction, seed):
    """(train ids, val ids): a seeded random ``val_fraction`` of the images held out."""
    order = np.random.default_rng(seed).permutation(len(image_ids))
    n_val = int(round(val_fraction * len(image_ids)))
    if val_fraction > 0 and len(image_ids) > 1:
        n_val = min(max(n_val, 1), len(image_ids) - 1)
    val = sorted(order[:n_val].tolist())
    train = sorted(order[n_val:].tolist())
    return [image_ids[i] for i in train], [image_ids[i] for i in val]


def image_labels(dataset, image_ids, classes):
    """(n, C) int8 labels 1 / -1 / 0 (difficult only) from the annotations."""
    out = np.full((len(image_ids), len(classes)), -1, dtype=np.int8)
    index = {c: j for j, c in enumerate(classes)}
    for i, image_id in enumerate(image_ids):
        for o in dataset.annotation(image_id).objects:
            if o.name in index:
                j = index[o.name]
                out[i, j] = max(out[i, j], 0 if o.difficult else 1)
    return out


class Transfer:
    """One transfer run: data, network, inputs (cached features or pixels), training, scoring."""

    def __init__(self, voc_root, year, source: Sequential, out_dir, settings: TransferSettings,
                 classes=None, cache_root=None, log=print):
        self.settings, self.log, self.out = settings, log, os.fspath(out_dir)
        os.makedirs(self.out, exist_ok=True)
        s = settings
        action = s.task == "action"
        if action:
            classes = list(classes or VOC_CHALLENGE_ACTIONS)
            unknown = [a for a in classes if a not in VOC_CHALLENGE_ACTIONS]
            if unknown:
                raise InputError(f"unknown action {unknown[0]!r}; the actions are "
                                 f"{', '.join(VOC_CHALLENGE_ACTIONS)}")
            self.dataset = VOCDataset(voc_root, year)
        else:
            classes = classes or VOCDataset(voc_root, year).listed_classes(s.train_split)
            self.dataset = VOCDataset(voc_root, year, classes=classes)
        self.classes = list(classes)
        self.background = len(self.classes)
        self.source = source
        self.input_size = int((source.input_shape or source.meta.get("input_size"))[-1]
                              if source.input_shape else source.meta["input_size"])
        self.mean = np.asarray(source.meta.get("mean", [0.0, 0.0, 0.0]), dtype=np.float32)
        self.std = np.asarray(source.meta.get("std", [1.0, 1.0, 1.0]), dtype=np.float32)
        self.cache_root = cache_root or os.path.join(self.out, "cache")
        image_set = "Action" if action else "Main"
        trainval = self.dataset.image_ids(s.train_split, task=image_set)
        self.train_ids, self.val_ids = split_trainval(trainval, s.val_fraction, s.train.seed)
        self.test_ids = self.dataset.image_ids(s.test_split, task=image_set)
        whole = s.variant == "whole-image"
        sampler = dict(scales=s.scales, stride_fraction=s.stride_fraction)
        self.log(f"patch sampler: {describe_sampler(scales=s.scales, stride_fraction=s.stride_fraction)}")
        # one patch set over every image: a single cache serves train, val and test
        self.ids = sorted(set(trainval) | set(self.test_ids))
        self.patches = voc_patch_set(self.dataset, self.ids, self.classes, whole_image=whole,
                                     unannotated_ok=set(self.test_ids) - set(trainval), task=s.task,
                                     **sampler)
        self.log(f"patches of {s.train_split}+{s.test_split}: {self.patches.describe(self.background)}")
        where = {image_id: i for i, image_id in enumerate(self.ids)}
        self.rows = {name: np.flatnonzero(np.isin(self.patches.image, [where[i] for i in ids]))
                     for name, ids in (("train", self.train_ids), ("val", self.val_ids),
                                       ("test", self.test_ids))}
        # what is scored: images (cls) or (image id, person) pairs (action), and for each the
        # patches whose p^k it averages, as (position in rows[split], sample) pairs
        if action:
            self.samples = {"val": self._persons(s.train_split, self.val_ids),
                            "test": self._persons(s.test_split, self.test_ids)}
            self.pairs = {split: self._person_patches(split) for split in ("val", "test")}
        else:
            self.samples = {"val": self.val_ids, "test": self.test_ids}
            self.pairs = {split: self._image_patches(split) for split in ("val", "test")}
        backend.seed(s.train.seed)
        self.net = build_network(source, len(self.classes) + 1, s)
        self.renderer = PatchRenderer(self.patches, self.input_size, self.mean, self.std)

    # --- network inputs -----------------------------------------------------------------------
    def prepare_inputs(self):
        """Cache the frozen layers' output (cached variants) and return (trained net, inputs_of)."""
        variant = self.settings.variant
        if variant not in CACHE_CUT:
            return self.net, self.renderer
        cut = self.net.names.index(CACHE_CUT[variant]) + 1
        extractor = Sequential(self.net.layers[:cut], self.net.names[:cut])
        trained = Sequential(self.net.layers[cut:], self.net.names[cut:])
        p = self.patches
        offsets = p.offsets
        started = time.perf_counter()
        self.log(f"feature cache ({CACHE_CUT[variant]} output) of {len(p.labels)} patches")
        cache = build_feature_cache(
            self.cache_root, CACHE_CUT[variant], extractor, p.image_ids,
            lambda i: p.boxes[offsets[i]:offsets[i + 1]], lambda i: p.labels[offsets[i]:offsets[i + 1]],
            self.renderer.image_patches,
            {"sampler": [self.settings.scales, self.settings.stride_fraction],
             "whole": variant == "whole-image", "input_size": self.input_size, "task": self.settings.task,
             "mean": self.mean.tolist(), "std": self.std.tolist(), "paths": p.paths},
            dtype=np.dtype(self.settings.cache_dtype), batch_size=self.settings.eval_batch,
            progress=_progress_printer(self.log, "features"))
        self.log(f"feature cache ready in {time.perf_counter() - started:.1f} s: {cache.directory}")
        features = cache.features

        def inputs_of(rows):
            return np.asarray(features[np.asarray(rows)], dtype=np.float32)

        return trained, inputs_of

    # --- scoring -------------------------------------------------------------------------------
    def _image_patches(self, split):
        ids = self.samples[split]
        where = {image_id: i for i, image_id in enumerate(ids)}
        image_of = np.array([where[self.ids[i]] for i in self.patches.image[self.rows[split]]],
                            dtype=np.int64)
        return np.arange(len(image_of)), image_of

    def _persons(self, split, image_ids):
        """(image id, person) pairs of the action set ``split`` whose image is in ``image_ids``."""
        chosen = set(image_ids)
        return [(i, o) for i, o in self.dataset.action_persons(split) if i in chosen]

    def _person_patches(self, split):
        """The patches of its image that score each person (:func:`patches_on_box`)."""
        rows = self.rows[split]
        image_of_row = self.patches.image[rows]  # non-decreasing: patches are stored by image
        where = {image_id: i for i, image_id in enumerate(self.ids)}
        positions, samples = [], []
        for j, (image_id, person) in enumerate(self.samples[split]):
            k = where[image_id]
            pos = np.arange(np.searchsorted(image_of_row, k), np.searchsorted(image_of_row, k, side="right"))
            chosen = patches_on_box(self.patches.boxes[rows[pos]], pixel_boxes([person.box]))
            positions.append(pos[chosen])
            samples.append(np.full(int(chosen.sum()), j, dtype=np.int64))
        if not positions:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(positions), np.concatenate(samples)

    def ground_truth(self, split):
        """(n_samples, C) labels 1 / -1 (/ 0 for difficult-only images) of ``split``'s samples."""
        if self.settings.task == "cls":
            return image_labels(self.dataset, self.samples[split], self.classes)
        return np.array([[1 if a in person.actions else -1 for a in self.classes]
                         for _, person in self.samples[split]], dtype=np.int8).reshape(-1, len(self.classes))

    def score(self, net, inputs_of, split):
        """(n_samples, C) scores of ``split``'s images (cls) or persons (action), background
        dropped, and the patch probabilities of the split."""
        probs = patch_probabilities(net, inputs_of, self.rows[split], self.settings.eval_batch)
        positions, sample = self.pairs[split]
        scores = aggregate_by_image(probs[positions], sample, len(self.samples[split]), self.settings.train.k)
        return scores[:, : len(self.classes)], probs

    def run(self, resume=False):
        s = self.settings
        started = time.perf_counter()
        trained, inputs_of = self.prepare_inputs()
        val_gt = self.ground_truth("val")

        def validate(net):
            scores, _ = self.score(net, inputs_of, "val")
            return mean_ap(scores, val_gt, s.train.metric)

        train_rows = self.rows["train"]
        labels = self.patches.labels[train_rows]
        history = train_patches(trained, lambda idx: inputs_of(train_rows[idx]), labels, self.background,
                                s.train, validate=validate if len(val_gt) else None,
                                checkpoint=os.path.join(self.out, "checkpoint.npz"), resume=resume,
                                log=self.log, desc=s.variant)
        self.net.meta.update(target_classes=self.classes, k=s.train.k, scales=list(s.scales),
                             stride_fraction=s.stride_fraction, variant=s.variant, task=s.task)
        self.net.save(os.path.join(self.out, "transfer.npz"))
        scores, probs = self.score(trained, inputs_of, "test")
        competition = s.competition or DEFAULT_COMPETITION[s.task]
        results = os.path.join(self.out, "results", f"VOC{self.dataset.year}", TASK_FOLDER[s.task])
        for j, name in enumerate(self.classes):
            path = os.path.join(results, result_filename(competition, s.task, s.test_split, name))
            if s.task == "action":
                write_action_results(path, [(i, o.index) for i, o in self.samples["test"]], scores[:, j])
            else:
                write_cls_results(path, self.test_ids, scores[:, j])
        summary = {"variant": s.variant, "history": history, "settings": asdict(s),
                   "results": results, "seconds": None}
        try:
            report = evaluate_voc(self.dataset, s.test_split, s.task, results, competition=competition,
                                  metric=s.train.metric)
            summary["ap"] = {name: r.ap for name, r in report.results.items()}
            summary["map"] = report.map
            summary["warnings"] = report.warnings
        except InputError as e:  # e.g. a test set without annotations (VOC2012 test)
            self.log(f"not evaluated: {e}")
            report = None
        summary["seconds"] = time.perf_counter() - started
        with open(os.path.join(self.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1, default=float)
        self.test_probs, self.test_scores, self.report = probs, scores, report
        return summary


def _progress_printer(log, what, every=0.1):
    state = {"next": every}

    def progress(done, total):
        if done / total >= state["next"] or done == total:
            log(f"{what}: {done}/{total} images")
            state["next"] = done / total + every
    return progress


def load_source(path):
    """A source network saved by ``minicnn pretrain`` (or any Sequential with fc7/drop7)."""
    net = Sequential.load(path)
    if "fc7" not in net.names:
        raise InputError(f"{path}: not a source network (it has no layer 'fc7'; "
                         f"layers: {', '.join(net.names)})")
    return net

