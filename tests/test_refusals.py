"""Settings, files and annotations that are refused with one line naming them and exit code
2 (issue 15 items 3, 5 and 6), and the cases that used to fail wrongly (a subset of a
tree's classes, an empty results file)."""

import json

import numpy as np
import pytest
from voc_tree import annotation_xml, obj, write_lines, write_voc

import minicnn as mc
from minicnn import gradcheck
from minicnn import layers as L
from minicnn.cli import main
from minicnn.data.voc import VOCDataset, read_annotation
from minicnn.errors import InputError
from minicnn.evaluate import evaluate_voc, write_cls_results


def one_line_error(capsys, command):
    """The single stderr line of a refused command, without its prefix."""
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    prefix = f"minicnn {command}: error: "
    assert lines[0].startswith(prefix)
    return lines[0][len(prefix):], captured.out


# --- gradcheck ---------------------------------------------------------------------------------

def test_gradcheck_refuses_an_op_that_selects_nothing(capsys):
    assert main(["gradcheck", "--op", "relu", "--op", "nope"]) == 2
    message, out = one_line_error(capsys, "gradcheck")
    assert message.startswith("--op 'nope' selects no check; the checks are conv2d, ")
    assert "max_pool2d floor" in message and "softmax_cross_entropy weighted" in message
    assert "tiny AlexNet-like net" in message
    assert out == ""  # nothing was checked, no PASS


@pytest.mark.parametrize("option, value, message", [
    ("--eps", "0", "--eps 0: the stencil's step must be a finite number > 0"),
    ("--eps", "-1e-3", "--eps -0.001: the stencil's step must be a finite number > 0"),
    ("--eps", "nan", "--eps nan: the stencil's step must be a finite number > 0"),
    ("--tol", "-1", "--tol -1: the accepted relative error must be a finite number >= 0"),
    ("--seed", "-2", "--seed -2: the seed must be an integer >= 0"),
])
def test_gradcheck_refuses_bad_numbers(capsys, option, value, message):
    assert main(["gradcheck", "--op", "relu", f"{option}={value}"]) == 2
    got, out = one_line_error(capsys, "gradcheck")
    assert got.startswith(message) and out == ""


def test_gradcheck_net_and_tiny_select_the_whole_net_check(capsys):
    assert main(["gradcheck", "--op", "net", "--mode", "directional"]) == 0
    assert "tiny AlexNet-like net" in capsys.readouterr().out


def test_gradcheck_library_refuses_a_step_of_zero():
    with pytest.raises(InputError, match="eps .* must be a finite number > 0, got 0"):
        gradcheck.check_layer(L.ReLU(), np.ones((2, 3)), eps=0.0)


# --- network files ------------------------------------------------------------------------------

def small_net():
    return mc.Sequential([L.Conv2D(3, 2, 3), L.Flatten(), L.Linear(2 * 2 * 2, 3)],
                         names=["conv1", "flatten", "fc"], input_shape=(3, 4, 4))


def test_integer_weights_are_refused_naming_file_and_parameter(tmp_path):
    path = tmp_path / "int.npz"
    net = small_net()
    net.save(path)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["fc.weight"] = np.round(arrays["fc.weight"] * 100).astype(np.int64)
    np.savez(path, **arrays)
    with pytest.raises(InputError, match=r"int.npz: layer 'fc' parameter 'weight' is int64; parameters "
                                         r"must be floating-point"):
        mc.Sequential.load(path)
    before = net["conv1"].params["weight"].copy()
    arrays["conv1.weight"] = arrays["conv1.weight"] + 1  # a good array before the bad one
    np.savez(path, **arrays)
    with pytest.raises(InputError, match="parameter 'weight' is int64"):
        net.load(path)
    np.testing.assert_array_equal(net["conv1"].params["weight"], before)  # nothing copied
    arrays["fc.weight"] = arrays["fc.weight"].astype(np.float64)  # another float is cast
    np.savez(path, **arrays)
    assert mc.Sequential.load(path)["fc"].params["weight"].dtype == np.float32


