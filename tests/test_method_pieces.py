"""Each piece of the method where it is used, observed in a real run rather than alone:
the preprocessing every path feeds the network, the background draw the trainer sees, the
scales in the cache and the scoring, the pixels of a patch against its box, the boxes that
localization reads off each class's scores."""

import json

import numpy as np
import pytest
from method_trees import boxes_tree, linear_head, source_like, with_head, write_tree

import minicnn as mc
from minicnn import layers as L
from minicnn.data.preprocess import Preprocessing
from minicnn.net import Sequential
from minicnn.transfer.patchset import PatchRenderer
from minicnn.transfer.pipeline import Transfer, TransferSettings
from minicnn.transfer.train import TrainSettings

CLASSES = ["aeroplane", "bicycle", "bird"]


def recording_forward(monkeypatch):
    """Record the input of every evaluation-mode forward of any Sequential."""
    seen = []
    forward = Sequential.forward

    def spy(self, x, train=True, keep_for_backward=True):
        if not train:
            seen.append(mc.to_numpy(x).copy())
        return forward(self, x, train=train, keep_for_backward=keep_for_backward)

    monkeypatch.setattr(Sequential, "forward", spy)
    return seen


def test_one_preprocessing_feeds_every_path(tmp_path, monkeypatch):
    """The same 32 x 32 image through source validation, the feature cache, localization and
    the Caltech experiment gives the network the same input: (pixels[order] - mean) / std
    with the network's own mean, std and channel order (BGR here, as Caffe's networks)."""
    import sys

    from minicnn.data.folders import read_folder
    from minicnn.pretrain import PretrainSettings, pretrain
    from minicnn.transfer.localize import image_patch_probabilities

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    others = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    for n, (cls, image) in enumerate([("a", pixels), ("a", others[0]), ("b", others[1]), ("b", others[2])]):
        (tmp_path / "src" / cls).mkdir(parents=True, exist_ok=True)
        from PIL import Image

        Image.fromarray(image).save(tmp_path / "src" / cls / f"{n}.png")

    def expected(prep):
        x = pixels.transpose(2, 0, 1).astype(np.float32)[list(prep_order(prep))]
        return (x - np.float32(prep.mean).reshape(3, 1, 1)) / np.float32(prep.std).reshape(3, 1, 1)

    def prep_order(prep):
        return (2, 1, 0) if prep.channel_order == "BGR" else (0, 1, 2)

    # 1. source training's validation: the centre crop of a 32-pixel image at input 32 is the image
    seen = recording_forward(monkeypatch)
    settings = PretrainSettings(model="small", input_size=32, resize=32, channels=(4,) * 5, hidden=4,
                                epochs=1, batch_size=4, val_fraction=0.5, workers=0)
    folder = read_folder(tmp_path / "src")
    result = pretrain(tmp_path / "src", tmp_path / "pre", settings, log=lambda *a: None)
    source = mc.Sequential.load(result["weights"])
    prep = Preprocessing.of(source)
    val_input = np.concatenate(seen)
    position = [p.endswith("/0.png") for p in folder.paths]
    assert any(position)
    assert any(np.allclose(x, expected(prep), atol=1e-4) for x in val_input), "pretrain validation input"

    # 2. the feature cache and scoring of a transfer run, with a BGR network
    source.meta.update(channel_order="BGR", mean=[10.0, 20.0, 30.0], std=[50.0, 60.0, 70.0])
    prep = Preprocessing.of(source)
    voc = write_tree(tmp_path / "voc", {"0001": (pixels, [("bird", (5, 5, 20, 20), False)]),
                                        "0002": (others[0], [("bird", (5, 5, 20, 20), False)])},
                     {"trainval": ["0002"], "test": ["0001"]})
    run = Transfer(voc, 2007, source, tmp_path / "out",
                   TransferSettings(hidden=4, val_fraction=0.0, scales=(1.0,), stride_fraction=0.5,
                                    train=TrainSettings(epochs=1, batch_size=4)),
                   classes=CLASSES, log=lambda *a: None)
    seen.clear()
    run.run()
    assert any(x.shape == (3, 32, 32) and np.allclose(x, expected(prep), atol=1e-4)
               for batch in seen for x in batch), "feature cache input"

    # 3. localization of the saved transfer network
    from minicnn.data.transforms import load_image

    transfer = mc.Sequential.load(tmp_path / "out" / "transfer.npz")
    seen.clear()
    image_patch_probabilities(transfer, load_image(voc / "VOC2007" / "JPEGImages" / "0001.jpg"), (1.0,), 0.5)
    assert np.allclose(seen[0][0], expected(prep), atol=1e-4), "localization input"

    # 4. the Caltech-101 experiment's whole images
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[1] / "experiments"))
    try:
        from caltech101_transfer import whole_images
    finally:
        sys.path.pop(0)
    x = whole_images([str(voc / "VOC2007" / "JPEGImages" / "0001.jpg")], 32, prep, workers=0)
    assert np.allclose(x[0], expected(prep), atol=1e-4), "experiment input"


