"""VOC evaluation against APs computed by hand, following the devkit (VOCevalcls.m,
VOCevaldet.m, VOCevalaction.m, VOCap.m and the VOC2007 11-point loop) case by case."""

import numpy as np
import pytest
from voc_tree import obj, write_lines, write_voc

from minicnn.data.voc import VOCDataset
from minicnn.errors import InputError
from minicnn.evaluate import (
    average_precision,
    box_overlaps,
    default_metric,
    detection_precision_recall,
    evaluate_voc,
    precision_recall,
    read_cls_results,
    read_det_results,
    result_filename,
    voc_ap,
    write_action_results,
    write_cls_results,
    write_det_results,
)


def ranked(labels):
    """Scores that rank ``labels`` in the given order."""
    return np.arange(len(labels), 0, -1, dtype=np.float64), np.array(labels)


# --- AP of a ranking ------------------------------------------------------------------------

@pytest.mark.parametrize("metric", ["voc07", "area"])
def test_all_positives_first_gives_one(metric):
    # 11 sums of 1/11 make 1.0000000000000002 in the devkit too
    assert voc_ap(*ranked([1, 1, 1, -1, -1]), metric=metric) == pytest.approx(1.0, abs=1e-15)
    assert voc_ap(*ranked([1, -1, -1, 1]), metric=metric) < 1.0


def test_known_interleaving_both_metrics():
    # rank: P N P N N P, npos 3 -> (rec, prec): (1/3, 1) (1/3, 1/2) (2/3, 2/3) (2/3, 1/2) (2/3, 2/5) (1, 1/2)
    scores, labels = ranked([1, -1, 1, -1, -1, 1])
    rec, prec = precision_recall(scores, labels)
    np.testing.assert_allclose(rec, [1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3, 1])
    np.testing.assert_allclose(prec, [1, 1 / 2, 2 / 3, 1 / 2, 2 / 5, 1 / 2])
    # area: envelope 1 on (0, 1/3], 2/3 on (1/3, 2/3], 1/2 on (2/3, 1]
    assert voc_ap(scores, labels, "area") == pytest.approx((1 + 2 / 3 + 1 / 2) / 3, abs=1e-12)
    # 11-point: t = 0..0.3 -> 1 (4 points), t = 0.4..0.6 -> 2/3 (3), t = 0.7..1 -> 1/2 (4)
    assert voc_ap(scores, labels, "voc07") == pytest.approx((4 + 3 * 2 / 3 + 4 / 2) / 11, abs=1e-12)


def test_eleven_point_thresholds_are_the_devkit_loop_values():
    # the devkit's `for t=0:0.1:1` takes t = k*0.1: its 0.6 is 0.6000000000000001
    # rank P P P N P P, npos 5: rec 3/5 (exactly 0.6) misses the 0.6 point
    scores, labels = ranked([1, 1, 1, -1, 1, 1])
    # t = 0..0.5 -> 1 (6 points), t = 0.6..1 -> max(4/5, 5/6) = 5/6 (5 points)
    assert voc_ap(scores, labels, "voc07") == pytest.approx((6 + 5 * 5 / 6) / 11, abs=1e-12)
    # rank P P P N then 7 P, npos 10: rec 3/10 misses the 0.3 point (0.30000000000000004)
    scores, labels = ranked([1, 1, 1, -1] + [1] * 7)
    # t = 0..0.2 -> 1 (3 points), t = 0.3..1 -> 10/11 (8 points)
    assert voc_ap(scores, labels, "voc07") == pytest.approx((3 + 8 * 10 / 11) / 11, abs=1e-12)
    # rec 4/5 = 0.8 exactly meets the 0.8 point (8 * 0.1 == 0.8): P P P P N P
    scores, labels = ranked([1, 1, 1, 1, -1, 1])
    # t = 0..0.8 -> 1 (9 points), t = 0.9, 1 -> 5/6 (2 points)
    assert voc_ap(scores, labels, "voc07") == pytest.approx((9 + 2 * 5 / 6) / 11, abs=1e-12)


@pytest.mark.parametrize("metric", ["voc07", "area"])
def test_ties_keep_input_order(metric):
    # equal scores: a stable sort, as MATLAB's; N P P gives 2/3, P P N gives 1
    assert voc_ap([0.5, 0.5, 0.5], [-1, 1, 1], metric) == pytest.approx(2 / 3, abs=1e-12)
    assert voc_ap([0.5, 0.5, 0.5], [1, 1, -1], metric) == pytest.approx(1.0, abs=1e-15)


