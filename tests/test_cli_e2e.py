"""What a new user meets (issue 26): each command once on tiny generated data, and each
careless input of the issue refused with exit code 2, one line naming the problem, and
nothing written."""

import json
import os
import shutil

import numpy as np
import pytest
from method_trees import source_like

from minicnn.cli import main

MAKE_DATA = ["--source-per-class", "4", "--trainval", "8", "--test", "6", "--scene-size", "160x120",
             "--workers", "1"]
FAST = ["--backend", "numpy", "--epochs", "1", "--hidden", "8", "--scales", "1,2", "--stride", "0.5"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A make-data folder (the command a new user runs first) and a small source network."""
    root = tmp_path_factory.mktemp("e2e")
    assert main(["make-data", "--out", str(root / "data"), *MAKE_DATA]) == 0
    source_like().save(root / "source.npz")
    return root


def files(root):
    """Every file under ``root`` with its size and modification time: a run that writes
    nothing leaves this unchanged."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            stat = os.stat(path)
            out[path] = (stat.st_size, stat.st_mtime_ns)
    return out


def refused(capsys, root, argv, *fragments):
    """Run ``argv``: exit code 2, one stderr line holding every fragment, nothing written
    under ``root``; returns the message."""
    before = files(root)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"minicnn {argv[0]}: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "Traceback" not in err and "\\x" not in err
    assert files(root) == before, "a refused command wrote files"
    return lines[0]


def voc_copy(world, tmp_path):
    """A private copy of the generated VOC tree (a test that damages it damages its own)."""
    shutil.copytree(world / "data" / "VOCdevkit", tmp_path / "VOCdevkit")
    return tmp_path / "VOCdevkit"


def transfer_args(voc, weights, out):
    return ["transfer", "--voc", str(voc), "--weights", str(weights), "--out", str(out), *FAST]


# --- each command once --------------------------------------------------------------------------

def test_each_command_once(world, tmp_path, capsys):
    data = world / "data"
    assert main(["gradcheck", "--op", "relu"]) == 0
    assert main(["prepare", "--data", str(data / "source"), "--out", str(tmp_path / "prepared"),
                 "--short-side", "24", "--workers", "1", "--pool", "thread"]) == 0
    assert main(["pretrain", "--data", str(tmp_path / "prepared"), "--out", str(tmp_path / "pre"),
                 "--model", "small", "--input-size", "16", "--resize", "20", "--channels", "4,4,4,4,4",
                 "--hidden", "8", "--epochs", "1", "--batch-size", "32", "--workers", "1",
                 "--backend", "numpy"]) == 0
    assert (tmp_path / "pre" / "source.npz").exists()
    capsys.readouterr()
    assert main(transfer_args(data / "VOCdevkit", tmp_path / "pre" / "source.npz", tmp_path / "t")) == 0
    out = capsys.readouterr().out
    # defect 7: the sampler's line states the run's own image size, not the paper's 500x375
    assert "patches on 160x120:" in out and "500x375" not in out
    results = tmp_path / "t" / "results"
    assert main(["evaluate", "--voc", str(data / "VOCdevkit"), "--results", str(results),
                 "--json", str(tmp_path / "ap.json")]) == 0
    assert json.loads((tmp_path / "ap.json").read_text())["task"] == "cls"
    assert main(["localize", "--weights", str(tmp_path / "t" / "transfer.npz"), "--voc",
                 str(data / "VOCdevkit"), "--out", str(tmp_path / "loc"), "--backend", "numpy",
                 "--heatmaps", "1"]) == 0
    assert list((tmp_path / "loc" / "heatmaps").glob("*.png"))
    for wnid in ("n02121808", "n02084071"):
        (tmp_path / "wnids" / wnid).mkdir(parents=True)
    assert main(["source-classes", "--from", str(tmp_path / "wnids"), "--random", "1",
                 "--out", str(tmp_path / "classes.txt")]) == 0
    assert len((tmp_path / "classes.txt").read_text().split()) == 1
    yolo = tmp_path / "yolo"
    (yolo / "images").mkdir(parents=True)
    (yolo / "labels").mkdir()
    shutil.copy(data / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000001.jpg", yolo / "images" / "a.jpg")
    (yolo / "labels" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (yolo / "obj.names").write_text("car\n")
    assert main(["convert", "yolo", "--images", str(yolo / "images"), "--labels", str(yolo / "labels"),
                 "--names", str(yolo / "obj.names"), "--out", str(tmp_path / "yv"), "--year", "2020",
                 "--set", "test", "--classes", "car"]) == 0
    assert (tmp_path / "yv" / "VOC2020" / "ImageSets" / "Main" / "test.txt").read_text().split() == ["a"]


# --- the refusals of the issue -------------------------------------------------------------------

def test_a_jpeg_truncated_after_its_header_is_refused_before_the_run(world, tmp_path, capsys):
    """Defect 1: the file is decoded before the run, not found half-way through the feature
    cache; --skip-bad leaves a training image out and counts it."""
    voc = voc_copy(world, tmp_path)
    image = voc / "VOC2007" / "JPEGImages" / "000003.jpg"
    assert "000003" in (voc / "VOC2007" / "ImageSets" / "Main" / "trainval.txt").read_text()
    image.write_bytes(image.read_bytes()[:1500])
    refused(capsys, tmp_path, transfer_args(voc, world / "source.npz", tmp_path / "t"),
            "000003.jpg", "truncated", "--skip-bad")
    assert main([*transfer_args(voc, world / "source.npz", tmp_path / "t"), "--skip-bad"]) == 0
    record = json.loads((tmp_path / "t" / "run.json").read_text())
    assert [s["item"] for s in record["skipped"]] == [str(image)]
    assert record["data"]["images"]["train"] + record["data"]["images"]["val"] == 7
    # localize decodes its images before its run too
    test_image = voc / "VOC2007" / "JPEGImages" / f"{first_test_id(voc)}.jpg"
    test_image.write_bytes(test_image.read_bytes()[:1500])
    localize = ["localize", "--weights", str(tmp_path / "t" / "transfer.npz"), "--voc", str(voc),
                "--out", str(tmp_path / "loc"), "--backend", "numpy"]
    refused(capsys, tmp_path, localize, test_image.name, "truncated")


def first_test_id(voc):
    return (voc / "VOC2007" / "ImageSets" / "Main" / "test.txt").read_text().split()[0]


def test_classes_the_tree_lacks_are_refused_before_work(world, tmp_path, capsys):
    """Defect 2: a class that cannot be learnt (no positive training patch) is refused."""
    voc = world / "data" / "VOCdevkit"
    argv = [*transfer_args(voc, world / "source.npz", tmp_path / "t"), "--classes", "cat,dog"]
    refused(capsys, world, argv, "2 of 2 classes have no positive training patch", "cat, dog")
    assert not (tmp_path / "t").exists()


def test_a_class_without_a_positive_test_image_is_named_and_left_out_of_the_mean(world, tmp_path, capsys):
    """Defect 2: today's demo --quick dropped 'flower' from the mean silently (nan)."""
    voc = world / "data" / "VOCdevkit" / "VOC2007"
    test_ids = (voc / "ImageSets" / "Main" / "test.txt").read_text().split()
    without = []
    for path in sorted((voc / "ImageSets" / "Main").glob("*_test.txt")):
        labels = dict(line.split() for line in path.read_text().splitlines())
        if not any(labels[i] == "1" for i in test_ids):
            without.append(path.name[: -len("_test.txt")])
    assert without, "the generated tree has a class without a positive test image"
    capsys.readouterr()
    assert main(transfer_args(voc.parent, world / "source.npz", tmp_path / "t")) == 0
    out = capsys.readouterr().out
    assert f"no positive item on test ({', '.join(without)}): their AP is left out of the mean" in out
    assert f"left out of the mean (no positive test item): {', '.join(without)}" in out
    summary = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert not set(without) & set(summary["ap"])
    assert summary["map"] == pytest.approx(np.mean(list(summary["ap"].values())))


def test_evaluate_results_naming_a_file(world, tmp_path, capsys):
    """Defect 3: an existing file as --results is not 'a directory that does not exist'."""
    refused(capsys, world, ["evaluate", "--voc", str(world / "data" / "VOCdevkit"), "--results",
                            str(world / "source.npz")], "source.npz is a file", "comp*_cls_*.txt")


@pytest.mark.parametrize("name,content,hint", [
    ("notes.txt", b"hello\n", "`minicnn import-weights`"),
    ("model.onnx", b"\x08\x07\x12\x04onnx\xff\xfe", "minicnn import-weights MODEL.onnx"),
    ("empty.npz", b"", "not an .npz file"),
])
def test_weights_that_are_not_an_npz(world, tmp_path, capsys, name, content, hint):
    """Defect 4: the file named and what it should be; never NumPy's pickle advice."""
    (tmp_path / name).write_bytes(content)
    message = refused(capsys, tmp_path, transfer_args(world / "data" / "VOCdevkit", tmp_path / name,
                                                      tmp_path / "t"), name, hint)
    assert "pickle" not in message


def test_a_pickled_npz_is_refused_naming_the_entry(world, tmp_path, capsys):
    np.savez(tmp_path / "objects.npz", weights=np.array([{"a": 1}], dtype=object))
    message = refused(capsys, tmp_path, transfer_args(world / "data" / "VOCdevkit", tmp_path / "objects.npz",
                                                      tmp_path / "t"), "objects.npz", "'weights'")
    assert "allow_pickle" not in message


@pytest.mark.parametrize("flag", [[], ["--fresh"], ["--resume"]])
def test_a_run_never_replaces_another_commands_record(world, tmp_path, capsys, flag):
    """Defect 6: transfer --out on a make-data folder, even with --fresh, leaves its record."""
    data = tmp_path / "data"
    shutil.copytree(world / "data", data)
    refused(capsys, tmp_path, [*transfer_args(data / "VOCdevkit", world / "source.npz", data), *flag],
            "holds a run of `minicnn make-data`", "name another folder")
    assert json.loads((data / "run.json").read_text())["name"] == "make-data"
