import numpy as np
import pytest

import minicnn as mc

EXPECTED = {
    "conv1": (96, 55, 55), "pool1": (96, 27, 27), "conv2": (256, 27, 27), "pool2": (256, 13, 13),
    "conv3": (384, 13, 13), "conv4": (384, 13, 13), "conv5": (256, 13, 13), "pool5": (256, 6, 6),
    "flatten": (9216,), "fc6": (4096,), "fc7": (4096,), "fc8": (1000,),
}


@pytest.mark.parametrize("size", [227, 224])
def test_alexnet_layer_sizes(size):
    net = mc.models.alexnet(1000, input_size=size, groups=2)
    shapes = dict(zip(net.names, net.shapes(), strict=True))
    for name, shape in EXPECTED.items():
        assert shapes[name] == shape, name


def test_alexnet_weight_shapes_with_and_without_groups():
    net = mc.models.alexnet(1000, groups=2)
    assert net["conv1"].params["weight"].shape == (96, 3, 11, 11)
    assert net["conv2"].params["weight"].shape == (256, 48, 5, 5)
    assert net["conv3"].params["weight"].shape == (384, 256, 3, 3)
    assert net["conv4"].params["weight"].shape == (384, 192, 3, 3)
    assert net["conv5"].params["weight"].shape == (256, 192, 3, 3)
    assert net["fc6"].params["weight"].shape == (4096, 9216)
    one = mc.models.alexnet(10, groups=1)
    assert one["conv2"].params["weight"].shape == (256, 96, 5, 5)
    assert one["fc8"].params["weight"].shape == (10, 4096)


def test_alexnet_rejects_other_sizes():
    with pytest.raises(ValueError, match="224 or 227"):
        mc.models.alexnet(10, input_size=200)


def test_small_alexnet_runs(rng):
    net = mc.models.small_alexnet(7, input_size=32)
    y = net.forward(rng.standard_normal((2, 3, 32, 32)).astype(np.float32), train=False)
    assert y.shape == (2, 7)


def test_transfer_net_copies_and_freezes(rng):
    src = mc.models.small_alexnet(7, input_size=32)
    net = mc.models.transfer_net(src, num_classes=5, hidden=64)
    assert net.names[-4:] == ["fca", "relua", "dropa", "fcb"]
    assert "fc8" not in net.names
    for name in ["conv1", "conv5", "fc6", "fc7"]:
        assert net[name].frozen
        np.testing.assert_array_equal(net[name].params["weight"], src[name].params["weight"])
        assert net[name].params["weight"] is not src[name].params["weight"]
    assert not net["fca"].frozen and net["fcb"].params["weight"].shape == (5, 64)
    # frozen dropouts are the identity even in training mode: FC7 features are constants
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    fc7_a = net.forward(x, train=True)
    net.forward(x, train=True)
    assert fc7_a.shape == (2, 5)
    end = net.names.index("drop7") + 1
    up_to_fc7 = mc.Sequential(net.layers[:end], net.names[:end])
    np.testing.assert_array_equal(up_to_fc7.forward(x, train=True), up_to_fc7.forward(x, train=True))


def test_transfer_net_needs_a_layer_below_the_classifier_or_a_cut_it_has():
    from minicnn import layers as L

    with pytest.raises(ValueError, match="no layer below its classifier"):
        mc.models.transfer_net(mc.Sequential([L.ReLU()], names=["relu"], input_shape=(3, 4, 4)), 3)
    with pytest.raises(ValueError, match="no layer 'fc9' to cut at"):
        mc.models.transfer_net(mc.models.tiny_alexnet(), 3, cut="fc9")
