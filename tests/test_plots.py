"""The matplotlib plots: what each draws, read back from the returned Figure's axes and from
the pixels of the PNG it wrote (located through the figure's own transforms)."""

import subprocess
import sys

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.colors import to_rgb
from matplotlib.patches import Rectangle
from PIL import Image

from minicnn.evaluate.ap import average_precision
from minicnn.evaluate.challenge import ClassResult, Report, plot_report
from minicnn.plots import (
    GT_COLOR,
    HEAT_ALPHA,
    HEAT_CMAP,
    PRED_COLOR,
    plot_ap_bars,
    plot_heatmaps,
    plot_pr_curve,
    plot_pr_curves,
    plot_training,
)


def png_pixels(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB")).astype(np.int64)


def pixel_at(pixels, ax, x, y):
    """The PNG pixel where ``ax`` shows data point (x, y); display y runs upwards."""
    px, py = ax.transData.transform((x, y))
    return pixels[int(pixels.shape[0] - py), int(px)]


def rgb255(color):
    return np.array([round(255 * c) for c in to_rgb(color)])


# --- heat maps ------------------------------------------------------------------------------

H, W = 40, 60
GRAY = 100
BOX = (10, 5, 30, 15)  # x1, y1, x2, y2, end-exclusive


def box_map(value=1.0):
    m = np.zeros((H, W))
    x1, y1, x2, y2 = BOX
    m[y1:y2, x1:x2] = value
    return m


def test_heatmap_colours_the_scored_region_and_only_it(tmp_path):
    path = tmp_path / "heat.png"
    image = np.full((H, W, 3), GRAY, dtype=np.uint8)
    fig = plot_heatmaps(path, image, [{"title": "car", "map": box_map(), "boxes": []}])
    pixels = png_pixels(path)
    assert pixels.shape[:2] == (round(fig.get_figheight() * fig.dpi), round(fig.get_figwidth() * fig.dpi))
    plain, overlay = fig.axes[0], fig.axes[1]
    cmap = colormaps[HEAT_CMAP]
    hot = (1 - HEAT_ALPHA) * GRAY + HEAT_ALPHA * 255 * np.array(cmap(1.0)[:3])
    cold = (1 - HEAT_ALPHA) * GRAY + HEAT_ALPHA * 255 * np.array(cmap(0.0)[:3])
    inside = [(10.5, 5.5), (20.0, 10.0), (29.5, 14.5)]  # pixel centres of the box's corners and middle
    outside = [(9.5, 10.0), (30.5, 10.0), (20.0, 4.5), (20.0, 15.5), (45.0, 30.0), (5.0, 35.0)]
    for x, y in inside:
        assert np.abs(pixel_at(pixels, overlay, x, y) - hot).max() <= 3, (x, y)
        assert np.abs(pixel_at(pixels, plain, x, y) - GRAY).max() <= 1, (x, y)
    for x, y in outside:
        assert np.abs(pixel_at(pixels, overlay, x, y) - cold).max() <= 3, (x, y)
        assert np.abs(pixel_at(pixels, plain, x, y) - GRAY).max() <= 1, (x, y)


def test_heatmap_one_labelled_colour_bar_on_the_scale_every_panel_shares(tmp_path):
    """Issue 26, defect 8: panels compare only on one scale; the bar says what it measures;
    the first panel names the image."""
    image = Image.fromarray(np.full((H, W, 3), GRAY, dtype=np.uint8))
    path = tmp_path / "000001.png"
    fig = plot_heatmaps(path, image,
                        [{"title": "car", "map": box_map(1.0), "boxes": []},
                         {"title": "dog", "map": box_map(0.25), "boxes": []}], title="maps",
                        scale_label="mean of p^5")
    panels = fig.axes[:3]
    bars = fig.axes[3:]
    assert [ax.get_title() for ax in panels] == ["image 000001", "car", "dog"]
    assert fig.get_suptitle() == "maps"
    assert len(bars) == 1
    (bar,) = bars
    assert tuple(np.round(bar.get_ylim(), 6)) == (0.0, 1.0)
    assert bar.get_ylabel() == "mean of p^5"
    # the same value has the same colour on both panels: dog's 0.25 is not drawn as hot as car's 1.0
    pixels = png_pixels(path)
    cmap = colormaps[HEAT_CMAP]
    for ax, value in zip(panels[1:], (1.0, 0.25), strict=True):
        expected = (1 - HEAT_ALPHA) * GRAY + HEAT_ALPHA * 255 * np.array(cmap(value)[:3])
        assert np.abs(pixel_at(pixels, ax, 20.0, 10.0) - expected).max() <= 3, ax.get_title()
    # the scale at full strength (not faded like the overlay): the colour map's own ends
    for y in (0.98, 0.02):  # within the pixel the position falls in
        near = 255 * np.array([cmap(v)[:3] for v in np.linspace(y - 0.02, y + 0.02, 81)])
        assert np.abs(pixel_at(pixels, bar, 0.5, y) - near).max(axis=1).min() <= 3, y


def test_heatmap_ground_truth_label_at_the_top_edge_stays_in_view_over_a_prediction(tmp_path):
    """Issue 26, defect 8: a ground-truth box at the image's top edge kept its label above
    the image (clipped) and a predicted box on it was drawn over it."""
    image = np.full((H, W, 3), GRAY, dtype=np.uint8)
    box = (0, 0, 40, 30)
    fig = plot_heatmaps(tmp_path / "heat.png", image, [{"title": "car", "map": np.zeros((H, W)),
                                                         "boxes": [(*box, 0.9)]}], gt_boxes=[(*box, "car")])
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[1]
    (gt,) = [t for t in ax.texts if t.get_text() == "car"]
    (pred,) = [t for t in ax.texts if t.get_text() == "0.90"]
    inside = ax.get_window_extent(renderer)
    label = gt.get_window_extent(renderer)
    assert inside.x0 - 2 <= label.x0 and label.x1 <= inside.x1 + 2  # (its tag's padding may touch the edge)
    assert inside.y0 - 2 <= label.y0 and label.y1 <= inside.y1 + 2
    assert not label.overlaps(pred.get_window_extent(renderer))
    predicted = [p for p in ax.patches if p.get_edgecolor()[:3] == to_rgb(PRED_COLOR)]
    assert predicted and gt.get_zorder() > max(a.get_zorder() for a in [pred, *predicted])


def test_plot_report_names_the_run_in_every_title(tmp_path):
    report = Report(task="cls", metric="voc07", year=2007, split="test", competition="comp1")
    report.results["car"] = ClassResult("car", 0.75, REC, PREC, tmp_path / "comp1_cls_test_car.txt")
    from matplotlib.figure import Figure

    titles = []
    original = Figure.savefig

    def record(fig, *args, **kwargs):
        titles.append(fig.get_suptitle() or fig.axes[0].get_title())
        return original(fig, *args, **kwargs)

    Figure.savefig = record
    try:
        plot_report(report, tmp_path / "plots", run="update-fc67")
    finally:
        Figure.savefig = original
    assert len(titles) == 2 and all(t.startswith("update-fc67: ") for t in titles), titles


def test_heatmap_draws_ground_truth_on_every_panel_and_predictions_on_their_own(tmp_path):
    path = tmp_path / "heat.png"
    image = np.full((H, W, 3), GRAY, dtype=np.uint8)
    pred = (35, 20, 55, 35, 0.873)
    fig = plot_heatmaps(path, image,
                        [{"title": "car", "map": np.zeros((H, W)), "boxes": [pred]},
                         {"title": "dog", "map": np.zeros((H, W)), "boxes": []}],
                        gt_boxes=[(*BOX, "car")])
    pixels = png_pixels(path)
    x1, y1, x2, y2 = BOX
    for ax in fig.axes[:3]:
        for x, y in ((x1, 10), (x2, 10), (20, y1), (20, y2)):  # the middle of each edge
            assert np.abs(pixel_at(pixels, ax, x, y) - rgb255(GT_COLOR)).max() <= 8, (ax.get_title(), x, y)
        assert not np.array_equal(pixel_at(pixels, ax, 20, 10), rgb255(GT_COLOR))  # not filled
        assert "car" in [t.get_text() for t in ax.texts]
    with_pred, without = fig.axes[1], fig.axes[2]
    for x, y in ((35, 27), (55, 27), (45, 20)):
        assert np.abs(pixel_at(pixels, with_pred, x, y) - rgb255(PRED_COLOR)).max() <= 8, (x, y)
        assert np.abs(pixel_at(pixels, without, x, y) - rgb255(PRED_COLOR)).max() > 60, (x, y)
    assert "0.87" in [t.get_text() for t in with_pred.texts]
    assert "0.87" not in [t.get_text() for t in without.texts]


def test_heatmap_refuses_a_map_not_of_the_image_size(tmp_path):
    image = np.zeros((H, W, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"shape \(60, 40\), the image is \(40, 60\)"):
        plot_heatmaps(tmp_path / "heat.png", image, [{"title": "car", "map": box_map().T, "boxes": []}])
    assert not (tmp_path / "heat.png").exists()


# --- AP bars --------------------------------------------------------------------------------

def bars_of(ax):
    return sorted((p for p in ax.patches if isinstance(p, Rectangle)), key=lambda p: p.get_x())


def mean_line(ax):
    (line,) = [line for line in ax.lines if line.get_label().startswith("mean")]
    return line


def test_ap_bars_heights_values_missing_class_and_mean(tmp_path):
    path = tmp_path / "ap.png"
    fig = plot_ap_bars(path, {"car": 0.2, "dog": float("nan"), "kite": 0.8}, title="VOC2007 test")
    ax = fig.axes[0]
    bars = bars_of(ax)
    assert [round(b.get_height(), 6) for b in bars] == [0.2, 0.8]
    assert [round(b.get_x() + b.get_width() / 2, 6) for b in bars] == [0.0, 2.0]  # none at dog's place
    assert [t.get_text() for t in ax.get_xticklabels()] == ["car", "dog", "kite"]
    texts = [t.get_text() for t in ax.texts]
    assert "0.20" in texts and "0.80" in texts and "n/a" in texts
    line = mean_line(ax)
    assert line.get_label() == "mean 0.500"  # the mean of the finite APs
    assert np.allclose(line.get_ydata(), 0.5)
    assert "mean 0.500" in [t.get_text() for t in ax.get_legend().get_texts()]
    # in the PNG: the kite bar is four times as tall as the car bar
    pixels = png_pixels(path)
    blue = np.abs(pixels - rgb255("tab:blue")).sum(axis=2) < 30
    heights = [blue[:, int(ax.transData.transform((x, 0))[0])].sum() for x in (0, 2)]
    assert heights[1] == pytest.approx(4 * heights[0], rel=0.05)
    assert blue[:, int(ax.transData.transform((1, 0))[0])].sum() == 0


def test_ap_bars_given_mean_and_nan_mean(tmp_path):
    fig = plot_ap_bars(tmp_path / "ap.png", {"car": 0.2, "kite": 0.8}, mean=0.9)
    line = mean_line(fig.axes[0])
    assert line.get_label() == "mean 0.900" and np.allclose(line.get_ydata(), 0.9)
    fig = plot_ap_bars(tmp_path / "ap.png", {"car": 0.2, "kite": float("nan")}, mean=float("nan"))
    line = mean_line(fig.axes[0])
    assert line.get_label() == "mean n/a" and len(line.get_ydata()) == 0


# --- training curves ------------------------------------------------------------------------

def test_training_one_point_per_epoch_that_has_the_value(tmp_path):
    nan = float("nan")
    histories = {
        "transfer": [{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.5, "val_map": 0.3},
                     {"epoch": 3, "loss": nan}, {"epoch": 4, "loss": 1.0, "val_map": 0.4},
                     {"epoch": 5, "loss": 0.8, "val_map": nan}],
        "whole-image": [{"epoch": e, "loss": 3.0 - e / 2} for e in range(1, 6)],
    }
    fig = plot_training(tmp_path / "training.png", histories)
    loss_ax, metric_ax = fig.axes
    loss = {line.get_label(): line for line in loss_ax.lines}
    assert list(loss) == ["transfer", "whole-image"]
    assert list(loss["transfer"].get_xdata()) == [1, 2, 4, 5]
    assert list(loss["transfer"].get_ydata()) == [2.0, 1.5, 1.0, 0.8]
    assert list(loss["whole-image"].get_xdata()) == [1, 2, 3, 4, 5]
    assert all(line.get_marker() not in (None, "None", "") for line in loss_ax.lines)
    (val,) = metric_ax.lines  # whole-image has no validation value at all: no line
    assert val.get_label() == "transfer"
    assert list(val.get_xdata()) == [2, 4] and list(val.get_ydata()) == [0.3, 0.4]
    assert (loss_ax.get_xlabel(), loss_ax.get_ylabel()) == ("epoch", "training loss")
    assert metric_ax.get_ylabel() == "validation mAP"


def test_training_several_metric_keys(tmp_path):
    history = [{"epoch": e, "loss": 1.0 / e, "val_top1": 0.1 * e, "val_top5": 0.2 * e} for e in (1, 2, 3)]
    fig = plot_training(tmp_path / "pretrain.png", {"source": history}, metric=["val_top1", "val_top5"],
                        metric_label="validation accuracy", title="source network")
    metric_ax = fig.axes[1]
    lines = {line.get_label(): line for line in metric_ax.lines}
    assert list(lines) == ["top1", "top5"]
    assert np.allclose(lines["top5"].get_ydata(), [0.2, 0.4, 0.6])
    assert lines["top1"].get_linestyle() != lines["top5"].get_linestyle()
    assert metric_ax.get_ylabel() == "validation accuracy"
    fig = plot_training(tmp_path / "empty.png", {"source": []})  # nothing to draw: no crash
    assert not fig.axes[0].lines and not fig.axes[1].lines


# --- precision/recall -----------------------------------------------------------------------

# the dog of test_evaluate_cli: rank P N N P
REC = np.array([0.5, 0.5, 0.5, 1.0])
PREC = np.array([1.0, 0.5, 1 / 3, 0.5])


def test_pr_curve_raw_and_interpolated(tmp_path):
    path = tmp_path / "pr.png"
    fig = plot_pr_curve(path, REC, PREC, 0.75, title="dog: AP 0.750 (area)")
    ax = fig.axes[0]
    envelope, raw = ax.lines
    assert np.array_equal(raw.get_xdata(), REC) and np.array_equal(raw.get_ydata(), PREC)
    x, y = np.asarray(envelope.get_xdata()), np.asarray(envelope.get_ydata())
    # the stairs enclose the area AP: 1 on (0, .5], then .5 up to recall 1
    assert np.sum(np.diff(x) * y[:-1]) == pytest.approx(average_precision(REC, PREC, "area"))
    assert np.all(np.diff(x) >= 0) and np.all(np.diff(y) <= 0)
    assert "precision (AP 0.750)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert (ax.get_xlim(), ax.get_xlabel(), ax.get_ylabel()) == ((0.0, 1.0), "recall", "precision")
    assert ax.get_ylim()[0] == 0.0 and ax.get_ylim()[1] >= 1.0
    pixels = png_pixels(path)
    blue = rgb255("tab:blue")
    # the raw line from (.5, 1/3) to (1, .5); the interpolated stairs, faded, at 1 up to recall .5
    assert np.abs(pixel_at(pixels, ax, 0.75, (1 / 3 + 0.5) / 2) - blue).max() < 40
    faded = 255 - 0.35 * (255 - blue)
    assert np.abs(pixel_at(pixels, ax, 0.25, 1.0) - faded).max() < 25
    assert np.abs(pixel_at(pixels, ax, 0.25, 0.5) - 255).max() < 10  # nothing under them


def test_pr_curves_one_axes_or_a_panel_per_class(tmp_path):
    curves = {"car": (REC, PREC, 0.75), "dog": ([0.5, 1.0], [1.0, 1.0], 1.0), "kite": ([], [], float("nan"))}
    fig = plot_pr_curves(tmp_path / "pr.png", curves, title="three")
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "car (AP 0.750)", "dog (AP 1.000)", "kite (AP n/a)"]
    assert len({line.get_color() for line in ax.lines}) == 3
    many = {f"class{i}": (REC, PREC, i / 20) for i in range(12)}
    fig = plot_pr_curves(tmp_path / "pr12.png", many)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 12
    assert visible[11].get_title() == "class11  AP 0.550"


# --- the evaluate command's plots ---------------------------------------------------------

def test_plot_report_writes_the_documented_files(tmp_path):
    report = Report(task="det", metric="area", year=2007, split="test", competition="comp3")
    report.results["car"] = ClassResult("car", 0.75, REC, PREC, tmp_path / "comp3_det_test_car.txt")
    report.results["dog"] = ClassResult("dog", 1.0, np.array([1.0]), np.array([1.0]), tmp_path / "x")
    paths = plot_report(report, tmp_path / "plots")
    names = ["det_car_pr.png", "det_dog_pr.png", "det_summary.png"]
    assert [p.name for p in paths] == names
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == names  # no temporary files left
    for name in names:
        png_pixels(tmp_path / "plots" / name)


def test_plotting_leaves_pyplot_and_the_backend_alone(tmp_path):
    # the raw rcParams value: matplotlib.get_backend() would itself resolve it through pyplot
    code = ("import sys, matplotlib; backend = lambda: dict.__getitem__(matplotlib.rcParams, 'backend'); "
            "before = backend(); from minicnn.plots import plot_ap_bars; "
            "plot_ap_bars(sys.argv[1], {'a': 0.5}); "
            "assert 'matplotlib.pyplot' not in sys.modules; assert backend() == before, (before, backend())")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "ap.png")], check=True)
    assert (tmp_path / "ap.png").exists()
