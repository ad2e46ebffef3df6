"""The transfer method of Oquab et al. (CVPR 2014): patches, labels, features, training, scoring."""

from minicnn.transfer.labels import label_patches, resample_background
from minicnn.transfer.patches import SCALES, STRIDE_FRACTION, sample_patches
from minicnn.transfer.scores import aggregate_by_image, aggregate_scores, score_items, score_map

__all__ = [
    "SCALES",
    "STRIDE_FRACTION",
    "aggregate_by_image",
    "aggregate_scores",
    "label_patches",
    "resample_background",
    "sample_patches",
    "score_items",
    "score_map",
]
