import numpy as np

from minicnn.transfer.localize import non_maximum_suppression, patch_detections, voc_boxes


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]], float)
    scores = np.array([0.5, 0.9, 0.3, 0.1])
    np.testing.assert_array_equal(non_maximum_suppression(boxes, scores, iou=0.3), [1, 2])
    np.testing.assert_array_equal(non_maximum_suppression(boxes, scores, iou=0.3, limit=1), [1])
    np.testing.assert_array_equal(non_maximum_suppression(boxes, scores, iou=0.99), [1, 0, 2, 3])


def test_patch_detections_per_class_and_voc_boxes():
    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    (s0, b0), (s1, b1) = patch_detections(boxes, probs, 2, per_class=1)
    assert s0.tolist() == [0.7] and b0.tolist() == [[0, 0, 10, 10]]
    assert s1.tolist() == [0.8] and b1.tolist() == [[20, 20, 30, 30]]
    np.testing.assert_array_equal(voc_boxes([[0, 0, 10, 10.4]]), [[1, 1, 10, 10]])
