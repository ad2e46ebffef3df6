"""Labelled image folders ``root/<class>/<image>`` (the ILSVRC train layout and any other),
optional list files, deterministic splits, and the class list kept with every checkpoint.

A list file (Caltech-101's ``train.txt``/``test.txt``) names one image per line by its
path relative to ``root``; the first path component is the class. Without a list file
every image file in every class folder is taken. Classes are numbered in sorted order of
their names unless a class list is given (e.g. the one saved with a source network).
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field

import numpy as np

from minicnn.atomic import write_text
from minicnn.data.transforms import IMAGE_EXTENSIONS
from minicnn.errors import InputError, shown


@dataclass
class ImageFolder:
    """Images and labels of a labelled folder set.

    ``paths`` are full file paths, ``labels`` (N,) int64 indices into ``classes``;
    ``skipped`` lists (item, reason) of what ``skip_bad`` left out, ``ignored`` the
    number of non-image files seen in the class folders."""

    root: str
    classes: list[str]
    paths: list[str]
    labels: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ignored: int = 0

    def __len__(self):
        return len(self.paths)

    def subset(self, indices) -> ImageFolder:
        """The images at ``indices`` (same classes)."""
        indices = np.asarray(indices, dtype=np.int64)
        return ImageFolder(self.root, list(self.classes), [self.paths[i] for i in indices],
                           self.labels[indices], list(self.skipped), self.ignored)

    def counts(self) -> np.ndarray:
        """Images per class, (len(classes),) int64."""
        return np.bincount(self.labels, minlength=len(self.classes))

    def summary(self) -> str:
        text = f"{self.root}: {len(self)} images of {len(self.classes)} classes"
        if self.ignored:
            text += f", {self.ignored} non-image files ignored"
        if self.skipped:
            first, why = self.skipped[0]
            text += f", {len(self.skipped)} skipped (first: {first}: {why})"
        return text


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _scan_classes(root, classes, exclude, skip_bad, skipped):
    """Walk the class folders; returns paths, labels, the class list and the count of
    non-image files."""
    if classes is None:
        classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")
                         and e.name not in exclude)
    if not classes:
        raise InputError(f"{root}: no class folders (expected root/<class>/<image>)")
    paths, labels, ignored = [], [], 0
    for label, name in enumerate(classes):
        folder = os.path.join(root, name)
        if not os.path.isdir(folder):
            raise InputError(f"{folder}: class folder {name!r} does not exist")
        names = sorted(e.name for e in os.scandir(folder) if e.is_file())
        images = [n for n in names if _is_image(n)]
        ignored += len(names) - len(images)
        if not images:
            if not skip_bad:
                raise InputError(f"{folder}: class folder has no images "
                                 f"(extensions {', '.join(IMAGE_EXTENSIONS)}); --skip-bad skips it")
            skipped.append((folder, "class folder has no images"))
        paths += [os.path.join(folder, n) for n in images]
        labels += [label] * len(images)
    return paths, labels, list(classes), ignored


def _read_list(root, list_file, classes, exclude, skip_bad, skipped):
    """The images named by ``list_file``; returns paths, labels and the class list."""
    try:
        with open(list_file, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{list_file}: cannot read list file ({e})") from None
    entries = []
    for number, line in enumerate(lines, 1):
        relative = line.strip()
        if not relative:
            continue
        where = f"{list_file}, line {number}"
        parts = relative.replace("\\", "/").split("/")
        if len(parts) < 2 or not parts[0]:
            raise InputError(f"{where}: {relative!r} is not <class>/<image>")
        if parts[0] in exclude:
            continue
        path = os.path.join(root, *parts)
        problem = ("does not exist" if not os.path.isfile(path) else
                   None if _is_image(parts[-1]) else f"is not an image file ({', '.join(IMAGE_EXTENSIONS)})")
        if problem:
            if not skip_bad:
                shown_path = shown(path, 200, quote=False)
                raise InputError(f"{where}: image {shown_path} {problem}; --skip-bad skips it")
            skipped.append((path, f"named in {where}, {problem}"))
            continue
        entries.append((parts[0], path, where))
    if classes is None:
        classes = sorted({name for name, _, _ in entries})
    index = {name: i for i, name in enumerate(classes)}
    paths, labels = [], []
    for name, path, where in entries:
        if name not in index:
            if not skip_bad:
                raise InputError(f"{where}: class {name!r} is not one of the {len(classes)} classes given")
            skipped.append((path, f"named in {where}, unknown class {name!r}"))
            continue
        paths.append(path)
        labels.append(index[name])
    if not paths:
        raise InputError(f"{list_file}: names no usable image")
    return paths, labels, list(classes)


def read_folder(root, list_file=None, classes=None, exclude=(), skip_bad=False) -> ImageFolder:
    """Read a labelled folder set ``root/<class>/<image>``.

    ``list_file``: take only the images it names (one ``<class>/<image>`` per line,
    relative to ``root``). ``classes``: the class list to number labels by (default: the
    sorted folder names, or the classes of the list file). ``exclude``: class names to
    leave out (e.g. Caltech-101's ``BACKGROUND_Google``). A missing image in the list, an
    unknown class or an empty class folder raises :class:`InputError` naming it; with
    ``skip_bad`` it is recorded in ``skipped`` instead (and reported by ``summary``).
    Image contents are checked when they are decoded (the loader's ``skip_bad``)."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise InputError(f"{root}: image folder does not exist")
    exclude = set(exclude)
    skipped = []
    if list_file is not None:
        paths, labels, classes = _read_list(root, os.fspath(list_file), classes, exclude, skip_bad, skipped)
        ignored = 0
    else:
        paths, labels, classes, ignored = _scan_classes(root, classes, exclude, skip_bad, skipped)
    if not paths:
        raise InputError(f"{root}: no images found")
    return ImageFolder(root, classes, paths, np.asarray(labels, dtype=np.int64), skipped, ignored)


def split_train_val(folder: ImageFolder, val_fraction: float, seed=0) -> tuple[ImageFolder, ImageFolder]:
    """A deterministic stratified split: from each class, ``round(val_fraction * n)``
    images chosen by ``seed`` go to validation, the rest to training (both keep the
    folder's order)."""
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"validation fraction must be in [0, 1), got {val_fraction}")
    counts = np.bincount(folder.labels, minlength=len(folder.classes))
    return _take_per_class(folder, np.rint(val_fraction * counts).astype(np.int64), seed)[::-1]


def take_per_class(folder: ImageFolder, n: int, seed=0) -> tuple[ImageFolder, ImageFolder]:
    """``n`` images of each class chosen by ``seed`` (all of a class that has fewer), and
    the rest: Caltech-101's protocol of 30 training images per class."""
    counts = np.bincount(folder.labels, minlength=len(folder.classes))
    return _take_per_class(folder, np.minimum(counts, int(n)), seed)


def _take_per_class(folder, wanted, seed):
    order = np.random.default_rng(seed).permutation(len(folder))
    rank = np.empty(len(folder), dtype=np.int64)
    # rank of each image among its class in the random order
    by_class = order[np.argsort(folder.labels[order], kind="stable")]
    starts = np.concatenate([[0], np.cumsum(np.bincount(folder.labels, minlength=len(folder.classes)))])
    rank[by_class] = np.arange(len(folder)) - starts[folder.labels[by_class]]
    chosen = rank < wanted[folder.labels]
    return folder.subset(np.flatnonzero(chosen)), folder.subset(np.flatnonzero(~chosen))


# --- class lists kept with checkpoints -------------------------------------------------------

CLASSES_META_KEY = "classes"  # key of the class list in a Sequential's meta


def class_list_path(checkpoint) -> str:
    """``net.npz`` -> ``net.classes.txt``: where a checkpoint's class list lives."""
    return os.path.splitext(os.fspath(checkpoint))[0] + ".classes.txt"


def write_class_list(path, classes) -> str:
    """Write ``classes`` one per line to ``path`` (or, given a checkpoint ``.npz``, to
    :func:`class_list_path` of it), atomically. Returns the path written."""
    path = os.fspath(path)
    if path.endswith(".npz"):
        path = class_list_path(path)
    for name in classes:
        if not name or "\n" in name or name != name.strip():
            raise InputError(f"class name {name!r} cannot be written to a class list")
    write_text(path, "".join(f"{name}\n" for name in classes))
    return path


def read_class_list(path) -> list[str]:
    """The class list of a ``.classes.txt`` file, or of a checkpoint ``.npz``: its meta
    entry ``classes`` if it has one, else the ``.classes.txt`` beside it."""
    path = os.fspath(path)
    if path.endswith(".npz"):
        from minicnn.net import ARCH_KEY

        try:
            with np.load(path, allow_pickle=False) as data:  # reads only the architecture entry
                arch = json.loads(str(data[ARCH_KEY]))
        except FileNotFoundError:
            raise InputError(f"{path}: no such checkpoint") from None
        except (KeyError, ValueError, OSError, zipfile.BadZipFile):  # not a readable network file
            arch = {}
        classes = (arch.get("meta") or {}).get(CLASSES_META_KEY)
        if classes:
            return list(classes)
        path = class_list_path(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no class list (it is written beside each checkpoint)")
    try:
        with open(path, encoding="utf-8") as f:
            classes = [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read class list ({e})") from None
    if not classes:
        raise InputError(f"{path}: class list is empty")
    return classes
