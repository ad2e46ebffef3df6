"""`minicnn convert coco|yolo` (issue 17, item 1): COCO and YOLO sets written as VOC devkit
trees that VOCDataset, `evaluate` and `transfer` read. Every expected box below is computed
by hand from the rule x1 = floor(x) + 1, x2 = ceil(x + w), clipped to the image."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minicnn.cli import main
from minicnn.data import convert
from minicnn.data.voc import VOC_CLASSES, VOCDataset
from minicnn.errors import InputError


def picture(path, width, height, fmt="JPEG", seed=0):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, fmt)
    return path


CATEGORIES = [{"id": 5, "name": "airplane"}, {"id": 1, "name": "person"}, {"id": 4, "name": "motorcycle"},
              {"id": 63, "name": "couch"}, {"id": 67, "name": "dining table"},
              {"id": 64, "name": "potted plant"}, {"id": 72, "name": "tv"}, {"id": 18, "name": "dog"},
              {"id": 10, "name": "traffic light"}]


def ann(ann_id, image_id, category_id, bbox, crowd=0):
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox, "iscrowd": crowd,
            "area": bbox[2] * bbox[3]}


def coco_set(folder, annotations=None, images=None, name="instances.json"):
    """Images 1..6 (1 and 3 JPEGs, 2 a PNG, 5 never written: it has no annotation) and
    their annotations; returns (images dir, JSON path)."""
    folder = Path(folder)
    picture(folder / "images" / "000000000001.jpg", 40, 30, seed=1)
    picture(folder / "images" / "000000000002.png", 20, 16, "PNG", seed=2)
    picture(folder / "images" / "000000000003.jpg", 12, 10, seed=3)
    picture(folder / "images" / "000000000004.jpg", 8, 8, seed=4)
    picture(folder / "images" / "000000000006.jpg", 8, 8, seed=6)
    if images is None:
        images = [{"id": 1, "file_name": "000000000001.jpg", "width": 40, "height": 30},
                  {"id": 2, "file_name": "000000000002.png", "width": 20, "height": 16},
                  {"id": 3, "file_name": "000000000003.jpg", "width": 12, "height": 10},
                  {"id": 4, "file_name": "000000000004.jpg", "width": 8, "height": 8},
                  {"id": 5, "file_name": "000000000005.jpg", "width": 8, "height": 8},
                  {"id": 6, "file_name": "000000000006.jpg", "width": 8, "height": 8}]
    if annotations is None:
        annotations = [ann(11, 1, 5, [0, 0, 10, 5]),              # airplane -> aeroplane
                       ann(12, 1, 1, [10.5, 2.2, 3, 1]),
                       ann(13, 1, 1, [5, 5, 20, 20], crowd=1),     # crowd -> difficult
                       ann(14, 1, 10, [1, 1, 2, 2]),               # traffic light: not a VOC class
                       ann(15, 1, 18, [30.2, 20.7, 10.3, 9.8]),    # reaches 0.5 pixel outside: clipped
                       ann(21, 2, 4, [2, 3, 4, 5]),                # motorcycle -> motorbike
                       ann(22, 2, 63, [0.4, 0.6, 0.2, 0.2]),       # couch -> sofa, inside one pixel
                       ann(31, 3, 67, [1, 1, 5, 5]),               # dining table -> diningtable
                       ann(32, 3, 64, [0, 0, 1, 1]),               # potted plant -> pottedplant
                       ann(33, 3, 72, [2, 2, 3, 3], crowd=1),      # tv -> tvmonitor, crowd only: label 0
                       ann(41, 4, 10, [1, 1, 2, 2]),               # image 4: only a non-VOC object
                       ann(61, 6, 1, [3, 3, 0, 4])]                # image 6: only a zero-width box
    path = folder / name
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES},
                               indent=1))
    return folder / "images", path


# image id -> [(class, VOC box, difficult)] in annotation order, by hand
EXPECTED = {
    "000000000001": [("aeroplane", (1, 1, 10, 5), False), ("person", (11, 3, 14, 4), False),
                     ("person", (6, 6, 25, 25), True), ("dog", (31, 21, 40, 30), False)],
    "000000000002": [("motorbike", (3, 4, 6, 8), False), ("sofa", (1, 1, 1, 1), False)],
    "000000000003": [("diningtable", (2, 2, 6, 6), False), ("pottedplant", (1, 1, 1, 1), False),
                     ("tvmonitor", (3, 3, 5, 5), True)],
}


def convert_coco(images, annotations, out, split="test", year=2017, *extra):
    return main(["convert", "coco", "--images", str(images), "--annotations", str(annotations),
                 "--out", str(out), "--year", str(year), "--set", split, *extra])


def read_back(root, year, split, classes=VOC_CLASSES):
    ds = VOCDataset(root, year, classes=classes)
    return ds, {i: [(o.name, tuple(int(v) for v in o.box), o.difficult) for o in ds.annotation(i).objects]
                for i in ds.image_ids(split)}


def test_coco_classes_boxes_crowd_and_left_out_images(tmp_path, capsys):
    images, annotations = coco_set(tmp_path / "coco")
    assert convert_coco(images, annotations, tmp_path / "devkit") == 0
    out = capsys.readouterr().out
    assert "3 images, 9 objects (2 difficult)" in out
    assert ("left out: 3 images without an object of the classes, 2 objects of other categories, 1 boxes "
            "of zero size; 1 boxes clipped to their image, 1 images re-encoded as JPEG") in out
    ds, objects = read_back(tmp_path / "devkit", 2017, "test")
    assert objects == EXPECTED
    voc = tmp_path / "devkit" / "VOC2017"
    # every converted annotation read back has the size of its image, which is a JPEG
    for image_id in EXPECTED:
        a = ds.annotation(image_id)
        with Image.open(voc / "JPEGImages" / f"{image_id}.jpg") as f:
            assert f.format == "JPEG" and f.size == (a.width, a.height)
    # JPEGs are copied byte for byte, the PNG re-encoded
    for image_id in ("000000000001", "000000000003"):
        copied = (voc / "JPEGImages" / f"{image_id}.jpg").read_bytes()
        assert copied == (images / f"{image_id}.jpg").read_bytes()
    # per-class files: 1 / -1 / 0, as the devkit computes them from the annotations
    assert ds.listed_classes("test") == VOC_CLASSES
    labels = {cls: dict(zip(*ds.class_labels(cls, "test"), strict=True)) for cls in VOC_CLASSES}
    assert labels["person"] == {"000000000001": 1, "000000000002": -1, "000000000003": -1}
    assert labels["tvmonitor"] == {"000000000001": -1, "000000000002": -1, "000000000003": 0}
    assert labels["cow"] == dict.fromkeys(EXPECTED, -1)
    assert (voc / "ImageSets" / "Main" / "tvmonitor_test.txt").read_text() == (
        "000000000001 -1\n000000000002 -1\n000000000003  0\n")
    record = json.loads((voc / "runs" / "convert-test" / "run.json").read_text())
    assert record["name"] == "convert" and record["finished"]
    assert record["data"]["left_out_images"] == 3 and record["data"]["objects"]["person"] == 2
    assert str(annotations.resolve()) in record["inputs"]


def test_boxes_round_outward_to_the_pixels_they_touch():
    box = convert.voc_box
    assert box(0, 0, 10, 5, 40, 30, "a") == ((1, 1, 10, 5), False)
    assert box(10.5, 2.2, 3, 1, 40, 30, "a") == ((11, 3, 14, 4), False)
    assert box(0.4, 0.6, 0.2, 0.2, 40, 30, "a") == ((1, 1, 1, 1), False)
    assert box(39.5, 29, 0.5, 1, 40, 30, "a") == ((40, 30, 40, 30), False)
    # float error and YOLO's 6 decimals: an edge within 0.005 pixel of an integer is that integer
    assert box(4.999999, 0, 2.000002, 1, 10, 10, "a") == ((6, 1, 7, 1), False)
    assert box(4.99, 0, 2.02, 1, 10, 10, "a") == ((5, 1, 8, 1), False)
    # up to one pixel outside the image: clipped (and said so); beyond: an error
    assert box(-1, -0.5, 11, 10.5, 10, 10, "a") == ((1, 1, 10, 10), True)
    with pytest.raises(InputError, match=r"^ann 7: box .* reaches outside the 10x10 image by more than 1 "):
        box(-1.5, 0, 5, 5, 10, 10, "ann 7")
    with pytest.raises(InputError, match="touches no pixel"):
        box(10.2, 0, 0.5, 5, 10, 10, "a")
    with pytest.raises(InputError, match="negative width"):
        box(1, 1, -2, 3, 10, 10, "a")
    assert box(3, 3, 0, 4, 10, 10, "a") == (None, False)


def write_yolo(folder, labels, names=("person", "airplane", "tv", "stop sign", "motorcycle")):
    folder = Path(folder)
    picture(folder / "images" / "a.jpg", 50, 40, seed=1)
    picture(folder / "images" / "b.png", 30, 30, "PNG", seed=2)
    picture(folder / "images" / "c.jpg", 10, 10, seed=3)
    picture(folder / "images" / "d.jpg", 10, 10, seed=4)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    for stem, text in labels.items():
        (folder / "labels" / f"{stem}.txt").write_text(text)
    (folder / "obj.names").write_text("".join(f"{n}\n" for n in names) + "\n")
    return folder / "images", folder / "labels", folder / "obj.names"


YOLO_LABELS = {"a": "0 0.5 0.5 0.2 0.25\n1 0.1 0.1 0.1 0.1\n3 0.5 0.5 0.1 0.1\n",
               "b": "2 0.5 0.5 1.0 1.0\n4 0.25 0.75 0.1666667 0.3333333\n",
               "d": "3 0.5 0.5 0.2 0.2\n"}   # d: only a stop sign; c: no label file


def convert_yolo(images, labels, names, out, split="trainval", *extra):
    return main(["convert", "yolo", "--images", str(images), "--labels", str(labels), "--names", str(names),
                 "--out", str(out), "--year", "2024", "--set", split, *extra])


def test_yolo_normalized_boxes_and_names(tmp_path, capsys):
    images, labels, names = write_yolo(tmp_path / "yolo", YOLO_LABELS)
    assert convert_yolo(images, labels, names, tmp_path / "devkit") == 0
    out = capsys.readouterr().out
    assert "left out: 2 images without an object of the classes, 2 objects of other categories" in out
    _, objects = read_back(tmp_path / "devkit", 2024, "trainval")
    # a (50x40): x 0.4*50 = 20 .. 0.6*50 = 30 -> 21..30; y 0.375*40 = 15 .. 0.625*40 = 25 -> 16..25
    #            x 0.05*50 = 2.5 .. 0.15*50 = 7.5 -> 3..8; y 2 .. 6 -> 3..6
    # b (30x30): the whole image; x (0.25 -/+ 0.0833333)*30 = 5 .. 10 -> 6..10, y 17.5 .. 27.5 -> 18..28
    assert objects == {"a": [("person", (21, 16, 30, 25), False), ("aeroplane", (3, 3, 8, 6), False)],
                       "b": [("tvmonitor", (1, 1, 30, 30), False), ("motorbike", (6, 18, 10, 28), False)]}


def test_other_classes_and_class_files(tmp_path, capsys):
    images, annotations = coco_set(tmp_path / "coco")
    assert convert_coco(images, annotations, tmp_path / "devkit", "test", 2017,
                        "--classes", "person,traffic_light") == 0
    ds, objects = read_back(tmp_path / "devkit", 2017, "test", classes=("person", "traffic_light"))
    assert ds.listed_classes("test") == ("person", "traffic_light")
    assert objects == {"000000000001": [("person", (11, 3, 14, 4), False), ("person", (6, 6, 25, 25), True),
                                        ("traffic_light", (2, 2, 3, 3), False)],
                       "000000000004": [("traffic_light", (2, 2, 3, 3), False)]}
    assert convert_coco(images, annotations, tmp_path / "devkit2", "test", 2017,
                        "--classes", "person,zebra") == 2
    assert "--classes: 'zebra' is not a category of" in capsys.readouterr().err


def test_two_sets_build_one_tree_without_touching_each_other(tmp_path, capsys):
    images, annotations = coco_set(tmp_path / "coco")
    root = tmp_path / "devkit"
    assert convert_coco(images, annotations, root, "trainval") == 0
    voc = root / "VOC2017"
    before = {p: p.read_bytes() for p in voc.rglob("*") if p.is_file() and "runs" not in p.parts}
    # a second set from other images: image 7 (a JPEG) with a cat
    picture(tmp_path / "coco" / "images" / "000000000007.jpg", 16, 16, seed=7)
    other = coco_set(tmp_path / "coco", name="test.json",
                     images=[{"id": 7, "file_name": "000000000007.jpg", "width": 16, "height": 16}],
                     annotations=[ann(71, 7, 18, [1, 2, 3, 4])])[1]
    assert convert_coco(images, other, root, "test") == 0
    assert {p: p.read_bytes() for p in before} == before   # the first set's files are as they were
    _, trainval = read_back(root, 2017, "trainval")
    _, test = read_back(root, 2017, "test")
    assert trainval == EXPECTED and test == {"000000000007": [("dog", (2, 3, 4, 6), False)]}
    # a set sharing images with the same image and annotation (VOC's train within trainval): accepted
    assert convert_coco(images, annotations, root, "train") == 0
    assert "3 images also in other sets" in capsys.readouterr().out
    # the same id with another annotation: refused, nothing written
    changed = coco_set(tmp_path / "coco", name="changed.json",
                       annotations=[ann(11, 1, 5, [0, 0, 11, 5])])[1]
    assert convert_coco(images, changed, root, "val") == 2
    err = capsys.readouterr().err
    assert "image 000000000001" in err and "already in set t" in err and "another annotation" in err
    assert not (voc / "ImageSets" / "Main" / "val.txt").exists()
    # other classes than the tree's: refused
    assert convert_coco(images, annotations, root, "val", 2017, "--classes", "person") == 2
    assert "must have the same classes" in capsys.readouterr().err


def test_a_set_again_needs_resume_or_fresh(tmp_path, capsys):
    images, annotations = coco_set(tmp_path / "coco")
    root = tmp_path / "devkit"
    voc = root / "VOC2017"
    assert convert_coco(images, annotations, root, "test") == 0
    assert convert_coco(images, annotations, root, "test") == 2
    assert "holds a run of `minicnn convert`" in capsys.readouterr().err
    tree = {p: p.read_bytes() for p in voc.rglob("*") if p.is_file() and "runs" not in p.parts}
    assert convert_coco(images, annotations, root, "test", 2017, "--resume") == 0
    assert {p: p.read_bytes() for p in voc.rglob("*") if p.is_file() and "runs" not in p.parts} == tree
    assert len(json.loads((voc / "runs" / "convert-test" / "run.json").read_text())["resumed"]) == 1
    # --fresh with fewer images: the set's images that no set lists any more are removed
    fewer = coco_set(tmp_path / "coco", name="fewer.json", annotations=[ann(31, 3, 67, [1, 1, 5, 5])])[1]
    assert convert_coco(images, fewer, root, "test", 2017, "--fresh") == 0
    assert sorted(p.name for p in (voc / "JPEGImages").iterdir()) == ["000000000003.jpg"]
    assert sorted(p.name for p in (voc / "Annotations").iterdir()) == ["000000000003.xml"]
    assert (voc / "ImageSets" / "Main" / "test.txt").read_text() == "000000000003\n"


@pytest.mark.parametrize("change, message", [
    (lambda d: d["annotations"].append(ann(99, 1, 1, [35, 0, 10, 5])),
     r"instances.json: annotation 99 \(image 000000000001.jpg\): box \[x, y, w, h\] = \[35, 0, 10, 5\] .*"
     r"reaches outside the 40x30 image"),
    (lambda d: d["annotations"].append(ann(98, 1, 999, [1, 1, 2, 2])),
     r"instances.json: annotation 98: unknown category id 999"),
    (lambda d: d["annotations"].append(ann(97, 42, 1, [1, 1, 2, 2])),
     r"instances.json: annotation 97: unknown image id 42"),
    (lambda d: d["annotations"].append(ann(96, 5, 1, [1, 1, 2, 2])),   # image 5's file does not exist
     r"instances.json: image 5: image file .*000000000005.jpg is missing"),
    (lambda d: d["images"][0].update(width=41),
     r"instances.json: image 1: .*000000000001.jpg is 40x30 .* but the annotation file gives 41x30"),
    (lambda d: d["annotations"][0].pop("bbox"), r"instances.json: annotation 11 has no 'bbox'"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), r"annotation 11: bbox \[1, 2, 3\] is not"),
])
def test_coco_errors_name_the_file_and_annotation(tmp_path, change, message):
    images, path = coco_set(tmp_path / "coco")
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=message):
        convert.read_coco(images, path)


def test_malformed_json_is_one_line_with_its_position(tmp_path, capsys):
    images, path = coco_set(tmp_path / "coco")
    path.write_text('{"images": [\n  {"id": 1,, }\n')
    assert convert_coco(images, path, tmp_path / "devkit") == 2
    err = capsys.readouterr().err
    assert err.startswith("minicnn convert: error: ") and err.count("\n") == 1
    assert "instances.json, line 2 column" in err and "malformed JSON" in err
    assert not (tmp_path / "devkit").exists()


@pytest.mark.parametrize("labels, message", [
    ({**YOLO_LABELS, "a": "0 0.5 0.5 0.2 0.25\n0 0.5 0.5 0.2\n"},
     r"labels/a.txt, line 2: expected '<class> <cx> <cy> <w> <h>', found 4 fields"),
    ({**YOLO_LABELS, "a": "0 0.5 0.5 0.2 nan\n"}, r"labels/a.txt, line 1: cx cy w h must be finite numbers"),
    ({**YOLO_LABELS, "a": "\n7 0.5 0.5 0.2 0.2\n"}, r"labels/a.txt, line 2: class '7' is not an index 0..4"),
    ({**YOLO_LABELS, "a": "0 0.95 0.5 0.2 0.2\n"},
     r"labels/a.txt, line 1 \(image a.jpg\): box .* reaches outside the 50x40 image"),
    ({**YOLO_LABELS, "e": "0 0.5 0.5 0.2 0.2\n"}, r"labels/e.txt: its image e.\* is missing"),
])
def test_yolo_errors_name_the_file_and_line(tmp_path, labels, message):
    images, label_dir, names = write_yolo(tmp_path / "yolo", labels)
    with pytest.raises(InputError, match=message):
        convert.read_yolo(images, label_dir, names)


def test_yolo_names_file_problems(tmp_path):
    images, labels, names = write_yolo(tmp_path / "yolo", YOLO_LABELS)
    names.write_text("person\n\ncar\n")
    with pytest.raises(InputError, match=r"obj.names, line 2: blank line"):
        convert.read_yolo(images, labels, names)
    names.write_text("tv\ntvmonitor\n")
    with pytest.raises(InputError, match=r"obj.names, line 2: 'tvmonitor' gives class 'tvmonitor', as line"):
        convert.read_yolo(images, labels, names)


def test_refusals_before_anything_is_written(tmp_path, capsys):
    images, annotations = coco_set(tmp_path / "coco")
    assert convert_coco(images, annotations, tmp_path / "devkit", "train_2017") == 2
    assert "a set name is letters, digits" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:   # --year is an integer (the tree is VOC<year>)
        main(["convert", "coco", "--images", str(images), "--annotations", str(annotations), "--out",
              str(tmp_path / "devkit"), "--year", "COCO", "--set", "test"])
    assert exit_.value.code == 2
    assert "invalid int value: 'COCO'" in capsys.readouterr().err
    only_other = coco_set(tmp_path / "coco", name="other.json", annotations=[ann(14, 1, 10, [1, 1, 2, 2])])[1]
    assert convert_coco(images, only_other, tmp_path / "devkit") == 2
    assert "no image holds an object of the classes" in capsys.readouterr().err
    assert not (tmp_path / "devkit").exists()
    # a set of the tree not written by convert (the devkit's own test.txt) is not replaced without --fresh
    main_dir = tmp_path / "voc" / "VOC2007" / "ImageSets" / "Main"
    main_dir.mkdir(parents=True)
    (main_dir / "test.txt").write_text("000001\n")
    assert convert_coco(images, annotations, tmp_path / "voc", "test", 2007) == 2
    assert "not written by minicnn convert" in capsys.readouterr().err


def test_evaluate_and_transfer_take_a_converted_tree(tmp_path, capsys):
    """A tree converted as VOC2017 (--year 2017: the area metric by default) is evaluated and
    is a transfer target."""
    from method_trees import source_like

    import minicnn as mc

    rng = np.random.default_rng(0)
    images, annotations = [], []
    for n in range(1, 9):
        name = f"{n:012d}.jpg"
        picture(tmp_path / "coco" / "images" / name, 48, 40, seed=n)
        images.append({"id": n, "file_name": name, "width": 48, "height": 40})
        x, y = rng.integers(0, 20, 2)
        annotations.append(ann(10 * n, n, 18 if n % 2 else 17, [int(x), int(y), 24, 20]))
    cats = [{"id": 18, "name": "dog"}, {"id": 17, "name": "cat"}]
    for split, ids in (("trainval", range(0, 5)), ("test", range(5, 8))):
        path = tmp_path / "coco" / f"{split}.json"
        path.write_text(json.dumps({"images": [images[i] for i in ids], "categories": cats,
                                    "annotations": [annotations[i] for i in ids]}))
        assert convert_coco(tmp_path / "coco" / "images", path, tmp_path / "devkit", split, 2017,
                            "--classes", "cat,dog") == 0
    results = tmp_path / "results"
    results.mkdir()
    ds = VOCDataset(tmp_path / "devkit", 2017, classes=("cat", "dog"))
    for cls in ("cat", "dog"):
        ids, labels = ds.class_labels(cls, "test")
        lines = [f"{i} {label}\n" for i, label in zip(ids, labels, strict=True)]
        (results / f"comp1_cls_test_{cls}.txt").write_text("".join(lines))
    capsys.readouterr()
    assert main(["evaluate", "--voc", str(tmp_path / "devkit"), "--year", "2017", "--set", "test",
                 "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "VOC2017 test" in out and "metric area" in out and "mean  100.00" in out
    net = source_like()
    net.save(tmp_path / "source.npz")
    mc.set_backend("numpy")
    assert main(["transfer", "--voc", str(tmp_path / "devkit"), "--year", "2017", "--weights",
                 str(tmp_path / "source.npz"), "--out", str(tmp_path / "t"), "--epochs", "1", "--hidden", "8",
                 "--stride", "0.5", "--scales", "1", "--backend", "numpy", "--val-fraction", "0"]) == 0
    out = capsys.readouterr().out
    assert "cat" in out and "dog" in out and "mean" in out
    assert sorted(p.name for p in (tmp_path / "t" / "results" / "VOC2017" / "Main").iterdir()) == [
        "comp1_cls_test_cat.txt", "comp1_cls_test_dog.txt"]


def test_a_turning_exif_orientation_is_applied_and_the_image_re_encoded(tmp_path):
    """A JPEG stored 20x10 with EXIF orientation 6 shows (and minicnn decodes it) 10x20: the
    boxes are in that frame, and the converted image is that frame, without the tag."""
    images, labels, names = write_yolo(tmp_path / "yolo", {"r": "0 0.5 0.25 1.0 0.5\n"})
    stored = Image.fromarray(np.zeros((10, 20, 3), dtype=np.uint8))
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(images / "r.jpg", exif=exif)
    conv = convert.read_yolo(images, labels, names)
    assert [(i.image_id, i.width, i.height, i.reencode) for i in conv.images] == [("r", 10, 20, True)]
    assert conv.images[0].objects == [convert.Object("person", (1, 1, 10, 10), False)]
    assert convert_yolo(images, labels, names, tmp_path / "devkit") == 0
    with Image.open(tmp_path / "devkit" / "VOC2024" / "JPEGImages" / "r.jpg") as f:
        assert f.format == "JPEG" and f.size == (10, 20) and f.getexif().get(0x0112, 1) == 1
