import numpy as np
import pytest

from minicnn.data.voc import pixel_boxes
from minicnn.transfer import label_patches, resample_background
from minicnn.transfer.labels import background_weights, patches_on_box

BG = 3  # three classes, background label 3


def one(patch, boxes, classes, difficult=None):
    difficult = [False] * len(boxes) if difficult is None else difficult
    return int(label_patches(np.array([patch], float), np.array(boxes, float).reshape(-1, 4),
                             classes, difficult, num_classes=3)[0])


def test_positive_patch_takes_the_object_class():
    # object fills 25% of the patch and lies wholly inside it
    assert one([0, 0, 100, 100], [[10, 10, 60, 60]], [2]) == 2


def test_object_too_small_in_patch_is_background():
    # object wholly inside but fills only 9% of the patch (< 20%)
    assert one([0, 0, 100, 100], [[0, 0, 30, 30]], [1]) == BG


def test_cut_object_is_background():
    # patch fills with the object (100%) but holds only 50% of it (< 60%)
    assert one([0, 0, 50, 50], [[0, 0, 50, 100]], [1]) == BG


def test_thresholds_are_inclusive():
    # exactly 20% of the patch and exactly 60% of the object
    assert one([0, 0, 100, 100], [[0, 0, 20, 100]], [0]) == 0
    assert one([0, 0, 60, 100], [[0, 0, 100, 100]], [0]) == 0


def test_two_objects_discard_even_of_the_same_class():
    boxes = [[0, 0, 50, 50], [50, 50, 100, 100]]
    assert one([0, 0, 100, 100], boxes, [1, 2]) == -1
    assert one([0, 0, 100, 100], boxes, [1, 1]) == -1
    # only one of them matches (the other is cut by the patch): positive
    assert one([0, 0, 70, 70], boxes, [1, 2]) == 1


def test_difficult_objects_discard_and_never_make_positives():
    assert one([0, 0, 100, 100], [[10, 10, 60, 60]], [2], [True]) == -1
    # a difficult object that the patch does not match changes nothing
    assert one([0, 0, 100, 100], [[10, 10, 60, 60], [90, 90, 300, 300]], [2, 0], [False, True]) == 2


def test_no_objects_means_background_and_bad_input_is_rejected():
    assert one([0, 0, 10, 10], np.zeros((0, 4)), []) == BG
    with pytest.raises(ValueError, match="must agree"):
        label_patches(np.zeros((1, 4)), np.zeros((2, 4)), [0], [False], 3)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        label_patches(np.zeros((1, 4)), np.zeros((1, 4)), [3], [False], 3)


def test_voc_boxes_are_converted_to_pixel_squares():
    np.testing.assert_array_equal(pixel_boxes([[1, 1, 10, 20]]), [[0, 0, 10, 20]])


def test_vectorised_labels_agree_with_a_loop(rng):
    patches = rng.uniform(0, 80, (300, 2))
    sides = rng.uniform(5, 60, 300)
    patches = np.column_stack([patches, patches + sides[:, None]])
    gt = rng.uniform(0, 80, (4, 2))
    gt = np.column_stack([gt, gt + rng.uniform(5, 40, (4, 2))])
    classes, difficult = np.array([0, 1, 2, 1]), np.array([False, False, False, True])
    labels = label_patches(patches, gt, classes, difficult, 3)
    for p, lab in zip(patches, labels, strict=True):
        assert lab == one(p, gt, classes, difficult)
    assert {-1, 3} <= set(labels.tolist()) and len(set(labels.tolist())) >= 3


def test_background_resampling_keeps_objects_and_a_fraction(rng):
    labels = np.array([BG] * 10000 + [0] * 50 + [-1] * 20 + [2] * 30)
    keep = resample_background(labels, BG, 0.1, rng)
    assert set(np.flatnonzero((labels == 0) | (labels == 2))) <= set(keep)
    assert not set(np.flatnonzero(labels == -1)) & set(keep)
    n_bg = int((labels[keep] == BG).sum())
    assert 880 <= n_bg <= 1120  # Binomial(10000, 0.1): +-4 sigma
    again = resample_background(labels, BG, 0.1, rng)
    assert not np.array_equal(keep, again)  # a fresh draw each epoch
    assert len(resample_background(labels, BG, 1.0, rng)) == len(labels) - 20
    w = background_weights(labels, BG, 0.1)
    assert w[0] == pytest.approx(0.1) and w[10000] == 1.0


def test_patches_on_a_person_box_follow_the_rules_then_fall_back():
    patches = np.array([[0, 0, 10, 10], [0, 0, 100, 100], [50, 50, 60, 60]], dtype=float)
    # both rules: the 10x10 patch is half filled by the box and holds all of it
    np.testing.assert_array_equal(patches_on_box(patches, [0, 0, 10, 5]), [True, False, False])
    # a box too small for any patch's 20% rule: the patches holding 60% of it
    np.testing.assert_array_equal(patches_on_box(patches, [52, 52, 54, 54]), [False, True, True])
    # a box no patch holds 60% of: every patch of the image
    np.testing.assert_array_equal(patches_on_box(patches[[0, 2]], [5, 5, 55, 55]), [True, True])


def test_a_person_with_several_actions_or_none_is_ambiguous():
    """The action task's persons as objects (docs/method.md 7): one action of the task makes
    its class; several of them, or only others, make the person difficult, so that the
    patches it would label are discarded."""
    from types import SimpleNamespace

    from minicnn.data.voc import VOCObject
    from minicnn.transfer.patchset import action_truth

    def person(index, actions):
        return VOCObject(index, "person", (1, 1, 50, 50), False, False, frozenset(actions))

    annotation = SimpleNamespace(objects=[person(1, {"phoning"}), person(2, {"jumping", "phoning"}),
                                          person(3, {"other"}), person(4, {"reading", "other"})])
    boxes, classes, difficult = action_truth(annotation, ["jumping", "phoning", "reading"])
    assert len(boxes) == 4
    assert difficult.tolist() == [False, True, True, False]
    assert classes[[0, 3]].tolist() == [1, 2]