def test_a_broken_architecture_names_the_file_and_layer(tmp_path):
    path = tmp_path / "net.npz"
    small_net().save(path)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arch = json.loads(str(arrays["__architecture__"]))
    arch["layers"][0]["config"]["groups"] = 2  # 3 input channels
    np.savez(path, **{**arrays, "__architecture__": np.array(json.dumps(arch))})
    with pytest.raises(InputError, match=r"net.npz: layer 'conv1' \(Conv2D\) has a bad config .*groups"):
        mc.Sequential.load(path)
    arch["layers"][0]["config"]["nonsense"] = 1
    np.savez(path, **{**arrays, "__architecture__": np.array(json.dumps(arch))})
    with pytest.raises(InputError, match="layer 'conv1' .*nonsense"):
        mc.Sequential.load(path)
    np.savez(path, **{**arrays, "__architecture__": np.array("{not json")})
    with pytest.raises(InputError, match="__architecture__ is not a network architecture"):
        mc.Sequential.load(path)



def test_layers_that_do_not_chain_are_refused_at_load_naming_the_layer(tmp_path, capsys):
    """An edited architecture whose Linear takes other features than the layer before gives
    (the export would otherwise write a file and fail in its check with a traceback)."""
    from minicnn.cli import main

    path = tmp_path / "net.npz"
    net = mc.Sequential([L.Conv2D(3, 2, 3), L.Flatten(), L.Linear(2 * 2 * 2, 3)],
                        names=["conv1", "flatten", "fc"], input_shape=(3, 5, 5))  # conv1 gives 2x3x3
    net.save(path)
    with pytest.raises(InputError, match=r"net.npz: layer 'fc' \(Linear\) takes 8 features, gets samples of "
                                         r"shape \(18,\)"):
        mc.Sequential.load(path)
    assert main(["export-onnx", "--weights", str(path), "--out", str(tmp_path / "net.onnx")]) == 2
    assert "layer 'fc' (Linear) takes 8 features" in capsys.readouterr().err
    assert not (tmp_path / "net.onnx").exists()
    net = mc.Sequential([L.Conv2D(3, 2, 3), L.Conv2D(3, 2, 1)], names=["conv1", "conv2"],
                        input_shape=(3, 5, 5))
    net.save(path)
    with pytest.raises(InputError, match=r"layer 'conv2' \(Conv2D\) takes samples of shape \(3, H, W\), "
                                         r"gets \(2, 3, 3\)"):
        mc.Sequential.load(path)

# --- output paths ---------------------------------------------------------------------------------

def test_make_data_refuses_an_out_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("mine")
    for out in (target, target / "below"):
        assert main(["make-data", "--out", str(out), "--trainval", "2", "--test", "1"]) == 2
        message, _ = one_line_error(capsys, "make-data")
        assert f"{target} is a file" in message
    assert target.read_text() == "mine"


@pytest.fixture
def voc(tmp_path):
    write_voc(tmp_path / "VOCdevkit", {
        "000001": [obj("car", (1, 1, 10, 10))],
        "000002": [obj("dog", (1, 1, 10, 10))],
        "000003": [obj("car", (5, 5, 20, 20)), obj("dog", (1, 1, 30, 30))],
    })
    results = tmp_path / "results"
    write_lines(results / "comp1_cls_test_car.txt", ["000001 0.9", "000003 0.8", "000002 0.1"])
    write_lines(results / "comp1_cls_test_dog.txt", ["000002 0.9", "000001 0.8", "000003 0.7"])
    return tmp_path


def evaluate_args(voc, *more):
    return ["evaluate", "--voc", str(voc / "VOCdevkit"), "--results", str(voc / "results"), *more]


