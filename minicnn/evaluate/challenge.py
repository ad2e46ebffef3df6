"""Evaluate a folder of VOC submission files against a devkit tree: one AP per class (or
action) and their mean, as ``VOCevalcls.m``, ``VOCevaldet.m`` and ``VOCevalaction.m`` do.

Classification and action: every item of the set (image, or person of the action set)
gets the score its results file gives it; items the file leaves out get -inf, as in the
devkit, so they rank last in set order; their count is reported as a warning. An empty
file would give an AP of the set order alone: unlike the devkit, it is left out of the
mean, as a missing file is, and named in a warning. Detection: the detections of the file,
ranked by score, matched against the set's annotations (an empty file, no detections, has
AP 0 and a warning).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minicnn.data.voc import VOC_CHALLENGE_ACTIONS, VOCDataset
from minicnn.errors import InputError
from minicnn.evaluate.ap import METRICS, average_precision, default_metric, precision_recall, rank
from minicnn.evaluate.detection import bootstrap_detection_map, detection_precision_recall
from minicnn.evaluate.submission import (
    DEFAULT_COMPETITION,
    TASK_FOLDER,
    TASKS,
    read_action_results,
    read_cls_results,
    read_det_results,
    result_filename,
)

TASK_TITLES = {"cls": "classification", "det": "detection", "action": "action classification"}


@dataclass
class ClassResult:
    name: str
    ap: float
    rec: np.ndarray  # recall and precision in rank order, as the devkit returns them
    prec: np.ndarray
    path: Path


@dataclass
class Report:
    task: str
    metric: str
    year: int
    split: str
    competition: str
    results: dict[str, ClassResult] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)  # name -> why it is not in the mean

    @property
    def map(self) -> float:
        """Mean AP over the evaluated classes."""
        return float(np.mean([r.ap for r in self.results.values()])) if self.results else float("nan")

    def to_json(self) -> dict:
        """``{"task", "metric", "ap": {class: AP}, "map", "left_out": {class: why},
        "warnings"}``; NaN becomes null."""
        def clean(v):
            return None if math.isnan(v) else v
        return {"task": self.task, "metric": self.metric,
                "ap": {name: clean(r.ap) for name, r in self.results.items()},
                "map": clean(self.map), "left_out": dict(self.left_out), "warnings": list(self.warnings)}


def find_results_folder(results, year: int, task: str) -> Path:
    """The folder that holds the files: ``results`` itself, or the devkit's results root
    layout ``results/VOC<year>/Main`` (``Action`` for the action task)."""
    results = Path(results).expanduser()
    if results.exists() and not results.is_dir():
        raise InputError(f"--results {results} is a file; name the folder that holds the "
                         f"comp*_{task}_*.txt files")
    if not results.is_dir():
        raise InputError(f"results directory {results} does not exist")
    if any(results.glob(f"comp*_{task}_*.txt")):
        return results
    nested = results / f"VOC{int(year)}" / TASK_FOLDER[task]
    if nested.is_dir():
        return nested
    raise InputError(f"no {task} results files (comp*_{task}_*.txt) in {results} nor a folder {nested}")


def evaluate_voc(dataset: VOCDataset, split: str, task: str, results, competition: str | None = None,
                 metric: str | None = None, names=None) -> Report:
    """Evaluate every class (``task`` "cls" / "det") or challenge action ("action") whose
    results file exists in ``results`` (see ``find_results_folder``); ``names`` restricts
    the list. A class without a file, or (cls, action) with an empty one, is left out of the
    mean, named in ``left_out`` and in a warning; no usable file at all is an error.
    ``metric`` defaults to the devkit's of ``dataset.year``."""
    if task not in TASKS:
        raise InputError(f"unknown task '{task}'; use one of {', '.join(TASKS)}")
    metric = metric or default_metric(dataset.year)
    if metric not in METRICS:
        raise InputError(f"unknown AP metric '{metric}'; use one of {', '.join(METRICS)}")
    competition = competition or DEFAULT_COMPETITION[task]
    folder = find_results_folder(results, dataset.year, task)
    all_names = VOC_CHALLENGE_ACTIONS if task == "action" else dataset.classes
    names = list(all_names if names is None else names)
    for name in names:
        if name not in all_names:
            kind, kinds = ("action", "actions") if task == "action" else ("class", "classes")
            raise InputError(f"unknown {kind} '{name}'; the {kinds} are {', '.join(all_names)}")
    report = Report(task=task, metric=metric, year=dataset.year, split=split, competition=competition)
    absent = []
    for name in names:
        path = folder / result_filename(competition, task, split, name)
        if not path.exists():
            absent.append(name)
            report.left_out[name] = "no results file"
            continue
        if task == "det":
            rec, prec, detections = _detection(dataset, split, name, path)
            if not detections:
                report.warnings.append(f"{path}: empty results file (no detections): AP 0")
        else:
            rec, prec, missing, total = _ranking(dataset, split, task, name, path)
            if missing == total:
                report.left_out[name] = "empty results file"
                report.warnings.append(
                    f"{path}: EMPTY results file: no {'person' if task == 'action' else 'image'} has a "
                    "score, so its AP would come from the set order alone; left out of the mean")
                continue
            if missing:
                report.warnings.append(
                    f"{path.name}: {missing} of {total} {'persons' if task == 'action' else 'images'} of the "
                    "set have no score; they rank last (score -inf), as in the devkit")
        report.results[name] = ClassResult(name, average_precision(rec, prec, metric), rec, prec, path)
    if not report.results:
        pattern = result_filename(competition, task, split, "<class>")
        empty = [n for n, why in report.left_out.items() if why == "empty results file"]
        raise InputError(f"no results files {pattern} in {folder}" if not empty else
                         f"every results file {pattern} in {folder} is empty ({', '.join(empty)})")
    if absent:
        kind = "actions" if task == "action" else "classes"
        report.warnings.append(f"no results file for {len(absent)} of {len(names)} {kind} "
                               f"({', '.join(absent)}): left out of the mean")
    return report


