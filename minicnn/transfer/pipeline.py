"""The transfer method end to end (docs/method.md sections 3-6) on a VOC-format target set.

    source network ──> transfer_net: its layers up to the cut (FC7 for AlexNet) copied (frozen), FCa, FCb
    trainval images ──> patches + labels ──> train (a held-out part validates each epoch)
    test images ──> patches ──> softmax ──> mean of p^k per image ──> comp1 files ──> VOC AP

With ``task="action"`` (docs/method.md 7, VOC 2012's action set) the persons play the objects, with
their action as class, and each test person is scored by the mean of p^k over the patches
that satisfy both overlap rules for its box (comp9 files).

Variants (``TransferSettings.variant``):

=============  ====================================================================
frozen         FCa/FCb trained on cached features of the cut (FC7; the paper's method; default)
update-top     the layers named by ``update`` (FC6, FC7 for AlexNet), FCa, FCb trained on cached
               features of the layer below them (PRE-1512U)
update-fc67    update-top with FC6 and FC7, its AlexNet name
finetune       every layer trained on patch pixels, starting from the source weights
scratch        the same architecture from a random initialisation, every layer trained
whole-image    frozen features of the whole image as one patch (claim 2's baseline)
=============  ====================================================================
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from minicnn import backend, distributed, models
from minicnn.atomic import write_json
from minicnn.data.preprocess import Preprocessing
from minicnn.data.transforms import describe_bad, scan_images
from minicnn.data.voc import VOC_CHALLENGE_ACTIONS, VOCDataset
from minicnn.errors import InputError
from minicnn.evaluate import result_filename, write_action_results, write_cls_results
from minicnn.evaluate.challenge import Report
from minicnn.evaluate.items import evaluate_items
from minicnn.evaluate.submission import DEFAULT_COMPETITION, TASK_FOLDER
from minicnn.net import Sequential, clone_layer
from minicnn.training import check_range
from minicnn.transfer.features import build_feature_cache, cache_bytes_left, cache_directory
from minicnn.transfer.patches import SCALES, STRIDE_FRACTION, describe_sampler
from minicnn.transfer.patchset import PatchRenderer, PatchSet, build_patch_set, check_classes
from minicnn.transfer.scores import score_items
from minicnn.transfer.train import TrainSettings, patch_probabilities, train_patches

VARIANTS = ("frozen", "update-top", "update-fc67", "finetune", "scratch", "whole-image")
# the variants that train on cached features rather than on pixels
CACHED = ("frozen", "whole-image", "update-top", "update-fc67")
TASKS = ("cls", "action")
CACHE_DTYPES = ("auto", "float32", "float16")
# "auto": float16 features when the float32 cache would exceed this. Measured on the demo (71,000
# patches, 256 features): float16 gave mAP 45.97 against 46.01 with float32, the same within
# run-to-run noise, at half the disk; small caches stay float32 so that their figures do not move.
AUTO_FLOAT16_BYTES = 1 << 30


@dataclass
class TransferSettings:
    variant: str = "frozen"
    cut: str | None = None              # the source's mid-level layer (None: fc7, or the family's default)
    update: tuple | None = None         # layers update-top trains (None: fc6, fc7 for AlexNet; the cut)
    task: str = "cls"                   # "cls" (objects, VOC Main) or "action" (persons, VOC Action)
    hidden: int = 2048                  # FCa width
    dropout: float = 0.5                # after FCa (a default we chose, docs/method.md 3)
    val_fraction: float = 0.2           # held-out part of trainval for per-epoch validation mAP
    train_split: str = "trainval"
    test_split: str = "test"
    scales: tuple = SCALES
    stride_fraction: float = STRIDE_FRACTION
    cache_dtype: str = "auto"           # float16 above AUTO_FLOAT16_BYTES of float32 features
    crop_on_device: bool = False        # cuda: the cache crops each uploaded image's patches on the GPU
    eval_batch: int = 256
    competition: str | None = None      # default comp1 (cls) or comp9 (action)
    train: TrainSettings = field(default_factory=TrainSettings)

    def __post_init__(self):
        for name, allowed in (("variant", VARIANTS), ("task", TASKS), ("cache_dtype", CACHE_DTYPES)):
            if getattr(self, name) not in allowed:
                raise InputError(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}, "
                                 f"got {getattr(self, name)!r}")
        if self.task == "action" and self.variant == "whole-image":
            raise InputError("the whole-image variant is a baseline of the classification task, not of "
                             "the action task (whose test samples are persons)")
        if self.update is not None:
            self.update = tuple(str(name) for name in self.update)
            if not self.update:
                raise InputError("--update names at least one layer")
        if self.variant == "update-fc67":
            if self.update not in (None, ("fc6", "fc7")):
                raise InputError("--variant update-fc67 trains fc6 and fc7; name other layers with "
                                 "--variant update-top --update LAYERS")
        if isinstance(self.train, dict):
            self.train = TrainSettings(**self.train)
        self.scales = tuple(float(s) for s in self.scales)
        if not self.scales or any(not s >= 1 for s in self.scales):
            raise InputError(f"--scales must be numbers >= 1 (a patch fits in the image), got {self.scales}")
        check_range(self, "stride_fraction", low=0, high=0.5, low_open=True, option="--stride")
        check_range(self, "dropout", low=0, high=1, high_open=True)
        check_range(self, "val_fraction", low=0, high=1, high_open=True)
        check_range(self, "hidden", low=1, integer=True)
        check_range(self, "eval_batch", low=1, integer=True)


@dataclass
class TransferResult:
    """What a run computed: the figures written to OUT/summary.json, and the test items' scores
    and patch probabilities for reports and heat maps."""

    summary: dict
    report: Report | None      # test APs; None when the test set has no annotations
    test_scores: np.ndarray    # (n_items, C) scores of patches.items["test"], background dropped
    test_probs: np.ndarray     # (S, C + 1) probabilities of the patches patches.items["test"].patches
    patches: PatchSet
    net: Sequential


def build_network(source: Sequential, num_outputs, settings: TransferSettings):
    """The transfer network for ``settings.variant``, with its trainable layers set; a cut or
    an update list the source does not have is an InputError naming the option."""
    if settings.variant == "scratch":
        source = clone_layer(source, params=False)  # same architecture, fresh weights (the seed fixes them)
    update = ("fc6", "fc7") if settings.variant == "update-fc67" else settings.update
    try:
        net = models.transfer_net(source, num_outputs, hidden=settings.hidden, dropout=settings.dropout,
                                  cut=settings.cut, update=update)
    except ValueError as e:
        option = "--update" if "to update" in str(e) else "--cut"
        raise InputError(f"{option}: {e}") from None
    if settings.variant in ("finetune", "scratch"):
        net.freeze(net.names, frozen=False)
    elif settings.variant in ("update-top", "update-fc67"):
        net.freeze(net.meta["update"], frozen=False)
        # the parameter-free layers above the lowest updated one train with it (a frozen
        # dropout is the identity): fc6's and fc7's dropouts, as update-fc67 always had them
        lowest = _lowest_updated(net)
        net.freeze([name for name, layer in zip(net.names[lowest:], net.layers[lowest:], strict=True)
                    if not layer.num_params()], frozen=False)
    return net


def _lowest_updated(net):
    """Index in ``net.layers`` of the lowest layer that update-top trains."""
    return min(net.names.index(name.partition(".")[0]) for name in net.meta["update"])


def cache_cut(net, variant):
    """The layer of ``net`` whose output the feature cache holds for ``variant`` (None: the
    variant trains on pixels): the transferred representation (the layer before FCa) for
    frozen and whole-image, the layer below the lowest updated layer for update-top."""
    if variant not in CACHED:
        return None
    if variant in ("frozen", "whole-image"):
        return net.names[net.names.index("fca") - 1]
    lowest = _lowest_updated(net)
    return net.names[lowest - 1] if lowest else None


def split_trainval(image_ids, val_fraction, seed):
    """(train ids, val ids): a seeded random ``val_fraction`` of the images held out."""
    order = np.random.default_rng(seed).permutation(len(image_ids))
    n_val = int(round(val_fraction * len(image_ids)))
    if val_fraction > 0 and len(image_ids) > 1:
        n_val = min(max(n_val, 1), len(image_ids) - 1)
    val = sorted(order[:n_val].tolist())
    train = sorted(order[n_val:].tolist())
    return [image_ids[i] for i in train], [image_ids[i] for i in val]


class Transfer:
    """One transfer run: patch set, network, inputs (cached features or pixels), training,
    scoring; :meth:`run` returns a :class:`TransferResult`."""

    def __init__(self, voc_root, year, source: Sequential, out_dir, settings: TransferSettings,
                 classes=None, cache_root=None, log=print, skip_bad=False, clip_boxes=False):
        self.settings, self.log, self.out = settings, log, os.fspath(out_dir)
        s = settings
        if s.crop_on_device and backend.get_backend().name != "cuda":  # before any work
            raise InputError("--crop-on-device crops on the GPU: it needs --backend cuda")
        if s.task == "action":
            classes = list(classes or VOC_CHALLENGE_ACTIONS)
            unknown = [a for a in classes if a not in VOC_CHALLENGE_ACTIONS]
            if unknown:
                raise InputError(f"unknown action {unknown[0]!r}; the actions are "
                                 f"{', '.join(VOC_CHALLENGE_ACTIONS)}")
            self.dataset = VOCDataset(voc_root, year, clip_boxes=clip_boxes)
        else:
            classes = classes or VOCDataset(voc_root, year).listed_classes(s.train_split)
            self.dataset = VOCDataset(voc_root, year, classes=classes, clip_boxes=clip_boxes)
        self.classes = list(classes)
        self.background = len(self.classes)
        self.preprocessing = Preprocessing.of(source)
        self.input_size = int(source.input_shape[-1] if source.input_shape else source.meta["input_size"])
        self.cache_root = cache_root or os.path.join(self.out, "cache")
        image_set = "Action" if s.task == "action" else "Main"
        trainval = self.dataset.image_ids(s.train_split, task=image_set)
        self.train_ids, self.val_ids = split_trainval(trainval, s.val_fraction, s.train.seed)
        self.test_ids = self.dataset.image_ids(s.test_split, task=image_set)
        self.skipped = self._scan_images(skip_bad)
        # one patch set over every image: a single cache serves train, val and test
        self.patches = build_patch_set(self.dataset, self.classes, s.task, self.train_ids, self.val_ids,
                                       self.test_ids, s.train_split, s.test_split,
                                       whole_image=s.variant == "whole-image", scales=s.scales,
                                       stride_fraction=s.stride_fraction)
        if len(self.patches.sizes):  # stated on the run's own images: their most common size
            sizes, counts = np.unique(self.patches.sizes, axis=0, return_counts=True)
            width, height = (int(v) for v in sizes[np.argmax(counts)])
            self.log(f"patch sampler: {describe_sampler(width, height, s.scales, s.stride_fraction)}")
        self.log(f"patches of {s.train_split}+{s.test_split}: {self.patches.describe(self.background)}")
        for warning in check_classes(self.patches, self.classes, s.train_split, s.test_split):
            self.log(f"warning: {warning}")
        backend.seed(s.train.seed)
        self.net = build_network(source, len(self.classes) + 1, s)
        trains = [name for name, layer in self.net.named_layers() if layer.trainable()]
        self.log(f"source cut at {self.net.meta['cut']} ({self.net['fca'].in_features} features, "
                 f"{self.input_size}-pixel {self.preprocessing.channel_order} patches); {s.variant} trains "
                 f"{', '.join(dict.fromkeys(n.partition('.')[0] for n in trains))}")

    def _scan_images(self, skip_bad):
        """Refuse unreadable images before any work, all named at once; with ``skip_bad``,
        unreadable training and validation images are left out (a test image never is: the
        evaluation would change). Returns the (path, reason) pairs left out."""
        ids = sorted(set(self.train_ids) | set(self.val_ids) | set(self.test_ids))
        # decoded, not only their headers: a file truncated after its header would otherwise stop
        # the run half-way through the feature cache
        bad = scan_images([self.dataset.image_path(i) for i in ids], decode=True)
        if not bad:
            return []
        test_paths = {str(self.dataset.image_path(i)) for i in self.test_ids}
        bad_test = [b for b in bad if b[0] in test_paths]
        if bad_test and skip_bad:
            raise InputError(describe_bad(bad_test, "fix them: a test image cannot be left out"))
        if not skip_bad:
            raise InputError(describe_bad(bad))
        unreadable = {path for path, _ in bad}
        self.train_ids = [i for i in self.train_ids if str(self.dataset.image_path(i)) not in unreadable]
        self.val_ids = [i for i in self.val_ids if str(self.dataset.image_path(i)) not in unreadable]
        self.log(f"left out {len(bad)} unreadable training images (--skip-bad)")
        return bad

    def cache_plan(self, cut_layer):
        """(the cache's dtype, its bytes, the free bytes where it goes, a line saying all that):
        checked before the cache is built."""
        n = len(self.patches.patch_labels)
        extractor, _ = self.cache_spec(cut_layer)
        dim = int(np.prod(extractor.output_shape(self.net.input_shape)))
        sizes = {d: n * dim * np.dtype(d).itemsize for d in ("float32", "float16")}
        folder = os.path.abspath(self.cache_root)
        while not os.path.exists(folder):
            folder = os.path.dirname(folder)
        free = shutil.disk_usage(folder).free
        line = (f"feature cache: {n} patches x {dim} features = {sizes['float32'] / 1e9:.3g} GB as float32, "
                f"{sizes['float16'] / 1e9:.3g} GB as float16; {free / 1e9:.3g} GB free in {folder}")
        dtype = self.settings.cache_dtype
        if dtype == "auto":
            dtype = "float16" if sizes["float32"] > AUTO_FLOAT16_BYTES else "float32"
            line += f"; {dtype} chosen (--cache-dtype auto: float16 above {AUTO_FLOAT16_BYTES / 1e9:.3g} GB)"
        return dtype, sizes[dtype], free, line

    def cache_spec(self, cut_layer):
        """(the frozen layers up to ``cut_layer``, the cache key's description of the patches):
        what the feature cache of that layer is computed from."""
        s, p = self.settings, self.patches
        end = self.net.names.index(cut_layer) + 1
        # named as in the net: a Sequential names its layers (unnamed, it would rename them)
        extractor = Sequential(self.net.layers[:end], self.net.names[:end])
        key_parts = {"sampler": [s.scales, s.stride_fraction], "whole": s.variant == "whole-image",
                     "input_size": self.input_size, "task": s.task, **self.preprocessing.to_meta(),
                     "paths": p.paths}
        return extractor, key_parts

    def check_cache_space(self):
        """(the cache's dtype, the plan's line) of a cached variant (None otherwise); refused
        when what the cache still has to write will not fit the free disk. The command calls
        it before the run starts, so that nothing is written."""
        cut = cache_cut(self.net, self.settings.variant)
        if cut is None:
            return None
        dtype, needed, free, plan = self.cache_plan(cut)
        extractor, key_parts = self.cache_spec(cut)
        # a finished cache is reused, a stopped one resumed: only what is left to write counts
        left = cache_bytes_left(cache_directory(self.cache_root, cut, extractor, self.patches.image_ids,
                                                key_parts, dtype)[0], needed)
        if left > free:
            more = f" ({left / 1e9:.3g} GB still to write)" if left < needed else ""
            raise InputError(f"the feature cache needs {needed / 1e9:.3g} GB ({dtype}){more} but only "
                             f"{free / 1e9:.3g} GB are free; free some space, put it elsewhere (--cache) or "
                             "use --cache-dtype float16")
        return dtype, plan

    def network_inputs(self):
        """(the layers that train, inputs_of(patch indices)): for cached variants the layers
        after the cache and its rows; otherwise the whole network and rendered pixels."""
        s, p = self.settings, self.patches
        renderer = PatchRenderer(p, self.input_size, self.preprocessing)
        name = cache_cut(self.net, s.variant)
        if name is None:
            return self.net, renderer
        extractor, key_parts = self.cache_spec(name)
        cut = len(extractor.layers)
        trained = Sequential(self.net.layers[cut:], self.net.names[cut:])
        offsets = p.offsets
        dtype, plan = self.check_cache_space()
        self.log(plan)
        started = time.perf_counter()
        self.log(f"feature cache ({name} output) of {len(p.patch_labels)} patches")
        cache = build_feature_cache(
            self.cache_root, name, extractor, p.image_ids,
            lambda i: p.patch_boxes[offsets[i]:offsets[i + 1]],
            lambda i: p.patch_labels[offsets[i]:offsets[i + 1]],
            lambda i, boxes: renderer.image_patches(i, boxes, keep=False, raw=True, device=s.crop_on_device),
            key_parts, dtype=np.dtype(dtype), batch_size=s.eval_batch,
            progress=_progress_printer(self.log, "features"), prepare=self.preprocessing)
        self.log(f"feature cache ready in {time.perf_counter() - started:.1f} s: {cache.directory}")
        features = cache.features
        shape = (-1,) + tuple(extractor.output_shape(self.net.input_shape))  # a map is cached as a row

        def inputs_of(patches):
            return np.asarray(features[np.asarray(patches)], dtype=np.float32).reshape(shape)

        return trained, inputs_of

    def score(self, net, inputs_of, split):
        """(scores (n_items, C), probabilities of the split's patches (S, C + 1)) of ``split``'s items."""
        items = self.patches.items[split]
        probs = patch_probabilities(net, inputs_of, items.patches, self.settings.eval_batch)
        return score_items(probs, items, self.settings.train.k)[:, : len(self.classes)], probs

    def evaluate(self, scores, split, paths=None) -> Report | None:
        """The APs of ``split``'s scores against its items' truth (None if not annotated)."""
        truth = self.patches.items[split].truth
        if truth is None:
            return None
        s = self.settings
        image_set = s.test_split if split == "test" else s.train_split
        return evaluate_items(scores, truth, self.classes, s.train.metric, task=s.task,
                              year=self.dataset.year, split=image_set,
                              competition=s.competition or DEFAULT_COMPETITION[s.task], paths=paths)

    def run(self, resume=False, stage=None) -> TransferResult:
        """Train and score; ``stage(name)``: an optional context manager timing each stage
        (features, training, scoring), e.g. :meth:`minicnn.runrecord.RunRecord.stage`."""
        s = self.settings
        stage = stage or (lambda name: contextlib.nullcontext())
        started = time.perf_counter()
        root = distributed.is_root()  # under MPI rank 0 alone writes; every rank computes
        if root:
            os.makedirs(self.out, exist_ok=True)
        with stage("features"):
            trained, inputs_of = self.network_inputs()

        def validate(net):
            report = self.evaluate(self.score(net, inputs_of, "val")[0], "val")
            return {"val_map": report.map} if report is not None else {}

        train_set = self.patches.patches_of("train")
        with stage("training"):
            history = train_patches(trained, lambda idx: inputs_of(train_set[idx]),
                                    self.patches.patch_labels[train_set], self.background, s.train,
                                    validate=validate if len(self.val_ids) else None,
                                    checkpoint=os.path.join(self.out, "checkpoint.npz"), resume=resume,
                                    log=self.log, desc=s.variant)
        self.net.meta.update(target_classes=self.classes, k=s.train.k, scales=list(s.scales),
                             stride_fraction=s.stride_fraction, variant=s.variant, task=s.task)
        if root:
            self.net.save(os.path.join(self.out, "transfer.npz"))
        with stage("scoring"):
            scores, probs = self.score(trained, inputs_of, "test")
        paths = self.write_results(scores)
        report = self.evaluate(scores, "test", paths)
        summary = {"variant": s.variant, "history": history, "settings": asdict(s),
                   "results": os.path.dirname(next(iter(paths.values()))) if paths else None}
        if report is None:
            self.log(f"not evaluated: the {s.test_split} set has no annotations")
        else:
            summary.update(ap={name: r.ap for name, r in report.results.items()}, map=report.map,
                           warnings=report.warnings)
        summary["seconds"] = time.perf_counter() - started
        if root:
            write_json(os.path.join(self.out, "summary.json"), summary)
        return TransferResult(summary, report, scores, probs, self.patches, self.net)

    def write_results(self, scores) -> dict:
        """The submission files of the test items' scores (written by rank 0 alone under
        MPI); {class: path}."""
        s = self.settings
        competition = s.competition or DEFAULT_COMPETITION[s.task]
        folder = os.path.join(self.out, "results", f"VOC{self.dataset.year}", TASK_FOLDER[s.task])
        keys = self.patches.items["test"].keys
        paths = {}
        for j, name in enumerate(self.classes):
            paths[name] = os.path.join(folder, result_filename(competition, s.task, s.test_split, name))
            write = write_action_results if s.task == "action" else write_cls_results
            if distributed.is_root():
                write(paths[name], keys, scores[:, j])
        return paths


def _progress_printer(log, what, every=0.1):
    """progress(done, total) logging every ``every`` of the images: the rate of this run's
    images so far and the time left at that rate."""
    state = {"next": every, "start": None}

    def progress(done, total):
        now = time.perf_counter()
        if state["start"] is None:  # the first group done: the rate counts from here
            state["start"], state["first"] = now, done
            log(f"{what}: {done}/{total} images ({100 * done / total:.0f}%)")
        elif done / total >= state["next"] or done == total:
            rate = (done - state["first"]) / max(now - state["start"], 1e-9)
            left = f", about {(total - done) / rate / 60:.1f} min to go" if done < total and rate > 0 else ""
            log(f"{what}: {done}/{total} images ({100 * done / total:.0f}%), {rate:.1f} images/s{left}")
            state["next"] = done / total + every
    return progress


def load_source(path):
    """A source network: saved by ``minicnn pretrain`` or ``minicnn import-weights``, any
    Sequential with an input shape (the cut is chosen by ``--cut`` or per family)."""
    net = Sequential.load(path)
    if not net.input_shape:
        raise InputError(f"{path}: not a source network (it records no input shape)")
    return net
