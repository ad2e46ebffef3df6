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
    # scale 4 (22.5-pixel patches) matches the small difficult objects: discarded patches
    run = Transfer(voc, 2007, source_like(), tmp_path / "out",
                   TransferSettings(hidden=4, val_fraction=0.0, scales=(1.0, 1.5, 2.0, 2.25, 4.0),
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
    assert len(objects) > 20 and n_background > 300 and (labels < 0).sum() > 5
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
        assert (np.diff(patches) < 0).any(), "the epoch's patches are not shuffled"
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
    # the pixel variants (finetune, scratch) ask for any patches in any order: the same pixels
    some = np.random.default_rng(0).permutation(len(every))[:9]
    np.testing.assert_array_equal(renderer(some), pixels[some])
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


def test_training_sees_the_train_images_only_and_validation_scores_the_val_images(tmp_path, monkeypatch):
    """The held-out images: train and val split trainval without overlap; the trainer's batches
    hold patches of train images only; the validation mAP of each epoch is the AP of the val
    images' mean(p^k) against their devkit labels, computed here; and the saved network
    samples, for localization, the patches the run scored."""
    from minicnn.data.transforms import load_image
    from minicnn.data.voc import VOCDataset
    from minicnn.evaluate import voc_ap
    from minicnn.losses import softmax
    from minicnn.transfer.localize import image_patch_probabilities

    voc = boxes_tree(tmp_path / "voc", CLASSES, n_trainval=10, n_test=4)
    run = Transfer(voc, 2007, source_like(), tmp_path / "out",
                   TransferSettings(hidden=4, val_fraction=0.3, scales=(1.0, 1.5, 2.25), stride_fraction=0.5,
                                    train=TrainSettings(epochs=2, batch_size=32, k=2.0)),
                   classes=CLASSES, log=lambda *a: None)
    trainval = VOCDataset(voc, 2007).image_ids("trainval")
    assert len(run.val_ids) == 3 and not set(run.train_ids) & set(run.val_ids)
    assert sorted(run.train_ids + run.val_ids) == sorted(trainval)
    p = run.patches
    n = len(p.patch_labels)
    # features: fixed random logits for the head, and the patch index, which the head ignores
    logits = np.random.default_rng(4).normal(0, 2, (n, 4)).astype(np.float32)
    features = np.concatenate([logits, np.arange(n, dtype=np.float32)[:, None]], axis=1)
    trained_on = []
    forward = Sequential.forward

    def spy(self, x, train=True, keep_for_backward=True):
        if train:
            trained_on.append(mc.to_numpy(x)[:, 4].astype(np.int64))
        return forward(self, x, train=train, keep_for_backward=keep_for_backward)

    monkeypatch.setattr(Sequential, "forward", spy)
    result = with_head(run, linear_head(np.eye(4, 5)), features).run()
    seen = {p.image_ids[i] for i in p.patch_image[np.concatenate(trained_on)]}
    assert seen == set(run.train_ids)
    probs = softmax(logits.astype(np.float64))
    dataset = VOCDataset(voc, 2007, classes=CLASSES)
    aps = []
    for c, name in enumerate(CLASSES):
        keys, labels = dataset.class_labels(name, "trainval")
        truth = dict(zip(keys, labels.tolist(), strict=True))
        val_truth = np.array([truth[i] for i in run.val_ids])
        if (val_truth == 1).any():
            scores = [(probs[p.patch_image == p.image_ids.index(i), c] ** 2.0).mean() for i in run.val_ids]
            aps.append(voc_ap(scores, val_truth))
    assert aps and abs(np.mean(aps) - result.summary["map"]) > 1e-3  # val and test tell apart here
    assert [h["val_map"] for h in result.summary["history"]] == [pytest.approx(np.mean(aps), abs=1e-12)] * 2
    # localize samples what the run sampled: the saved network carries the run's sampler
    saved = mc.Sequential.load(tmp_path / "out" / "transfer.npz")
    assert saved.meta["scales"] == [1.0, 1.5, 2.25] and saved.meta["stride_fraction"] == 0.5
    image = load_image(p.paths[0])
    boxes, _ = image_patch_probabilities(saved, image, saved.meta["scales"], saved.meta["stride_fraction"])
    np.testing.assert_array_equal(boxes, p.patch_boxes[p.patch_image == 0])


def test_the_sgd_recipe_and_its_schedule_reach_the_adaptation_layers(tmp_path):
    """A trainable head on all-zero features: its weight gets no gradient, so only weight decay
    and momentum move it, w <- w + v, v <- m v - lr wd w, which the test follows step by step
    with the learning rates of the history. Every patch scores alike, so the validation mAP
    never improves and the plateau schedule must divide the learning rate after ``lr_patience``
    + 1 epochs; a run stopped after epoch 2 and resumed gives the same epochs (schedule state
    included) and the same weight."""
    voc = boxes_tree(tmp_path / "voc", CLASSES, n_trainval=10, n_test=3)

    def make(epochs, out):
        train = TrainSettings(epochs=epochs, batch_size=64, lr=0.5, momentum=0.8, weight_decay=0.05,
                              lr_factor=0.1, lr_patience=1)
        run = Transfer(voc, 2007, source_like(), out,
                       TransferSettings(hidden=4, val_fraction=0.3, scales=(1.0, 1.5, 2.25),
                                        stride_fraction=0.5, train=train),
                       classes=CLASSES, log=lambda *a: None)
        head = Sequential([L.Linear(4, 4)], names=["fcb"])
        head["fcb"].params["weight"] = mc.asarray(np.full((4, 4), 2.0, np.float32))
        features = np.zeros((len(run.patches.patch_labels), 4), np.float32)
        return with_head(run, head, features), head

    run, head = make(4, tmp_path / "straight")
    history = run.run().summary["history"]
    assert [h["lr"] for h in history] == pytest.approx([0.5, 0.5, 0.5, 0.05])
    w, v = 1.0, 0.0
    for h in history:
        for _ in range(-(-h["samples"] // 64)):
            v = 0.8 * v - h["lr"] * 0.05 * w
            w += v
    np.testing.assert_allclose(mc.to_numpy(head["fcb"].params["weight"]), 2.0 * w, rtol=1e-4)
    assert abs(w - 1) > 0.1
    first, _ = make(2, tmp_path / "resumed")
    first.run()
    again, head_again = make(4, tmp_path / "resumed")
    resumed = again.run(resume=True).summary["history"]
    assert [h["lr"] for h in resumed] == [h["lr"] for h in history]
    np.testing.assert_allclose(mc.to_numpy(head_again["fcb"].params["weight"]),
                               mc.to_numpy(head["fcb"].params["weight"]), rtol=1e-6)


def test_reweighting_weighs_each_background_patch_by_the_fraction(tmp_path, monkeypatch):
    """``balance="reweight"``: every non-discarded training patch each epoch, a background one
    with weight ``background_fraction`` in the loss, an object one with weight 1."""
    import minicnn.training as training

    voc = boxes_tree(tmp_path / "voc", CLASSES, n_trainval=6, n_test=2)
    run = Transfer(voc, 2007, source_like(), tmp_path / "out",
                   TransferSettings(hidden=4, val_fraction=0.0, scales=(1.0, 1.5, 2.25), stride_fraction=0.5,
                                    train=TrainSettings(epochs=1, batch_size=32, balance="reweight",
                                                        background_fraction=0.25)),
                   classes=CLASSES, log=lambda *a: None)
    seen, loss = [], training.softmax_cross_entropy

    def recording_loss(logits, labels, weights=None):
        seen.append((np.asarray(labels).copy(), mc.to_numpy(weights).copy()))
        return loss(logits, labels, weights)

    monkeypatch.setattr(training, "softmax_cross_entropy", recording_loss)
    n = len(run.patches.patch_labels)
    with_head(run, linear_head(np.eye(4)), np.zeros((n, 4), np.float32)).run()
    labels = np.concatenate([lab for lab, _ in seen])
    weights = np.concatenate([w for _, w in seen])
    train_labels = run.patches.patch_labels[run.patches.patches_of("train")]
    assert len(labels) == int((train_labels >= 0).sum()) and (labels >= 0).all()
    np.testing.assert_array_equal(weights, np.where(labels == run.background, 0.25, 1.0).astype(np.float32))
    assert (labels == run.background).any() and (labels != run.background).any()


def test_scoring_is_the_evaluation_mode_forward_of_the_trained_layers(tmp_path):
    """The test probabilities a frozen run returns are softmax of FCa/FCb in evaluation mode
    (dropout off) on the cached features of the test patches."""
    from minicnn.losses import softmax

    voc = boxes_tree(tmp_path / "voc", CLASSES, n_trainval=4, n_test=3)
    run = Transfer(voc, 2007, source_like(), tmp_path / "out",
                   TransferSettings(hidden=16, dropout=0.5, val_fraction=0.0, scales=(1.0, 2.0),
                                    stride_fraction=0.5, train=TrainSettings(epochs=1, batch_size=32)),
                   classes=CLASSES, log=lambda *a: None)
    result = run.run()
    trained, inputs_of = run.network_inputs()  # the same cache, reused
    x = inputs_of(run.patches.items["test"].patches)
    expected = mc.to_numpy(softmax(trained.forward(mc.asarray(x), train=False)))
    np.testing.assert_allclose(result.test_probs, expected, rtol=1e-5, atol=1e-7)


def test_scratch_starts_from_fresh_weights_and_finetune_from_the_source():
    from minicnn.transfer.pipeline import build_network

    source = source_like()
    for variant, copied in (("frozen", True), ("finetune", True), ("scratch", False)):
        net = build_network(source, 4, TransferSettings(variant=variant, hidden=4))
        for name in ("conv1", "conv5", "fc7"):
            same = np.array_equal(mc.to_numpy(net[name].params["weight"]),
                                  mc.to_numpy(source[name].params["weight"]))
            assert same == copied, (variant, name)


def test_the_feature_cache_follows_the_preprocessing(tmp_path):
    """Another mean, std or channel order makes other features: the cache is rebuilt, not
    reused, and its rows are those of the new preprocessing."""
    voc = boxes_tree(tmp_path / "voc", CLASSES, n_trainval=2, n_test=1)
    source = source_like()

    def inputs(meta):
        source.meta.update(meta)
        run = Transfer(voc, 2007, source, tmp_path / "out",
                       TransferSettings(hidden=4, val_fraction=0.0, scales=(1.0,), stride_fraction=0.5),
                       classes=CLASSES, cache_root=tmp_path / "cache", log=lambda *a: None)
        return run.network_inputs()[1](np.arange(len(run.patches.patch_labels)))

    first = inputs({})
    assert not np.allclose(inputs({"mean": [0.0, 0.0, 0.0]}), first)
    assert not np.allclose(inputs({"channel_order": "BGR"}), inputs({"channel_order": "RGB"}))
    assert len(list((tmp_path / "cache").iterdir())) == 3