def test_zero_labels_are_ignored():
    # labels 0 count as neither: rank 0 P N P -> the first precision is 0/0 (NaN, as the devkit)
    scores, labels = ranked([0, 1, -1, 0, 1])
    rec, prec = precision_recall(scores, labels)
    assert np.isnan(prec[0])
    assert voc_ap(scores, labels, "area") == pytest.approx(1 / 2 + 1 / 2 * 2 / 3, abs=1e-12)
    assert voc_ap(scores, labels, "voc07") == pytest.approx((6 + 5 * 2 / 3) / 11, abs=1e-12)
    assert voc_ap(*ranked([1, -1, 1]), "area") == voc_ap(scores, labels, "area")


def test_no_positives_follows_the_devkit():
    # rec = 0/0: the 11-point loop finds no recall >= t (AP 0); VOCap's sum gives NaN
    assert voc_ap([1, 2], [-1, -1], "voc07") == 0.0
    assert np.isnan(voc_ap([1, 2], [-1, -1], "area"))


def test_voc_ap_input_checks():
    # arrays passed by code: a bug, so a ValueError (not an InputError) that shows its traceback
    with pytest.raises(ValueError, match="label 2 is not 1, -1 or 0") as error:
        voc_ap([1, 2], [1, 2])
    assert not isinstance(error.value, InputError)
    with pytest.raises(ValueError, match="3 scores but 2 labels"):
        voc_ap([1, 2, 3], [1, -1])
    with pytest.raises(InputError, match="unknown AP metric 'auc'"):
        voc_ap([1, 2], [1, -1], "auc")
    assert default_metric(2007) == "voc07" and default_metric(2009) == "voc07"
    assert default_metric(2010) == "area" and default_metric(2012) == "area"


def test_average_precision_of_an_empty_curve_is_zero():
    assert average_precision([], [], "voc07") == 0.0 and average_precision([], [], "area") == 0.0


# --- detection ------------------------------------------------------------------------------

def test_overlap_uses_the_plus_one_pixel_convention():
    np.testing.assert_allclose(box_overlaps((1, 1, 1, 1), [(1, 1, 1, 1)]), [1.0])  # one pixel
    # (1,1,5,5) and (5,5,9,9) share the pixel (5,5): 1 / (25 + 25 - 1)
    np.testing.assert_allclose(box_overlaps((1, 1, 5, 5), [(5, 5, 9, 9)]), [1 / 49])
    assert box_overlaps((1, 1, 5, 5), [(6, 1, 9, 5)])[0] == -np.inf  # touching, no shared pixel


def gt(*boxes, difficult=()):
    return (np.array(boxes, dtype=np.float64).reshape(-1, 4),
            np.array([i in difficult for i in range(len(boxes))], dtype=bool))


def det_ap(ground_truth, dets, metric="area"):
    ids = [d[0] for d in dets]
    scores = [d[1] for d in dets]
    boxes = [d[2] for d in dets]
    rec, prec, tp, fp = detection_precision_recall(ground_truth, ids, scores, boxes)
    return average_precision(rec, prec, metric), tp, fp


def test_overlap_exactly_half_is_correct():
    ground_truth = {"a": gt((1, 1, 10, 10))}  # 100 pixels
    # (1,1,10,5): 50 pixels inside -> 50 / (100 + 50 - 50) = 0.5 exactly: a true positive
    np.testing.assert_array_equal(box_overlaps((1, 1, 10, 5), ground_truth["a"][0]), [0.5])
    ap, tp, fp = det_ap(ground_truth, [("a", 0.9, (1, 1, 10, 5))])
    assert (ap, list(tp), list(fp)) == (1.0, [1], [0])
    ap, tp, fp = det_ap(ground_truth, [("a", 0.9, (1, 1, 10, 4))])  # 0.4
    assert (ap, list(tp), list(fp)) == (0.0, [0], [1])


