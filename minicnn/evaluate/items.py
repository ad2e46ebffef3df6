"""AP of scored items held in memory: the devkit's computation (``VOCevalcls.m``,
``VOCevalaction.m``) on an (items x classes) score array and its ground truth, without a
round trip through submission files. Validation and test of a transfer run both go
through it; ``evaluate_voc`` on the files the run writes gives the same APs.

A class without any positive item has no defined AP (the devkit reports 0 for it): it is
left out of the mean, and a warning names it.
"""

from __future__ import annotations

import numpy as np

from minicnn.evaluate.ap import average_precision, precision_recall
from minicnn.evaluate.challenge import ClassResult, Report


def evaluate_items(scores, truth, names, metric, task="cls", year=0, split="", competition="", paths=None):
    """A :class:`Report` of ``scores`` (n, C) against ``truth`` (n, C) in {1, -1, 0}, class
    ``c`` named ``names[c]``; items rank in their order where scores tie, as the devkit ranks
    them in the order of its image set."""
    scores, truth = np.asarray(scores, dtype=np.float64), np.asarray(truth)
    report = Report(task=task, metric=metric, year=year, split=split, competition=competition)
    empty = []
    for c, name in enumerate(names):
        if not (truth[:, c] == 1).any():
            empty.append(name)
            report.left_out[name] = f"no positive item on {split or 'the set'}"
            continue
        rec, prec = precision_recall(scores[:, c], truth[:, c])
        report.results[name] = ClassResult(name, average_precision(rec, prec, metric), rec, prec,
                                           (paths or {}).get(name))
    if empty:
        report.warnings.append(f"{len(empty)} of {len(names)} classes have no positive item on "
                               f"{split or 'the set'} ({', '.join(empty)}): left out of the mean")
    return report
