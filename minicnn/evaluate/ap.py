"""Precision/recall and average precision exactly as the Pascal VOC devkit computes them.

Ranking: items sorted by decreasing score with a stable sort (MATLAB's ``sort``), so equal
scores keep their input order; NaN scores rank last, as in MATLAB. Going down the ranking,

    tp_k = #{positives in the first k},  fp_k = #{negatives in the first k}
    rec_k = tp_k / npos,                  prec_k = tp_k / (tp_k + fp_k)

Items labelled 0 ("difficult only") count as neither, so ``prec_k`` is 0/0 = NaN while only
such items have been seen; the devkit keeps those NaNs and so do we (MATLAB's ``max``
ignores them, as ``np.fmax`` does).

Two AP definitions:

- ``"voc07"`` (VOC 2007-2009 devkits): 11-point interpolated AP,
  ``AP = sum_t max{prec_k : rec_k >= t} / 11`` for ``t`` in ``for t=0:0.1:1``, a max over
  no point counting 0, summed in that order. A MATLAB ``for`` loop over ``0:0.1:1`` takes
  ``t = k*0.1`` (not the two-ended values of the vector ``0:0.1:1``), so three thresholds
  sit just above their decimal: 0.30000000000000004, 0.6000000000000001 and
  0.7000000000000001; a recall of exactly 3/5 does not reach the 0.6 point.
- ``"area"`` (VOC 2010-2012 devkits, ``VOCap.m``): the area under the precision envelope
  ``p(r) = max{prec_k : rec_k >= r}``, summed over the recalls where ``rec`` changes, with
  ``rec`` padded by 0 and 1 and ``prec`` by 0 at both ends.
"""

from __future__ import annotations

import numpy as np

from minicnn.errors import InputError

METRICS = ("voc07", "area")

_VOC07_THRESHOLDS = tuple(k * 0.1 for k in range(11))  # the devkit's for t=0:0.1:1 (see above)


def default_metric(year: int) -> str:
    """The metric of the devkit of that year: 11-point up to 2009, area from 2010 on."""
    return "voc07" if int(year) <= 2009 else "area"


def rank(scores) -> np.ndarray:
    """Indices by decreasing score, stable (equal scores keep input order), NaN last."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def cumulative_precision_recall(tp, fp, npos):
    """rec, prec (float64) from per-rank true/false positive flags, as the devkit:
    ``rec = cumsum(tp) / npos``, ``prec = cumsum(tp) / (cumsum(tp) + cumsum(fp))``."""
    tp = np.cumsum(np.asarray(tp, dtype=np.float64))
    fp = np.cumsum(np.asarray(fp, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        return tp / float(npos), tp / (fp + tp)


def precision_recall(scores, labels):
    """rec, prec in rank order for items with ``labels`` in {1, -1, 0} (0 ignored)."""
    scores, labels = _check(scores, labels)
    ranked = labels[rank(scores)]
    return cumulative_precision_recall(ranked > 0, ranked < 0, np.count_nonzero(labels > 0))


def average_precision(rec, prec, metric: str = "voc07") -> float:
    """AP of a precision/recall curve (see the module docstring for both metrics)."""
    rec = np.asarray(rec, dtype=np.float64).ravel()
    prec = np.asarray(prec, dtype=np.float64).ravel()
    if metric == "voc07":
        ap = 0.0
        for t in _VOC07_THRESHOLDS:
            reached = prec[rec >= t]
            p = np.fmax.reduce(reached) if reached.size else 0.0
            ap = ap + p / 11
        return float(ap)
    if metric == "area":
        mrec = np.concatenate([[0.0], rec, [1.0]])
        mpre = np.concatenate([[0.0], prec, [0.0]])
        mpre = np.fmax.accumulate(mpre[::-1])[::-1]  # precision envelope, NaNs skipped
        i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
        return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))
    raise InputError(f"unknown AP metric '{metric}'; use one of {', '.join(METRICS)}")


def voc_ap(scores, labels, metric: str = "voc07") -> float:
    """Average precision of ``scores`` against ``labels`` in {1, -1, 0} (0 ignored), with
    ``metric="voc07"`` (11-point, VOC 2007) or ``"area"`` (VOC 2010+), equal to the devkit's
    ``VOCevalcls`` for the same scores and labels in the same order."""
    if metric not in METRICS:
        raise InputError(f"unknown AP metric '{metric}'; use one of {', '.join(METRICS)}")
    return average_precision(*precision_recall(scores, labels), metric=metric)


def _check(scores, labels):
    # the arrays come from code (the readers check the files): a mismatch here is a bug
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.size} scores but {labels.size} labels")
    if labels.size and not np.isin(labels, (1, -1, 0)).all():
        bad = labels[~np.isin(labels, (1, -1, 0))][0]
        raise ValueError(f"label {bad} is not 1, -1 or 0")
    return scores, labels.astype(np.int8)