def test_duplicate_detection_is_a_false_positive():
    ground_truth = {"a": gt((1, 1, 10, 10)), "b": gt((20, 20, 40, 40))}
    ap, tp, fp = det_ap(ground_truth, [("a", 0.9, (1, 1, 10, 10)), ("a", 0.8, (1, 1, 10, 10)),
                                       ("b", 0.7, (20, 20, 40, 40))])
    assert list(tp) == [1, 0, 1] and list(fp) == [0, 1, 0]
    # rec .5 .5 1, prec 1 .5 2/3 -> 0.5 * 1 + 0.5 * 2/3
    assert ap == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-12)


def test_difficult_boxes_neither_help_nor_hurt():
    ground_truth = {"a": gt((1, 1, 10, 10), difficult=(0,)), "b": gt((20, 20, 40, 40))}
    ap, tp, fp = det_ap(ground_truth, [("a", 0.9, (1, 1, 10, 10)), ("b", 0.8, (20, 20, 40, 40))])
    assert list(tp) == [0, 1] and list(fp) == [0, 0]  # npos = 1
    assert ap == 1.0
    # only difficult boxes matched, a positive left unfound: every precision is 0/0;
    # the devkit's 11-point max over NaNs is NaN, its area AP 0
    rec, prec, _, _ = detection_precision_recall(ground_truth, ["a"], [0.9], [(1, 1, 10, 10)])
    assert np.isnan(average_precision(rec, prec, "voc07"))
    assert average_precision(rec, prec, "area") == 0.0


def test_detection_goes_to_the_first_box_of_largest_overlap_even_if_difficult():
    # the devkit assigns to the best box, difficult or not: no fallback to the next best
    ground_truth = {"a": gt((1, 1, 10, 10), (1, 1, 10, 12), difficult=(0,))}
    _, tp, fp = det_ap(ground_truth, [("a", 0.9, (1, 1, 10, 10))])
    assert list(tp) == [0] and list(fp) == [0]
    # two equal overlaps: both detections go to the first box, so the second is a duplicate
    # (false positive) although the other box is free
    ground_truth = {"a": gt((1, 1, 10, 10), (1, 1, 10, 10))}
    ap, tp, fp = det_ap(ground_truth, [("a", 0.9, (1, 1, 10, 10)), ("a", 0.8, (1, 1, 10, 10))])
    assert list(tp) == [1, 0] and list(fp) == [0, 1]
    assert ap == pytest.approx(0.5)  # rec .5 .5, prec 1 .5


def test_detection_ties_keep_file_order():
    ground_truth = {"a": gt((1, 1, 10, 10))}
    miss, hit = ("a", 0.5, (50, 50, 60, 60)), ("a", 0.5, (1, 1, 10, 10))
    assert det_ap(ground_truth, [miss, hit])[0] == pytest.approx(0.5)  # rank F T: rec 1 at prec 1/2
    assert det_ap(ground_truth, [hit, miss])[0] == 1.0


def test_undetected_objects_count_in_npos():
    ground_truth = {"a": gt((1, 1, 10, 10)), "b": gt((1, 1, 10, 10), (20, 20, 30, 30))}
    rec, prec, _, _ = detection_precision_recall(ground_truth, ["a"], [1.0], [(1, 1, 10, 10)])
    assert rec[-1] == pytest.approx(1 / 3)
    # 11-point: t = 0..0.3 reach rec 1/3 with precision 1 -> 4/11
    assert average_precision(rec, prec, "voc07") == pytest.approx(4 / 11)


# --- submission files and whole-set evaluation ----------------------------------------------

@pytest.fixture
def tree(tmp_path):
    """Five test images: car positives 000001, 000003; 000004 holds only a difficult car."""
    write_voc(tmp_path / "VOCdevkit", {
        "000001": [obj("car", (1, 1, 10, 10)), obj("dog", (5, 5, 30, 30), truncated=True)],
        "000002": [obj("dog", (1, 1, 20, 20))],
        "000003": [obj("car", (11, 11, 30, 30)), obj("car", (40, 40, 60, 60), difficult=True)],
        "000004": [obj("car", (1, 1, 8, 8), difficult=True)],
        "000005": [obj("person", (2, 2, 9, 9))],
    })
    return VOCDataset(tmp_path / "VOCdevkit", 2007), tmp_path / "results"


