"""The results of the method, not only its pieces: runs whose right answer the test knows.

- An oracle head (one-hot of each patch's true label) must give AP 1.0 for every class,
  through the real sampling, labelling, scoring, submission files and ``evaluate_voc``.
- A head with known outputs must give image scores equal to mean(p^k) computed here, with
  the k of the settings, and the same numbers in the submission files.
- The action task scores each person from the patches on its box, with known outputs too.
"""

import numpy as np
import pytest
from method_trees import boxes_tree, linear_head, source_like, with_head

from minicnn.data.voc import VOCDataset, pixel_boxes
from minicnn.evaluate import evaluate_voc, read_action_results, read_cls_results
from minicnn.losses import softmax
from minicnn.transfer.labels import patches_on_box
from minicnn.transfer.pipeline import Transfer, TransferSettings
from minicnn.transfer.train import TrainSettings

CLASSES = ["aeroplane", "bicycle", "bird"]  # VOC names: the action tree maps them to actions 0-2
SAMPLER = dict(scales=(1.0, 1.5, 2.0, 2.25), stride_fraction=0.25)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return boxes_tree(tmp_path_factory.mktemp("oracle"), CLASSES, n_trainval=10, n_test=12)


def make_run(voc, out, k=5.0, task="cls", classes=CLASSES, epochs=1, metric="voc07", **extra):
    settings = TransferSettings(task=task, hidden=4, val_fraction=0.3, **SAMPLER, **extra,
                                train=TrainSettings(epochs=epochs, batch_size=16, k=k, metric=metric))
    return Transfer(voc, 2007, source_like(), out, settings, classes=classes, log=lambda *a: None)


def one_hot_of_labels(run):
    labels = run.patches.patch_labels.copy()
    labels[labels < 0] = run.background  # discarded or unknown: no class
    return np.eye(run.background + 1, dtype=np.float32)[labels] * 50


def test_every_object_has_a_positive_patch(tree):
    """The oracle's premise: each non-difficult object labels at least one patch of its image
    with its class, so a perfect patch classifier ranks every positive image first."""
    run = make_run(tree, tree / "unused")
    p = run.patches
    for i, image_id in enumerate(p.image_ids):
        mine = p.patch_labels[p.patch_image == i]
        for o in run.dataset.annotation(image_id).objects:
            if not o.difficult:
                assert (mine == CLASSES.index(o.name)).any(), (image_id, o.name)


def test_an_oracle_head_gives_ap_1_for_every_class(tree, tmp_path):
    run = make_run(tree, tmp_path)
    run = with_head(run, linear_head(np.eye(4)), one_hot_of_labels(run))
    result = run.run()
    assert set(result.summary["ap"]) == set(CLASSES)
    perfect = {c: pytest.approx(1.0, abs=1e-12) for c in CLASSES}  # 11 points summed: 1 + 2e-16
    assert result.summary["ap"] == perfect and result.summary["map"] == pytest.approx(1.0, abs=1e-12)
    # the validation images went through the same route every epoch
    assert result.summary["history"][-1]["val_map"] == pytest.approx(1.0, abs=1e-12)
    # and the submission files say the same to the devkit's evaluation
    report = evaluate_voc(VOCDataset(tree, 2007, classes=CLASSES), "test", "cls", tmp_path / "results")
    assert {c: r.ap for c, r in report.results.items()} == perfect
    assert not report.warnings


def test_an_anti_oracle_head_gives_the_worst_ap(tree, tmp_path):
    """The same head with a class's column moved to the next class: every class ranks its
    positives behind the images of another class, so AP drops far below 1."""
    run = make_run(tree, tmp_path)
    shifted = np.eye(4)[[1, 2, 0, 3]]
    result = with_head(run, linear_head(shifted), one_hot_of_labels(run)).run()
    assert result.summary["map"] < 0.8