def test_background_is_resampled_each_epoch_with_the_configured_fraction(tmp_path, monkeypatch):
    """Count what the trainer sees: every object patch once per epoch, a fresh draw of about
    ``background_fraction`` of the background patches, never a discarded one."""
    import minicnn.training as training

    voc = boxes_tree(tmp_path / "voc", CLASSES, n_trainval=10, n_test=2)
    fraction = 0.3
    train_settings = TrainSettings(epochs=3, batch_size=32, background_fraction=fraction)
    run = Transfer(voc, 2007, source_like(), tmp_path / "out",
                   TransferSettings(hidden=4, val_fraction=0.0, scales=(1.0, 1.5, 2.0, 2.25),
                                    stride_fraction=0.25, train=train_settings),
                   classes=CLASSES, log=lambda *a: None)
    train = run.patches.patches_of("train")
    labels = run.patches.patch_labels[train]
    # the head's logits are the patch index, so the loss sees which patches each step trained on
    features = np.repeat(np.arange(len(run.patches.patch_labels), dtype=np.float32)[:, None], 4, axis=1)
    seen, epoch = {}, [None]
    stream, loss = training.backend.seed_stream, training.softmax_cross_entropy

    def tagged_stream(*key):  # (seed, stream, epoch, step): called before each step
        epoch[0] = key[2]
        return stream(*key)

    def counting_loss(logits, batch_labels, weights=None):
        seen.setdefault(epoch[0], []).append((mc.to_numpy(logits)[:, 0].astype(np.int64),
                                              np.asarray(batch_labels).copy()))
        return loss(logits, batch_labels, weights)

    monkeypatch.setattr(training.backend, "seed_stream", tagged_stream)
    monkeypatch.setattr(training, "softmax_cross_entropy", counting_loss)
    with_head(run, linear_head(np.eye(4)), features).run()
    background, all_labels = run.background, run.patches.patch_labels
    objects = set(train[(labels >= 0) & (labels != background)].tolist())
    n_background = int((labels == background).sum())
    assert len(objects) > 20 and n_background > 300
    drawn = []
    for e in range(3):
        patches = np.concatenate([q for q, _ in seen[e]])
        got = np.concatenate([lab for _, lab in seen[e]])
        np.testing.assert_array_equal(got, all_labels[patches])  # each patch with its own label
        assert set(patches.tolist()) <= set(train.tolist()) and len(set(patches.tolist())) == len(patches)
        assert (got >= 0).all()
        assert set(patches[got != background].tolist()) == objects
        k = int((got == background).sum())
        sd = np.sqrt(n_background * fraction * (1 - fraction))
        assert abs(k - fraction * n_background) < 4 * sd, (k, fraction * n_background)
        drawn.append(set(patches[got == background].tolist()))
    assert drawn[0] != drawn[1] and drawn[1] != drawn[2]