def test_evaluate_refuses_a_json_folder_before_evaluating(voc, capsys):
    folder = voc / "taken"
    folder.mkdir()
    assert main(evaluate_args(voc, "--json", str(folder))) == 2
    message, out = one_line_error(capsys, "evaluate")
    assert message == f"--json {folder} is a folder; name a file"
    assert out == ""  # refused before the table
    (voc / "file").write_text("")
    assert main(evaluate_args(voc, "--plots", str(voc / "file"))) == 2
    assert one_line_error(capsys, "evaluate")[0] == f"--plots {voc / 'file'} is a file; name a folder"
    assert main(evaluate_args(voc, "--json", str(voc / "file" / "ap.json"))) == 2
    assert one_line_error(capsys, "evaluate")[0].endswith(f"{voc / 'file'} is a file, not a folder")


# --- annotations ------------------------------------------------------------------------------------

def write_annotation(tmp_path, objects, width=100, height=80):
    path = tmp_path / "000001.xml"
    path.write_text(annotation_xml("000001", objects, width, height))
    return path


def line_of(path, text, nth=1):
    """The line number of the ``nth`` line of ``path`` holding ``text``."""
    hits = [i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line]
    return hits[nth - 1]


def test_an_inverted_box_is_refused_naming_file_line_and_object(tmp_path):
    path = write_annotation(tmp_path, [obj("car", (1, 1, 10, 10)), obj("dog", (30, 5, 20, 40))])
    line = line_of(path, "<bndbox>", 2)
    with pytest.raises(InputError, match=rf"000001.xml, line {line}: object 2 \('dog'\): box "
                                         r"\(30, 5, 20, 40\) has xmax < xmin or ymax < ymin"):
        read_annotation(path)
    with pytest.raises(InputError, match="xmax < xmin"):  # clipping cannot mend it
        read_annotation(path, clip_boxes=True)
    path = write_annotation(tmp_path, [obj("car", (1, 50, 10, 40))])
    with pytest.raises(InputError, match=r"object 1 \('car'\): box .* ymax < ymin"):
        read_annotation(path)


@pytest.mark.parametrize("box", [(0, 1, 10, 10), (1, 0, 10, 10), (1, 1, 101, 10), (1, 1, 10, 80.5)])
def test_a_box_outside_the_image_is_refused_unless_clipped(tmp_path, box):
    path = write_annotation(tmp_path, [obj("car", (1, 1, 100, 80)), obj("car", box)])
    with pytest.raises(InputError, match=r"000001.xml, line \d+: object 2 \('car'\): box .* reaches outside "
                                         r"the 100x80 image .*--clip-boxes"):
        read_annotation(path)
    ann = read_annotation(path, clip_boxes=True)
    assert ann.clipped == 1 and ann.objects[0].box == (1, 1, 100, 80)  # a whole-image box is inside
    x1, y1, x2, y2 = ann.objects[1].box
    assert 1 <= x1 <= x2 <= 100 and 1 <= y1 <= y2 <= 80


def test_a_box_wholly_outside_cannot_be_clipped(tmp_path):
    path = write_annotation(tmp_path, [obj("car", (120, 1, 130, 10))])
    with pytest.raises(InputError, match="lies wholly outside the 100x80 image"):
        read_annotation(path, clip_boxes=True)


def test_without_a_size_only_the_order_is_checked(tmp_path):
    path = tmp_path / "000001.xml"
    path.write_text("<annotation><object><name>car</name><bndbox><xmin>0</xmin><ymin>0</ymin>"
                    "<xmax>500</xmax><ymax>500</ymax></bndbox></object></annotation>")
    assert read_annotation(path).objects[0].box == (0, 0, 500, 500)


