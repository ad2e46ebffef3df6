"""Real detection sets as transfer targets: COCO instances JSON and YOLO label files written
as a Pascal VOC devkit tree that :class:`minicnn.data.voc.VOCDataset` (hence ``evaluate``,
``transfer`` and ``localize``) reads.

One call writes one image set of ``ROOT/VOC<year>/``: ``JPEGImages/<id>.jpg``,
``Annotations/<id>.xml`` (size and objects), ``ImageSets/Main/<set>.txt`` and
``ImageSets/Main/<class>_<set>.txt`` (``<id> <label>``, 1 / -1 / 0 as the devkit). Several
calls with other set names build trainval and test of one tree.

Classes: the 20 VOC classes unless others are given. A source category counts for the class
named by :func:`target_name`: COCO's airplane, motorcycle, couch, dining table, potted plant
and tv are VOC's aeroplane, motorbike, sofa, diningtable, pottedplant and tvmonitor; the
other 14 VOC classes have their COCO names; any other name is kept with its spaces written
as underscores ("traffic light" -> ``traffic_light``). Objects of the other categories are
ignored (counted); an image left without any object of the classes is left out (counted)
and its file is not read. COCO's ``iscrowd`` regions become ``difficult`` objects; nothing
is marked ``truncated``.

Boxes (the rounding, exactly): a source box is a continuous box in 0-based pixel units,
pixel i covering [i, i + 1): COCO's ``bbox`` ``[x, y, w, h]`` as it is; YOLO's normalized
``cx cy w h`` is ``x = (cx - w/2) W``, ``x + w = (cx + w/2) W`` (and so for y with H), W x H
the image's size. Each edge within 0.005 pixel of an integer is taken as that integer
(float error, and YOLO's 6-decimal values), then the VOC box (1-based, inclusive) is that
of the pixels the box touches::

    x1 = floor(x) + 1,  y1 = floor(y) + 1,  x2 = ceil(x + w),  y2 = ceil(y + h)

clipped to 1..W and 1..H (counted when it changes a box). So COCO ``[0, 0, 10, 5]`` is VOC
``(1, 1, 10, 5)`` and ``[10.5, 2.2, 3, 1]`` is ``(11, 3, 14, 4)``. A box reaching more than
:data:`BOX_TOLERANCE` (1 pixel) outside its image, or touching no pixel of it, is an error
naming the file and the annotation (COCO: its id; YOLO: the line); a box of zero width or
height touches no pixel and is left out (counted); a negative size is an error.

Images: an image keeps its file name's stem as its id (COCO's ``000000000139``). A JPEG is
copied byte for byte; any other image, and a JPEG whose EXIF orientation turns it, is
decoded as minicnn decodes it (RGB, display orientation) and written as a JPEG (quality 95,
no chroma subsampling), counted as re-encoded. The boxes are in the frame of the decoded
image: a COCO ``width``/``height`` that differs from the image's (display) size is an error.

Sets of one tree: an image may be in several sets (VOC's train, val and trainval) only with
the same image and annotation; an image id already in another set with another image or
annotation is refused, and so are classes other than those of the tree's other sets. A
set's per-class files are rewritten for that set only; the other sets' files are never
touched. :func:`write_set` with ``replace`` removes the images and annotations of the set's
previous version that no other set lists.
"""

from __future__ import annotations

import filecmp
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from minicnn.atomic import atomic_open, write_text
from minicnn.data.transforms import IMAGE_EXTENSIONS
from minicnn.data.voc import VOC_CLASSES
from minicnn.errors import InputError, shown

# COCO's name -> VOC's name, for the six VOC classes COCO names otherwise
COCO_TO_VOC = {"airplane": "aeroplane", "motorcycle": "motorbike", "couch": "sofa",
               "dining table": "diningtable", "potted plant": "pottedplant", "tv": "tvmonitor"}