def test_classification_missing_images_rank_last_with_a_warning(tree):
    ds, results = tree
    # 000003 (positive) and 000005 missing: they get -inf and rank last in set order
    write_lines(results / "comp1_cls_test_car.txt", ["000002 0.9", "000001 0.8", "000004 0.95"])
    report = evaluate_voc(ds, "test", "cls", results, names=["car"])
    # rank: 000004 (0) 000002 (N) 000001 (P) 000003 (P) 000005 (N): rec .5 1, prec 1/2 2/3
    # 11-point: max precision with rec >= t is 2/3 for every t
    assert report.results["car"].ap == pytest.approx(2 / 3, abs=1e-12)
    assert report.metric == "voc07"
    assert report.warnings == ["comp1_cls_test_car.txt: 2 of 5 images of the set have no score; "
                               "they rank last (score -inf), as in the devkit"]
    area = evaluate_voc(ds, "test", "cls", results, metric="area", names=["car"])
    assert area.results["car"].ap == pytest.approx(2 / 3, abs=1e-12)


def test_classification_difficult_only_images_are_ignored(tree):
    ds, results = tree
    write_lines(results / "comp1_cls_test_car.txt",
                ["000004 1.0", "000001 0.9", "000003 0.8", "000002 0.1", "000005 0.0"])
    assert evaluate_voc(ds, "test", "cls", results, names=["car"]).results["car"].ap == pytest.approx(1.0)


def test_classification_file_errors_name_file_and_line(tree):
    ds, results = tree
    path = results / "comp1_cls_test_car.txt"
    cases = [
        (["000001 0.5", "000009 0.1"],
         r"comp1_cls_test_car.txt, line 2: image '000009' is not in the image set"),
        (["000001 0.5", "000002 0.1", "000001 0.3"],
         r"line 3: image '000001' given twice \(first at line 1\)"),
        (["000001 0.5", "000002 0.1 7"], r"line 2: expected 2 fields '<image id> <score>', found 3"),
        (["000001 0.5", "", "000002 high"], r"line 3: score 'high' is not a number"),
        (["000001 nan"], r"line 1: score 'nan' is not a number"),
    ]
    for lines, message in cases:
        write_lines(path, lines)
        with pytest.raises(InputError, match=message):
            evaluate_voc(ds, "test", "cls", results, names=["car"])


def test_detection_on_a_tree(tree):
    ds, results = tree
    write_lines(results / "comp3_det_test_car.txt", [
        "000001 0.9 1 1 10 10",       # TP
        "000003 0.8 40 40 60 60",     # the difficult car: ignored
        "000003 0.7 11 11 30 30",     # TP
        "000003 0.7 11 11 30 30",     # duplicate (same score, later in file): FP
        "000002 0.6 1 1 10 10",       # FP
    ])
    report = evaluate_voc(ds, "test", "det", results, metric="area", names=["car"])
    # npos 2; ranks TP, -, TP, FP, FP: rec .5 .5 1 1 1, prec 1 1 1 2/3 1/2 -> AP 1
    assert report.results["car"].ap == 1.0
    np.testing.assert_allclose(report.results["car"].prec, [1, 1, 1, 2 / 3, 1 / 2])
    write_lines(results / "comp3_det_test_car.txt", ["000002 0.9 1 1 10 10", "000001 0.8 1 1 10 5"])
    # FP then TP at overlap 0.5: rec 0 .5, prec 0 .5; 11-point: t <= .5 -> .5 (6 points)
    assert evaluate_voc(ds, "test", "det", results, names=["car"]).results["car"].ap == pytest.approx(3 / 11)


def test_detection_file_errors(tree):
    ds, results = tree
    path = results / "comp3_det_test_car.txt"
    cases = [
        (["000001 0.9 1 1 10"], r"comp3_det_test_car.txt, line 1: expected 6 fields"),
        (["000001 0.9 1 1 10 10", "000001 0.9 1 a 10 10"], r"line 2: y1 'a' is not a finite number"),
        (["000007 0.9 1 1 10 10"], r"line 1: image '000007' is not in the image set"),
    ]
    for lines, message in cases:
        write_lines(path, lines)
        with pytest.raises(InputError, match=message):
            evaluate_voc(ds, "test", "det", results, names=["car"])