def test_every_scale_is_cached_and_scored(tmp_path):
    """The sides of the cached patches of each image are min(w, h) / lambda for every lambda of
    the settings, and the test images are scored from patches of every scale."""
    voc = boxes_tree(tmp_path / "voc", CLASSES, n_trainval=4, n_test=3)
    scales = (1.0, 1.6, 2.5, 3.0)
    run = Transfer(voc, 2007, source_like(), tmp_path / "out",
                   TransferSettings(hidden=4, val_fraction=0.0, scales=scales, stride_fraction=0.5,
                                    train=TrainSettings(epochs=1, batch_size=32)),
                   classes=CLASSES, log=lambda *a: None)
    run.network_inputs()  # builds the cache
    (cache_dir,) = (tmp_path / "out" / "cache").iterdir()
    index = np.load(cache_dir / "index.npz")
    p = run.patches
    for i in range(len(p.image_ids)):
        width, height = p.sizes[i]
        boxes = index["boxes"][index["image"] == i]
        sides = sorted(set(np.round(boxes[:, 2] - boxes[:, 0], 6)))
        np.testing.assert_allclose(sides, sorted(min(width, height) / s for s in scales))
    np.testing.assert_array_equal(index["boxes"], p.patch_boxes)
    np.testing.assert_array_equal(index["labels"], p.patch_labels)
    scored = p.patch_boxes[p.items["test"].patches]
    assert len(set(np.round(scored[:, 2] - scored[:, 0], 6))) == len(scales)


