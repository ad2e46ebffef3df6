import hashlib
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from minicnn.cli import main
from minicnn.data import synthetic
from minicnn.data.folders import read_folder
from minicnn.data.synthetic import DataConfig, generate, is_generated, source_classes, target_classes
from minicnn.errors import InputError

TINY = DataConfig(seed=5, source_per_class=2, source_size=24, trainval=8, test=6,
                  scene_width=80, scene_height=60)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    generate(out, TINY, workers=1)
    return out


def tree_digest(root):
    """path -> sha1 of every file under ``root``."""
    digests = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            digests[os.path.relpath(path, root)] = hashlib.sha1(open(path, "rb").read()).hexdigest()
    return digests


def read_set(voc, name):
    return open(os.path.join(voc, "ImageSets", "Main", f"{name}.txt")).read().split()


def test_voc_annotations_are_consistent(tiny):
    voc = os.path.join(tiny, "VOCdevkit", "VOC2007")
    sets = {name: read_set(voc, name) for name in ("train", "val", "trainval", "test")}
    assert len(sets["trainval"]) == 8 and len(sets["test"]) == 6
    assert sorted(sets["train"] + sets["val"]) == sets["trainval"]
    assert set(sets["trainval"]).isdisjoint(sets["test"])
    ids = sorted(sets["trainval"] + sets["test"])
    assert ids == [f"{i:06d}" for i in range(1, 15)]
    labels = {}  # image id -> {class: [difficult flags]}
    n_objects = 0
    for image_id in ids:
        root = ET.parse(os.path.join(voc, "Annotations", f"{image_id}.xml")).getroot()
        assert root.findtext("filename") == f"{image_id}.jpg"
        width, height = int(root.findtext("size/width")), int(root.findtext("size/height"))
        with Image.open(os.path.join(voc, "JPEGImages", f"{image_id}.jpg")) as image:
            assert image.size == (width, height) == (80, 60) and image.mode == "RGB"
        labels[image_id] = {}
        for obj in root.findall("object"):
            n_objects += 1
            name = obj.findtext("name")
            assert name in target_classes() and obj.findtext("pose") == "Unspecified"
            truncated, difficult = int(obj.findtext("truncated")), int(obj.findtext("difficult"))
            assert truncated in (0, 1) and difficult in (0, 1)
            x1, y1, x2, y2 = (int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
            assert 1 <= x1 <= x2 <= width and 1 <= y1 <= y2 <= height  # 1-based, inclusive
            if truncated:  # the border cuts it: its visible box touches the border
                assert x1 == 1 or y1 == 1 or x2 == width or y2 == height
            labels[image_id].setdefault(name, []).append(difficult)
    assert n_objects >= 14  # at least one object per scene
    for set_name, set_ids in sets.items():
        for name in target_classes():
            lines = [line.split() for line in open(os.path.join(voc, "ImageSets", "Main",
                                                                 f"{name}_{set_name}.txt"))]
            assert [i for i, _ in lines] == set_ids
            for image_id, label in lines:
                flags = labels[image_id].get(name)
                expected = -1 if not flags else (1 if 0 in flags else 0)
                assert int(label) == expected


def test_source_set_is_an_image_folder(tiny):
    folder = read_folder(os.path.join(tiny, "source"))
    assert folder.classes == source_classes() and len(folder.classes) == 30
    assert folder.counts().tolist() == [2] * 30
    with Image.open(folder.paths[0]) as image:
        assert image.size == (24, 24) and image.format == "JPEG"


def test_same_seed_same_bytes_different_seed_different(tiny, tmp_path):
    again = tmp_path / "again"
    generate(again, TINY, workers=2)  # other worker count, same files
    assert tree_digest(again) == tree_digest(tiny)
    other = tmp_path / "other"
    generate(other, DataConfig(**{**TINY.__dict__, "seed": 6}), workers=1)
    first, second = tree_digest(tiny), tree_digest(other)
    assert first.keys() == second.keys()
    changed = [k for k in first if k.endswith(".jpg") and first[k] != second[k]]
    assert len(changed) == sum(k.endswith(".jpg") for k in first)


def test_existing_dataset_needs_force(tiny, tmp_path):
    out = tmp_path / "d"
    small = DataConfig(**{**TINY.__dict__, "source_per_class": 1, "trainval": 2, "test": 1})
    generate(out, small, workers=1)
    assert is_generated(out, small) and not is_generated(out, TINY)
    with pytest.raises(InputError, match="exists"):
        generate(out, small, workers=1)
    generate(out, DataConfig(**{**small.__dict__, "test": 2}), workers=1, force=True)
    assert len(read_set(os.path.join(out, "VOCdevkit", "VOC2007"), "test")) == 2
    assert not [n for n in os.listdir(out) if n.startswith(".make-data")]


def test_make_data_command(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["make-data", "--out", str(out), "--source-per-class", "1", "--trainval", "2", "--test", "1",
            "--scene-size", "64x48", "--source-size", "16", "--workers", "1"]
    assert main(args) == 0
    assert "objects per class" in capsys.readouterr().out
    assert main(args) == 2  # the run recorded in --out: one line, exit code 2
    assert "holds a run of `minicnn make-data`" in capsys.readouterr().err
    assert main(args[:-4] + ["--trainval", "1"]) == 2


def test_classes_share_parts_but_not_arrangements():
    source_parts = {(p.shape, p.texture) for parts in synthetic.SOURCE_CLASSES.values() for p in parts}
    arrangement = lambda parts: tuple(sorted((p.shape, p.texture) for p in parts))  # noqa: E731
    source_arrangements = {arrangement(parts) for parts in synthetic.SOURCE_CLASSES.values()}
    assert len(synthetic.TARGET_CLASSES) == 10 and len(synthetic.SOURCE_CLASSES) == 30
    for name, parts in synthetic.TARGET_CLASSES.items():
        assert arrangement(parts) not in source_arrangements, name
        for part in parts:  # each textured shape of a target class is part of some source class
            assert (part.shape, part.texture) in source_parts, (name, part)


def test_scene_objects_vary_and_are_drawn(rng):
    sizes, truncated, difficult = [], 0, 0
    for index in range(30):
        pixels, objects = synthetic.draw_scene(0, index, 160, 120)
        assert pixels.shape == (120, 160, 3) and pixels.dtype == np.uint8
        assert 1 <= len(objects) <= 4
        for o in objects:
            sizes.append(max(o.box[2] - o.box[0], o.box[3] - o.box[1]) + 1)
            truncated += o.truncated
            difficult += o.difficult
    assert min(sizes) < 40 and max(sizes) > 70  # 20-70% of the shorter side, less where cut
    assert truncated > 5 and 0 < difficult < len(sizes) // 2
