"""The bootstrap interval of a detection mAP: each resampled set's mAP against the devkit's
rules run on that set written out (every drawn image copied under a new id), and the
interval of a tree read from its results files."""

import numpy as np
import pytest
from voc_tree import obj, write_lines, write_voc

from minicnn.data.voc import VOCDataset
from minicnn.evaluate import (
    average_precision,
    bootstrap_detection_map,
    detection_map_interval,
    detection_precision_recall,
    evaluate_voc,
    resampled_detection_map,
)
from minicnn.evaluate.ap import rank


def random_set(rng, n_images=9, n_classes=2, ties=False):
    """Per class: ground truth {image: (boxes, difficult)} and detections (ids, scores, boxes):
    hits, near misses, duplicates and hits on difficult boxes; every score distinct, or with
    ``ties`` four values only."""
    sets = []
    for _ in range(n_classes):
        truth, ids, boxes = {}, [], []
        for i in range(n_images):
            count = int(rng.integers(0, 3))
            corners = rng.uniform(0, 60, (count, 2))
            gt = np.concatenate([corners, corners + rng.uniform(10, 40, (count, 2))], axis=1)
            truth[str(i)] = (gt, rng.random(count) < 0.25)
            for box in gt:
                for _ in range(int(rng.integers(0, 3))):  # a hit, a duplicate, a shifted miss
                    ids.append(str(i))
                    boxes.append(box + rng.normal(0, 4, 4))
            for _ in range(int(rng.integers(0, 2))):  # a detection on nothing
                ids.append(str(i))
                corner = rng.uniform(0, 60, 2)
                boxes.append(np.concatenate([corner, corner + 20]))
        scores = (rng.integers(1, 5, len(ids)) / 4 if ties else
                  rng.permutation(len(ids)) / max(len(ids), 1) + 0.01)
        sets.append((truth, ids, scores, np.array(boxes).reshape(-1, 4)))
    return sets


def flags(truth, ids, scores, boxes):
    """(tp, fp, image index of each ranked detection, non-difficult boxes per image)."""
    _, _, tp, fp = detection_precision_recall(truth, ids, scores, boxes)
    order = list(truth)
    images = np.array([order.index(ids[d]) for d in rank(scores)], dtype=np.int64)
    npos = np.array([np.count_nonzero(~truth[i][1]) for i in order])
    return tp, fp, images, npos


def written_out_map(sets, counts, metric):
    """The oracle: the resampled set materialised, image i copied counts[i] times as "i#c"."""
    aps = []
    for truth, ids, scores, boxes in sets:
        order = list(truth)
        copies = {image: range(counts[n]) for n, image in enumerate(order)}
        new_truth = {f"{image}#{c}": truth[image] for image in order for c in copies[image]}
        kept = [(f"{image}#{c}", s, b) for image, s, b in zip(ids, scores, boxes, strict=True)
                for c in copies[image]]
        if not any(np.count_nonzero(~d) for _, d in new_truth.values()):
            continue
        new_ids = [k[0] for k in kept]
        rec, prec, _, _ = detection_precision_recall(new_truth, new_ids, np.array([k[1] for k in kept]),
                                                     np.array([k[2] for k in kept]).reshape(-1, 4))
        aps.append(average_precision(rec, prec, metric))
    return float(np.mean(aps))


@pytest.mark.parametrize("metric", ["voc07", "area"])
def test_each_resampled_map_equals_the_devkit_on_the_set_written_out(metric):
    rng = np.random.default_rng(7)
    for trial in range(24):
        sets = random_set(rng, ties=trial % 2 == 1)  # equal scores: a detection's copies rank together
        classes = [flags(*s) for s in sets]
        n = len(sets[0][0])
        everything = np.ones(n, dtype=np.int64)
        assert resampled_detection_map(classes, everything, metric) == pytest.approx(
            written_out_map(sets, everything, metric), abs=1e-12)
        for _ in range(5):
            counts = np.bincount(rng.integers(0, n, n), minlength=n)
            if not any((counts @ c[3]) for c in classes):
                continue
            assert resampled_detection_map(classes, counts, metric) == pytest.approx(
                written_out_map(sets, counts, metric), abs=1e-12), (trial, counts)


def test_the_interval_of_a_tree_from_its_results_files(tmp_path):
    write_voc(tmp_path / "VOCdevkit", {
        f"{i:06d}": [obj("car", (1, 1, 10, 10)), obj("dog", (20, 20, 40, 40))] for i in range(1, 9)})
    dataset, results = VOCDataset(tmp_path / "VOCdevkit", 2007), tmp_path / "results"
    # every car found with the best scores; half of the dogs boxed wrongly, ranked first
    write_lines(results / "comp3_det_test_car.txt", [f"{i:06d} {1 - i / 100} 1 1 10 10" for i in range(1, 9)])
    write_lines(results / "comp3_det_test_dog.txt",
                [f"{i:06d} {0.9 - i / 100} {'20 20 40 40' if i % 2 else '50 50 60 60'}" for i in range(1, 9)])
    report = evaluate_voc(dataset, "test", "det", results, metric="area")
    low, high = detection_map_interval(dataset, report, draws=400, seed=3)
    assert 0.5 < low < report.map < high <= 1.0  # the car's AP is 1 in every draw; the dog's varies
    assert detection_map_interval(dataset, report, draws=400, seed=3) == [low, high]  # seeded
    perfect = evaluate_voc(dataset, "test", "det", results, metric="area", names=["car"])
    assert detection_map_interval(dataset, perfect, draws=50) == [1.0, 1.0]


def test_bootstrap_draws_that_hold_no_positive_are_left_out():
    # one image of two holds the only box: a draw of the other image twice has no mAP
    tp, fp = np.array([1.0]), np.array([0.0])
    classes = [(tp, fp, np.array([0]), np.array([1, 0]))]
    assert np.isnan(resampled_detection_map(classes, np.array([0, 2]), "area"))
    assert bootstrap_detection_map(classes, 2, "area", draws=50) == [1.0, 1.0]


@pytest.mark.parametrize("metric", ["voc07", "area"])
def test_a_draw_without_the_images_that_hold_detections_has_ap_zero(metric):
    tp, fp = np.array([1.0]), np.array([0.0])
    classes = [(tp, fp, np.array([0]), np.array([1, 1]))]  # image 1's box never detected
    assert resampled_detection_map(classes, np.array([0, 2]), metric) == 0.0
    assert resampled_detection_map(classes, np.array([1, 1]), metric) == pytest.approx(
        0.5 if metric == "area" else 6 / 11)
