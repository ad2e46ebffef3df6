"""Read a Pascal VOC devkit tree as distributed: image sets, XML annotations, image-level
class labels and per-person action labels.

Layout: ``<root>/VOC<year>/`` with ``JPEGImages/<id>.jpg``, ``Annotations/<id>.xml``,
``ImageSets/Main/<set>.txt`` (one image id a line), ``ImageSets/Main/<class>_<set>.txt``
(``<id> <label>``), and for the action task ``ImageSets/Action/<set>.txt`` and
``ImageSets/Action/<action>_<set>.txt`` (``<id> <object index> <label>``).

Boxes stay as the devkit writes them: ``(x1, y1, x2, y2)``, 1-based, both ends inclusive, so
a box over a whole W x H image is ``(1, 1, W, H)`` and its width is ``x2 - x1 + 1``.
``pixel_boxes`` converts to the 0-based, end-exclusive convention used where pixels are
indexed (``minicnn.transfer``).

Image-level labels follow the devkit: 1 when the image holds a non-difficult object of the
class, 0 when it holds only difficult ones, -1 otherwise. Where the devkit ships
``<class>_<set>.txt`` (or ``<action>_<set>.txt``) the labels computed from the annotations
are checked against it, and its order is kept, since the devkit ranks ties in that order.

XML is parsed with expat directly, with DOCTYPE (hence entity) declarations refused, so no
entity expansion can happen; unknown elements (``source``, ``owner``, ``pose``,
``segmented``, ``part``, ``point``...) are ignored as the devkit ignores them.

Boxes are checked where the devkit trusts them: ``xmax < xmin`` or ``ymax < ymin`` is an
error, and so is a box reaching outside the image (``xmin < 1``, ``ymin < 1``,
``xmax > width``, ``ymax > height``) when the file gives the image size, unless
``clip_boxes`` asks to clip such boxes to the image (they are then counted). The errors
name the file, the line and the object.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from xml.parsers import expat

import numpy as np

from minicnn.errors import InputError, shown

# The 20 classes in the devkit's order (VOCinit.m); class indices follow this order.
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)

# Action flags in the devkit's order (VOCinit.m, VOC2011-2012): 'other' (none of the ten,
# a distractor that is never evaluated) first, then the ten actions of the challenge.
VOC_ACTIONS = (
    "other", "jumping", "phoning", "playinginstrument", "reading", "ridingbike", "ridinghorse",
    "running", "takingphoto", "usingcomputer", "walking",
)
# The ten actions that are classified and evaluated (docs/method.md section 7).
VOC_CHALLENGE_ACTIONS = VOC_ACTIONS[1:]


@dataclass(frozen=True)
class VOCObject:
    """One ``<object>`` of an annotation. ``index`` is its 1-based position among the file's
    objects (the devkit's object index, used by the action task); ``box`` is
    ``(x1, y1, x2, y2)``, 1-based inclusive; ``actions`` is None when the object carries no
    ``<actions>`` element, else the set of actions flagged 1."""

    index: int
    name: str
    box: tuple[float, float, float, float]
    difficult: bool
    truncated: bool
    actions: frozenset[str] | None = None


@dataclass(frozen=True)
class VOCAnnotation:
    """``clipped``: how many of the boxes were clipped to the image (``clip_boxes``)."""

    image_id: str
    width: int | None
    height: int | None
    objects: tuple[VOCObject, ...]
    clipped: int = 0

    def boxes(self, name: str | None = None) -> np.ndarray:
        """(N, 4) float64 boxes, 1-based inclusive, of the objects of class ``name`` (all when
        None), in file order."""
        return np.array([o.box for o in self.objects if name is None or o.name == name],
                        dtype=np.float64).reshape(-1, 4)


def pixel_boxes(boxes) -> np.ndarray:
    """1-based inclusive VOC boxes -> 0-based end-exclusive ``[x1 - 1, y1 - 1, x2, y2]``."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return b - np.array([1.0, 1.0, 0.0, 0.0])


class VOCDataset:
    """A VOC<year> folder of a devkit tree.

    ``root`` is the devkit root that holds ``VOC<year>/`` (``VOCdevkit/``) or that folder
    itself. ``classes``: the classes labelled and evaluated, all of the tree's or a subset;
    objects of the tree's other classes stay in the annotations and count for none of them
    (an image holding only those is a negative). An object whose class is neither is an
    error. ``clip_boxes``: clip boxes reaching outside their image instead of refusing
    them; ``clipped`` counts them. Annotations are parsed once and kept.
    """

    def __init__(self, root, year, classes=VOC_CLASSES, clip_boxes=False):
        root = Path(root).expanduser()
        self.year = int(year)
        self.classes = tuple(classes)
        self.clip_boxes = bool(clip_boxes)
        name = f"VOC{self.year}"
        if (root / name).is_dir():
            self.dir = root / name
        elif root.name == name and root.is_dir():
            self.dir = root
        elif not root.is_dir():
            raise InputError(f"VOC root {root} is not a directory")
        else:
            raise InputError(f"no {name} directory in {root} (expected {root / name}/Annotations, ...)")
        self._annotations: dict[str, VOCAnnotation] = {}
        self._known_classes: frozenset[str] | None = None

    # --- image sets -------------------------------------------------------------------
    def image_ids(self, split: str, task: str = "Main") -> list[str]:
        """Image ids of ``ImageSets/<task>/<split>.txt`` in file order. Main sets must not
        repeat an id; action sets may list an image once per person, so repeats collapse."""
        path = self.dir / "ImageSets" / task / f"{split}.txt"
        ids, first_line = [], {}
        for lineno, fields in numbered_fields(path):
            if len(fields) > 2 or (len(fields) == 2 and not _is_int(fields[1])):
                raise InputError(f"{path}, line {lineno}: expected '<image id>' (or '<image id> <index>'), "
                                 f"found {len(fields)} fields")
            image_id = fields[0]
            if not image_id.isprintable() or any(c in image_id for c in "/\\") or image_id in (".", ".."):
                raise InputError(f"{path}, line {lineno}: image id {shown(image_id)} cannot name a file "
                                 "(Annotations/<id>.xml, JPEGImages/<id>.jpg)")
            if image_id in first_line:
                if task == "Main":
                    raise InputError(f"{path}, line {lineno}: image {image_id} listed twice "
                                     f"(first at line {first_line[image_id]})")
                continue
            first_line[image_id] = lineno
            ids.append(image_id)
        return ids

    def listed_classes(self, split: str) -> tuple[str, ...]:
        """The classes named by ``ImageSets/Main/<class>_<split>.txt`` files: the 20 VOC
        classes in the devkit's order when those are the files, else the names found, sorted
        (e.g. the generated dataset's); the VOC classes when there are no such files."""
        main = self.dir / "ImageSets" / "Main"
        found = sorted(p.name[: -len(f"_{split}.txt")] for p in main.glob(f"*_{split}.txt"))
        if not found or set(found) == set(VOC_CLASSES):
            return VOC_CLASSES
        return tuple(found)

    def class_files(self) -> frozenset[str]:
        """The classes that have a per-class set file ``ImageSets/Main/<class>_<set>.txt``
        of any set (empty when the tree has none)."""
        return frozenset(p.name[: -len(".txt")].rsplit("_", 1)[0]
                         for p in (self.dir / "ImageSets" / "Main").glob("*_*.txt"))

    def tree_classes(self) -> tuple[str, ...]:
        """The classes the tree's annotations may name: those of :meth:`class_files`, else
        the 20 VOC classes."""
        found = self.class_files()
        if not found or found == set(VOC_CLASSES):
            return VOC_CLASSES
        return tuple(sorted(found))

    @property
    def clipped(self) -> int:
        """Boxes clipped to their image (``clip_boxes``) in the annotations read so far."""
        return sum(a.clipped for a in self._annotations.values())

    def image_path(self, image_id: str) -> Path:
        return self.dir / "JPEGImages" / f"{image_id}.jpg"

    def has_annotation(self, image_id: str) -> bool:
        return image_id in self._annotations or (self.dir / "Annotations" / f"{image_id}.xml").is_file()

    def annotation(self, image_id: str) -> VOCAnnotation:
        ann = self._annotations.get(image_id)
        if ann is None:
            if self._known_classes is None:
                self._known_classes = frozenset(self.classes) | frozenset(self.tree_classes())
            ann = read_annotation(self.dir / "Annotations" / f"{image_id}.xml", self._known_classes,
                                  clip_boxes=self.clip_boxes)
            self._annotations[image_id] = ann
        return ann

    # --- labels -----------------------------------------------------------------------
    def class_labels(self, cls: str, split: str) -> tuple[list[str], np.ndarray]:
        """Image ids and their labels (int8, 1 / -1 / 0) for class ``cls`` on ``split``,
        computed from the annotations; checked against ``ImageSets/Main/<cls>_<split>.txt``
        when it exists, whose order is then kept (the devkit ranks ties in that order)."""
        if cls not in self.classes:
            raise InputError(f"unknown class '{cls}'; the classes are {', '.join(self.classes)}")
        ids = self.image_ids(split)
        computed = {}
        for image_id in ids:
            difficult = [o.difficult for o in self.annotation(image_id).objects if o.name == cls]
            computed[image_id] = 0 if difficult and all(difficult) else (1 if difficult else -1)
        path = self.dir / "ImageSets" / "Main" / f"{cls}_{split}.txt"
        if not path.exists():
            return ids, np.array([computed[i] for i in ids], dtype=np.int8)
        listed = _read_labelled_set(path, n_keys=1)
        _check_same_keys(path, [k[0] for k, _, _ in listed], ids, f"ImageSets/Main/{split}.txt")
        for (image_id,), label, lineno in listed:
            if label != computed[image_id]:
                raise InputError(f"{path}, line {lineno}: image {image_id} is labelled {label} for "
                                 f"'{cls}' but its annotation gives {computed[image_id]}")
        return [k[0] for k, _, _ in listed], np.array([lab for _, lab, _ in listed], dtype=np.int8)

    def action_persons(self, split: str) -> list[tuple[str, VOCObject]]:
        """(image id, person) pairs of the action set ``split``: every object carrying an
        ``<actions>`` element, images in set order, objects in file order."""
        return [(image_id, o) for image_id in self.image_ids(split, task="Action")
                for o in self.annotation(image_id).objects if o.actions is not None]

    def action_labels(self, action: str, split: str) -> tuple[list[tuple[str, int]], np.ndarray]:
        """(image id, object index) keys and labels (int8, 1 / -1) for ``action`` on the action
        set ``split``, from the annotations; checked against
        ``ImageSets/Action/<action>_<split>.txt`` when it exists, whose order is then kept."""
        if action not in VOC_ACTIONS:
            raise InputError(f"unknown action '{action}'; VOC actions are {', '.join(VOC_ACTIONS)}")
        persons = self.action_persons(split)
        keys = [(image_id, o.index) for image_id, o in persons]
        computed = {(image_id, o.index): 1 if action in o.actions else -1 for image_id, o in persons}
        path = self.dir / "ImageSets" / "Action" / f"{action}_{split}.txt"
        if not path.exists():
            return keys, np.array([computed[k] for k in keys], dtype=np.int8)
        listed = _read_labelled_set(path, n_keys=2)
        _check_same_keys(path, [k for k, _, _ in listed], keys,
                         f"the persons with <actions> in the annotations of ImageSets/Action/{split}.txt")
        for key, label, lineno in listed:
            if label != computed[key]:
                raise InputError(f"{path}, line {lineno}: person {key[1]} of image {key[0]} is labelled "
                                 f"{label} for '{action}' but its annotation gives {computed[key]}")
        return [k for k, _, _ in listed], np.array([lab for _, lab, _ in listed], dtype=np.int8)


# --- annotation XML -------------------------------------------------------------------------

def read_annotation(path, classes=VOC_CLASSES, clip_boxes=False) -> VOCAnnotation:
    """Parse one VOC annotation file; ``classes``: the class names an object may have.
    Boxes are checked (see the module docstring); ``clip_boxes`` clips those reaching
    outside the image. Errors name the file and line."""
    path = Path(path)
    root, lines = _parse_xml(path)
    if root.tag != "annotation":
        raise InputError(f"{path}, line {lines[root]}: root element is <{root.tag}>, expected <annotation>")

    def where(elem):
        return f"{path}, line {lines[elem]}"

    def number(elem, tag, cast=float):
        child = elem.find(tag)
        if child is None:
            raise InputError(f"{where(elem)}: <{elem.tag}> has no <{tag}>")
        text = (child.text or "").strip()
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not np.isfinite(value):
            raise InputError(f"{where(child)}: <{tag}> is {shown(text)}, not a number")
        return cast(value)

    def flag(elem, tag):
        child = elem.find(tag)  # the devkit: present and exactly '1'
        return child is not None and (child.text or "").strip() == "1"

    size = root.find("size")
    width = number(size, "width", int) if size is not None else None
    height = number(size, "height", int) if size is not None else None
    objects, clipped = [], 0
    for index, obj in enumerate(root.findall("object"), start=1):
        name_elem = obj.find("name")
        if name_elem is None:
            raise InputError(f"{where(obj)}: <object> has no <name>")
        name = (name_elem.text or "").strip()
        if name not in classes:
            raise InputError(f"{where(name_elem)}: unknown class {shown(name)} (the classes are "
                             f"{', '.join(sorted(classes))})")
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise InputError(f"{where(obj)}: <object> '{name}' has no <bndbox>")
        box = tuple(number(bndbox, t) for t in ("xmin", "ymin", "xmax", "ymax"))
        box, was_clipped = _checked_box(box, width, height, clip_boxes,
                                        f"{where(bndbox)}: object {index} ('{name}')")
        clipped += was_clipped
        actions = None
        actions_elem = obj.find("actions")
        if actions_elem is not None:
            for a in actions_elem:
                if a.tag not in VOC_ACTIONS:
                    raise InputError(f"{where(a)}: unknown action {shown(a.tag)}")
            actions = frozenset(a.tag for a in actions_elem if (a.text or "").strip() == "1")
        objects.append(VOCObject(index=index, name=name, box=box, difficult=flag(obj, "difficult"),
                                 truncated=flag(obj, "truncated"), actions=actions))
    return VOCAnnotation(image_id=path.stem, width=width, height=height, objects=tuple(objects),
                         clipped=clipped)


def _checked_box(box, width, height, clip, what):
    """(box, whether it was clipped): refuses an inverted box, and one reaching outside a
    ``width`` x ``height`` image (1-based inclusive pixels) unless ``clip``; a size of
    None or 0 (not given) checks only the order."""
    x1, y1, x2, y2 = box
    text = f"({x1:g}, {y1:g}, {x2:g}, {y2:g})"
    if x2 < x1 or y2 < y1:
        raise InputError(f"{what}: box {text} has xmax < xmin or ymax < ymin")
    if not (width and height and width > 0 and height > 0):
        return box, False
    if x1 >= 1 and y1 >= 1 and x2 <= width and y2 <= height:
        return box, False
    if not clip:
        raise InputError(f"{what}: box {text} reaches outside the {width}x{height} image (VOC boxes "
                         f"lie within 1..{width} x 1..{height}); --clip-boxes clips boxes to their image")
    inside = (max(x1, 1.0), max(y1, 1.0), min(x2, float(width)), min(y2, float(height)))
    if inside[2] < inside[0] or inside[3] < inside[1]:
        raise InputError(f"{what}: box {text} lies wholly outside the {width}x{height} image")
    return inside, True


def _parse_xml(path: Path) -> tuple[ET.Element, dict]:
    """Elements (text only, no tails) and the line of each start tag. ElementTree's own
    parser keeps no line numbers and its C version cannot refuse DOCTYPEs, hence expat."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"missing annotation file {path}") from None
    except OSError as e:  # a folder, no permission...
        raise InputError(f"{path}: cannot read annotation file ({e.strerror or e})") from None
    parser = expat.ParserCreate()
    lines, stack, roots = {}, [], []

    def refuse_dtd(*_):
        raise InputError(f"{path}, line {parser.CurrentLineNumber}: DOCTYPE/ENTITY declarations are not "
                         "allowed in annotations (refused to prevent entity expansion)")

    def start(tag, attrs):
        elem = ET.Element(tag, attrs)
        lines[elem] = parser.CurrentLineNumber
        (stack[-1] if stack else roots).append(elem)
        stack.append(elem)

    def text(chunk):
        if stack:
            stack[-1].text = (stack[-1].text or "") + chunk

    parser.StartDoctypeDeclHandler = refuse_dtd
    parser.EntityDeclHandler = refuse_dtd
    parser.StartElementHandler = start
    parser.EndElementHandler = lambda tag: stack.pop()
    parser.CharacterDataHandler = text
    try:
        parser.Parse(data, True)
    except expat.ExpatError as e:
        raise InputError(f"{path}, line {e.lineno}: malformed XML ({expat.ErrorString(e.code)})") from None
    return roots[0], lines


# --- set files ------------------------------------------------------------------------------

def numbered_fields(path, what="image set file"):
    """(line number, fields) of each non-blank line of a text file (a set file, a results
    file: ``what`` names it in the error when it is missing)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(f"missing {what} {path}") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read {what} ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if fields:
            yield lineno, fields


_INT = re.compile(r"[+-]?\d+")


def _is_int(text: str) -> bool:
    return _INT.fullmatch(text) is not None


def _read_labelled_set(path: Path, n_keys: int):
    """[(key tuple, label, line)] of a ``<id> [<object index>] <label>`` set file."""
    out = []
    for lineno, fields in numbered_fields(path):
        if len(fields) != n_keys + 1 or not all(_is_int(f) for f in fields[1:]):
            expected = "<image id> <label>" if n_keys == 1 else "<image id> <object index> <label>"
            raise InputError(f"{path}, line {lineno}: expected '{expected}' with integer index and label, "
                             f"found {shown(' '.join(fields))}")
        label = int(fields[-1])
        if label not in (1, -1, 0):
            raise InputError(f"{path}, line {lineno}: label {label} is not 1, -1 or 0")
        key = (fields[0],) if n_keys == 1 else (fields[0], int(fields[1]))
        out.append((key, label, lineno))
    return out


def _check_same_keys(path: Path, listed, expected, expected_from: str):
    """The labelled set file must list exactly the items of the set, each once."""
    seen = {}
    for key in listed:
        if key in seen:
            raise InputError(f"{path}: {_describe(key)} is listed twice")
        seen[key] = True
    expected_set = set(expected)
    for key in listed:
        if key not in expected_set:
            raise InputError(f"{path}: {_describe(key)} is not in {expected_from}")
    for key in expected:
        if key not in seen:
            raise InputError(f"{path}: {_describe(key)} of {expected_from} is missing")


def _describe(key) -> str:
    return f"person {key[1]} of image {shown(key[0], quote=False)}" if isinstance(key, tuple) \
        else f"image {shown(key, quote=False)}"
