"""The method on a source network other than AlexNet: a small branching network (fire modules,
a 1x1 classifier convolution, global average pooling) with a BGR, mean/std meta, through the
cut, the update list, the network's preprocessing and every variant."""

import numpy as np
import pytest

import minicnn as mc
from minicnn import layers as L
from minicnn.data.synthetic import DataConfig, generate
from minicnn.models import fire, transfer_net
from minicnn.net import Sequential
from minicnn.transfer.pipeline import Transfer, TransferSettings, cache_cut
from minicnn.transfer.train import TrainSettings

BGR_META = dict(channel_order="BGR", mean=[104.0, 117.0, 123.0], std=[58.0, 57.0, 57.5])


def branching_source(classes=6):
    """A SqueezeNet in miniature, 32-pixel inputs: conv1, pool1, fire2, fire3, drop, conv10,
    its ReLU, the average over the map, flatten."""
    net = Sequential([L.Conv2D(3, 8, 3, stride=2), L.ReLU(), L.MaxPool2D(3, 2, ceil_mode=True),
                      fire(8, 4, 6), fire(12, 4, 8), L.Dropout(0.5), L.Conv2D(16, classes, 1, padding=1),
                      L.ReLU(), L.AvgPool2D(9, stride=1), L.Flatten()],
                     ["conv1", "relu_conv1", "pool1", "fire2", "fire3", "drop9", "conv10", "relu_conv10",
                      "pool10", "flatten"], input_shape=(3, 32, 32), meta=BGR_META)
    for _, layer in net.named_layers():
        if "bias" in layer.params:
            layer.params["bias"] = np.random.uniform(0.0, 0.2, layer.params["bias"].shape)
    return net


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    root = tmp_path_factory.mktemp("anysource")
    generate(root, DataConfig(source_per_class=1, trainval=8, test=5), workers=1)
    return root / "VOCdevkit"


def test_the_cut_defaults_per_family_and_its_map_is_averaged_over_space():
    mc.seed(0)
    source = branching_source()
    net = transfer_net(source, 4)
    assert net.meta["cut"] == "fire3" and net.meta["update"] == ["fire3"]
    # fire3, then drop9 (no parameters), then the map averaged: 16 features
    assert net.names[net.names.index("fire3"):net.names.index("fca")] == ["fire3", "drop9", "cut_pool",
                                                                          "cut_flatten"]
    assert net["fca"].in_features == 16
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    prefix = Sequential(net.layers[:net.names.index("cut_pool")])
    expected = prefix.forward(x, train=False).mean(axis=(2, 3))
    features = Sequential(net.layers[:net.names.index("fca")]).forward(x, train=False)
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)
    # conv10's output, its ReLU and pooling: already a vector of 6
    net = transfer_net(source, 4, cut="conv10")
    assert net["fca"].in_features == 6 and "cut_pool" not in net.names
    alex = transfer_net(mc.models.tiny_alexnet(), 4)
    assert alex.meta["cut"] == "fc7" and alex.meta["update"] == ["fc6", "fc7"]
    assert alex.names[alex.names.index("fca") - 1] == "drop7"  # AlexNet's transfer network unchanged
    with pytest.raises(ValueError, match="'fire9.squeeze1x1' to update"):
        transfer_net(source, 4, update=["fire9.squeeze1x1"])


def test_update_top_trains_the_dropouts_above_its_lowest_layer():
    # update-fc67 trains fc6 and fc7 with their dropouts active (a frozen dropout is the
    # identity); everything below fc6 stays frozen
    from minicnn.transfer.pipeline import build_network

    mc.seed(0)
    net = build_network(mc.models.tiny_alexnet(), 4, TransferSettings(variant="update-fc67"))
    assert [n for n, layer in zip(net.names, net.layers, strict=True) if not layer.frozen] == \
        net.names[net.names.index("fc6"):]
    net = build_network(branching_source(), 4, TransferSettings(variant="update-top", update=("fire3",)))
    assert not net["drop9"].frozen and net["fire2"].frozen and net["pool1"].frozen


def test_update_option_reads_names_with_spaces_and_refuses_an_empty_list():
    from minicnn.cli import build_parser
    from minicnn.commands.transfer import settings_from_args
    from minicnn.errors import InputError

    def settings(update):
        args = build_parser().parse_args(["transfer", "--voc", "v", "--weights", "w.npz", "--out", "o",
                                          "--variant", "update-top", "--update", update])
        return settings_from_args(args)

    assert settings("fc6, fc7").update == ("fc6", "fc7")
    with pytest.raises(InputError, match="--update names at least one layer"):
        settings(" , ")


def run_of(voc, out, source, **settings):
    train = TrainSettings(epochs=1, batch_size=32, seed=1)
    s = TransferSettings(hidden=8, stride_fraction=0.5, scales=(1.0, 2.0), train=train, **settings)
    return Transfer(voc, 2007, source, out, s, log=lambda *a: None)