@pytest.mark.parametrize("k", [1.0, 3.0])
def test_image_scores_are_the_mean_of_p_to_the_k_of_their_patches(tree, tmp_path, k):
    """Known patch outputs (fixed random logits per patch): each test image's score of class
    c is mean over its patches of softmax(logits)[c]^k, here computed from the patch set
    directly, and the submission files hold exactly those numbers."""
    run = make_run(tree, tmp_path, k=k)
    logits = np.random.default_rng(1).normal(0, 2, (len(run.patches.patch_labels), 4)).astype(np.float32)
    result = with_head(run, linear_head(np.eye(4)), logits).run()
    p = run.patches
    probs = softmax(logits.astype(np.float64))
    expected = np.array([(probs[p.patch_image == p.image_ids.index(i)] ** k).mean(axis=0)
                         for i in run.test_ids])[:, :3]
    np.testing.assert_allclose(result.test_scores, expected, rtol=1e-5)
    for c, name in enumerate(CLASSES):
        ids, scores = read_cls_results(tmp_path / "results" / "VOC2007" / "Main"
                                       / f"comp1_cls_test_{name}.txt")
        assert ids == run.test_ids
        np.testing.assert_allclose(scores, expected[:, c], rtol=1e-5)


@pytest.mark.parametrize("metric", ["voc07", "area"])
def test_the_runs_aps_are_the_devkit_aps_of_its_submission_files(tree, tmp_path, metric):
    """Known patch outputs (fixed random logits): the APs the run reports, computed from the
    scores in memory (the route validation takes too), are those ``evaluate_voc`` (the devkit's
    computation) finds in the files the run wrote, with the metric of the settings; the test
    images holding only a difficult object of a class count as neither positive nor negative."""
    run = make_run(tree, tmp_path, k=3.0, metric=metric)
    logits = np.random.default_rng(3).normal(0, 2, (len(run.patches.patch_labels), 4)).astype(np.float32)
    result = with_head(run, linear_head(np.eye(4)), logits).run()
    truth = run.patches.items["test"].truth
    assert (truth == 0).any() and (truth == 1).any() and (truth == -1).any()
    dataset = VOCDataset(tree, 2007, classes=CLASSES)
    report = evaluate_voc(dataset, "test", "cls", tmp_path / "results", metric=metric)
    assert result.summary["ap"] == {c: r.ap for c, r in report.results.items()}
    assert result.report.metric == metric
    other_metric = "area" if metric == "voc07" else "voc07"
    other = evaluate_voc(dataset, "test", "cls", tmp_path / "results", metric=other_metric)
    assert other.map != pytest.approx(report.map, abs=1e-3)  # the metric matters on these scores
    assert 0.2 < report.map < 0.95


def test_the_action_task_scores_each_person_from_the_patches_on_its_box(tmp_path):
    """Persons as the objects of the action task: each test person's score is the mean of
    p^k over the patches of its image that satisfy both rules for its box (here computed
    with ``patches_on_box`` on the image's own patches), and its comp9 line carries it."""
    from test_transfer_end_to_end import action_tree

    voc = action_tree(boxes_tree(tmp_path / "boxes", CLASSES, 6, 8), tmp_path / "actions")
    actions = ["jumping", "phoning", "playinginstrument"]
    run = make_run(voc, tmp_path / "out", k=2.0, task="action", classes=actions)
    p = run.patches
    logits = np.random.default_rng(2).normal(0, 2, (len(p.patch_labels), 4)).astype(np.float32)
    result = with_head(run, linear_head(np.eye(4)), logits).run()
    probs = softmax(logits.astype(np.float64))
    persons = run.dataset.action_persons("test")
    assert len(persons) > len(run.test_ids)  # images with two persons: scored apart
    expected = []
    for image_id, person in persons:
        mine = np.flatnonzero(p.patch_image == p.image_ids.index(image_id))
        on_box = patches_on_box(p.patch_boxes[mine], pixel_boxes([person.box]))
        assert 0 < on_box.sum() < len(mine)
        expected.append((probs[mine[on_box]] ** 2.0).mean(axis=0)[:3])
    np.testing.assert_allclose(result.test_scores, np.array(expected), rtol=1e-5)
    keys, scores = read_action_results(tmp_path / "out" / "results" / "VOC2007" / "Action"
                                       / "comp9_action_test_phoning.txt")
    assert keys == [(i, o.index) for i, o in persons]
    np.testing.assert_allclose(scores, np.array(expected)[:, 1], rtol=1e-5)
