"""The patch set of a transfer run: its images, their patches and labels, the split, and what
each split scores (docs/method.md sections 4, 5 and 7).

Two index spaces, named where they are used:

- an **image index** ``i`` is a position in ``image_ids`` (every image of the run, train,
  validation and test alike, sorted by id);
- a **patch index** ``p`` is a position in ``patch_image`` / ``patch_boxes`` /
  ``patch_labels``; patches are stored image by image, so the patches of image ``i`` are
  ``offsets[i]:offsets[i + 1]``. The feature cache has one row per patch index.

``split_images[name]`` holds the image indices of "train", "val" and "test".
``items[name]`` (:class:`ScoredItems`) says what "val" and "test" are scored on: images
(classification) or persons (the action task), the patches that score each one, and the
items' ground truth (one source, the devkit's, for validation and test alike).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from minicnn.data.transforms import crop_patches, image_size, load_image
from minicnn.data.voc import pixel_boxes
from minicnn.transfer.labels import label_patches, patches_on_box
from minicnn.transfer.patches import sample_patches, whole_image_box


@dataclass
class ScoredItems:
    """The items of one split: images (keys: image ids) or persons (keys: (image id, object
    index)). Item ``j`` is scored from the patches ``patches[pair_patch[pair_item == j]]``."""

    keys: list
    patches: np.ndarray      # (S,) sorted patch indices whose probabilities scoring needs
    pair_patch: np.ndarray   # (P,) position in ``patches`` of each (patch, item) pair
    pair_item: np.ndarray    # (P,) item index of each pair
    truth: np.ndarray | None  # (n_items, C) int8 1 / -1 / 0 (difficult only); None: not annotated


@dataclass
class PatchSet:
    image_ids: list          # image index -> image id
    paths: list              # image index -> file
    sizes: np.ndarray        # (n_images, 2) width, height
    patch_image: np.ndarray  # (N,) image index of each patch, non-decreasing
    patch_boxes: np.ndarray  # (N, 4) 0-based end-exclusive pixels
    patch_labels: np.ndarray  # (N,) class, background (= number of classes), -1 discarded or unknown
    split_images: dict       # "train" / "val" / "test" -> image indices
    items: dict              # "val" / "test" -> ScoredItems

    @property
    def offsets(self):
        return np.concatenate([[0], np.cumsum(np.bincount(self.patch_image, minlength=len(self.image_ids)))])

    def patches_of(self, split) -> np.ndarray:
        """Patch indices of the images of ``split``, in order."""
        return np.flatnonzero(np.isin(self.patch_image, self.split_images[split]))

    def describe(self, background) -> str:
        labels = self.patch_labels
        n, bg, gone = len(labels), int((labels == background).sum()), int((labels < 0).sum())
        per_image = n / max(len(self.image_ids), 1)
        return (f"{len(self.image_ids)} images, {n} patches ({per_image:.0f} per image): "
                f"{n - bg - gone} object, {bg} background, {gone} discarded or unlabelled")


def object_truth(annotation, classes):
    """The objects of ``classes`` in an annotation: (boxes (G, 4) VOC 1-based, class
    indices (G,), difficult (G,))."""
    index = {c: i for i, c in enumerate(classes)}
    objects = [o for o in annotation.objects if o.name in index]
    return ([o.box for o in objects], np.array([index[o.name] for o in objects], dtype=np.int64),
            np.array([o.difficult for o in objects], dtype=bool))


def action_truth(annotation, actions):
    """The persons of the action task as objects (docs/method.md 7): the person box with its action
    as class. A person with none of ``actions`` (only "other") or with several is ambiguous:
    marked difficult, so that the patches it would label are discarded."""
    index = {a: i for i, a in enumerate(actions)}
    persons = [o for o in annotation.objects if o.actions is not None]
    flagged = [sorted(index[a] for a in o.actions if a in index) for o in persons]
    return ([o.box for o in persons], np.array([f[0] if len(f) == 1 else 0 for f in flagged], dtype=np.int64),
            np.array([len(f) != 1 for f in flagged], dtype=bool))


TRUTH = {"cls": object_truth, "action": action_truth}


def build_patch_set(dataset, classes, task, train_ids, val_ids, test_ids, train_split, test_split,
                    whole_image=False, scales=None, stride_fraction=None) -> PatchSet:
    """Sample and label the patches of every image of the run.

    ``whole_image``: one patch per image, the whole image (the baseline of claim 2); for
    training it is repeated once per class present (non-difficult), or labelled background
    when the image holds no object. Test images without an annotation file (VOC 2012's test
    set) are sampled, their patches labelled -1 (unknown), and their items have no truth."""
    kwargs = {k: v for k, v in (("scales", scales), ("stride_fraction", stride_fraction)) if v is not None}
    truth_of, background = TRUTH[task], len(classes)
    trainval = set(train_ids) | set(val_ids)
    image_ids = sorted(trainval | set(test_ids))
    paths, sizes, patch_image, boxes, labels = [], [], [], [], []
    for i, image_id in enumerate(image_ids):
        path = dataset.image_path(image_id)
        known = image_id in trainval or dataset.has_annotation(image_id)
        ann = dataset.annotation(image_id) if known else None
        width, height = (ann.width, ann.height) if known else (0, 0)
        if not width or not height:
            width, height = image_size(path)
        if not known:
            b = whole_image_box(width, height) if whole_image else sample_patches(width, height, **kwargs)
            lab = np.full(len(b), -1, dtype=np.int64)
        else:
            gt_boxes, gt_classes, gt_difficult = truth_of(ann, classes)
            if whole_image:
                present = sorted(set(gt_classes[~gt_difficult].tolist())) or [background]
                b = np.repeat(whole_image_box(width, height), len(present), axis=0)
                lab = np.array(present, dtype=np.int64)
            else:
                b = sample_patches(width, height, **kwargs)
                lab = label_patches(b, pixel_boxes(gt_boxes), gt_classes, gt_difficult, len(classes))
        paths.append(str(path))
        sizes.append((width, height))
        patch_image.append(np.full(len(b), i, dtype=np.int64))
        boxes.append(b)
        labels.append(lab)
    position = {image_id: i for i, image_id in enumerate(image_ids)}
    split_images = {name: np.array([position[i] for i in ids], dtype=np.int64)
                    for name, ids in (("train", train_ids), ("val", val_ids), ("test", test_ids))}
    patches = PatchSet(image_ids, paths, np.array(sizes, dtype=np.int64).reshape(-1, 2),
                       _concat(patch_image, (0,), np.int64), _concat(boxes, (0, 4), np.float64),
                       _concat(labels, (0,), np.int64), split_images, {})
    for name, split, ids in (("val", train_split, val_ids), ("test", test_split, test_ids)):
        patches.items[name] = (scored_persons(dataset, patches, classes, split, ids) if task == "action"
                               else scored_images(dataset, patches, classes, split, ids))
    return patches


def _concat(parts, empty_shape, dtype):
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(empty_shape, dtype)


def scored_images(dataset, patches: PatchSet, classes, split, image_ids) -> ScoredItems:
    """Classification: item j is image ``image_ids[j]``, scored from all its patches; its
    truth is the devkit's label of each class on ``split``."""
    position = {image_id: i for i, image_id in enumerate(patches.image_ids)}
    offsets = patches.offsets
    ranges = [np.arange(offsets[position[i]], offsets[position[i] + 1]) for i in image_ids]
    rows = _concat(ranges, (0,), np.int64)
    items = np.repeat(np.arange(len(image_ids)), [len(r) for r in ranges])
    order = np.argsort(rows, kind="stable")
    truth = None
    if image_ids and all(dataset.has_annotation(i) for i in image_ids):
        truth = np.zeros((len(image_ids), len(classes)), dtype=np.int8)
        for c, name in enumerate(classes):
            keys, labels = dataset.class_labels(name, split)
            label_of = dict(zip(keys, labels.tolist(), strict=True))
            truth[:, c] = [label_of[i] for i in image_ids]
    return ScoredItems(list(image_ids), rows[order], np.argsort(order, kind="stable"), items, truth)