BOX_TOLERANCE = 1.0   # pixels a source box may reach outside its image (then clipped)
SNAP = 0.005          # an edge this close to an integer is that integer
JPEG_QUALITY = 95

_SET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")
_EXIF_ORIENTATION = 0x0112


def target_name(source_name: str) -> str:
    """The tree's class name of a source category name (see the module docstring)."""
    name = source_name.strip()
    return COCO_TO_VOC.get(name, name).replace(" ", "_")


def check_classes(classes) -> tuple[str, ...]:
    """Class names that can be a tree's: non-empty, unique, no whitespace, comma or slash."""
    classes = tuple(classes)
    if not classes:
        raise InputError("--classes names no class")
    for name in classes:
        if not name or re.search(r"[\s,/\\]", name) or name.startswith("."):
            raise InputError(f"class name {name!r} cannot be a tree's class (no spaces, commas or "
                             "slashes; a source name with spaces is written with underscores)")
    seen = set()
    for name in classes:
        if name in seen:
            raise InputError(f"class {name!r} is named twice")
        seen.add(name)
    return classes


def check_set_name(name: str) -> str:
    """A set name: letters, digits, '.', '-' (no '_': it separates class and set in
    ``<class>_<set>.txt``)."""
    if not _SET_NAME.fullmatch(name or ""):
        raise InputError(f"--set {name!r}: a set name is letters, digits, '.' and '-' (no '_', which "
                         "separates class and set in <class>_<set>.txt)")
    return name


# --- boxes -----------------------------------------------------------------------------------

def _snap(value: float) -> float:
    nearest = round(value)
    return float(nearest) if abs(value - nearest) <= SNAP else value


def voc_box(x, y, w, h, width, height, what):
    """The VOC box ``(x1, y1, x2, y2)`` (1-based inclusive ints) of the continuous box
    ``[x, y, w, h]`` (0-based pixel units) in a ``width`` x ``height`` image, and whether it
    was clipped; None for a box of zero width or height. ``what`` names it in errors."""
    values = (x, y, w, h)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise InputError(f"{what}: box {list(values)} is not four finite numbers")
    if w < 0 or h < 0:
        raise InputError(f"{what}: box [x, y, w, h] = {_fmt(values)} has a negative width or height")
    if w == 0 or h == 0:
        return None, False
    left, top, right, bottom = _snap(x), _snap(y), _snap(x + w), _snap(y + h)
    if right == left or bottom == top:
        return None, False
    t = BOX_TOLERANCE
    if left < -t or top < -t or right > width + t or bottom > height + t:
        raise InputError(f"{what}: box [x, y, w, h] = {_fmt(values)} (x {left:g}..{right:g}, y {top:g}.."
                         f"{bottom:g}) reaches outside the {width}x{height} image by more than {t:g} pixel")
    raw = (math.floor(left) + 1, math.floor(top) + 1, math.ceil(right), math.ceil(bottom))
    box = (max(raw[0], 1), max(raw[1], 1), min(raw[2], width), min(raw[3], height))
    if box[2] < box[0] or box[3] < box[1]:
        raise InputError(f"{what}: box [x, y, w, h] = {_fmt(values)} touches no pixel of the "
                         f"{width}x{height} image")
    return box, box != raw


def _fmt(values) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


# --- what a reader gives -------------------------------------------------------------------

@dataclass(frozen=True)
class Object:
    name: str
    box: tuple[int, int, int, int]   # VOC, 1-based inclusive
    difficult: bool


@dataclass
class SetImage:
    """An image of the converted set: its id, source file, size (display orientation) and
    objects; ``reencode``: whether it is written as a new JPEG rather than copied."""

    image_id: str
    path: str
    width: int
    height: int
    depth: int
    objects: list[Object]
    reencode: bool