def test_the_dataset_counts_clipped_boxes_and_evaluate_has_clip_boxes(voc, capsys):
    xml = voc / "VOCdevkit" / "VOC2007" / "Annotations" / "000003.xml"
    xml.write_text(annotation_xml("000003", [obj("car", (-4, 5, 20, 20)), obj("dog", (1, 1, 130, 90))]))
    assert main(evaluate_args(voc)) == 2
    message, out = one_line_error(capsys, "evaluate")
    assert "000003.xml, line" in message and "object 1 ('car')" in message and out == ""
    ds = VOCDataset(voc / "VOCdevkit", 2007, clip_boxes=True)
    assert ds.annotation("000003").objects[0].box == (1, 5, 20, 20)
    assert ds.annotation("000003").objects[1].box == (1, 1, 100, 80)
    ds.annotation("000003")  # parsed once: counted once
    assert ds.clipped == 2
    json_path = voc / "ap.json"
    assert main(evaluate_args(voc, "--clip-boxes", "--json", str(json_path))) == 0
    err = capsys.readouterr().err
    assert "warning: 2 annotation boxes reached outside their image and were clipped" in err
    assert json.loads(json_path.read_text())["clipped_boxes"] == 2


# --- classes: a subset of the tree's ---------------------------------------------------------------

def test_a_subset_of_the_generated_trees_classes(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["make-data", "--out", str(out), "--trainval", "8", "--test", "6", "--source-per-class", "1",
                 "--source-size", "16", "--workers", "1"]) == 0
    root = out / "VOCdevkit"
    full = VOCDataset(root, 2007, classes=VOCDataset(root, 2007).listed_classes("test"))
    assert {"key", "kite"} < set(full.classes) and len(full.classes) == 10
    ids = full.image_ids("test")
    rng = np.random.default_rng(0)
    for name in full.classes:
        write_cls_results(tmp_path / "res" / f"comp1_cls_test_{name}.txt", ids, rng.standard_normal(len(ids)))
    whole = evaluate_voc(full, "test", "cls", tmp_path / "res")
    capsys.readouterr()
    assert main(["evaluate", "--voc", str(root), "--results", str(tmp_path / "res"), "--classes", "key,kite",
                 "--json", str(tmp_path / "ap.json")]) == 0
    report = json.loads((tmp_path / "ap.json").read_text())
    assert list(report["ap"]) == ["key", "kite"]
    # the other classes' objects are ignored: the same AP as with every class
    assert report["ap"]["key"] == pytest.approx(whole.results["key"].ap)
    assert report["ap"]["kite"] == pytest.approx(whole.results["kite"].ap)
    subset = VOCDataset(root, 2007, classes=("kite",))
    np.testing.assert_array_equal(subset.class_labels("kite", "test")[1],
                                  full.class_labels("kite", "test")[1])
    with pytest.raises(InputError, match="unknown class 'cat'"):
        subset.class_labels("cat", "test")


# --- results files ----------------------------------------------------------------------------------

def test_an_empty_results_file_is_left_out_of_the_mean_with_a_warning(voc, capsys):
    empty = voc / "results" / "comp1_cls_test_dog.txt"
    empty.write_text("\n")
    json_path = voc / "ap.json"
    assert main(evaluate_args(voc, "--classes", "car,dog", "--json", str(json_path))) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[1:] == ["car   100.00", "mean  100.00"]
    assert f"warning: {empty}: EMPTY results file" in captured.err and "left out of the mean" in captured.err
    report = json.loads(json_path.read_text())
    assert report["left_out"] == {"dog": "empty results file"} and list(report["ap"]) == ["car"]
    (voc / "results" / "comp1_cls_test_car.txt").write_text("")
    assert main(evaluate_args(voc, "--classes", "car,dog")) == 2
    assert "is empty (car, dog)" in one_line_error(capsys, "evaluate")[0]


def test_an_empty_detection_file_scores_zero_with_a_warning(voc):
    write_lines(voc / "results" / "comp3_det_test_car.txt", ["000001 0.9 1 1 10 10"])
    (voc / "results" / "comp3_det_test_dog.txt").write_text("")
    report = evaluate_voc(VOCDataset(voc / "VOCdevkit", 2007, classes=("car", "dog")), "test", "det",
                          voc / "results")
    assert report.results["dog"].ap == 0.0 and "dog" not in report.left_out
    assert any("comp3_det_test_dog.txt: empty results file (no detections)" in w for w in report.warnings)