def scored_persons(dataset, patches: PatchSet, actions, split, image_ids) -> ScoredItems:
    """The action task: item j is a person of the action set ``split`` whose image is in
    ``image_ids``, scored from the patches of its image that lie on its box
    (:func:`~minicnn.transfer.labels.patches_on_box`); its truth is the devkit's label of each
    action."""
    chosen = set(image_ids)
    persons = [(i, o) for i, o in dataset.action_persons(split) if i in chosen]
    position = {image_id: i for i, image_id in enumerate(patches.image_ids)}
    offsets = patches.offsets
    rows, items = [], []
    for j, (image_id, person) in enumerate(persons):
        start, stop = offsets[position[image_id]], offsets[position[image_id] + 1]
        on_box = patches_on_box(patches.patch_boxes[start:stop], pixel_boxes([person.box]))
        rows.append(start + np.flatnonzero(on_box))
        items.append(np.full(int(on_box.sum()), j, dtype=np.int64))
    rows, items = _concat(rows, (0,), np.int64), _concat(items, (0,), np.int64)
    unique = np.unique(rows)
    keys = [(i, o.index) for i, o in persons]
    truth = np.zeros((len(keys), len(actions)), dtype=np.int8)
    for c, action in enumerate(actions):
        all_keys, labels = dataset.action_labels(action, split)
        label_of = dict(zip(all_keys, labels.tolist(), strict=True))
        truth[:, c] = [label_of[k] for k in keys]
    return ScoredItems(keys, unique, np.searchsorted(unique, rows), items, truth if keys else None)


