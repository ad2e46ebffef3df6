"""The official VOC submission files: names, reading (strict) and writing.

    <comp>_cls_<set>_<class>.txt      <image id> <score>
    <comp>_det_<set>_<class>.txt      <image id> <score> <x1> <y1> <x2> <y2>   (1-based inclusive)
    <comp>_action_<set>_<action>.txt  <image id> <object index> <score>

``<comp>`` is ``compN``: comp1/comp2 classification, comp3/comp4 detection, comp9/comp10
action for VOC 2011-2012 (other numbers are accepted). In the devkit's results root the
files live in ``VOC<year>/Main/`` (cls, det) or ``VOC<year>/Action/``.

Reading is stricter than MATLAB's ``textread``: a line with the wrong number of fields, a
field that is not a number (NaN included), an id not in the set, or (cls, action) an item
given twice is an error naming the file and line. Blank lines are skipped.
"""

from __future__ import annotations

import re

import numpy as np

from minicnn.atomic import write_text
from minicnn.data.voc import numbered_fields
from minicnn.errors import InputError, shown

TASKS = ("cls", "det", "action")
TASK_FOLDER = {"cls": "Main", "det": "Main", "action": "Action"}
DEFAULT_COMPETITION = {"cls": "comp1", "det": "comp3", "action": "comp9"}
_COMPETITION = re.compile(r"comp\d+")
_FIELDS = {
    "cls": "<image id> <score>",
    "det": "<image id> <score> <x1> <y1> <x2> <y2>",
    "action": "<image id> <object index> <score>",
}


def result_filename(competition: str, task: str, split: str, name: str) -> str:
    """``comp1_cls_test_car.txt`` and the like."""
    if not _COMPETITION.fullmatch(competition):
        raise InputError(f"competition '{competition}' is not of the form compN (comp1, comp3, comp9...)")
    if task not in TASKS:
        raise InputError(f"unknown task '{task}'; use one of {', '.join(TASKS)}")
    return f"{competition}_{task}_{split}_{name}.txt"


def read_cls_results(path, image_ids=None):
    """(ids, scores) in file order. With ``image_ids``, each id must be one of them and
    appear once."""
    known = None if image_ids is None else set(image_ids)
    ids, scores, first = [], [], {}
    for lineno, fields in _records(path, "cls"):
        image_id = fields[0]
        _record_key(path, lineno, image_id, f"image {shown(image_id)}", "image set", known, first)
        ids.append(image_id)
        scores.append(_number(path, lineno, fields[1], "score"))
    return ids, np.array(scores, dtype=np.float64)


def _record_key(path, lineno, key, name, set_name, known, first):
    """Check that ``key`` (called ``name``) is one of ``known`` (when given) and not seen
    before in the file; remember its line in ``first``."""
    if known is not None and key not in known:
        raise InputError(f"{path}, line {lineno}: {name} is not in the {set_name}")
    if key in first:
        raise InputError(f"{path}, line {lineno}: {name} given twice (first at line {first[key]})")
    first[key] = lineno


def read_det_results(path, image_ids=None):
    """(ids, scores, boxes (N, 4)) in file order; ids may repeat (several detections)."""
    known = None if image_ids is None else set(image_ids)
    ids, scores, boxes = [], [], []
    for lineno, fields in _records(path, "det"):
        if known is not None and fields[0] not in known:
            raise InputError(f"{path}, line {lineno}: image {shown(fields[0])} is not in the image set")
        ids.append(fields[0])
        scores.append(_number(path, lineno, fields[1], "score"))
        boxes.append([_number(path, lineno, f, name, finite=True)
                      for f, name in zip(fields[2:], ("x1", "y1", "x2", "y2"), strict=True)])
    return ids, np.array(scores, dtype=np.float64), np.array(boxes, dtype=np.float64).reshape(-1, 4)


def read_action_results(path, persons=None):
    """(keys [(image id, object index)], scores) in file order. With ``persons`` (the
    set's keys), each key must be one of them and appear once."""
    known = None if persons is None else set(persons)
    keys, scores, first = [], [], {}
    for lineno, fields in _records(path, "action"):
        if re.fullmatch(r"[+-]?\d+", fields[1]) is None:
            raise InputError(f"{path}, line {lineno}: object index {shown(fields[1])} is not an integer")
        key = (fields[0], int(fields[1]))
        person = f"person {key[1]} of image {shown(key[0])}"
        _record_key(path, lineno, key, person, "action set", known, first)
        keys.append(key)
        scores.append(_number(path, lineno, fields[2], "score"))
    return keys, np.array(scores, dtype=np.float64)


def write_cls_results(path, image_ids, scores):
    _write(path, (f"{i} {_fmt(s)}" for i, s in zip(image_ids, scores, strict=True)))


def write_det_results(path, image_ids, scores, boxes):
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    _write(path, (f"{i} {_fmt(s)} " + " ".join(_fmt(v) for v in b)
                  for i, s, b in zip(image_ids, scores, boxes, strict=True)))


def write_action_results(path, keys, scores):
    _write(path, (f"{i} {int(k)} {_fmt(s)}" for (i, k), s in zip(keys, scores, strict=True)))


def _fmt(value) -> str:
    # shortest text that reads back as the same double: no ties made by rounding
    return repr(float(value))


def _write(path, lines):
    write_text(path, "".join(line + "\n" for line in lines))


def _records(path, task):
    n = _FIELDS[task].count("<")
    for lineno, fields in numbered_fields(path, "results file"):
        if len(fields) != n:
            raise InputError(f"{path}, line {lineno}: expected {n} fields '{_FIELDS[task]}', "
                             f"found {len(fields)}")
        yield lineno, fields


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|Inf|INF)")


def _number(path, lineno, text, what, finite=False) -> float:
    """A score may be +-inf (it then ranks first or last); a box coordinate must be finite."""
    if _NUMBER.fullmatch(text) is None or (finite and not np.isfinite(float(text))):
        kind = "a finite number" if finite else "a number"
        raise InputError(f"{path}, line {lineno}: {what} {shown(text)} is not {kind}")
    return float(text)