@dataclass
class Conversion:
    """A source set read and checked: the images with objects of the classes, in id order,
    and the counts of what was left out."""

    source: str                          # "COCO" or "YOLO", for the annotations' <database>
    classes: tuple[str, ...]
    images: list[SetImage] = field(default_factory=list)
    left_out: int = 0                    # images without any object of the classes
    ignored: int = 0                     # objects of other categories
    empty_boxes: int = 0                 # boxes of zero width or height, left out
    clipped: int = 0                     # boxes clipped to their image
    missing_classes: tuple[str, ...] = ()  # classes that no source category gives

    def objects_per_class(self) -> dict[str, int]:
        counts = dict.fromkeys(self.classes, 0)
        for image in self.images:
            for o in image.objects:
                counts[o.name] += 1
        return counts

    def difficult(self) -> int:
        return sum(o.difficult for image in self.images for o in image.objects)


def _image_id(path: str, what: str) -> str:
    stem = os.path.splitext(os.path.basename(path))[0]
    if not stem or re.search(r"\s", stem) or stem.startswith("."):
        raise InputError(f"{what}: image file name {os.path.basename(path)!r} cannot be an image id "
                         "(no spaces; set files are split at whitespace)")
    return stem


def _inspect(path: str, what: str):
    """(width, height) in display orientation, depth, and whether the file must be
    re-encoded (not a JPEG, or a turning EXIF orientation); from the header only."""
    from PIL import Image as PILImage

    try:
        with PILImage.open(path) as f:
            w, h = f.size
            orientation = f.getexif().get(_EXIF_ORIENTATION, 1)
            fmt, mode = f.format, f.mode
    except FileNotFoundError:
        raise InputError(f"{what}: image file {path} is missing") from None
    except (OSError, SyntaxError, ValueError, PILImage.DecompressionBombError) as e:
        raise InputError(f"{what}: cannot read image {path} ({type(e).__name__}: {e})") from None
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    reencode = fmt != "JPEG" or orientation not in (1, None)
    depth = 1 if (mode == "L" and not reencode) else 3
    return w, h, depth, reencode


def _check_classes_found(classes, explicit, found, source):
    """The classes no source category gives: an error for classes given outright, else
    (the 20 VOC classes by default) returned for a warning."""
    missing = tuple(c for c in classes if c not in found)
    if missing and explicit:
        raise InputError(f"--classes: {', '.join(repr(c) for c in missing)} is not a category of {source} "
                         f"(its categories: {', '.join(sorted(found))})")
    return missing


# --- COCO ------------------------------------------------------------------------------------

def _load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError(f"{path}: no such annotation file") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}, line {e.lineno} column {e.colno}: malformed JSON ({e.msg})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read annotation file ({e})") from None


def _whole(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and value == int(value))


