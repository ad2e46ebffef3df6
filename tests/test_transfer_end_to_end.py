"""The whole method on tiny generated data: pretrain, every transfer variant, the demo."""

import json

import numpy as np
import pytest

import minicnn as mc
from minicnn.data.synthetic import DataConfig, generate
from minicnn.pretrain import PretrainSettings, pretrain
from minicnn.transfer.pipeline import Transfer, TransferSettings, load_source
from minicnn.transfer.train import TrainSettings

TINY_NET = dict(model="small", input_size=32, resize=36, channels=(8, 16, 16, 16, 16), hidden=24,
                batch_size=32, workers=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    generate(root / "data", DataConfig(source_per_class=10, trainval=8, test=5), workers=1)
    mc.set_backend("numpy")
    result = pretrain(root / "data" / "source", root / "pre", PretrainSettings(epochs=2, **TINY_NET),
                      log=lambda *a: None)
    return root, result


def test_pretrain_writes_a_source_network_with_its_classes(tiny):
    root, result = tiny
    net = load_source(result["weights"])
    assert net.meta["classes"] == result["classes"] and len(result["classes"]) == 30
    assert len(net.meta["mean"]) == 3 and len(net.meta["std"]) == 3
    assert (root / "pre" / "source.classes.txt").read_text().split() == result["classes"]
    assert [h["epoch"] for h in result["history"]] == [1, 2]
    assert 0 <= result["history"][-1]["val_top1"] <= result["history"][-1]["val_top5"] <= 1


def test_pretrain_resumes_after_the_last_checkpoint(tiny, tmp_path):
    root, _ = tiny
    logs = []
    settings = PretrainSettings(epochs=1, **TINY_NET)
    pretrain(root / "data" / "source", tmp_path, settings, log=logs.append)
    more = pretrain(root / "data" / "source", tmp_path, PretrainSettings(epochs=2, **TINY_NET), resume=True,
                    log=logs.append)
    assert any("resumed" in line and "after epoch 1" in line for line in logs)
    assert [h["epoch"] for h in more["history"]] == [1, 2]


@pytest.mark.parametrize("variant", ["frozen", "update-fc67", "finetune", "scratch", "whole-image"])
def test_every_variant_runs_end_to_end(tiny, tmp_path, variant):
    root, result = tiny
    settings = TransferSettings(variant=variant, hidden=16, stride_fraction=0.5, scales=(1.0, 2.0),
                                train=TrainSettings(epochs=1, batch_size=32))
    run = Transfer(root / "data" / "VOCdevkit", 2007, load_source(result["weights"]), tmp_path, settings,
                   cache_root=root / "cache", log=lambda *a: None)
    trainable = {n for n, layer in zip(run.net.names, run.net.layers, strict=True)
                 if layer.params and not layer.frozen}
    expected = {"frozen": {"fca", "fcb"}, "whole-image": {"fca", "fcb"},
                "update-fc67": {"fc6", "fc7", "fca", "fcb"}}.get(variant)
    assert trainable == (expected or {n for n in run.net.names if run.net[n].params})
    summary = run.run().summary
    assert len(run.classes) == 10 and set(summary["ap"]) <= set(run.classes)
    assert 0 <= summary["map"] <= 1
    files = sorted((tmp_path / "results" / "VOC2007" / "Main").iterdir())
    assert len(files) == 10 and files[0].name.startswith("comp1_cls_test_")
    lines = files[0].read_text().split("\n")
    assert len([ln for ln in lines if ln]) == 5
    assert json.loads((tmp_path / "summary.json").read_text())["variant"] == variant


def test_test_images_without_annotations_are_scored_not_evaluated(tiny, tmp_path):
    """VOC 2012's test set comes without its XML files: its images are scored and the
    submission files written; only the evaluation is left out, and said so."""
    import shutil

    root, result = tiny
    voc = tmp_path / "VOCdevkit"
    shutil.copytree(root / "data" / "VOCdevkit", voc)
    test_ids = (voc / "VOC2007" / "ImageSets" / "Main" / "test.txt").read_text().split()
    for image_id in test_ids:
        (voc / "VOC2007" / "Annotations" / f"{image_id}.xml").unlink()
    for per_class in (voc / "VOC2007" / "ImageSets" / "Main").glob("*_test.txt"):
        per_class.unlink()
    logs = []
    settings = TransferSettings(hidden=16, stride_fraction=0.5, scales=(1.0, 2.0),
                                train=TrainSettings(epochs=1, batch_size=32))
    run = Transfer(voc, 2007, load_source(result["weights"]), tmp_path / "out", settings,
                   cache_root=tmp_path / "cache", log=logs.append)
    test_patches = run.patches.patches_of("test")
    assert len(test_patches) and np.all(run.patches.patch_labels[test_patches] == -1)
    assert run.patches.items["test"].truth is None
    summary = run.run().summary
    assert "map" not in summary and any(line.startswith("not evaluated:") for line in logs)
    files = sorted((tmp_path / "out" / "results" / "VOC2007" / "Main").iterdir())
    assert len(files) == 10
    assert [ln.split()[0] for ln in files[0].read_text().splitlines()] == test_ids


def test_frozen_training_resumes_from_its_checkpoint(tiny, tmp_path):
    root, result = tiny
    source = load_source(result["weights"])

    def make(epochs):
        return Transfer(root / "data" / "VOCdevkit", 2007, source, tmp_path,
                        TransferSettings(hidden=16, stride_fraction=0.5, scales=(1.0, 2.0),
                                         train=TrainSettings(epochs=epochs, batch_size=16)),
                        cache_root=root / "cache", log=lambda *a: None)

    straight = make(2).run().summary["history"]
    (tmp_path / "checkpoint.npz").unlink()
    make(1).run()
    logs = []
    resumed = make(2)
    resumed.log = logs.append
    history = resumed.run(resume=True).summary["history"]
    assert any("resumed" in line for line in logs)
    np.testing.assert_allclose([h["loss"] for h in history], [h["loss"] for h in straight], rtol=1e-6)


def test_demo_quick_writes_its_report(tmp_path):
    from minicnn.cli import main

    assert main(["demo", "--quick", "--backend", "numpy", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["map"]) == {"transfer", "scratch", "whole-image"}
    assert summary["seconds"] > 0 and "pretrain" in summary["stages"]
    assert (tmp_path / "report.md").read_text().startswith("# minicnn demo")
    for plot in ("training.png", "pretrain.png", "transfer/cls_summary.png"):
        assert (tmp_path / "plots" / plot).exists(), plot
    assert list((tmp_path / "heatmaps").glob("*.png"))
    # a rerun reuses every stage and keeps the times of the run that computed them
    assert main(["demo", "--quick", "--backend", "numpy", "--out", str(tmp_path)]) == 0
    again = json.loads((tmp_path / "summary.json").read_text())
    assert again["stages"] == summary["stages"] and again["map"] == summary["map"]
    assert json.loads((tmp_path / "run.json").read_text())["seconds"] == summary["stages"]


def test_localize_writes_heatmaps_boxes_and_detection_results(tiny, tmp_path):
    from minicnn.cli import main

    root, result = tiny
    run = Transfer(root / "data" / "VOCdevkit", 2007, load_source(result["weights"]), tmp_path / "t",
                   TransferSettings(hidden=16, stride_fraction=0.5, scales=(1.0, 2.0),
                                    train=TrainSettings(epochs=1, batch_size=32)),
                   cache_root=root / "cache", log=lambda *a: None)
    run.run()
    out = tmp_path / "loc"
    assert main(["localize", "--weights", str(tmp_path / "t" / "transfer.npz"), "--voc",
                 str(root / "data" / "VOCdevkit"), "--out", str(out), "--backend", "numpy",
                 "--heatmaps", "2", "--per-class", "2"]) == 0
    assert len(list((out / "heatmaps").glob("*.png"))) == 2
    boxes = json.loads((out / "boxes.json").read_text())
    assert set(boxes) == set(run.classes)
    assert all(len(v) == 2 * 5 for v in boxes.values())  # 2 boxes per class in each of 5 test images
    assert len(list((out / "results" / "VOC2007" / "Main").glob("comp3_det_test_*.txt"))) == 10


def test_settings_are_checked_and_val_fraction_zero_trains_on_everything(tiny, tmp_path):
    from minicnn.errors import InputError

    for bad in (dict(dropout=1.0), dict(val_fraction=-0.1), dict(hidden=0)):
        with pytest.raises(InputError, match="--" + next(iter(bad)).replace("_", "-")):
            TransferSettings(**bad)
    root, result = tiny
    settings = TransferSettings(hidden=16, val_fraction=0.0, stride_fraction=0.5, scales=(1.0, 2.0),
                                train=TrainSettings(epochs=2, batch_size=32))
    run = Transfer(root / "data" / "VOCdevkit", 2007, load_source(result["weights"]), tmp_path, settings,
                   cache_root=root / "cache", log=lambda *a: None)
    assert run.val_ids == [] and len(run.train_ids) == 8
    history = run.run().summary["history"]
    assert [h["lr"] for h in history] == [0.01, 0.01] and all("val_map" not in h for h in history)


def action_tree(tiny_voc, out):
    """The tiny generated tree as an action tree: every object becomes a person whose action
    is the one of its class's index (difficult objects: "other"), Action sets beside Main."""
    import shutil

    from voc_tree import annotation_xml, obj, write_lines

    from minicnn.data.voc import VOC_CHALLENGE_ACTIONS, VOCDataset

    shutil.copytree(tiny_voc, out)
    dataset = VOCDataset(out, 2007, classes=VOCDataset(out, 2007).listed_classes("trainval"))
    classes = list(dataset.classes)
    for split in ("trainval", "test"):
        ids = dataset.image_ids(split)
        write_lines(out / "VOC2007" / "ImageSets" / "Action" / f"{split}.txt", ids)
        for image_id in ids:
            ann = dataset.annotation(image_id)
            persons = [obj("person", o.box, actions={"other"} if o.difficult
                           else {VOC_CHALLENGE_ACTIONS[classes.index(o.name)]}) for o in ann.objects]
            (out / "VOC2007" / "Annotations" / f"{image_id}.xml").write_text(
                annotation_xml(image_id, persons, ann.width, ann.height))
    return out


def test_action_task_scores_each_person_from_the_patches_on_its_box(tiny, tmp_path):
    from minicnn.data.voc import VOC_CHALLENGE_ACTIONS, VOCDataset
    from minicnn.errors import InputError
    from minicnn.evaluate import read_action_results

    root, result = tiny
    voc = action_tree(root / "data" / "VOCdevkit", tmp_path / "VOCdevkit")
    settings = TransferSettings(task="action", hidden=16, stride_fraction=0.5, scales=(1.0, 2.0),
                                val_fraction=0.25, train=TrainSettings(epochs=2, batch_size=32))
    run = Transfer(voc, 2007, load_source(result["weights"]), tmp_path / "out", settings,
                   cache_root=tmp_path / "cache", log=lambda *a: None)
    assert run.classes == list(VOC_CHALLENGE_ACTIONS) and run.net["fcb"].out_features == 11
    persons = VOCDataset(voc, 2007).action_persons("test")
    items = run.patches.items["test"]
    assert items.keys == [(i, o.index) for i, o in persons]
    # every person is scored by patches of its own image, which hold most of its box
    assert set(items.pair_item.tolist()) == set(range(len(persons)))
    patches = items.patches[items.pair_patch]
    for j in range(len(persons)):
        image_id, person = persons[j]
        images = run.patches.patch_image[patches[items.pair_item == j]]
        assert {run.patches.image_ids[i] for i in images} == {image_id}
    gt = items.truth
    assert gt.shape == (len(persons), 10) and set(np.unique(gt)) <= {-1, 1}
    summary = run.run().summary
    assert 0 <= summary["map"] <= 1 and set(summary["ap"]) <= set(VOC_CHALLENGE_ACTIONS)
    folder = tmp_path / "out" / "results" / "VOC2007" / "Action"
    written = read_action_results(folder / "comp9_action_test_jumping.txt")
    assert len(written[0]) == len(persons)
    with pytest.raises(InputError, match="whole-image"):
        TransferSettings(task="action", variant="whole-image")


def test_action_task_from_the_command_line(tiny, tmp_path, capsys):
    from minicnn.cli import main

    root, result = tiny
    voc = action_tree(root / "data" / "VOCdevkit", tmp_path / "VOCdevkit")
    args = ["transfer", "--voc", str(voc), "--year", "2007", "--task", "action", "--weights",
            str(result["weights"]), "--out", str(tmp_path / "out"), "--epochs", "1", "--hidden", "8",
            "--stride", "0.5", "--scales", "1,2", "--backend", "numpy", "--batch-size", "32"]
    assert main(args + ["--classes", "jumping,phoning,dancing"]) == 2
    assert "unknown action 'dancing'" in capsys.readouterr().err
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "jumping" in out and "mean" in out and "Action" in out
