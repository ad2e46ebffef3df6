import numpy as np
import pytest
from PIL import Image

import minicnn as mc
from minicnn.data.folders import (
    class_list_path,
    read_class_list,
    read_folder,
    split_train_val,
    take_per_class,
    write_class_list,
)
from minicnn.errors import InputError


def make_tree(root, counts, size=4):
    """root/<class>/<class>_<i>.png for counts {class: n}."""
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (size, size), (i, 0, 0)).save(root / name / f"{name}_{i}.png")
    return root


def test_scan_numbers_classes_in_sorted_order(tmp_path):
    root = make_tree(tmp_path, {"zebra": 2, "ant": 3, "moth": 1})
    (root / "ant" / "notes.txt").write_text("not an image")
    (root / "README").write_text("a file beside the class folders")
    folder = read_folder(root)
    assert folder.classes == ["ant", "moth", "zebra"]
    assert folder.counts().tolist() == [3, 1, 2]
    assert [p.split("/")[-1] for p in folder.paths[:3]] == ["ant_0.png", "ant_1.png", "ant_2.png"]
    assert folder.labels.tolist() == [0, 0, 0, 1, 2, 2]
    assert folder.ignored == 1 and "1 non-image files ignored" in folder.summary()


def test_given_class_list_fixes_the_numbering(tmp_path):
    root = make_tree(tmp_path, {"a": 1, "b": 1, "c": 1})
    folder = read_folder(root, classes=["c", "a"])
    assert folder.classes == ["c", "a"] and folder.labels.tolist() == [0, 1]
    with pytest.raises(InputError, match="'d' does not exist"):
        read_folder(root, classes=["a", "d"])


def test_empty_class_folder_is_an_error_or_counted(tmp_path):
    root = make_tree(tmp_path, {"a": 2, "b": 0})
    with pytest.raises(InputError, match="b: class folder has no images"):
        read_folder(root)
    folder = read_folder(root, skip_bad=True)
    assert folder.classes == ["a", "b"] and len(folder) == 2
    assert len(folder.skipped) == 1 and "1 skipped" in folder.summary()


def test_missing_or_empty_root(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_folder(tmp_path / "nowhere")
    with pytest.raises(InputError, match="no class folders"):
        read_folder(tmp_path)


def test_list_file_caltech_style(tmp_path):
    root = make_tree(tmp_path / "101_ObjectCategories", {"accordion": 3, "BACKGROUND_Google": 2, "ant": 2})
    lists = tmp_path / "train.txt"
    lists.write_text("accordion/accordion_0.png\nant/ant_1.png\n\nBACKGROUND_Google/BACKGROUND_Google_0.png\n"
                     "accordion/accordion_2.png\n")
    folder = read_folder(root, list_file=lists, exclude=["BACKGROUND_Google"])
    assert folder.classes == ["accordion", "ant"]
    assert [p.split("/")[-1] for p in folder.paths] == ["accordion_0.png", "ant_1.png", "accordion_2.png"]
    assert folder.labels.tolist() == [0, 1, 0]


def test_list_file_errors_name_file_and_line(tmp_path):
    root = make_tree(tmp_path / "images", {"a": 1})
    lists = tmp_path / "list.txt"
    lists.write_text("a/a_0.png\na/missing.png\n")
    with pytest.raises(InputError, match=r"list.txt, line 2: image .*missing.png does not exist"):
        read_folder(root, list_file=lists)
    folder = read_folder(root, list_file=lists, skip_bad=True)
    assert len(folder) == 1 and "missing.png" in folder.skipped[0][0]
    (root / "a" / "tmp").write_text("not an image")
    lists.write_text("a/a_0.png\na/tmp\n")  # as in Caltech-101's lists
    with pytest.raises(InputError, match=r"line 2: image .*tmp is not an image file"):
        read_folder(root, list_file=lists)
    lists.write_text("a/a_0.png\nloose.png\n")
    with pytest.raises(InputError, match="line 2: 'loose.png' is not <class>/<image>"):
        read_folder(root, list_file=lists)
    lists.write_text("a/a_0.png\n")
    with pytest.raises(InputError, match="class 'a' is not one of"):
        read_folder(root, list_file=lists, classes=["b"])


def test_split_is_stratified_deterministic_and_disjoint(tmp_path):
    root = make_tree(tmp_path, {"a": 10, "b": 20, "c": 5})
    folder = read_folder(root)
    train, val = split_train_val(folder, 0.2, seed=3)
    assert val.counts().tolist() == [2, 4, 1] and train.counts().tolist() == [8, 16, 4]
    assert set(train.paths).isdisjoint(val.paths) and set(train.paths) | set(val.paths) == set(folder.paths)
    again, _ = split_train_val(folder, 0.2, seed=3)
    other, _ = split_train_val(folder, 0.2, seed=4)
    assert again.paths == train.paths and other.paths != train.paths
    with pytest.raises(InputError):
        split_train_val(folder, 1.0)


def test_take_per_class(tmp_path):
    folder = read_folder(make_tree(tmp_path, {"a": 10, "b": 3}))
    chosen, rest = take_per_class(folder, 4, seed=0)
    assert chosen.counts().tolist() == [4, 3] and rest.counts().tolist() == [6, 0]
    assert np.all(np.diff([folder.paths.index(p) for p in chosen.paths]) > 0)  # keeps folder order


def test_class_list_beside_checkpoint_and_in_meta(tmp_path):
    classes = ["cat", "dog", "sea urchin"]
    checkpoint = tmp_path / "net.npz"
    written = write_class_list(checkpoint, classes)
    assert written == class_list_path(checkpoint) == str(tmp_path / "net.classes.txt")
    net = mc.Sequential([mc.layers.Linear(2, 3)], names=["fc"])
    net.save(checkpoint)
    assert read_class_list(checkpoint) == classes  # no meta: the file beside it
    net.meta["classes"] = ["x", "y", "z"]
    net.save(checkpoint)
    assert read_class_list(checkpoint) == ["x", "y", "z"]  # meta wins
    assert read_class_list(tmp_path / "net.classes.txt") == classes
    with pytest.raises(InputError, match="no class list"):
        read_class_list(tmp_path / "other.npz.classes.txt")
    with pytest.raises(InputError):
        write_class_list(tmp_path / "bad.txt", ["fine", "two\nlines"])
