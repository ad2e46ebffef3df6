"""``minicnn evaluate`` end to end on a tiny VOC tree (its plots: tests/test_plots.py)."""

import json

import pytest
from PIL import Image
from voc_tree import annotation_xml, obj, write_lines, write_voc

from minicnn.cli import main


@pytest.fixture
def voc(tmp_path):
    write_voc(tmp_path / "VOCdevkit", {
        "000001": [obj("car", (1, 1, 10, 10))],
        "000002": [obj("dog", (1, 1, 10, 10), truncated=True)],
        "000003": [obj("car", (5, 5, 20, 20)), obj("dog", (1, 1, 30, 30))],
        "000004": [obj("person", (1, 1, 10, 10))],
    })
    results = tmp_path / "results"
    write_lines(results / "comp1_cls_test_car.txt", ["000001 0.9", "000003 0.8", "000002 0.1", "000004 0.0"])
    # dog: rank P N N P -> rec .5 .5 .5 1, prec 1 1/2 1/3 1/2
    write_lines(results / "comp1_cls_test_dog.txt", ["000002 0.9", "000001 0.8", "000004 0.7", "000003 0.6"])
    return tmp_path


def test_cls_table_json_and_plots(voc, capsys):
    out = voc / "out"
    rc = main(["evaluate", "--voc", str(voc / "VOCdevkit"), "--year", "2007", "--set", "test",
               "--task", "cls", "--results", str(voc / "results"),
               "--json", str(out / "ap.json"), "--plots", str(out / "plots")])
    captured = capsys.readouterr()
    assert rc == 0
    # 11-point: car 1; dog: t <= .5 -> 1 (6 points), t > .5 -> 1/2 (5 points) = 8.5/11
    assert captured.out.splitlines() == [
        "VOC2007 test, classification (comp1), AP in % (metric voc07: 11-point interpolated)",
        "car   100.00",
        "dog    77.27",
        "mean   88.64",
    ]
    assert "warning: no results file for 18 of 20 classes" in captured.err
    report = json.loads((out / "ap.json").read_text())
    # left_out: the classes not in the mean and why; clipped_boxes: --clip-boxes' count (issue 15)
    assert set(report) == {"task", "metric", "ap", "map", "left_out", "warnings", "clipped_boxes"}
    assert report["left_out"]["cat"] == "no results file" and report["clipped_boxes"] == 0
    assert (report["task"], report["metric"]) == ("cls", "voc07")
    assert report["ap"]["dog"] == pytest.approx(8.5 / 11)
    assert report["map"] == pytest.approx((1 + 8.5 / 11) / 2)
    assert len(report["warnings"]) == 1
    for name in ("cls_car_pr.png", "cls_dog_pr.png", "cls_summary.png"):
        with Image.open(out / "plots" / name) as image:
            assert image.format == "PNG" and image.width >= 480


def test_metric_follows_the_year_unless_given(voc, capsys):
    args = ["evaluate", "--voc", str(voc / "VOCdevkit" / "VOC2007"), "--results", str(voc / "results"),
            "--json", str(voc / "ap.json")]
    assert main(args + ["--metric", "area"]) == 0
    assert "dog    75.00" in capsys.readouterr().out  # area: .5 * 1 + .5 * 1/2
    assert json.loads((voc / "ap.json").read_text())["metric"] == "area"
    (voc / "VOCdevkit" / "VOC2007").rename(voc / "VOCdevkit" / "VOC2010")
    assert main(["evaluate", "--voc", str(voc / "VOCdevkit"), "--year", "2010", "--results",
                 str(voc / "results")]) == 0
    assert "(metric area: area under the interpolated curve)" in capsys.readouterr().out


def test_errors_exit_2_with_one_line(voc, capsys):
    rc = main(["evaluate", "--voc", str(voc / "nowhere"), "--results", str(voc / "results")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "nowhere is not a directory" in err
    write_lines(voc / "results" / "comp1_cls_test_dog.txt", ["000002 0.9", "000001 0.8 0.1"])
    rc = main(["evaluate", "--voc", str(voc / "VOCdevkit"), "--results", str(voc / "results")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "comp1_cls_test_dog.txt, line 2: expected 2 fields '<image id> <score>', found 3" in err
    assert "Traceback" not in err


def test_help_describes_the_command(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = capsys.readouterr().out
    assert "--competition" in text and "--plots" in text and "devkit" in text


def test_a_tree_with_its_own_classes(tmp_path, capsys):
    """Classes other than VOC's (the generated dataset's) come from the per-class set files,
    or from --classes, which may name a subset of them (the others are ignored: issue 15,
    it used to fail with "unknown class" for a class of the tree); a class in an annotation
    that the tree does not have is still an error."""
    voc = write_voc(tmp_path / "VOCdevkit", {
        "000001": [obj("kite", (1, 1, 10, 10))],
        "000002": [obj("boat", (1, 1, 10, 10))],
    })
    for cls, signs in (("kite", ("1", "-1")), ("boat", ("-1", "1"))):
        write_lines(voc / "ImageSets" / "Main" / f"{cls}_test.txt",
                    [f"00000{i + 1} {s}" for i, s in enumerate(signs)])
    results = tmp_path / "results"
    write_lines(results / "comp1_cls_test_kite.txt", ["000001 0.9", "000002 0.1"])
    write_lines(results / "comp1_cls_test_boat.txt", ["000001 0.9", "000002 0.1"])
    args = ["evaluate", "--voc", str(tmp_path / "VOCdevkit"), "--results", str(results)]
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["boat   50.00", "kite  100.00", "mean   75.00"]
    assert main(args + ["--classes", "kite,boat"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["kite  100.00", "boat   50.00", "mean   75.00"]
    assert main(args + ["--classes", "kite"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["kite  100.00", "mean  100.00"]
    (voc / "Annotations" / "000002.xml").write_text(
        annotation_xml("000002", [obj("boat", (1, 1, 10, 10)), obj("kyte", (1, 1, 10, 10))]))
    assert main(args + ["--classes", "kite"]) == 2
    err = capsys.readouterr().err
    assert "000002.xml, line " in err and "unknown class 'kyte' (the classes are boat, kite)" in err
