"""ONNX graphs that branch and the operators of issue 27, built with onnx.helper, against
onnxruntime: a fire module (Concat), residual blocks (Add) with batch normalisation folded
into the convolutions (exact to float32 rounding against the unfolded network) or kept, a
MobileNet block (depthwise Conv, Clip, SAME_UPPER/SAME_LOWER), dilations and pads per side,
Flatten axes, a feature-vector network (Gemm, MatMul, Relu, Softmax), Dropout's mask as a
second output; and to_onnx of branching networks, run by onnxruntime and imported back."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import minicnn as mc  # noqa: E402
from minicnn import interop  # noqa: E402
from minicnn import layers as L  # noqa: E402
from minicnn.errors import InputError  # noqa: E402

RTOL = 1e-4


def relative_error(actual, expected):
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def ort_run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {model.graph.input[0].name: x})[0]


class G:
    """Nodes and initializers; every method returns its output tensor's name."""

    def __init__(self, rng):
        self.rng, self.nodes, self.inits, self.count = rng, [], [], 0

    def const(self, value, name=None):
        self.count += 1
        name = name or f"c{self.count}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def node(self, op, inputs, name=None, outputs=1, **attrs):
        self.count += 1
        name = name or f"{op.lower()}{self.count}"
        outs = [f"{name}.out"] + [f"{name}.out{i}" for i in range(1, outputs)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs[0] if outputs == 1 else outs

    def conv(self, x, cin, cout, k, name=None, group=1, bias=True, **attrs):
        w = self.rng.standard_normal((cout, cin // group, k, k)) * np.sqrt(2.0 / (cin // group * k * k))
        inputs = [x, self.const(w)] + ([self.const(self.rng.uniform(-0.1, 0.1, cout))] if bias else [])
        attrs.setdefault("pads", [k // 2] * 4) if "auto_pad" not in attrs else None
        return self.node("Conv", inputs, name, kernel_shape=[k, k], group=group, **attrs)

    def bn(self, x, c, name=None, **attrs):
        values = [self.rng.uniform(0.5, 2, c), self.rng.standard_normal(c) * 0.1,
                  self.rng.standard_normal(c) * 0.1, self.rng.uniform(0.5, 2, c)]
        return self.node("BatchNormalization", [x, *(self.const(v) for v in values)], name,
                         epsilon=1e-3, **attrs)

    def model(self, x_shape, out, opset=13, outputs=None, out_shape=None):
        graph = helper.make_graph(
            self.nodes, "g", [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", *x_shape[1:]])],
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, out_shape) for o in (outputs or [out])],
            self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def import_model(model, tmp_path, **options):
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return interop.from_onnx(path, **options)


def check(model, tmp_path, x_shape, rng, tol=RTOL, **options):
    net = import_model(model, tmp_path, **options)
    x = rng.standard_normal(x_shape).astype(np.float32)
    err = relative_error(net.forward(x, train=False), ort_run(model, x))
    assert err < tol, err
    return net


def fire(g, x, cin, squeeze, expand, prefix):
    s = g.node("Relu", [g.conv(x, cin, squeeze, 1, f"{prefix}/squeeze1x1")])
    e1 = g.node("Relu", [g.conv(s, squeeze, expand, 1, f"{prefix}/expand1x1")])
    e3 = g.node("Relu", [g.conv(s, squeeze, expand, 3, f"{prefix}/expand3x3")])
    return g.node("Concat", [e1, e3], f"{prefix}/concat", axis=1)


def test_fire_modules_import_as_joins_and_equal_onnxruntime(rng, tmp_path):
    g = G(rng)
    x = g.node("Relu", [g.conv("data", 3, 8, 3, "conv1", strides=[2, 2])])
    x = fire(g, x, 8, 4, 6, "fire2")
    x = fire(g, x, 12, 4, 6, "fire3")
    out = g.node("GlobalAveragePool", [g.conv(x, 12, 5, 1, "conv10")])
    model = g.model([1, 3, 15, 15], g.node("Flatten", [out]))
    net = check(model, tmp_path, (2, 3, 15, 15), rng)
    joins = [layer for layer in net.layers if isinstance(layer, L.Join)]
    assert len(joins) == 2 and all(j.mode == "concat" for j in joins)
    assert [len(b.layers) for b in joins[0].branches] == [2, 2]
    # the branches in the order of the Concat's inputs: a swap would put channels in the wrong slice
    assert joins[0].branches[0].layers[0].kernel_size == (1, 1)
    assert joins[0].branches[1].layers[0].kernel_size == (3, 3)


def residual_block(g, x, cin, cout, stride, prefix, shortcut_conv):
    y = g.node("Relu", [g.bn(g.conv(x, cin, cout, 3, f"{prefix}/conv1", bias=False, strides=[stride] * 2),
                             cout)])
    y = g.bn(g.conv(y, cout, cout, 3, f"{prefix}/conv2", bias=False), cout)
    short = x
    if shortcut_conv:
        short = g.bn(g.conv(x, cin, cout, 1, f"{prefix}/down", bias=False, strides=[stride] * 2,
                            pads=[0] * 4), cout)
    return g.node("Relu", [g.node("Add", [y, short], f"{prefix}/add")])


def resnet_graph(rng):
    g = G(rng)
    x = g.node("Relu", [g.bn(g.conv("data", 3, 8, 3, "conv1", bias=False), 8)])
    x = residual_block(g, x, 8, 8, 1, "layer1", False)
    x = residual_block(g, x, 8, 16, 2, "layer2", True)
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x])])
    w = g.const(rng.standard_normal((5, 16)) * 0.3)
    return g.model([1, 3, 12, 12], g.node("Gemm", [x, w, g.const(np.zeros(5))], "fc", transB=1))


def test_residual_blocks_fold_batch_norm_and_equal_onnxruntime(rng, tmp_path):
    model = resnet_graph(rng)
    net = check(model, tmp_path, (2, 3, 12, 12), rng)
    kinds = [type(layer).__name__ for _, layer in net.named_layers()]
    assert "BatchNorm2D" not in kinds and kinds.count("Conv2D") == 6
    joins = [layer for layer in net.layers if isinstance(layer, L.Join)]
    assert [j.mode for j in joins] == ["sum", "sum"]
    assert joins[0].branches[1] is None and joins[1].branches[1] is not None  # identity, projection
    assert any("folded into the convolution" in note for note in net.meta["import_notes"])


def test_batch_norm_folding_is_exact_to_float32_rounding(rng, tmp_path):
    """The folded float32 import against the unfolded network (Conv2D + BatchNorm2D) in float64."""
    g = G(rng)
    model = g.model([1, 3, 6, 6], g.bn(g.conv("data", 3, 4, 3, "conv", bias=True), 4, "bn"))
    folded = import_model(model, tmp_path)
    inits = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    names = [i for i in model.graph.node[0].input[1:]] + [i for i in model.graph.node[1].input[1:]]
    w, b, gamma, beta, mean, var = (inits[n] for n in names)
    conv, bn = L.Conv2D(3, 4, 3, padding=1, dtype=np.float64), L.BatchNorm2D(4, eps=1e-3, dtype=np.float64)
    conv.params["weight"], conv.params["bias"] = w, b
    bn.params["weight"], bn.params["bias"] = gamma, beta
    bn.buffers["running_mean"], bn.buffers["running_var"] = mean, var
    x = rng.standard_normal((2, 3, 6, 6))
    exact = bn.forward(conv.forward(x, train=False), train=False)
    assert relative_error(folded.forward(x.astype(np.float32), train=False), exact) < 2e-6
    folded64 = import_model(model, tmp_path, dtype=np.float64)  # the fold itself: float64 exact
    assert relative_error(folded64.forward(x, train=False), exact) < 1e-13


def test_batch_norm_without_a_convolution_before_is_a_layer(rng, tmp_path):
    g = G(rng)
    x = g.bn(g.node("Relu", ["data"]), 3, "bn", momentum=0.8)
    net = check(g.model([1, 3, 5, 5], x), tmp_path, (2, 3, 5, 5), rng)
    assert isinstance(net.layers[-1], L.BatchNorm2D) and net.layers[-1].momentum == pytest.approx(0.2)


def test_mobilenet_block_depthwise_clip_same_padding(rng, tmp_path):
    g = G(rng)
    lo, hi = g.const(np.array(0.0)), g.const(np.array(6.0))
    x = g.conv("data", 3, 8, 3, "conv1", strides=[2, 2], auto_pad="SAME_UPPER")
    x = g.node("Clip", [g.bn(x, 8), lo, hi], "relu6")
    x = g.conv(x, 8, 8, 3, "dw", group=8, auto_pad="SAME_LOWER", strides=[2, 2])
    x = g.node("Clip", [g.bn(x, 8), lo, hi])
    x = g.conv(x, 8, 16, 1, "pw", pads=[0] * 4)
    x = g.node("Clip", [x, "", hi])  # no lower bound
    net = check(g.model([1, 3, 12, 12], x), tmp_path, (2, 3, 12, 12), rng)
    convs = [layer for layer in net.layers if isinstance(layer, L.Conv2D)]
    # 12 -> 6 (one pad, after: UPPER), 6 -> 3 (one pad, before: LOWER)
    assert convs[1].groups == 8 and convs[0].pads == (0, 0, 1, 1) and convs[1].pads == (1, 1, 0, 0)
    assert [(c.min, c.max) for c in net.layers if isinstance(c, L.Clip)] == [(0, 6), (0, 6), (None, 6)]


def test_clip_attributes_before_opset_11(rng, tmp_path):
    g = G(rng)
    model = g.model([1, 2, 4, 4], g.node("Clip", ["data"], min=-0.5, max=0.25), opset=9)
    net = check(model, tmp_path, (2, 2, 4, 4), rng)
    assert (net.layers[0].min, net.layers[0].max) == (-0.5, 0.25)


def test_same_padding_of_a_dilated_conv_equals_pytorch_same(rng, tmp_path):
    # onnxruntime refuses dilations with SAME; PyTorch's padding="same" (stride 1) pads as
    # SAME_UPPER: the odd pad after. Kernel 4, dilations (2, 3): pads 3 + 3 and 4 + 5.
    torch = pytest.importorskip("torch")
    g = G(rng)
    model = g.model([1, 2, 9, 10], g.conv("data", 2, 3, 4, "conv", auto_pad="SAME_UPPER", dilations=[2, 3]))
    net = import_model(model, tmp_path)
    assert net.layers[0].pads == (3, 4, 3, 5)
    w, b = (numpy_helper.to_array(t) for t in model.graph.initializer)
    x = rng.standard_normal((2, 2, 9, 10)).astype(np.float32)
    expected = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), padding="same",
                                          dilation=(2, 3)).numpy()
    assert relative_error(net.forward(x, train=False), expected) < RTOL


