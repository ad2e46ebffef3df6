"""The Join layer and nested blocks: results against branches run by hand, float64 gradient
checks, names, freezing, save/load, summary, the cpu and cuda backends, PyTorch parity of
SqueezeNet 1.0 and 1.1."""

import numpy as np
import pytest

import minicnn as mc
from minicnn import layers as L
from minicnn.gradcheck import check_layer, check_net, kinkless_input
from minicnn.net import clone_layer

F64 = np.float64


def conv_branch(cin, cout, k, names, dtype=F64):
    return mc.Sequential([L.Conv2D(cin, cout, k, padding=k // 2, dtype=dtype), L.ReLU()], names)


def fire_block(cin=3, squeeze=4, expand=3, dtype=F64, dropout=None):
    """A fire module; with ``dropout``, the 3x3 branch ends in a Dropout."""
    e3 = conv_branch(squeeze, expand, 3, ["expand3x3", "relu_expand3x3"], dtype)
    if dropout is not None:
        e3 = mc.Sequential(list(e3.layers) + [L.Dropout(dropout)], list(e3.names) + ["drop3x3"])
    return mc.Sequential([L.Conv2D(cin, squeeze, 1, dtype=dtype), L.ReLU(),
                          mc.Join([conv_branch(squeeze, expand, 1, ["expand1x1", "relu_expand1x1"], dtype),
                                   e3], "concat")],
                         ["squeeze1x1", "relu_squeeze1x1", "concat"])


def residual_block(channels=3, dtype=F64):
    main = mc.Sequential([L.Conv2D(channels, channels, 3, padding=1, dtype=dtype), L.ReLU(),
                          L.Conv2D(channels, channels, 3, padding=1, dtype=dtype)],
                         ["conv1", "relu1", "conv2"])
    return mc.Sequential([mc.Join([main, None], "sum"), L.ReLU()], ["add", "relu"])


def small_net(dtype=F64, classes=5, dropout=None):
    """conv, a fire block, a residual block, a pool, a classifier; biases random, so that no
    ReLU sits exactly at its kink (a 1x1 convolution of zeros with a zero bias would)."""
    net = mc.Sequential([L.Conv2D(3, 3, 3, padding=1, dtype=dtype), L.ReLU(),
                          fire_block(3, 4, 3, dtype, dropout), residual_block(6, dtype),
                          L.MaxPool2D(2), L.Flatten(), L.Linear(6 * 3 * 3, classes, dtype=dtype)],
                         ["conv1", "relu1", "fire2", "res3", "pool3", "flatten", "fc"], input_shape=(3, 6, 6))
    for _, layer in net.named_layers():
        if "bias" in layer.params:
            layer.params["bias"] = np.random.uniform(0.05, 0.3, layer.params["bias"].shape)
    return net


def test_concat_puts_each_branch_in_its_channel_slice_and_sum_adds(rng):
    mc.seed(0)
    a, b = conv_branch(3, 2, 1, ["a", "ra"]), conv_branch(3, 4, 3, ["b", "rb"])
    x = rng.standard_normal((2, 3, 5, 5))
    ya, yb = a.forward(x, train=False), b.forward(x, train=False)
    y = mc.Join([a, b], "concat").forward(x, train=False)
    np.testing.assert_array_equal(y, np.concatenate([ya, yb], axis=1))
    y = mc.Join([a, None, b], "concat").forward(x, train=False)
    np.testing.assert_array_equal(y, np.concatenate([ya, x, yb], axis=1))
    c = conv_branch(3, 3, 3, ["c", "rc"])
    y = mc.Join([c, None], "sum").forward(x, train=False)
    np.testing.assert_allclose(y, c.forward(x, train=False) + x, rtol=1e-15)


def test_backward_hands_each_branch_its_slice_and_adds_the_input_gradients(rng):
    """The join's gradients against each branch's own backward on its part of dy."""
    mc.seed(0)
    a, b = conv_branch(3, 2, 1, ["a", "ra"]), conv_branch(3, 4, 3, ["b", "rb"])
    twins = [clone_layer(a), clone_layer(b)]
    x = kinkless_input((2, 3, 4, 4), rng)
    dy = rng.standard_normal((2, 2 + 3 + 4, 4, 4))
    join = mc.Join([a, None, b], "concat")
    join.forward(x)
    join.need_input_grad = True
    dx = join.backward(dy)
    expected = dy[:, 2:5].copy()
    for twin, part in zip(twins, (dy[:, :2], dy[:, 5:]), strict=True):
        twin.forward(x)
        expected += twin.backward(np.ascontiguousarray(part), input_grad=True)
    np.testing.assert_allclose(dx, expected, rtol=1e-13)
    for mine, twin in zip((a, b), twins, strict=True):
        for (_, _, g), (_, _, h) in zip(mine.named_params(), twin.named_params(), strict=True):
            np.testing.assert_allclose(g, h, rtol=1e-13)


@pytest.mark.parametrize("mode", ["concat", "sum"])
def test_join_gradients_against_finite_differences(mode, rng):
    mc.seed(1)
    width = 3 if mode == "sum" else 2
    join = mc.Join([conv_branch(3, width, 3, ["a", "ra"]), None,
                    mc.Sequential([L.Conv2D(3, 3 if mode == "sum" else 4, 1, dtype=F64)], ["b"])], mode)
    outer = mc.Sequential([join], ["join"])  # a Join is checked where a network holds it
    x = kinkless_input((2, 3, 4, 4), rng)
    result = check_layer(outer, x, mode="exhaustive")
    assert result.passed(), result.table()


def test_whole_network_gradients_with_frozen_layers_and_dropout_in_branches(rng):
    mc.seed(2)
    net = small_net(dropout=0.3)
    net.freeze(["fire2.expand1x1"])
    x = kinkless_input((2, 3, 6, 6), rng)
    result = check_net(net, x, np.array([1, 3]), mode="exhaustive", eps=1e-4)
    assert result.passed(), result.table()
    assert "fire2.expand3x3.weight" in result.errors and "res3.conv1.weight" in result.errors
    assert not any(name.startswith("fire2.expand1x1.") for name in result.errors)  # frozen


def test_a_dropped_branch_gradient_is_caught_by_the_gradient_check(rng):
    """Break the join on purpose: the input gradient of the fire module's 3x3 branch lost."""
    mc.seed(3)
    net = small_net()
    x = kinkless_input((2, 3, 6, 6), rng)
    assert check_net(net, x, np.array([0, 2]), mode="exhaustive", eps=1e-4).passed()
    branch = net["fire2"]["concat"].branches[1]
    original = branch.backward
    branch.backward = lambda g, input_grad=None: (lambda dx: None if dx is None else dx * 0)(
        original(g, input_grad=input_grad))
    result = check_net(net, x, np.array([0, 2]), mode="exhaustive", eps=1e-4)
    assert not result.passed() and result.errors["fire2.squeeze1x1.weight"] > 1e-2


def test_dotted_names_freezing_lookup_and_sgd_reach_layers_in_branches(rng):
    mc.seed(4)
    net = small_net(F64)
    names = [n for n, _, _ in net.named_params()]
    assert names[:6] == ["conv1.weight", "conv1.bias", "fire2.squeeze1x1.weight", "fire2.squeeze1x1.bias",
                         "fire2.expand1x1.weight", "fire2.expand1x1.bias"]
    assert "res3.conv2.weight" in names
    assert net["fire2.expand3x3"] is net["fire2"]["concat"].branches[1]["expand3x3"]
    with pytest.raises(KeyError, match="expand5x5"):
        net["fire2.expand5x5"]
    net.freeze(["fire2"])
    assert net["fire2"].frozen and net["fire2.expand3x3"].frozen and not net["res3.conv1"].frozen
    net.freeze(["fire2.expand3x3"], frozen=False)
    assert not net["fire2"].frozen and net["fire2.expand1x1"].frozen
    before = {n: mc.to_numpy(p).copy() for n, p, _ in net.named_params()}
    opt = mc.optim.SGD(net, lr=0.1)
    x = rng.standard_normal((2, 3, 6, 6))
    _, d = mc.losses.softmax_cross_entropy(net.forward(x), np.array([0, 1]))
    net.backward(d)
    opt.step()
    moved = {n for n, p, _ in net.named_params() if not np.array_equal(before[n], mc.to_numpy(p))}
    assert "fire2.expand3x3.weight" in moved and "res3.conv1.weight" in moved
    assert not moved & {"fire2.expand1x1.weight", "fire2.squeeze1x1.weight"}


def test_names_must_be_unique_across_a_joins_branches():
    a = mc.Sequential([L.ReLU()], ["relu"])
    b = mc.Sequential([L.ReLU()], ["relu"])
    with pytest.raises(ValueError, match="repeated: relu"):
        mc.Sequential([mc.Join([a, b])], ["concat"])
    with pytest.raises(ValueError, match="hold no '.'"):
        mc.Sequential([L.ReLU()], ["a.b"])


def test_save_load_round_trips_blocks_joins_and_frozen_flags(tmp_path, rng):
    mc.seed(5)
    net = small_net(np.float32)
    net.freeze(["fire2.expand1x1", "res3"])
    net.save(tmp_path / "net.npz")
    back = mc.Sequential.load(tmp_path / "net.npz")
    assert back.architecture() == net.architecture()
    assert back["fire2.expand1x1"].frozen and back["res3.conv2"].frozen and not back["fire2.expand3x3"].frozen
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    np.testing.assert_array_equal(back.forward(x, train=False), net.forward(x, train=False))


def test_summary_indents_blocks_and_branches_with_their_shapes_and_counts():
    mc.seed(6)
    text = mc.models.squeezenet("1.0").summary(file=open("/dev/null", "w"))
    lines = text.splitlines()
    row = next(line for line in lines if line.startswith("    [2] expand3x3"))
    assert "64x55x55" in row and "9,280" in row
    assert any(line.startswith("  concat") and "Join (concat)" in line and "128x55x55" in line
               for line in lines)
    total = next(line for line in lines if line.startswith("total"))
    assert "1,248,424" in total  # SqueezeNet v1.0's published parameter count


@pytest.mark.parametrize("version, params, side", [("1.0", 1_248_424, 15), ("1.1", 1_235_496, 14)])
def test_squeezenet_matches_pytorch_in_float64(version, params, side, rng):
    """The Caffe deploy graph (ceil-mode pools, conv10's padding, global average pool) against
    the same layers in PyTorch, float64, random weights."""
    torch = pytest.importorskip("torch")
    from minicnn.torch_twin import torch_model

    mc.seed(7)
    net = mc.models.squeezenet(version, dtype=F64)
    assert net.num_params() == params
    assert net.shapes()[net.names.index("relu_conv10")] == (1000, side, side)
    for _, layer in net.named_layers():  # weights large enough that every layer matters
        for key, value in layer.params.items():
            layer.params[key] = rng.standard_normal(value.shape) * (0.1 if key == "bias" else 0.05)
    x = rng.standard_normal((2, 3, 227, 227))
    ours = net.forward(x, train=False, keep_for_backward=False)
    model = torch_model(net).double().eval()
    with torch.no_grad():
        theirs = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9 * np.abs(theirs).max())


def test_cpu_backend_equals_numpy_on_a_branching_network(rng):
    mc.set_backend("numpy")
    mc.seed(8)
    net = small_net(np.float32)
    twin = clone_layer(net)
    x = rng.standard_normal((3, 3, 6, 6)).astype(np.float32)
    labels = np.array([0, 1, 4])
    grads = {}
    for name, model in (("numpy", net), ("cpu", twin)):
        mc.set_backend(name)
        model.to(name)
        _, d = mc.losses.softmax_cross_entropy(model.forward(mc.asarray(x), train=False), labels)
        dx = model.backward(d, input_grad=True)
        grads[name] = [mc.to_numpy(dx)] + [mc.to_numpy(g) for _, _, g in model.named_params()]
    mc.set_backend("numpy")
    for a, b in zip(grads["numpy"], grads["cpu"], strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * np.abs(a).max())


def test_cuda_backend_equals_numpy_on_a_branching_network(rng):
    from cuda_support import assert_close, cuda_backend

    mc.set_backend("numpy")
    mc.seed(9)
    net = small_net(F64)
    x = rng.standard_normal((2, 3, 6, 6))
    labels = np.array([2, 3])
    _, d = mc.losses.softmax_cross_entropy(net.forward(x, train=False), labels)
    dx = net.backward(d, input_grad=True)
    expected = [dx] + [mc.to_numpy(g).copy() for _, _, g in net.named_params()]
    cuda_backend()
    try:
        net.to("cuda")
        _, d = mc.losses.softmax_cross_entropy(net.forward(mc.asarray(x), train=False), labels)
        got = [net.backward(d, input_grad=True)] + [g for _, _, g in net.named_params()]
        for a, b in zip(got, expected, strict=True):
            assert_close(a, b)
    finally:
        mc.set_backend("numpy")