def read_coco(images_dir, annotations, classes=VOC_CLASSES, explicit_classes=False) -> Conversion:
    """Read a COCO instances file (``images``, ``annotations``, ``categories``) with its
    images in ``images_dir`` (``file_name`` relative to it). Every error names the file and
    the annotation id (or the image's index)."""
    images_dir, path = os.fspath(images_dir), os.fspath(annotations)
    if not os.path.isdir(images_dir):
        raise InputError(f"--images {images_dir} is not a folder")
    data = _load_json(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise InputError(f"{path}: no list '{key}' (a COCO instances file has images, annotations "
                             "and categories)")
    classes = check_classes(classes)
    wanted = set(classes)

    category_class = {}  # category id -> class name of the tree (or None: not one of the classes)
    first = {}
    for k, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not (isinstance(cat.get("id"), int)
                                             and isinstance(cat.get("name"), str)):
            raise InputError(f"{path}: category #{k + 1} needs an integer 'id' and a string 'name'")
        if cat["id"] in category_class:
            raise InputError(f"{path}: category id {cat['id']} is given twice")
        name = target_name(cat["name"])
        if name in first:
            raise InputError(f"{path}: categories {first[name]} and {cat['id']} both give class {name!r}")
        first[name] = cat["id"]
        category_class[cat["id"]] = name if name in wanted else None
    missing = _check_classes_found(classes, explicit_classes, set(first), path)

    images, by_stem = {}, {}
    for k, img in enumerate(data["images"]):
        what = f"{path}: image #{k + 1}"
        if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
            raise InputError(f"{what} needs an 'id' and a string 'file_name'")
        what = f"{path}: image {shown(img['id'], quote=False)} ({shown(img['file_name'], 100, quote=False)})"
        w, h = img.get("width"), img.get("height")
        if not (_whole(w) and _whole(h) and w > 0 and h > 0):
            raise InputError(f"{what}: width and height must be positive integers, got {w!r} x {h!r}")
        w, h = int(w), int(h)
        try:
            hash(img["id"])
        except TypeError:
            raise InputError(f"{path}: image #{k + 1}: id {img['id']!r} is not a number or a "
                             "string") from None
        if img["id"] in images:
            raise InputError(f"{path}: image id {shown(img['id'], quote=False)} is given twice")
        stem = _image_id(img["file_name"], what)
        if stem in by_stem:
            raise InputError(f"{what}: image id {shown(stem, quote=False)} (the file name's stem) is also "
                             f"that of image {shown(by_stem[stem], quote=False)}")
        by_stem[stem] = img["id"]
        images[img["id"]] = {"id": stem, "file": img["file_name"], "width": w, "height": h, "objects": []}

    conv = Conversion(source="COCO", classes=classes, missing_classes=missing)
    for k, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise InputError(f"{path}: annotation #{k + 1} is not a JSON object")
        what = (f"{path}: annotation {shown(ann['id'], quote=False)}" if "id" in ann
                else f"{path}: annotation #{k + 1} (no id)")
        for key in ("image_id", "category_id", "bbox"):
            if key not in ann:
                raise InputError(f"{what} has no '{key}'")
        try:
            known = ann["category_id"] in category_class
        except TypeError:  # a list or an object: not an id
            known = False
        if not known:
            raise InputError(f"{what}: unknown category id {ann['category_id']!r} (not in 'categories')")
        try:
            image = images.get(ann["image_id"])
        except TypeError:
            image = None
        if image is None:
            raise InputError(f"{what}: unknown image id {ann['image_id']!r} (not in 'images')")
        name = category_class[ann["category_id"]]
        if name is None:
            conv.ignored += 1
            continue
        crowd = ann.get("iscrowd", 0)
        if crowd not in (0, 1):
            raise InputError(f"{what}: iscrowd is {crowd!r}, not 0 or 1")
        bbox = ann["bbox"]
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise InputError(f"{what}: bbox {bbox!r} is not [x, y, width, height]")
        box, clipped = voc_box(*bbox, image["width"], image["height"], f"{what} (image {image['file']})")
        if box is None:
            conv.empty_boxes += 1
            continue
        conv.clipped += clipped
        image["objects"].append(Object(name, box, bool(crowd)))

    for image in sorted(images.values(), key=lambda i: i["id"]):
        if not image["objects"]:
            conv.left_out += 1
            continue
        file = os.path.join(images_dir, image["file"])
        what = f"{path}: image {shown(by_stem[image['id']], quote=False)}"
        w, h, depth, reencode = _inspect(file, what)
        if (w, h) != (image["width"], image["height"]):
            raise InputError(f"{what}: {file} is {w}x{h} (in display orientation) but the annotation file "
                             f"gives {image['width']}x{image['height']}")
        conv.images.append(SetImage(image["id"], file, w, h, depth, image["objects"], reencode))
    return conv


# --- YOLO ------------------------------------------------------------------------------------

def read_names(path) -> list[str]:
    """A YOLO names file: one category name a line (line n names class n - 1); trailing
    blank lines are ignored, a blank line before a name is an error."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: no such names file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read names file ({e})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise InputError(f"{path}: names file is empty (one category name a line)")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            raise InputError(f"{path}, line {n}: blank line (line n names class n - 1)")
    return [line.strip() for line in lines]


def _float(text):
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_yolo(images_dir, labels_dir, names, classes=VOC_CLASSES, explicit_classes=False) -> Conversion:
    """Read a YOLO set: images in ``images_dir``, ``<stem>.txt`` label files in
    ``labels_dir`` (lines ``<class> <cx> <cy> <w> <h>``, normalized; ``classes.txt`` there
    is ignored), category names in the ``names`` file. An image without a label file has no
    objects; a label file without an image is an error. Errors name the file and line."""
    images_dir, labels_dir, names = os.fspath(images_dir), os.fspath(labels_dir), os.fspath(names)
    for option, folder in (("--images", images_dir), ("--labels", labels_dir)):
        if not os.path.isdir(folder):
            raise InputError(f"{option} {folder} is not a folder")
    classes = check_classes(classes)
    wanted = set(classes)
    source_names = read_names(names)
    index_class, first = [], {}
    for n, source_name in enumerate(source_names, 1):
        name = target_name(source_name)
        if name in first:
            raise InputError(f"{names}, line {n}: {source_name!r} gives class {name!r}, as line "
                             f"{first[name]} does")
        first[name] = n
        index_class.append(name if name in wanted else None)
    missing = _check_classes_found(classes, explicit_classes, set(first), names)

    image_files = {}
    for entry in sorted(os.listdir(images_dir)):
        full = os.path.join(images_dir, entry)
        if entry.startswith(".") or not entry.lower().endswith(IMAGE_EXTENSIONS) or not os.path.isfile(full):
            continue
        stem = _image_id(entry, images_dir)
        if stem in image_files:
            raise InputError(f"{images_dir}: {os.path.basename(image_files[stem])} and {entry} have the same "
                             f"image id {stem}")
        image_files[stem] = full
    label_files = sorted(e for e in os.listdir(labels_dir)
                         if e.endswith(".txt") and e != "classes.txt" and not e.startswith("."))
    for entry in label_files:
        if entry[: -len(".txt")] not in image_files:
            raise InputError(f"{os.path.join(labels_dir, entry)}: its image {entry[:-4]}.* is missing from "
                             f"{images_dir}")

    conv = Conversion(source="YOLO", classes=classes, missing_classes=missing)
    conv.left_out = len(image_files) - len(label_files)
    for entry in label_files:
        label_path = os.path.join(labels_dir, entry)
        stem = entry[: -len(".txt")]
        lines = _label_lines(label_path, len(source_names), names)
        kept = [(n, c, v) for n, c, v in lines if index_class[c] is not None]
        conv.ignored += len(lines) - len(kept)
        if not kept:
            conv.left_out += 1
            continue
        file = image_files[stem]
        w, h, depth, reencode = _inspect(file, label_path)
        objects = []
        for n, c, (cx, cy, bw, bh) in kept:
            x, y = (cx - bw / 2) * w, (cy - bh / 2) * h
            box, clipped = voc_box(x, y, (cx + bw / 2) * w - x, (cy + bh / 2) * h - y, w, h,
                                   f"{label_path}, line {n} (image {os.path.basename(file)})")
            if box is None:
                conv.empty_boxes += 1
                continue
            conv.clipped += clipped
            objects.append(Object(index_class[c], box, False))
        if not objects:
            conv.left_out += 1
            continue
        conv.images.append(SetImage(stem, file, w, h, depth, objects, reencode))
    return conv


def _label_lines(path, n_names, names_path="the names file"):
    """[(line number, class index, (cx, cy, w, h))] of a YOLO label file."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read label file ({e})") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise InputError(f"{path}, line {n}: expected '<class> <cx> <cy> <w> <h>', found {len(fields)} "
                             f"fields ({line.strip()!r})")
        if not re.fullmatch(r"\d+", fields[0]) or int(fields[0]) >= n_names:
            raise InputError(f"{path}, line {n}: class {fields[0]!r} is not an index 0..{n_names - 1} of the "
                             f"names file {names_path}")
        values = [_float(v) for v in fields[1:]]
        if any(v is None for v in values):
            raise InputError(f"{path}, line {n}: cx cy w h must be finite numbers, found "
                             f"{' '.join(fields[1:])!r}")
        if values[2] < 0 or values[3] < 0:
            raise InputError(f"{path}, line {n}: negative width or height ({' '.join(fields[1:])})")
        out.append((n, int(fields[0]), tuple(values)))
    return out