def _ranking(dataset, split, task, name, path):
    """Classification / action: the file's scores laid onto the set, -inf where absent."""
    if task == "cls":
        keys, labels = dataset.class_labels(name, split)
        given, scores = read_cls_results(path, keys)
    else:
        keys, labels = dataset.action_labels(name, split)
        given, scores = read_action_results(path, keys)
    position = {k: i for i, k in enumerate(keys)}
    out = np.full(len(keys), -np.inf)
    out[[position[k] for k in given]] = scores
    rec, prec = precision_recall(out, labels)
    return rec, prec, len(keys) - len(given), len(keys)


def _ground_truth(dataset, ids, name):
    """image id -> (boxes (G, 4), difficult (G,)) of the objects of class ``name``."""
    ground_truth = {}
    for image_id in ids:
        objects = [o for o in dataset.annotation(image_id).objects if o.name == name]
        ground_truth[image_id] = (np.array([o.box for o in objects], dtype=np.float64).reshape(-1, 4),
                                  np.array([o.difficult for o in objects], dtype=bool))
    return ground_truth


def _detection(dataset, split, name, path):
    ids = dataset.image_ids(split)
    det_ids, scores, boxes = read_det_results(path, ids)
    rec, prec, _, _ = detection_precision_recall(_ground_truth(dataset, ids, name), det_ids, scores, boxes)
    return rec, prec, len(det_ids)


def detection_map_interval(dataset: VOCDataset, report: Report, draws=1000, seed=0):
    """(low, high) in [0, 1]: the 95% bootstrap interval of a detection report's mAP, the
    images of its split resampled with replacement (``bootstrap_detection_map``), over the
    classes the report evaluated, from the same results files."""
    if report.task != "det":
        raise ValueError(f"detection_map_interval: a {report.task} report, not a detection one")
    ids = dataset.image_ids(report.split)
    position = {image_id: n for n, image_id in enumerate(ids)}
    classes = []
    for name, result in report.results.items():
        ground_truth = _ground_truth(dataset, ids, name)
        det_ids, scores, boxes = read_det_results(result.path, ids)
        _, _, tp, fp = detection_precision_recall(ground_truth, det_ids, scores, boxes)
        images = np.array([position[det_ids[d]] for d in rank(scores)], dtype=np.int64)
        npos = np.array([np.count_nonzero(~ground_truth[i][1]) for i in ids], dtype=np.int64)
        classes.append((tp, fp, images, npos))
    return bootstrap_detection_map(classes, len(ids), report.metric, draws, seed)


def plot_report(report, folder, run=None):
    """In ``folder``: ``<task>_<class>_pr.png``, each class's precision/recall curve (raw and
    the interpolated precision the AP integrates, ``plot_pr_curve``), and
    ``<task>_summary.png``, the APs as bars with their mean (``plot_ap_bars``). ``run`` (a
    variant, a run's name) begins every title, so that the plots of several runs can be told
    apart outside their folder. Returns the paths written."""
    from minicnn.plots import plot_ap_bars, plot_pr_curve

    folder = Path(folder)
    prefix = f"{run}: " if run else ""
    paths = []
    for name, r in report.results.items():
        paths.append(folder / f"{report.task}_{name}_pr.png")
        plot_pr_curve(paths[-1], r.rec, r.prec, r.ap,
                      title=f"{prefix}{name}: AP {r.ap:.3f} ({report.metric})")
    paths.append(folder / f"{report.task}_summary.png")
    plot_ap_bars(paths[-1], {n: r.ap for n, r in report.results.items()},
                 title=f"{prefix}VOC{report.year} {report.split} {TASK_TITLES[report.task]} "
                       f"({report.metric})",
                 mean=report.map)
    return paths
