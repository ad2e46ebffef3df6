"""Evaluate VOC submission files (classification, detection, action) as the official devkit does.

Reads the ground truth from a VOCdevkit tree (--voc ROOT holding VOC<year>/, or that folder
itself) and the files <comp>_<task>_<set>_<class>.txt from --results (the folder holding
them, or the devkit's results root with VOC<year>/Main or VOC<year>/Action under it).
Prints AP per class and the mean; --json and --plots write them out. The metric follows
the devkit of the year unless --metric says otherwise: 11-point ("voc07") up to 2009,
area under the interpolated curve ("area") from 2010. A class whose results file is missing
or (cls, action) empty is left out of the mean, with a warning. Annotation boxes reaching
outside their image are refused unless --clip-boxes. See docs/method.md section 9.
"""

from __future__ import annotations


def add_arguments(p):
    p.add_argument("--voc", required=True, metavar="ROOT", help="VOCdevkit root (holding VOC<year>/)")
    p.add_argument("--year", type=int, default=2007, help="dataset year")
    p.add_argument("--set", dest="split", default="test", help="image set: test, val, ...")
    p.add_argument("--task", choices=("cls", "det", "action"), default="cls",
                   help="cls (classification), det (detection) or action")
    p.add_argument("--results", required=True, metavar="DIR", help="folder of the submission files")
    p.add_argument("--competition", default=None,
                   help="compN of the file names (default comp1 for cls, comp3 for det, comp9 for action)")
    p.add_argument("--metric", choices=("voc07", "area"), default=None,
                   help="voc07 (11-point) or area; default: the devkit's of --year")
    p.add_argument("--classes", default=None,
                   help="comma-separated classes of the tree (default: those with ImageSets/Main/"
                        "<class>_<set>.txt files, or the 20 VOC classes); a subset of the tree's "
                        "classes evaluates those only")
    p.add_argument("--clip-boxes", action="store_true",
                   help="clip annotation boxes that reach outside their image (default: refuse them)")
    p.add_argument("--json", default=None, metavar="PATH", help="write {task, metric, ap, map, warnings}")
    p.add_argument("--plots", default=None, metavar="DIR",
                   help="write a precision/recall PNG per class and a summary bar chart")


def run(args):
    import sys
    from pathlib import Path

    from minicnn.atomic import write_json
    from minicnn.data.voc import VOCDataset
    from minicnn.errors import InputError
    from minicnn.evaluate import evaluate_voc
    from minicnn.evaluate.challenge import TASK_TITLES, plot_report

    # the outputs are checked before the evaluation, so that a bad path costs no work
    if args.json:
        check_output(args.json, "--json", folder=False)
    if args.plots:
        check_output(args.plots, "--plots", folder=True)
    if args.classes is not None:
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
        if not classes:
            raise InputError(f"--classes {args.classes!r} names no class")
        known = VOCDataset(args.voc, args.year).class_files()
        unknown = [c for c in classes if known and c not in known]
        if unknown:  # a tree with per-class set files names its classes
            raise InputError(f"--classes: '{unknown[0]}' is not a class of the tree (its classes: "
                             f"{', '.join(sorted(known))})")
    else:
        classes = VOCDataset(args.voc, args.year).listed_classes(args.split)
    dataset = VOCDataset(args.voc, args.year, classes=classes, clip_boxes=args.clip_boxes)
    report = evaluate_voc(dataset, args.split, args.task, args.results,
                          competition=args.competition, metric=args.metric)
    if dataset.clipped:
        report.warnings.append(f"{dataset.clipped} annotation boxes reached outside their image and "
                               "were clipped to it (--clip-boxes)")
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)

    metric_name = "11-point interpolated" if report.metric == "voc07" else "area under the interpolated curve"
    print(f"VOC{report.year} {report.split}, {TASK_TITLES[report.task]} ({report.competition}), "
          f"AP in % (metric {report.metric}: {metric_name})")
    width = max(len(n) for n in [*report.results, "mean"])
    for name, result in report.results.items():
        print(f"{name:<{width}}  {_percent(result.ap)}")
    print(f"{'mean':<{width}}  {_percent(report.map)}")

    if args.json:
        write_json(args.json, {**report.to_json(), "clipped_boxes": dataset.clipped}, indent=2)
    if args.plots:
        plot_report(report, Path(args.plots))
    return 0


def check_output(path, option, folder):
    """Refuse an output ``path`` that cannot be written: a folder where a file is wanted
    (or a file where a folder is), or a path below a file."""
    import os

    from minicnn.errors import InputError

    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if folder and os.path.exists(path) and not os.path.isdir(path):
        raise InputError(f"{option} {path} is a file; name a folder")
    if not folder and os.path.isdir(path):
        raise InputError(f"{option} {path} is a folder; name a file")
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise InputError(f"{option} {path}: {parent} is a file, not a folder")


def _percent(value) -> str:
    return f"{100 * value:6.2f}" if value == value else "   nan"