def test_an_annotation_or_set_that_is_a_folder_is_named(voc):
    ds = VOCDataset(voc / "VOCdevkit", 2007)
    (ds.dir / "Annotations" / "000009.xml").mkdir()
    with pytest.raises(InputError, match=r"000009.xml: cannot read annotation file \(Is a directory\)"):
        ds.annotation("000009")
    (ds.dir / "ImageSets" / "Main" / "val.txt").mkdir()
    with pytest.raises(InputError, match=r"val.txt: cannot read image set file \(Is a directory\)"):
        ds.image_ids("val")


def test_classes_the_tree_lacks_or_none_are_refused(voc, capsys):
    main_dir = voc / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main"
    write_lines(main_dir / "car_test.txt", ["000001 1", "000002 -1", "000003 1"])
    write_lines(main_dir / "dog_test.txt", ["000001 -1", "000002 1", "000003 1"])
    assert main(evaluate_args(voc, "--classes", "car,cat")) == 2
    assert one_line_error(capsys, "evaluate")[0] == ("--classes: 'cat' is not a class of the tree (its "
                                                     "classes: car, dog)")
    assert main(evaluate_args(voc, "--classes", " , ")) == 2
    assert one_line_error(capsys, "evaluate")[0] == "--classes ' , ' names no class"
    assert main(evaluate_args(voc, "--classes", "dog")) == 0


def test_transfer_and_localize_refuse_a_box_outside_before_any_work_or_clip_it(tmp_path, capsys):
    """The annotations are read before the run starts (localize's evaluation reads them
    last): a box outside its image is refused with no output folder made; --clip-boxes
    clips it, counts it in run.json and says so."""
    from method_trees import source_like, write_tree

    rng = np.random.default_rng(0)
    images = {f"{n:04d}": (rng.integers(0, 255, (48, 64, 3), dtype=np.uint8),
                           [("car", (3, 3, 30, 30), False), ("dog", (20, 10, 64, 48), False)])
              for n in range(6)}
    images["0005"][1][1] = ("dog", (20, 10, 70, 48), False)  # 6 pixels outside, a test image
    voc = write_tree(tmp_path / "voc", images, {"trainval": ["0000", "0001", "0002", "0003"],
                                                "test": ["0004", "0005"]})
    source_like().save(tmp_path / "source.npz")
    transfer = ["transfer", "--voc", str(voc), "--weights", str(tmp_path / "source.npz"), "--backend",
                "numpy", "--epochs", "1", "--hidden", "8", "--scales", "1,2", "--stride", "0.5",
                "--val-fraction", "0"]
    assert main([*transfer, "--out", str(tmp_path / "t")]) == 2
    message = one_line_error(capsys, "transfer")[0]
    assert "0005.xml, line" in message and "reaches outside the 64x48 image" in message
    assert "--clip-boxes" in message
    assert not (tmp_path / "t").exists()
    assert main([*transfer, "--out", str(tmp_path / "t"), "--clip-boxes"]) == 0
    record = json.loads((tmp_path / "t" / "run.json").read_text())
    assert record["data"]["clipped_boxes"] == 1 and record["settings"]["clip_boxes"] is True
    assert "1 annotation boxes reached outside their image and were clipped" in capsys.readouterr().out
    localize = ["localize", "--weights", str(tmp_path / "t" / "transfer.npz"), "--voc", str(voc), "--backend",
                "numpy", "--heatmaps", "0"]
    assert main([*localize, "--out", str(tmp_path / "l")]) == 2
    assert "0005.xml, line" in one_line_error(capsys, "localize")[0]
    assert not (tmp_path / "l").exists()
    assert main([*localize, "--out", str(tmp_path / "l"), "--clip-boxes"]) == 0
    assert json.loads((tmp_path / "l" / "run.json").read_text())["data"]["clipped_boxes"] == 1