def test_unknown_class_and_missing_results(tree):
    ds, results = tree
    write_lines(results / "comp1_cls_test_car.txt", ["000001 1"])
    with pytest.raises(InputError, match="unknown class 'cars'"):
        evaluate_voc(ds, "test", "cls", results, names=["car", "cars"])
    with pytest.raises(InputError, match=r"no results files comp2_cls_test_<class>.txt in"):
        evaluate_voc(ds, "test", "cls", results, competition="comp2")
    with pytest.raises(InputError, match="results directory .* does not exist"):
        evaluate_voc(ds, "test", "cls", results / "none")
    report = evaluate_voc(ds, "test", "cls", results)
    assert list(report.results) == ["car"]
    assert report.warnings[-1].startswith("no results file for 19 of 20 classes (aeroplane, bicycle,")


def test_results_found_in_the_devkit_results_layout(tree):
    ds, results = tree
    write_lines(results / "VOC2007" / "Main" / "comp2_cls_test_car.txt",
                ["000001 0.9", "000003 0.8", "000002 0.1", "000004 0.1", "000005 0.1"])
    report = evaluate_voc(ds, "test", "cls", results, competition="comp2")
    assert report.results["car"].ap == pytest.approx(1.0) and report.warnings[:1] == [
        "no results file for 19 of 20 classes (aeroplane, bicycle, bird, boat, bottle, bus, cat, chair, cow, "
        "diningtable, dog, horse, motorbike, person, pottedplant, sheep, sofa, train, tvmonitor): "
        "left out of the mean"]


def test_action_evaluation(tmp_path):
    write_voc(tmp_path, {
        "2011_000001": [obj("person", (1, 1, 20, 40), actions={"walking"}),
                        obj("person", (30, 1, 50, 40), actions={"other"})],
        "2011_000002": [obj("person", (5, 5, 25, 45), actions={"walking", "phoning"})],
    }, split="val", year=2012, action_split="val")
    ds = VOCDataset(tmp_path, 2012)
    results = tmp_path / "results"
    # (2011_000002, 1) missing: -inf, last. rank: (1,2) N, (1,1) P, (2,1) P -> area 2/3
    write_lines(results / "comp9_action_val_walking.txt", ["2011_000001 1 0.2", "2011_000001 2 0.7"])
    report = evaluate_voc(ds, "val", "action", results)
    assert report.metric == "area" and list(report.results) == ["walking"]
    assert report.results["walking"].ap == pytest.approx(2 / 3, abs=1e-12)
    assert report.warnings[0].startswith(
        "comp9_action_val_walking.txt: 1 of 3 persons of the set have no score")
    for lines, message in [
        (["2011_000001 3 0.2"], r"line 1: person 3 of image '2011_000001' is not in the action set"),
        (["2011_000001 1 0.2", "2011_000001 1 0.3"], r"line 2: person 1 of image '2011_000001' given twice"),
        (["2011_000001 x 0.2"], r"line 1: object index 'x' is not an integer"),
        (["2011_000001 1"], r"line 1: expected 3 fields '<image id> <object index> <score>', found 2"),
    ]:
        write_lines(results / "comp9_action_val_walking.txt", lines)
        with pytest.raises(InputError, match=message):
            evaluate_voc(ds, "val", "action", results)


def test_submission_files_round_trip(tmp_path):
    assert result_filename("comp1", "cls", "test", "car") == "comp1_cls_test_car.txt"
    assert result_filename("comp10", "action", "val", "jumping") == "comp10_action_val_jumping.txt"
    with pytest.raises(InputError, match="competition 'c1' is not of the form compN"):
        result_filename("c1", "cls", "test", "car")
    scores = [0.1, 1 / 3, -2.5e-7]
    write_cls_results(tmp_path / "c.txt", ["a", "b", "c"], scores)
    ids, read = read_cls_results(tmp_path / "c.txt")
    assert ids == ["a", "b", "c"] and list(read) == scores  # exact: no ties made by rounding
    write_det_results(tmp_path / "d.txt", ["a", "a"], [0.5, 0.25], [(1, 2, 3, 4), (5.5, 6, 7, 8)])
    ids, read, boxes = read_det_results(tmp_path / "d.txt")
    assert ids == ["a", "a"] and list(read) == [0.5, 0.25]
    np.testing.assert_array_equal(boxes, [(1, 2, 3, 4), (5.5, 6, 7, 8)])
    write_action_results(tmp_path / "x.txt", [("2011_000001", 2)], [0.75])
    assert (tmp_path / "x.txt").read_text() == "2011_000001 2 0.75\n"