class PatchRenderer:
    """Network inputs (n, 3, S, S) float32 of any patches of a PatchSet, through the
    network's :class:`~minicnn.data.preprocess.Preprocessing`. Decoded images are kept while
    ``cache_bytes`` allows, since training on pixels draws patches of many images per batch."""

    def __init__(self, patches: PatchSet, input_size, preprocessing, cache_bytes=1 << 30):
        self.set, self.size, self.preprocessing = patches, int(input_size), preprocessing
        self.cache_bytes, self._images, self._bytes = cache_bytes, OrderedDict(), 0
        self._lock = threading.Lock()

    def _image(self, i, keep=True):
        with self._lock:  # the feature cache renders from several threads
            image = self._images.get(i)
            if image is not None:
                self._images.move_to_end(i)
                return image
        image = load_image(self.set.paths[i])
        size = image.size[0] * image.size[1] * 3
        if not keep or size > self.cache_bytes:
            return image
        with self._lock:
            if i in self._images:  # another thread decoded it meanwhile
                return self._images[i]
            self._images[i] = image
            self._bytes += size
            while self._bytes > self.cache_bytes:
                _, old = self._images.popitem(last=False)
                self._bytes -= old.size[0] * old.size[1] * 3
        return image

    def image_patches(self, i, boxes, keep=True, raw=False, device=False):
        """The patches ``boxes`` of image ``i``; ``keep=False``: an image read once (the
        feature cache reads each image once) is not kept; ``raw=True``: their uint8 pixels,
        not yet preprocessed (a quarter of the bytes to hold and to send to a GPU);
        ``device=True``: the image uploaded once and its patches cut on the GPU (the same
        pixels: ``crop_patches``)."""
        pixels = crop_patches(self._image(i, keep), boxes, self.size, full_size=tuple(self.set.sizes[i]),
                              dtype=np.uint8 if raw else np.float32, device=device)
        return pixels if raw else self.preprocessing(pixels)

    def __call__(self, patches):
        """The patches at patch indices ``patches``, in that order."""
        patches = np.asarray(patches, dtype=np.int64)
        out = np.empty((len(patches), 3, self.size, self.size), dtype=np.float32)
        images = self.set.patch_image[patches]
        for i in np.unique(images):
            at = np.flatnonzero(images == i)
            out[at] = self.image_patches(int(i), self.set.patch_boxes[patches[at]])
        return out


def check_classes(patches: PatchSet, classes, train_split, test_split, named=False,
                  refuse=False) -> list[str]:
    """The classes checked against the patches, before any work. Returns warnings: classes
    with no positive training patch (they cannot be learnt: their AP would be noise), a
    validation part with no positive of any class (no validation mAP can drive the
    schedule), classes without a positive test item (their AP is left out of the mean, and
    the report says so). With ``refuse`` (the command line) the first two are refused
    instead: an unlearnable class when the user ``named`` the classes (--classes), or when
    no class at all can be learnt."""
    from minicnn.errors import InputError

    warnings = []
    train = patches.patch_labels[patches.patches_of("train")]
    missing = [name for c, name in enumerate(classes) if not (train == c).any()]
    if missing:
        text = (f"{len(missing)} of {len(classes)} classes have no positive training patch in the training "
                f"part of {train_split} (no non-difficult object of theirs in its images, or none a patch "
                f"covers): {', '.join(missing)}")
        if refuse and (named or len(missing) == len(classes)):
            raise InputError(f"{text}; --classes must name classes the tree holds" if named else text)
        warnings.append(f"{text}: they cannot be learnt")
    val = patches.items["val"]
    if val.truth is not None and len(val.keys) and not (val.truth == 1).any():
        text = f"the validation part of {train_split} ({len(val.keys)} images) holds no positive of any class"
        if refuse:
            raise InputError(f"{text}: raise --val-fraction, or set it to 0 to train without validation")
        warnings.append(f"{text}: the validation mAP is undefined")
    test = patches.items["test"].truth
    absent = [] if test is None else [name for c, name in enumerate(classes) if not (test[:, c] == 1).any()]
    if absent:
        warnings.append(f"{len(absent)} of {len(classes)} classes have no positive item on {test_split} "
                        f"({', '.join(absent)}): their AP is left out of the mean")
    return warnings