# --- writing a set -----------------------------------------------------------------------------

def annotation_xml(image: SetImage, folder: str, database: str) -> str:
    """The VOC annotation file of ``image`` (devkit layout, read by ``read_annotation``)."""
    lines = ["<annotation>", f"\t<folder>{escape(folder)}</folder>",
             f"\t<filename>{escape(image.image_id)}.jpg</filename>",
             "\t<source>", f"\t\t<database>{escape(database)}</database>",
             "\t\t<annotation>minicnn convert</annotation>", "\t</source>",
             "\t<size>", f"\t\t<width>{image.width}</width>", f"\t\t<height>{image.height}</height>",
             f"\t\t<depth>{image.depth}</depth>", "\t</size>", "\t<segmented>0</segmented>"]
    for o in image.objects:
        x1, y1, x2, y2 = o.box
        lines += ["\t<object>", f"\t\t<name>{escape(o.name)}</name>", "\t\t<pose>Unspecified</pose>",
                  "\t\t<truncated>0</truncated>", f"\t\t<difficult>{int(o.difficult)}</difficult>",
                  "\t\t<bndbox>", f"\t\t\t<xmin>{x1}</xmin>", f"\t\t\t<ymin>{y1}</ymin>",
                  f"\t\t\t<xmax>{x2}</xmax>", f"\t\t\t<ymax>{y2}</ymax>", "\t\t</bndbox>", "\t</object>"]
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