@pytest.mark.parametrize("cut, width", [("fire3", 16), ("fire2", 12), ("conv10", 6)])
def test_the_cut_reaches_the_cached_features_with_the_networks_bgr_preprocessing(voc, tmp_path, cut, width):
    """The cache holds the cut's features of patches rendered in the network's channel order,
    mean and std: each row against the prefix run on patches prepared by hand."""
    mc.set_backend("numpy")
    mc.seed(0)
    run = run_of(voc, tmp_path, branching_source(), cut=cut)
    trained, inputs_of = run.network_inputs()
    assert trained.names[0] == "fca"
    # planning the cache left the layers their names (error messages name them)
    assert all(layer.name == name for name, layer in zip(run.net.names, run.net.layers, strict=True))
    p = run.patches
    rows = inputs_of(np.arange(p.offsets[1]))  # the first image's patches
    assert rows.shape == (p.offsets[1], width)
    from minicnn.transfer.patchset import PatchRenderer

    raw = PatchRenderer(p, 32, run.preprocessing).image_patches(0, p.patch_boxes[:p.offsets[1]], raw=True)
    x = raw.astype(np.float32)[:, ::-1]  # RGB -> BGR, by hand
    mean, std = (np.float32(BGR_META[key]).reshape(1, 3, 1, 1) for key in ("mean", "std"))
    x = (x - mean) / std
    prefix = Sequential(run.net.layers[:run.net.names.index("fca")])
    np.testing.assert_allclose(rows, prefix.forward(np.ascontiguousarray(x), train=False),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant, update, trains", [
    ("frozen", None, {"fca", "fcb"}),
    ("whole-image", None, {"fca", "fcb"}),
    ("update-top", None, {"fire3.squeeze1x1", "fire3.expand1x1", "fire3.expand3x3", "fca", "fcb"}),
    ("update-top", ("fire3.expand3x3", "fire2"), {"fire3.expand3x3", "fire2.squeeze1x1", "fire2.expand1x1",
                                                 "fire2.expand3x3", "fca", "fcb"}),
    ("finetune", None, None),
    ("scratch", None, None),
])
def test_every_variant_trains_its_layers_of_a_branching_source(voc, tmp_path, variant, update, trains):
    mc.set_backend("numpy")
    mc.seed(0)
    source = branching_source()
    run = run_of(voc, tmp_path, source, variant=variant, update=update)
    before = {n: mc.to_numpy(p).copy() for n, p, _ in run.net.named_params()}
    result = run.run()
    assert np.isfinite(result.summary["map"])
    moved = {n.rsplit(".", 1)[0] for n, p, _ in run.net.named_params()
             if not np.array_equal(before[n], mc.to_numpy(p))}
    layers = {n.rsplit(".", 1)[0] for n in before}
    assert moved == (trains or layers)
    if variant == "scratch":  # a fresh start, not the source's weights
        assert not np.array_equal(before["conv1.weight"], mc.to_numpy(source["conv1"].params["weight"]))
    if variant == "update-top":  # cached below the lowest updated block
        assert cache_cut(run.net, variant) == ("pool1" if update else "fire2") and \
            "drop9" in run.net.names
    assert result.net.meta["cut"] == "fire3"


def test_a_cut_or_update_the_source_lacks_is_refused_naming_the_option(voc, tmp_path):
    from minicnn.errors import InputError

    with pytest.raises(InputError, match="--cut: .*no layer 'fc7'"):
        run_of(voc, tmp_path, branching_source(), cut="fc7")
    with pytest.raises(InputError, match="--update: .*'fc6'"):
        run_of(voc, tmp_path, branching_source(), variant="update-fc67")


@pytest.mark.parametrize("family, cut, width", [
    (lambda: mc.models.squeezenet("1.0"), "fire9", 512),
    (lambda: mc.models.squeezenet("1.1"), "fire9", 512),
    (mc.models.resnet18, "layer4", 512),
    (mc.models.googlenet, "inception_5b", 1024),
    (mc.models.mobilenet_v1, "conv_13_pointwise", 1024),
])
def test_each_family_has_a_default_cut_below_its_classifier(family, cut, width):
    mc.seed(0)
    net = transfer_net(family(), 21)
    assert net.meta["cut"] == cut and net["fca"].in_features == width
    # the map averaged over space: by the family's own pool, or cut_pool (SqueezeNet's fire9)
    assert isinstance(net[net.names.index("fca") - 1], L.Flatten)


def test_a_cut_takes_the_batch_normalisation_after_it():
    mc.seed(0)
    net = transfer_net(mc.models.resnet18(input_size=64), 21, cut="conv1")
    assert net.names[:net.names.index("cut_pool")] == ["conv1", "bn1", "relu", "maxpool"]
    assert net["fca"].in_features == 64
