"""experiments/offshelf_baseline.py: the SVM against hand-worked values, the network's
preprocessing reaching the whole-image features, and a run end to end on a tiny tree."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from method_trees import boxes_tree, source_like, write_tree

import minicnn as mc

sys.path.insert(0, str(Path(__file__).parents[1] / "experiments"))
try:
    import offshelf_baseline as ob
finally:
    sys.path.pop(0)


@pytest.mark.parametrize("c, w", [(1.0, 0.8), (0.25, 0.5)])
def test_svm_two_points_by_hand(c, w):
    """x = +1 (y = +1), x = -1 (y = -1): by symmetry b = 0, and 0.5 w^2 + 2c (1 - w)^2 is
    least at w = 4c / (1 + 4c)."""
    weight, bias = ob.train_svm(np.array([[1.0], [-1.0]]), np.array([1, -1]), c)
    assert weight == pytest.approx([w], abs=1e-6)
    assert bias == pytest.approx(0.0, abs=1e-6)


def test_svm_meets_its_optimality_conditions():
    """Squared hinge: w = 2c sum_i s_i y_i x_i and sum_i s_i y_i = 0 at the optimum, with s the
    slacks max(0, 1 - y (w . x + b)); and the bias is not shrunk (a shifted cloud moves b only)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 5))
    y = np.where(x[:, 0] + 0.5 * rng.standard_normal(40) > 0, 1, -1)
    c = 0.7
    w, b = ob.train_svm(x, y, c)
    slack = np.maximum(0, 1 - y * (x @ w + b))
    assert np.allclose(w, 2 * c * (slack * y) @ x, atol=1e-5)
    assert abs((slack * y).sum()) < 1e-5
    shift = np.array([10.0, 0, 0, 0, 0])
    w2, b2 = ob.train_svm(x + shift, y, c)
    assert np.allclose(w2, w, atol=1e-4) and b2 == pytest.approx(b - w @ shift, abs=1e-3)


def flat_tree(root, colours):
    """One flat-coloured image per entry (any resize leaves it flat), class 'a' on each."""
    images = {f"{i:04d}": (np.full((40, 60, 3), colour, np.uint8), [("a", (5, 5, 30, 30), False)])
              for i, colour in enumerate(colours)}
    ids = list(images)
    return write_tree(root, images, {"trainval": ids[:1], "test": ids[1:]})


def test_features_see_the_networks_channel_order_mean_and_std(tmp_path):
    """A BGR network with its mean and std must see (pixel[::-1] - mean) / std: the features
    equal the layers run by hand on that input, pooled over space, and differ from RGB's."""
    mc.set_backend("numpy")
    colours = [(200, 30, 90), (10, 120, 250)]
    root = flat_tree(tmp_path / "voc", colours)
    net = source_like()
    net.meta.update(channel_order="BGR", mean=[100.0, 110.0, 120.0], std=[50.0, 60.0, 70.0])
    dataset = ob.VOCDataset(root, 2007, classes=["a"])
    ids = dataset.image_ids("trainval") + dataset.image_ids("test")
    patches = ob.build_patch_set(dataset, ["a"], "cls", ids, [], [], "trainval", "test", whole_image=True)
    ends = ob.layer_ends(net, ["conv5", "fc7"])
    assert [net.names[e] for e in ends.values()] == ["relu5", "drop7"]
    feats, _ = ob.whole_image_features(net, patches, ends, batch=2, workers=0, log=lambda *a: None)
    x = np.empty((2, 3, 32, 32), np.float32)
    for i, colour in enumerate(colours):
        x[i] = ((np.array(colour[::-1], np.float32) - [100, 110, 120]) / [50, 60, 70])[:, None, None]
    y = x
    for name, layer in zip(net.names, net.layers, strict=True):
        y = layer.forward(y, train=False)
        if name == "relu5":
            assert np.allclose(feats["conv5"], y.mean(axis=(2, 3)), atol=1e-5)
        if name == "drop7":
            assert np.allclose(feats["fc7"], y, atol=1e-5)
    net.meta["channel_order"] = "RGB"
    rgb, _ = ob.whole_image_features(net, patches, ends, batch=2, workers=0, log=lambda *a: None)
    assert not np.allclose(rgb["conv5"], feats["conv5"], atol=1e-3)


