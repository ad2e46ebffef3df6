"""experiments/heatmap_figures.py: localize's heat maps without the photograph's pixels."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from method_trees import write_tree
from PIL import Image

import minicnn as mc
from minicnn import layers as L
from minicnn.cli import main
from minicnn.net import Sequential

sys.path.insert(0, str(Path(__file__).parents[1] / "experiments"))
try:
    import heatmap_figures
finally:
    sys.path.pop(0)

MAGENTA = (255, 0, 255)  # in no colour of the figure: neither the heat scale nor the boxes


def magenta_pixels(path):
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int((np.abs(pixels - MAGENTA).sum(axis=2) < 40).sum())


def test_the_figure_shows_the_maps_and_boxes_but_not_the_photograph(tmp_path, monkeypatch):
    pixels = np.full((96, 128, 3), MAGENTA, np.uint8)
    pixels[20:70, 30:90] = (40, 40, 40)
    voc = write_tree(tmp_path / "voc", {"0000": (pixels, [("aeroplane", (31, 21, 90, 70), False)])},
                     {"test": ["0000"]})
    S = 16
    net = Sequential([L.Flatten(), L.Linear(3 * S * S, 2)], names=["flatten", "fcb"], input_shape=(3, S, S))
    weight = np.zeros((2, 3 * S * S), np.float32)
    weight[0, S * S: 2 * S * S] = -10 / (255 * S * S)  # aeroplane: the less green, the likelier
    net["fcb"].params["weight"] = mc.asarray(weight)
    net.meta.update(target_classes=["aeroplane"], k=5.0, scales=[1.0, 2.0], stride_fraction=0.25)
    net.save(tmp_path / "net.npz")

    assert main(["localize", "--weights", str(tmp_path / "net.npz"), "--voc", str(voc), "--out",
                 str(tmp_path / "loc"), "--backend", "numpy", "--heatmaps", "1"]) == 0
    assert magenta_pixels(tmp_path / "loc" / "heatmaps" / "0000.png") > 1000  # localize draws the photograph

    monkeypatch.setattr(sys, "argv", ["heatmap_figures.py", "--weights", str(tmp_path / "net.npz"),
                                      "--voc", str(voc), "--ids", "0000", "--top", "1",
                                      "--out", str(tmp_path / "fig")])
    heatmap_figures.main()
    figure = tmp_path / "fig" / "0000.png"
    assert magenta_pixels(figure) == 0
    # the same figure otherwise: the heat panel and the ground truth's green are drawn
    drawn = np.asarray(Image.open(figure).convert("RGB")).astype(int)
    assert (np.abs(drawn - (255, 255, 255)).sum(axis=2) > 60).sum() > 5000
