"""The VOCdevkit reader: image sets, objects, image-level and action labels, bad input."""

import numpy as np
import pytest
from voc_tree import obj, write_lines, write_voc

from minicnn.data.voc import (
    VOC_ACTIONS,
    VOC_CHALLENGE_ACTIONS,
    VOC_CLASSES,
    VOCDataset,
    pixel_boxes,
    read_annotation,
)
from minicnn.errors import InputError


@pytest.fixture
def tree(tmp_path):
    write_voc(tmp_path, {
        "000009": [obj("car", (10, 20, 50, 60)), obj("dog", (1, 1, 100, 80), truncated=True, part=True)],
        "000002": [obj("car", (5, 5, 9, 9), difficult=True), obj("person", (3, 4, 30, 40))],
        "000005": [obj("dog", (2.5, 3, 40, 41.5), difficult=True)],
    })
    return tmp_path


def test_constants_follow_the_devkit():
    assert len(VOC_CLASSES) == 20 and VOC_CLASSES[0] == "aeroplane" and VOC_CLASSES[-1] == "tvmonitor"
    assert VOC_CLASSES.index("person") == 14
    assert VOC_ACTIONS[0] == "other" and len(VOC_ACTIONS) == 11
    assert VOC_CHALLENGE_ACTIONS == VOC_ACTIONS[1:] and "walking" in VOC_CHALLENGE_ACTIONS


def test_image_ids_keep_set_order_and_objects_keep_their_fields(tree):
    ds = VOCDataset(tree, 2007)
    assert ds.image_ids("test") == ["000009", "000002", "000005"]
    ann = ds.annotation("000009")
    assert (ann.width, ann.height) == (100, 80)
    car, dog = ann.objects
    assert (car.index, car.name, car.box) == (1, "car", (10, 20, 50, 60))
    assert (car.difficult, car.truncated) == (False, False)
    assert (dog.index, dog.name, dog.truncated, dog.actions) == (2, "dog", True, None)  # <part> ignored
    assert ds.annotation("000005").objects[0].box == (2.5, 3.0, 40.0, 41.5)
    assert ds.annotation("000002").objects[0].difficult
    np.testing.assert_array_equal(ann.boxes("car"), [[10, 20, 50, 60]])
    assert ds.image_path("000009") == tree / "VOC2007" / "JPEGImages" / "000009.jpg"


def test_root_may_be_the_year_folder_itself(tree):
    assert VOCDataset(tree / "VOC2007", 2007).image_ids("test")[0] == "000009"


def test_boxes_stay_one_based_inclusive_until_pixels_are_indexed():
    # a box over a whole 100 x 80 image is (1, 1, 100, 80) in VOC, [0, 0, 100, 80) in pixels
    np.testing.assert_array_equal(pixel_boxes([(1, 1, 100, 80)]), [[0, 0, 100, 80]])


def test_image_labels_positive_negative_and_difficult_only(tree):
    ds = VOCDataset(tree, 2007)
    ids, car = ds.class_labels("car", "test")
    assert ids == ["000009", "000002", "000005"]
    np.testing.assert_array_equal(car, [1, 0, -1])  # 000002 holds only a difficult car
    np.testing.assert_array_equal(ds.class_labels("dog", "test")[1], [1, -1, 0])
    np.testing.assert_array_equal(ds.class_labels("bus", "test")[1], [-1, -1, -1])


def test_labels_checked_against_the_class_file_whose_order_is_kept(tree):
    main = tree / "VOC2007" / "ImageSets" / "Main"
    write_lines(main / "car_test.txt", ["000005 -1", "000009  1", "000002  0"])
    ids, labels = VOCDataset(tree, 2007).class_labels("car", "test")
    assert ids == ["000005", "000009", "000002"]
    np.testing.assert_array_equal(labels, [-1, 1, 0])

    write_lines(main / "car_test.txt", ["000005 -1", "000009  1", "000002  1"])
    with pytest.raises(InputError, match=r"car_test.txt, line 3: image 000002 is labelled 1 for 'car' "
                                         r"but its annotation gives 0"):
        VOCDataset(tree, 2007).class_labels("car", "test")

    write_lines(main / "car_test.txt", ["000005 -1", "000009  1", "000007  0"])
    with pytest.raises(InputError, match="image 000007 is not in ImageSets/Main/test.txt"):
        VOCDataset(tree, 2007).class_labels("car", "test")