def test_a_layer_the_network_lacks_is_refused_naming_it(tmp_path):
    with pytest.raises(ob.InputError, match="no top-level layer 'fire9'"):
        ob.layer_ends(source_like(), ["fire9"])


def test_end_to_end_on_a_painted_tree(tmp_path):
    """Objects painted in their class's colour: linear on whole-image features of a random
    network, the test images rank well; shuffled training labels do not; the report holds what
    reproduce's reports hold, and a rerun reads the cached features."""
    classes = ["cat", "dog", "car"]
    root = boxes_tree(tmp_path / "voc", classes, n_trainval=24, n_test=12, paint=True)
    net = source_like()
    net.save(tmp_path / "net.npz")
    argv = ["--voc", str(root), "--weights", str(tmp_path / "net.npz"), "--layers", "conv5", "fc7",
            "--classes", "cat,dog,car", "--out", str(tmp_path / "out"), "--backend", "numpy",
            "--draws", "20", "--seeds", "0", "1", "--min-test-positives", "2", "--workers", "0",
            "--c-grid", "0.1", "30"]
    assert ob.main(argv) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["test_images"] == 12 and set(report["layers"]) == {"conv5", "fc7"}
    conv5 = report["layers"]["conv5"]
    assert conv5["features"] == 8 and len(conv5["per_seed"]) == 2
    assert conv5["map"] > 85, conv5
    assert {s["C"] for s in conv5["per_seed"]} <= {0.1, 30.0}
    assert set(conv5["per_seed"][0]["cv_map"]) == {"0.1", "30.0"}
    low, high = conv5["map_interval"]
    assert 0 <= low <= high <= 100 + 1e-9
    assert (tmp_path / "out" / "features-conv5.npz").exists()
    # cached: a second run forwards nothing
    second = ob.run(ob.parse(argv), log=lambda *a: None)
    assert second["feature_seconds"] == 0.0 and second["layers"]["conv5"]["map"] == conv5["map"]


def test_inverted_labels_lose_the_painted_tree(tmp_path, monkeypatch):
    """The same run (C fixed at the value cross-validation picks on the true labels) with every
    trainval label inverted (present <-> absent) ranks the test images upside down: dog and car,
    ranked perfectly with the true labels, fall to the floor of the 11-point AP, every positive
    below every negative, where the AP is the share of positives (6 and 9 of 12). The classifier
    learns from the labels it is given, not from the test set."""
    classes = ["cat", "dog", "car"]
    root = boxes_tree(tmp_path / "voc", classes, n_trainval=24, n_test=12, paint=True)
    net = source_like()
    net.save(tmp_path / "net.npz")
    argv = ["--voc", str(root), "--weights", str(tmp_path / "net.npz"), "--layers", "conv5",
            "--classes", "cat,dog,car", "--out", str(tmp_path / "out"), "--backend", "numpy", "--draws", "10",
            "--seeds", "0", "--min-test-positives", "2", "--workers", "0", "--c", "30"]
    true = ob.run(ob.parse(argv), log=lambda *a: None)["layers"]["conv5"]["ap"]
    assert true["dog"] == pytest.approx(100) and true["car"] > 95
    real = ob.scored_images

    def inverted(*args):
        items = real(*args)
        items.truth = -items.truth
        return items

    monkeypatch.setattr(ob, "scored_images", inverted)
    ap = ob.run(ob.parse(argv), log=lambda *a: None)["layers"]["conv5"]["ap"]
    assert ap["dog"] == pytest.approx(50) and ap["car"] == pytest.approx(75)