def test_patch_pixels_match_the_box_they_were_labelled_from(tmp_path):
    """An image whose red channel is x and green channel y (pixel centres): each rendered
    patch holds the coordinates of its box, from the patch set that labelled it, and its
    cached features are the network's output on exactly those pixels."""
    width, height = 200, 150
    ys, xs = np.mgrid[0:height, 0:width]
    coords = np.stack([xs, ys, np.zeros_like(xs)], axis=-1).astype(np.uint8)
    voc = write_tree(tmp_path / "voc", {"0001": (coords, [("bird", (41, 31, 120, 110), False)]),
                                        "0002": (coords, [("bird", (101, 41, 180, 120), False)])},
                     {"trainval": ["0001"], "test": ["0002"]})
    source = source_like(input_size=32)
    run = Transfer(voc, 2007, source, tmp_path / "out",
                   TransferSettings(hidden=4, val_fraction=0.0, scales=(1.0, 2.0, 3.0), stride_fraction=0.5,
                                    train=TrainSettings(epochs=1, batch_size=32)),
                   classes=CLASSES, log=lambda *a: None)
    p = run.patches
    renderer = PatchRenderer(p, 32, Preprocessing())
    every = np.arange(len(p.patch_labels))
    pixels = renderer(every)
    u = (np.arange(32) + 0.5) / 32
    for q in every:
        x1, y1, x2, y2 = p.patch_boxes[q]
        want_x = x1 + u * (x2 - x1) - 0.5
        want_y = y1 + u * (y2 - y1) - 0.5
        # each patch is the exact resize of its box; the filter, cut off at the image's border,
        # and the 8-bit rounding of the two passes move a pixel by less than one
        tolerance = 1.0
        assert np.abs(pixels[q, 0].mean(axis=0) - want_x).max() < tolerance, q
        assert np.abs(pixels[q, 1].mean(axis=1) - want_y).max() < tolerance, q
    # the labels came from those boxes: the one patch holding the object well is labelled bird
    from minicnn.transfer.labels import label_patches

    for i in range(2):
        mine = p.patch_image == i
        obj = run.dataset.annotation(p.image_ids[i]).objects[0]
        from minicnn.data.voc import pixel_boxes

        relabelled = label_patches(p.patch_boxes[mine], pixel_boxes([obj.box]), [2], [False], 3)
        np.testing.assert_array_equal(p.patch_labels[mine], relabelled)
        assert (p.patch_labels[mine] == 2).any()
    # and the cache rows are the features of those pixels
    head, inputs_of = run.network_inputs()
    cut = run.net.names.index("drop7") + 1
    extractor = Sequential(run.net.layers[:cut], run.net.names[:cut])
    rows = np.array([0, len(every) // 2, len(every) - 1])
    inputs = PatchRenderer(p, 32, Preprocessing.of(source))(rows)
    np.testing.assert_allclose(inputs, Preprocessing.of(source)(pixels[rows].copy()), rtol=1e-6)
    direct = mc.to_numpy(extractor.forward(mc.asarray(inputs), train=False))
    np.testing.assert_allclose(inputs_of(rows), direct.reshape(len(rows), -1), rtol=1e-5, atol=1e-6)


def test_localization_boxes_come_from_each_class_own_scores(tmp_path):
    """A hand-made network that scores class 0 by a patch's redness and class 1 by its
    greenness: localize must put class 0's boxes on the red square and class 1's on the
    green one, and the VOC detection AP of both is 1 (0 if the classes were swapped)."""
    from minicnn.cli import main

    size, side = 96, 40
    images, ids = {}, []
    rng = np.random.default_rng(3)
    for n in range(4):
        pixels = np.full((size, size, 3), 40, np.uint8)
        (rx, ry), (gx, gy) = [(8, 8), (48, 48)] if n % 2 == 0 else [(48, 48), (8, 8)]
        pixels[ry:ry + side, rx:rx + side] = (255, 40, 40)
        pixels[gy:gy + side, gx:gx + side] = (40, 255, 40)
        pixels = np.clip(pixels + rng.integers(-5, 6, pixels.shape), 0, 255).astype(np.uint8)
        images[f"{n:04d}"] = (pixels, [("aeroplane", (rx + 1, ry + 1, rx + side, ry + side), False),
                                       ("bicycle", (gx + 1, gy + 1, gx + side, gy + side), False)])
        ids.append(f"{n:04d}")
    voc = write_tree(tmp_path / "voc", images, {"test": ids})
    S = 16
    weight = np.zeros((3, 3 * S * S), np.float32)
    weight[0, : S * S] = 10 / (255 * S * S)          # mean red
    weight[1, S * S : 2 * S * S] = 10 / (255 * S * S)  # mean green
    net = Sequential([L.Flatten(), L.Linear(3 * S * S, 3)], names=["flatten", "fcb"], input_shape=(3, S, S))
    net["fcb"].params["weight"] = mc.asarray(weight)
    net["fcb"].params["bias"] = mc.asarray(np.array([0.0, 0.0, 5.0], np.float32))
    net.meta.update(target_classes=["aeroplane", "bicycle"], k=5.0, scales=[1.0, 2.0, 2.4],
                    stride_fraction=0.25)
    net.save(tmp_path / "net.npz")
    out = tmp_path / "loc"
    assert main(["localize", "--weights", str(tmp_path / "net.npz"), "--voc", str(voc), "--out", str(out),
                 "--backend", "numpy", "--per-class", "1", "--heatmaps", "1"]) == 0
    boxes = json.loads((out / "boxes.json").read_text())
    for n, image_id in enumerate(ids):
        (red,) = [d["box"] for d in boxes["aeroplane"] if d["image"] == image_id]
        (green,) = [d["box"] for d in boxes["bicycle"] if d["image"] == image_id]
        r0, g0 = ((8, 48) if n % 2 == 0 else (48, 8))
        assert abs(red[0] - 1 - r0) <= 5 and abs(red[1] - 1 - r0) <= 5, (image_id, red)
        assert abs(green[0] - 1 - g0) <= 5 and abs(green[1] - 1 - g0) <= 5, (image_id, green)
    from minicnn.data.voc import VOCDataset
    from minicnn.evaluate import evaluate_voc

    report = evaluate_voc(VOCDataset(voc, 2007, classes=["aeroplane", "bicycle"]), "test", "det",
                          out / "results")
    assert {c: r.ap for c, r in report.results.items()} == {"aeroplane": pytest.approx(1.0),
                                                           "bicycle": pytest.approx(1.0)}