def _reencoded(path) -> bytes:
    from minicnn.data.transforms import load_image

    buffer = io.BytesIO()
    load_image(path).save(buffer, "JPEG", quality=JPEG_QUALITY, subsampling=0, optimize=False)
    return buffer.getvalue()


def _same_image(image: SetImage, target: str) -> bool:
    if not os.path.isfile(target):
        return False
    if not image.reencode:
        return filecmp.cmp(image.path, target, shallow=False)
    with open(target, "rb") as f:
        return f.read() == _reencoded(image.path)


def _read_ids(path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.split()[0] for line in f if line.split()]


def tree_sets(voc_dir) -> dict[str, list[str]]:
    """{set name: image ids} of the Main sets of a VOC folder (``ImageSets/Main/<set>.txt``,
    names without '_')."""
    main = os.path.join(voc_dir, "ImageSets", "Main")
    if not os.path.isdir(main):
        return {}
    return {e[:-4]: _read_ids(os.path.join(main, e)) for e in sorted(os.listdir(main))
            if e.endswith(".txt") and "_" not in e}


def set_classes(voc_dir, set_name) -> set[str]:
    """The classes with a ``<class>_<set>.txt`` file for ``set_name``."""
    main = os.path.join(voc_dir, "ImageSets", "Main")
    suffix = f"_{set_name}.txt"
    if not os.path.isdir(main):
        return set()
    return {e[: -len(suffix)] for e in os.listdir(main) if e.endswith(suffix) and len(e) > len(suffix)}


