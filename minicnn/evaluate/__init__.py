"""Pascal VOC evaluation identical to the official devkit: AP (VOC 2007 11-point and VOC
2010+ area), classification, detection and action evaluation, submission files, reports."""

from minicnn.evaluate.ap import (
    METRICS,
    average_precision,
    default_metric,
    precision_recall,
    voc_ap,
)
from minicnn.evaluate.challenge import (
    ClassResult,
    Report,
    detection_map_interval,
    evaluate_voc,
    find_results_folder,
)
from minicnn.evaluate.detection import (
    bootstrap_detection_map,
    box_overlaps,
    detection_precision_recall,
    resampled_detection_map,
)
from minicnn.evaluate.submission import (
    DEFAULT_COMPETITION,
    read_action_results,
    read_cls_results,
    read_det_results,
    result_filename,
    write_action_results,
    write_cls_results,
    write_det_results,
)

__all__ = [
    "DEFAULT_COMPETITION",
    "METRICS",
    "ClassResult",
    "Report",
    "average_precision",
    "bootstrap_detection_map",
    "box_overlaps",
    "default_metric",
    "detection_map_interval",
    "detection_precision_recall",
    "evaluate_voc",
    "find_results_folder",
    "precision_recall",
    "read_action_results",
    "read_cls_results",
    "read_det_results",
    "resampled_detection_map",
    "result_filename",
    "voc_ap",
    "write_action_results",
    "write_cls_results",
    "write_det_results",
]
