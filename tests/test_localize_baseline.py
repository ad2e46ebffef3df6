"""localize's baseline: each class boxed by the whole image with the image's class score,
evaluated with the devkit's detection rules, against an AP worked by hand."""

import json

import numpy as np
import pytest
from method_trees import write_tree

import minicnn as mc
from minicnn import layers as L
from minicnn.net import Sequential
from minicnn.transfer.localize import whole_image_detections


def test_whole_image_detections_box_the_image_with_each_class_score():
    found = whole_image_detections(120, 90, np.array([0.25, 0.5]))
    assert [s.tolist() for s, _ in found] == [[0.25], [0.5]]
    assert all(b.tolist() == [[0.0, 0.0, 120.0, 90.0]] for _, b in found)


def test_the_whole_image_baseline_ap_worked_by_hand(tmp_path):
    """Image 0000: a red square of 80 x 80 pixels in a 96 x 96 image (IoU with the whole image
    0.69: a true positive); image 0001: a red square of 40 x 40 (IoU 0.17: a false positive,
    and its object missed). A network scoring redness ranks 0000 first (more red patches), so
    the ranked list is TP, FP with 2 objects: precision 1 up to recall 0.5, nothing beyond.
    VOC 2007's 11-point AP = 6 points (recall 0, 0.1, .., 0.5) x 1 / 11 = 0.5455."""
    from minicnn.cli import main

    size = 96
    images = {}
    for image_id, side in (("0000", 80), ("0001", 40)):
        pixels = np.full((size, size, 3), 40, np.uint8)
        pixels[8:8 + side, 8:8 + side] = (255, 40, 40)
        images[image_id] = (pixels, [("aeroplane", (9, 9, 8 + side, 8 + side), False)])
    voc = write_tree(tmp_path / "voc", images, {"test": list(images)})
    S = 16
    weight = np.zeros((2, 3 * S * S), np.float32)
    weight[0, : S * S] = 10 / (255 * S * S)  # aeroplane: the mean red of the patch
    net = Sequential([L.Flatten(), L.Linear(3 * S * S, 2)], names=["flatten", "fcb"], input_shape=(3, S, S))
    net["fcb"].params["weight"] = mc.asarray(weight)
    net["fcb"].params["bias"] = mc.asarray(np.array([0.0, 5.0], np.float32))
    net.meta.update(target_classes=["aeroplane"], k=5.0, scales=[1.0, 2.0], stride_fraction=0.25)
    net.save(tmp_path / "net.npz")
    out = tmp_path / "loc"
    assert main(["localize", "--weights", str(tmp_path / "net.npz"), "--voc", str(voc), "--out", str(out),
                 "--backend", "numpy", "--per-class", "1", "--heatmaps", "0"]) == 0
    result = json.loads((out / "run.json").read_text())["result"]
    assert result["whole_image"]["ap"]["aeroplane"] == pytest.approx(6 / 11)
    for figure in (result, result["whole_image"]):  # each mAP with its interval over resampled images
        low, high = figure["interval"]
        assert low <= figure["map"] <= high
    assert "whole image: mAP 54.55, 95% interval" in (out / "log.txt").read_text()
    lines = (out / "results-whole-image" / "VOC2007" / "Main" / "comp3_det_test_aeroplane.txt").read_text()
    rows = [line.split() for line in lines.splitlines()]
    assert [r[0] for r in sorted(rows, key=lambda r: -float(r[1]))] == ["0000", "0001"]
    assert all([float(v) for v in r[2:]] == [1, 1, 96, 96] for r in rows)  # the whole image, VOC 1-based