def test_action_persons_and_labels(tmp_path):
    write_voc(tmp_path, {
        "2011_000001": [obj("person", (1, 1, 20, 40), actions={"phoning", "walking"}),
                        obj("person", (30, 1, 50, 40), actions={"other"})],
        "2011_000002": [obj("person", (5, 5, 25, 45), actions={"walking"})],
    }, split="val", year=2012, action_split="val")
    ds = VOCDataset(tmp_path, 2012)
    persons = ds.action_persons("val")
    assert [(i, o.index, o.box) for i, o in persons] == [
        ("2011_000001", 1, (1, 1, 20, 40)), ("2011_000001", 2, (30, 1, 50, 40)),
        ("2011_000002", 1, (5, 5, 25, 45))]
    assert persons[0][1].actions == {"phoning", "walking"}
    keys, walking = ds.action_labels("walking", "val")
    assert keys == [("2011_000001", 1), ("2011_000001", 2), ("2011_000002", 1)]
    np.testing.assert_array_equal(walking, [1, -1, 1])

    action = tmp_path / "VOC2012" / "ImageSets" / "Action"
    write_lines(action / "phoning_val.txt", ["2011_000002 1 -1", "2011_000001 1  1", "2011_000001 2 -1"])
    keys, phoning = ds.action_labels("phoning", "val")
    assert keys[0] == ("2011_000002", 1)  # the file's order
    np.testing.assert_array_equal(phoning, [-1, 1, -1])
    write_lines(action / "phoning_val.txt", ["2011_000002 1 1", "2011_000001 1  1", "2011_000001 2 -1"])
    with pytest.raises(InputError, match="line 1: person 1 of image 2011_000002 is labelled 1 for 'phoning'"):
        ds.action_labels("phoning", "val")
    with pytest.raises(InputError, match="unknown action 'dancing'"):
        ds.action_labels("dancing", "val")


def test_missing_directory_and_split_file(tmp_path):
    with pytest.raises(InputError, match="is not a directory"):
        VOCDataset(tmp_path / "nowhere", 2007)
    with pytest.raises(InputError, match="no VOC2007 directory in"):
        VOCDataset(tmp_path, 2007)
    write_voc(tmp_path, {"000001": [obj("car", (1, 1, 5, 5))]})
    with pytest.raises(InputError, match=r"missing image set file .*ImageSets/Main/trainval.txt"):
        VOCDataset(tmp_path, 2007).image_ids("trainval")


def test_malformed_xml_names_file_and_line(tmp_path):
    voc = write_voc(tmp_path, {"000001": [obj("car", (1, 1, 5, 5))]})
    path = voc / "Annotations" / "000001.xml"
    lines = path.read_text().splitlines()
    bad = next(n for n, line in enumerate(lines) if "</database>" in line)
    lines[bad] = lines[bad].replace("</database>", "</databse>")
    path.write_text("\n".join(lines))
    with pytest.raises(InputError, match=rf"000001.xml, line {bad + 1}: malformed XML \(mismatched tag\)"):
        VOCDataset(tmp_path, 2007).annotation("000001")


def test_unknown_class_names_file_and_line(tmp_path):
    write_voc(tmp_path, {"000001": [obj("car", (1, 1, 5, 5)), obj("aeroplan", (1, 1, 5, 5))]})
    ds = VOCDataset(tmp_path, 2007)
    text = (tmp_path / "VOC2007" / "Annotations" / "000001.xml").read_text()
    line = text.splitlines().index("\t\t<name>aeroplan</name>") + 1
    with pytest.raises(InputError, match=rf"000001.xml, line {line}: unknown class 'aeroplan'"):
        ds.annotation("000001")
    with pytest.raises(InputError, match="unknown class 'aeroplan'; the classes are aeroplane, bicycle"):
        ds.class_labels("aeroplan", "test")


def test_entity_declarations_are_refused(tmp_path):
    # "billion laughs": refused before any expansion can happen
    path = tmp_path / "bomb.xml"
    path.write_text('<?xml version="1.0"?>\n<!DOCTYPE annotation [\n <!ENTITY a "aaaaaaaaaa">\n'
                    ' <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">\n]>\n<annotation>&b;</annotation>\n')
    with pytest.raises(InputError, match=r"bomb.xml, line 2: DOCTYPE/ENTITY declarations are not allowed"):
        read_annotation(path)
    path.write_text("<annotation>\n<folder>&xxe;</folder></annotation>")
    with pytest.raises(InputError, match=r"line 2: malformed XML \(undefined entity\)"):
        read_annotation(path)


def test_bad_coordinates_and_missing_fields(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text("<annotation>\n<object>\n<name>car</name>\n<bndbox><xmin>1</xmin><ymin>x</ymin>"
                    "<xmax>5</xmax><ymax>5</ymax></bndbox>\n</object>\n</annotation>")
    with pytest.raises(InputError, match=r"a.xml, line 4: <ymin> is 'x', not a number"):
        read_annotation(path)
    path.write_text("<annotation>\n<object>\n<name>car</name>\n</object>\n</annotation>")
    with pytest.raises(InputError, match=r"a.xml, line 2: <object> 'car' has no <bndbox>"):
        read_annotation(path)
    with pytest.raises(InputError, match="missing annotation file"):
        read_annotation(tmp_path / "none.xml")


def test_set_file_repeats_and_bad_lines(tmp_path):
    voc = write_voc(tmp_path, {"000001": [obj("car", (1, 1, 5, 5))]})
    write_lines(voc / "ImageSets" / "Main" / "test.txt", ["000001", "000001"])
    with pytest.raises(InputError, match=r"test.txt, line 2: image 000001 listed twice \(first at line 1\)"):
        VOCDataset(tmp_path, 2007).image_ids("test")
    write_lines(voc / "ImageSets" / "Main" / "test.txt", ["000001"])
    write_lines(voc / "ImageSets" / "Main" / "car_test.txt", ["000001 yes"])
    with pytest.raises(InputError, match=r"car_test.txt, line 1: expected '<image id> <label>'"):
        VOCDataset(tmp_path, 2007).class_labels("car", "test")
