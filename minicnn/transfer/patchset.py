"""The patches of a list of VOC images: boxes, labels, and their pixels on demand.

A :class:`PatchSet` holds, for every patch of every image, its image, its box and its label
(METHOD.md sections 4-5). :class:`PatchRenderer` turns any selection of patches into a
network input batch: each image is decoded once per batch (and kept while a memory budget
allows), the patches are cut and resized to the network's input size, and the mean is
subtracted and the result divided by the standard deviation.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from minicnn.data.transforms import crop_patches, image_size, load_image
from minicnn.data.voc import pixel_boxes
from minicnn.transfer.labels import label_patches
from minicnn.transfer.patches import sample_patches, whole_image_box


@dataclass
class PatchSet:
    image_ids: list        # one per image
    paths: list            # image files
    sizes: np.ndarray      # (n_images, 2) width, height
    image: np.ndarray      # (N,) image index of each patch
    boxes: np.ndarray      # (N, 4) 0-based end-exclusive
    labels: np.ndarray     # (N,) class, background (= number of classes) or -1 (discarded)

    @property
    def offsets(self):
        return np.concatenate([[0], np.cumsum(np.bincount(self.image, minlength=len(self.image_ids)))])

    def subset(self, images):
        """The patches of the images at positions ``images`` (re-numbered in that order)."""
        images = np.asarray(images, dtype=np.int64)
        where = np.full(len(self.image_ids), -1)
        where[images] = np.arange(len(images))
        rows = np.flatnonzero(where[self.image] >= 0)
        rows = rows[np.argsort(where[self.image[rows]], kind="stable")]
        return PatchSet([self.image_ids[i] for i in images], [self.paths[i] for i in images],
                        self.sizes[images], where[self.image[rows]], self.boxes[rows], self.labels[rows])

    def describe(self, background) -> str:
        n = len(self.labels)
        bg = int((self.labels == background).sum())
        gone = int((self.labels < 0).sum())
        per_image = n / max(len(self.image_ids), 1)
        return (f"{len(self.image_ids)} images, {n} patches ({per_image:.0f} per image): "
                f"{n - bg - gone} object, {bg} background, {gone} discarded")


def object_truth(annotation, classes):
    """The objects of ``classes`` in an annotation: (boxes (G, 4) VOC 1-based, class
    indices (G,), difficult (G,))."""
    index = {c: i for i, c in enumerate(classes)}
    objects = [o for o in annotation.objects if o.name in index]
    return ([o.box for o in objects], np.array([index[o.name] for o in objects], dtype=np.int64),
            np.array([o.difficult for o in objects], dtype=bool))


def action_truth(annotation, actions):
    """The persons of the action task as objects (METHOD.md 7): the person box with its action
    as class. A person with none of ``actions`` (only "other") or with several is ambiguous:
    marked difficult, so that the patches it would label are discarded."""
    index = {a: i for i, a in enumerate(actions)}
    persons = [o for o in annotation.objects if o.actions is not None]
    flagged = [sorted(index[a] for a in o.actions if a in index) for o in persons]
    return ([o.box for o in persons], np.array([f[0] if len(f) == 1 else 0 for f in flagged], dtype=np.int64),
            np.array([len(f) != 1 for f in flagged], dtype=bool))


TRUTH = {"cls": object_truth, "action": action_truth}


def voc_patch_set(dataset, image_ids, classes, whole_image=False, scales=None, stride_fraction=None,
                  unannotated_ok=(), task="cls"):
    """Sample and label the patches of ``image_ids`` of a :class:`~minicnn.data.voc.VOCDataset`,
    for the classification task (objects of ``classes``) or the action task (persons, with
    ``classes`` the actions).

    ``whole_image``: one patch per image, the whole image (the baseline of METHOD.md claim
    2); for training it is repeated once per class present (non-difficult), or labelled
    background when the image holds no object. Images of ``unannotated_ok`` may lack their
    XML file (VOC 2012's test set): their patches are then labelled -1 (unknown)."""
    kwargs = {k: v for k, v in (("scales", scales), ("stride_fraction", stride_fraction)) if v is not None}
    truth = TRUTH[task]
    background = len(classes)
    paths, sizes, image, boxes, labels = [], [], [], [], []
    unannotated_ok = set(unannotated_ok)
    for i, image_id in enumerate(image_ids):
        path = dataset.image_path(image_id)
        known = image_id not in unannotated_ok or dataset.has_annotation(image_id)
        ann = dataset.annotation(image_id) if known else None
        width, height = (ann.width, ann.height) if known else (0, 0)
        if not width or not height:
            width, height = image_size(path)
        if not known:
            b = whole_image_box(width, height) if whole_image else sample_patches(width, height, **kwargs)
            lab = np.full(len(b), -1, dtype=np.int64)
        else:
            gt_boxes, gt_classes, gt_difficult = truth(ann, classes)
            if whole_image:
                present = sorted(set(gt_classes[~gt_difficult].tolist())) or [background]
                b = np.repeat(whole_image_box(width, height), len(present), axis=0)
                lab = np.array(present, dtype=np.int64)
            else:
                b = sample_patches(width, height, **kwargs)
                lab = label_patches(b, pixel_boxes(gt_boxes), gt_classes, gt_difficult, len(classes))
        paths.append(str(path))
        sizes.append((width, height))
        image.append(np.full(len(b), i, dtype=np.int64))
        boxes.append(b)
        labels.append(lab)
    return PatchSet(list(image_ids), paths, np.array(sizes, dtype=np.int64).reshape(-1, 2),
                    np.concatenate(image) if image else np.zeros(0, np.int64),
                    np.concatenate(boxes) if boxes else np.zeros((0, 4)),
                    np.concatenate(labels) if labels else np.zeros(0, np.int64))


class PatchRenderer:
    """Network inputs (n, 3, S, S) float32 for patches of a PatchSet: ``(pixels - mean) / std``
    per channel, as the source network was trained."""

    def __init__(self, patch_set: PatchSet, input_size, mean, std=(1.0, 1.0, 1.0), cache_bytes=1 << 30):
        self.set, self.size = patch_set, int(input_size)
        self.mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
        self.scale = (1.0 / np.asarray(std, dtype=np.float32)).reshape(3, 1, 1)
        self.cache_bytes, self._images, self._bytes = cache_bytes, OrderedDict(), 0

    def _image(self, i):
        image = self._images.get(i)
        if image is not None:
            self._images.move_to_end(i)
            return image
        image = load_image(self.set.paths[i])
        size = image.size[0] * image.size[1] * 3
        if size <= self.cache_bytes:
            self._images[i] = image
            self._bytes += size
            while self._bytes > self.cache_bytes:
                _, old = self._images.popitem(last=False)
                self._bytes -= old.size[0] * old.size[1] * 3
        return image

    def image_patches(self, i, boxes):
        """The patches ``boxes`` of image ``i``."""
        out = crop_patches(self._image(i), boxes, self.size, full_size=tuple(self.set.sizes[i]))
        out -= self.mean
        out *= self.scale
        return out

    def __call__(self, rows):
        """The patches at rows ``rows`` of the set, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), 3, self.size, self.size), dtype=np.float32)
        images = self.set.image[rows]
        for i in np.unique(images):
            at = np.flatnonzero(images == i)
            out[at] = self.image_patches(int(i), self.set.boxes[rows[at]])
        return out