@pytest.mark.parametrize("attrs", [dict(dilations=[2, 1], pads=[2, 1, 2, 1]),
                                   dict(pads=[0, 1, 2, 0], strides=[2, 1]),
                                   dict(dilations=[2, 2], pads=[2, 2, 2, 2], strides=[2, 2]),
                                   dict(auto_pad="VALID", strides=[2, 2]),
                                   dict(pads=[1, 0, 0, 2], group=2, dilations=[1, 2]),
                                   dict(auto_pad="SAME_UPPER", strides=[2, 3]),
                                   dict(auto_pad="SAME_LOWER", strides=[3, 2])])
def test_conv_geometry_equals_onnxruntime(rng, tmp_path, attrs):
    g = G(rng)
    attrs = dict(attrs)
    group = attrs.pop("group", 1)
    model = g.model([1, 4, 9, 8], g.conv("data", 4, 6, 3, "conv", group=group, **attrs))
    check(model, tmp_path, (2, 4, 9, 8), rng)


@pytest.mark.parametrize("op,attrs", [
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")),
    ("AveragePool", dict(kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_LOWER"))])
def test_pool_auto_pad_equals_onnxruntime(rng, tmp_path, op, attrs):
    g = G(rng)
    check(g.model([1, 2, 7, 7], g.node(op, ["data"], **attrs)), tmp_path, (2, 2, 7, 7), rng)


@pytest.mark.parametrize("axis,shape", [(2, (1, 1, 3, 4)), (-3, (1, 2, 3, 4)), (1, (1, 5))])
def test_flatten_axes_that_keep_the_batch(rng, tmp_path, axis, shape):
    g = G(rng)
    model = g.model(list(shape), g.node("Flatten", [g.node("Relu", ["data"])], axis=axis))
    check(model, tmp_path, (3, *shape[1:]), rng)


def test_a_feature_vector_network(rng, tmp_path):
    g = G(rng)
    h = g.node("Relu", [g.node("Gemm", ["data", g.const(rng.standard_normal((10, 7))), g.const(np.ones(7))])])
    logits = g.node("Add", [g.node("MatMul", [h, g.const(rng.standard_normal((7, 4)))]), g.const(np.ones(4))],
                    "logits")
    model = g.model([1, 10], g.node("Softmax", [logits], axis=-1))
    net = import_model(model, tmp_path)
    assert net.input_shape == (10,) and net.meta["softmax_dropped"]
    x = rng.standard_normal((5, 10)).astype(np.float32)
    z = net.forward(x, train=False)
    p = np.exp(z - z.max(1, keepdims=True))
    assert relative_error(p / p.sum(1, keepdims=True), ort_run(model, x)) < RTOL


def test_dropout_mask_output_is_left_out_with_a_note(rng, tmp_path):
    g = G(rng)
    y, mask = g.node("Dropout", [g.node("Relu", ["data"]), g.const(np.array(0.3))], "drop", outputs=2)
    model = g.model([1, 3, 4, 4], y, outputs=[y, mask])
    model.graph.output[1].type.tensor_type.elem_type = TensorProto.BOOL
    net = check(model, tmp_path, (2, 3, 4, 4), rng)
    assert any("mask" in note for note in net.meta["import_notes"])
    g = G(rng)
    a = g.node("Relu", ["data"])
    b = g.node("Relu", [a])
    with pytest.raises(InputError, match="graph output .* not what a trained network needs"):
        import_model(g.model([1, 3, 4, 4], b, outputs=[b, a]), tmp_path)


def test_a_nested_join_and_a_join_of_three(rng, tmp_path):
    """Inception-like: one branch splits and rejoins inside; Sum of three, one the identity."""
    g = G(rng)
    x = g.node("Relu", [g.conv("data", 3, 4, 1, "stem", pads=[0] * 4)])
    a = g.conv(x, 4, 2, 1, "a", pads=[0] * 4)
    b0 = g.node("Relu", [g.conv(x, 4, 4, 1, "b0", pads=[0] * 4)])
    b = g.node("Add", [g.conv(b0, 4, 4, 3, "b1"), b0], "b_add")
    cat = g.node("Concat", [a, b, g.node("MaxPool", [x], kernel_shape=[3, 3], pads=[1] * 4, strides=[1, 1])],
                 "cat", axis=1)
    y = g.node("Sum", [cat, g.node("Relu", [cat]), g.node("Clip", [cat, g.const(np.array(-0.1))])], "sum3")
    net = check(g.model([1, 3, 6, 6], y), tmp_path, (2, 3, 6, 6), rng)
    outer = [layer for layer in net.layers if isinstance(layer, L.Join)]
    assert [j.mode for j in outer] == ["concat", "sum"] and len(outer[1].branches) == 3
    assert isinstance(outer[0].branches[1].layers[-1], L.Join)  # nested


def test_export_of_branching_networks_runs_in_onnxruntime_and_imports_back(rng, tmp_path):
    mc.backend.seed(3)
    block = mc.Sequential([
        L.Conv2D(6, 4, 1), L.BatchNorm2D(4), L.Clip(0, 6),
        mc.Join([mc.Sequential([L.Conv2D(4, 4, 1), L.ReLU()], names=["e1", "e1_relu"]),
                 mc.Sequential([L.Conv2D(4, 4, 3, padding=(0, 1, 2, 1), dilation=(1, 1)), L.ReLU()],
                               names=["e3", "e3_relu"])])], names=["squeeze", "bn", "relu6", "concat"])
    net = mc.Sequential([
        L.Conv2D(3, 6, 3, padding=2, dilation=2), L.ReLU(), block,
        mc.Join([mc.Sequential([L.Conv2D(8, 8, 3, padding=1, groups=8), L.BatchNorm2D(8)],
                               names=["dw", "dwbn"]), None], mode="sum"),
        L.AvgPool2D(7), L.Flatten(), L.Linear(8, 3)],
        names=["conv1", "relu1", "fire2", "res", "pool", "flatten", "fc"], input_shape=(3, 7, 7))
    net.forward(rng.standard_normal((4, 3, 7, 7)).astype(np.float32), train=True)  # running statistics
    net.freeze(["fire2.e1"])
    path = tmp_path / "net.onnx"
    model = interop.to_onnx(net, path)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Concat") == 1 and ops.count("Add") == 1 and "BatchNormalization" in ops
    assert "fire2.e3" in [n.name for n in model.graph.node]
    # ONNX's momentum weighs the running statistics (running * m + batch * (1 - m)): 1 - minicnn's 0.1
    bn = next(n for n in model.graph.node if n.name == "fire2.bn")
    assert {a.name: helper.get_attribute_value(a) for a in bn.attribute}["momentum"] == pytest.approx(0.9)
    x = rng.standard_normal((2, 3, 7, 7)).astype(np.float32)
    y = net.forward(x, train=False)
    assert relative_error(ort_run(model, x), y) < RTOL
    back = interop.from_onnx(path)
    assert back.architecture()["layers"] == net.architecture()["layers"]
    np.testing.assert_allclose(back.forward(x, train=False), y, rtol=1e-6, atol=1e-6)
    assert back["fire2.e1"].frozen and back["fire2.bn"].buffers["running_var"].shape == (4,)


def test_a_zero_pad_is_folded_into_the_convolution_after_it(rng, tmp_path):
    g = G(rng)
    g.inits.append(numpy_helper.from_array(np.array([0, 0, 0, 1, 0, 0, 2, 1], np.int64), "pads"))
    x = g.conv(g.node("Pad", ["data", "pads"], "pad"), 3, 4, 3, "conv", pads=[1, 0, 1, 0])
    net = check(g.model([1, 3, 6, 5], x), tmp_path, (2, 3, 6, 5), rng)
    assert net.layers[0].pads == (1, 1, 3, 1) and len(net.layers) == 1
    g = G(rng)
    g.inits.append(numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"))
    x = g.node("MaxPool", [g.node("Pad", ["data", "pads"], "pad")], kernel_shape=[2, 2])
    with pytest.raises(InputError, match=r"node pad \(Pad\): a zero Pad is supported only right before"):
        import_model(g.model([1, 3, 6, 5], x), tmp_path)


def test_cli_round_trip_of_a_float64_network_of_blocks(tmp_path, capsys):
    """export-onnx of a network whose top-level layer is a block (a MobileNet), in float64,
    checked by onnxruntime; import-weights brings back the same architecture."""
    from minicnn import model_zoo
    from minicnn.cli import main

    body = model_zoo.mobilenet_v1(width=0.25, num_classes=3, input_size=32, dtype=np.float64)
    net = mc.Sequential([body], names=["mobilenet"], input_shape=body.input_shape)
    net.save(tmp_path / "m.npz")
    assert main(["export-onnx", "--weights", str(tmp_path / "m.npz"), "--out", str(tmp_path / "m.onnx")]) == 0
    difference = float(capsys.readouterr().out.split("max relative difference")[1].split()[0])
    assert difference < RTOL
    assert main(["import-weights", str(tmp_path / "m.onnx"), "--out", str(tmp_path / "back.npz")]) == 0
    back = mc.Sequential.load(tmp_path / "back.npz")
    assert [s["name"] for s in back.architecture()["layers"]] == net.names
    assert back["mobilenet.conv_3_depthwise.conv"].groups == 32


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_squeezenet_exports_and_imports_back(rng, tmp_path, version):
    """mc.models.squeezenet (fire modules: Joins in blocks) through to_onnx, onnxruntime and back."""
    net = mc.models.squeezenet(version, num_classes=7, input_size=64)
    for _, layer in net.named_layers():
        if "bias" in layer.params:
            layer.params["bias"] = rng.uniform(-0.1, 0.1, layer.params["bias"].shape)
    model = interop.to_onnx(net, tmp_path / "sq.onnx")
    assert [n.op_type for n in model.graph.node].count("Concat") == 8
    x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    y = net.forward(x, train=False)
    assert relative_error(ort_run(model, x), y) < RTOL
    back = interop.from_onnx(tmp_path / "sq.onnx")
    assert back.architecture()["layers"] == net.architecture()["layers"]
    np.testing.assert_allclose(back.forward(x, train=False), y, rtol=1e-6, atol=1e-6)
    model.ClearField("metadata_props")  # a foreign file of the same graph: joins by position
    onnx.save(model, str(tmp_path / "foreign.onnx"))
    foreign = interop.from_onnx(tmp_path / "foreign.onnx")
    assert sum(isinstance(layer, L.Join) for layer in foreign.layers) == 8
    np.testing.assert_allclose(foreign.forward(x, train=False), y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("opset,keepdims", [(13, 1), (18, 0)])
def test_reduce_mean_over_height_and_width_is_a_global_average_pool(rng, tmp_path, opset, keepdims):
    """PyTorch's dynamo exporter writes adaptive_avg_pool2d(x, 1) as ReduceMean (axes an input
    from opset 18)."""
    g = G(rng)
    if opset >= 18:
        g.inits.append(numpy_helper.from_array(np.array([-1, -2], np.int64), "axes"))
        y = g.node("ReduceMean", [g.node("Relu", ["data"]), "axes"], "mean", keepdims=keepdims)
    else:
        y = g.node("ReduceMean", [g.node("Relu", ["data"])], "mean", axes=[2, 3], keepdims=keepdims)
    net = check(g.model([1, 3, 5, 4], y, opset=opset), tmp_path, (2, 3, 5, 4), rng)
    assert net.output_shape(net.input_shape) == ((3,) if not keepdims else (3, 1, 1))
    g = G(rng)
    y = g.node("ReduceMean", ["data"], "mean", axes=[1], keepdims=1)
    with pytest.raises(InputError, match=r"node mean \(ReduceMean\): a mean over axes \[1\]"):
        import_model(g.model([1, 3, 5, 4], y), tmp_path)


def test_batch_norm_of_features_folds_into_the_gemm_before_it(rng, tmp_path):
    g = G(rng)
    h = g.node("Gemm", ["data", g.const(rng.standard_normal((6, 10)))], "fc", transB=1)
    stats = (rng.uniform(0.5, 2, 6), rng.standard_normal(6), rng.standard_normal(6), rng.uniform(0.5, 2, 6))
    h = g.node("BatchNormalization", [h, *(g.const(v) for v in stats)], "bn")
    net = check(g.model([1, 10], g.node("Relu", [h])), tmp_path, (4, 10), rng)
    assert [type(layer).__name__ for layer in net.layers] == ["Linear", "ReLU"]
    g = G(rng)
    ones = [g.const(np.ones(10)) for _ in range(4)]
    h = g.node("BatchNormalization", [g.node("Relu", ["data"]), *ones], "bn")
    with pytest.raises(InputError, match=r"node bn \(BatchNormalization\): a batch normalisation of feat"):
        import_model(g.model([1, 10], h), tmp_path)