def plan_set(voc_dir, set_name, conv: Conversion) -> dict:
    """Check that ``conv`` can be written as set ``set_name`` of ``voc_dir`` without touching
    the other sets: the same classes as theirs, and every image id they share with it with
    the same image and annotation. Returns {"shared": ids also in other sets, "previous": ids
    of the set's previous version}. Nothing is written."""
    folder = os.path.basename(os.path.normpath(voc_dir))
    sets = tree_sets(voc_dir)
    previous = sets.pop(set_name, [])
    for other in sets:
        theirs = set_classes(voc_dir, other)
        if theirs and theirs != set(conv.classes):
            extra = sorted(set(conv.classes) - theirs)
            lacking = sorted(theirs - set(conv.classes))
            diff = "; ".join(([f"also {', '.join(extra)}"] if extra else [])
                             + ([f"not {', '.join(lacking)}"] if lacking else []))
            raise InputError(f"{voc_dir}: set {other} has the classes {', '.join(sorted(theirs))}; a set of "
                             f"the same tree must have the same classes (here {diff})")
    in_set = {}
    for other, ids in sets.items():
        for image_id in ids:
            in_set.setdefault(image_id, other)
    shared = []
    for image in conv.images:
        other = in_set.get(image.image_id)
        if other is None:
            continue
        xml = os.path.join(voc_dir, "Annotations", f"{image.image_id}.xml")
        jpg = os.path.join(voc_dir, "JPEGImages", f"{image.image_id}.jpg")
        try:
            with open(xml, encoding="utf-8") as f:
                same_xml = f.read() == annotation_xml(image, folder, conv.source)
        except OSError:
            same_xml = False
        if not same_xml or not _same_image(image, jpg):
            what = "another annotation" if not same_xml else "another image"
            raise InputError(f"image {image.image_id} ({image.path}) is already in set {other} of {voc_dir} "
                             f"with {what}; an image may be in two sets of a tree only with the same image "
                             "and annotation (rename it, or convert into another --year)")
        shared.append(image.image_id)
    return {"shared": shared, "previous": previous, "other_ids": set(in_set)}


def write_set(voc_dir, set_name, conv: Conversion, plan: dict, replace=False, progress=None):
    """Write the images, annotations and set files of ``conv`` as set ``set_name`` (after
    :func:`plan_set`), every file atomically. ``replace``: remove the images and annotations
    of the set's previous version that neither this set nor another lists. Returns the
    number of files removed."""
    folder = os.path.basename(os.path.normpath(voc_dir))
    main = os.path.join(voc_dir, "ImageSets", "Main")
    for sub in (os.path.join(voc_dir, "JPEGImages"), os.path.join(voc_dir, "Annotations"), main):
        os.makedirs(sub, exist_ok=True)
    images = conv.images if progress is None else progress(conv.images)
    for image in images:
        target = os.path.join(voc_dir, "JPEGImages", f"{image.image_id}.jpg")
        with atomic_open(target, "wb") as out:
            if image.reencode:
                out.write(_reencoded(image.path))
            else:
                with open(image.path, "rb") as f:
                    while block := f.read(1 << 20):
                        out.write(block)
        write_text(os.path.join(voc_dir, "Annotations", f"{image.image_id}.xml"),
                   annotation_xml(image, folder, conv.source))
    ids = [image.image_id for image in conv.images]
    write_text(os.path.join(main, f"{set_name}.txt"), "".join(f"{i}\n" for i in ids))
    for old in set_classes(voc_dir, set_name) - set(conv.classes):
        os.unlink(os.path.join(main, f"{old}_{set_name}.txt"))
    for cls in conv.classes:
        lines = []
        for image in conv.images:
            flags = [o.difficult for o in image.objects if o.name == cls]
            label = -1 if not flags else (0 if all(flags) else 1)
            lines.append(f"{image.image_id} {label:2d}\n")
        write_text(os.path.join(main, f"{cls}_{set_name}.txt"), "".join(lines))
    removed = 0
    if replace:
        keep = set(ids) | plan["other_ids"]
        for image_id in plan["previous"]:
            if image_id in keep:
                continue
            for path in (os.path.join(voc_dir, "JPEGImages", f"{image_id}.jpg"),
                         os.path.join(voc_dir, "Annotations", f"{image_id}.xml")):
                if os.path.exists(path):
                    os.unlink(path)
                    removed += 1
    return removed
