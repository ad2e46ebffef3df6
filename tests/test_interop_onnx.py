"""ONNX import and export (minicnn.interop) against onnxruntime, the oracle.

The models are built here with onnx.helper in the layouts that matter: BVLC AlexNet as in
the ONNX model zoo (LRN, grouped convs, Gemm with transB, Dropout, a trailing Softmax) at
227, torchvision's AlexNet at 224 with its 1x1 average pool, the light BVLC AlexNet that
the onnx package ships, and what to_onnx writes. Channel widths are small: the layout, not
the widths, is what an import can get wrong. Parity: float32, relative 1e-4 of the largest
output.
"""

import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import minicnn as mc  # noqa: E402
from minicnn import interop, models  # noqa: E402
from minicnn import layers as L  # noqa: E402
from minicnn.errors import InputError  # noqa: E402

RTOL = 1e-4
ALEXNET_NAMES = models.alexnet(10, channels=(4, 4, 4, 4, 4), hidden=4).names


def relative_error(actual, expected):
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def run_ort(model, x, output=None):
    """onnxruntime's output for ``x``; ``output`` names another tensor to read instead (the
    logits before a trailing Softmax)."""
    if output is not None:
        model = onnx.ModelProto.FromString(model.SerializeToString())
        del model.graph.output[:]
        model.graph.output.append(helper.make_tensor_value_info(output, TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {model.graph.input[0].name: x})[0]


class Graph:
    """A chain of nodes under construction: ``g.op("Relu")`` appends a node reading the last output."""

    def __init__(self, rng, channels=3):
        self.rng, self.nodes, self.inits, self.last, self.channels = rng, [], [], "data", channels

    def const(self, name, value):
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type, *extra_inputs, name=None, outputs=1, **attrs):
        name = name or f"{op_type.lower()}_{len(self.nodes)}"
        outs = [f"{name}_out"] + [f"{name}_out{i}" for i in range(1, outputs)]
        self.nodes.append(helper.make_node(op_type, [self.last, *extra_inputs], outs, name=name, **attrs))
        self.last = outs[0]
        return self

    def conv(self, out, k, stride=1, pad=0, group=1, name=None):
        w = self.rng.standard_normal((out, self.channels // group, k, k)).astype(np.float32)
        w *= np.sqrt(2.0 / w[0].size)
        b = self.rng.uniform(-0.1, 0.1, out).astype(np.float32)
        name = name or f"conv_{len(self.nodes)}"
        self.channels = out
        return self.op("Conv", self.const(f"{name}_w", w), self.const(f"{name}_b", b), name=name,
                       kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4, group=group)

    def gemm(self, n_in, n_out, name=None):
        w = (self.rng.standard_normal((n_out, n_in)) * np.sqrt(2.0 / n_in)).astype(np.float32)
        b = self.rng.uniform(-0.1, 0.1, n_out).astype(np.float32)
        name = name or f"gemm_{len(self.nodes)}"
        return self.op("Gemm", self.const(f"{name}_w", w), self.const(f"{name}_b", b), name=name, transB=1)

    def model(self, input_shape, opset=13, output_shape=(None, None)):
        graph = helper.make_graph(
            self.nodes, "test", [helper.make_tensor_value_info("data", TensorProto.FLOAT, input_shape)],
            [helper.make_tensor_value_info(self.last, TensorProto.FLOAT, output_shape)], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        onnx.checker.check_model(model)
        return model


def save(model, tmp_path, name="model.onnx"):
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def bvlc_alexnet(rng, widths=(8, 16, 24, 24, 16), hidden=32, classes=10, opset=9, conv1=(11, 4, 0)):
    """The model zoo's bvlc_alexnet layout (converted from Caffe): LRN after the ReLU, groups 2
    in conv2/4/5, Reshape then Gemm(transB=1), Dropout after relu6/relu7, Softmax."""
    c1, c2, c3, c4, c5 = widths
    k1, s1, p1 = conv1
    lrn = dict(size=5, alpha=1e-4, beta=0.75, bias=1.0)
    g = Graph(rng)
    g.conv(c1, k1, s1, p1, name="conv1").op("Relu").op("LRN", **lrn)
    g.op("MaxPool", kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 0, 0])
    g.conv(c2, 5, pad=2, group=2, name="conv2").op("Relu").op("LRN", **lrn)
    g.op("MaxPool", kernel_shape=[3, 3], strides=[2, 2])
    g.conv(c3, 3, pad=1, name="conv3").op("Relu")
    g.conv(c4, 3, pad=1, group=2, name="conv4").op("Relu")
    g.conv(c5, 3, pad=1, group=2, name="conv5").op("Relu")
    g.op("MaxPool", kernel_shape=[3, 3], strides=[2, 2])
    return g, hidden, classes


def finish_bvlc(g, flat, hidden, classes, opset):
    g.op("Reshape", g.const("flat_shape", np.array([1, flat], np.int64)))
    dropout = {"ratio": 0.5} if opset < 12 else {}
    g.gemm(flat, hidden, name="fc6").op("Relu").op("Dropout", outputs=2, **dropout)
    g.gemm(hidden, hidden, name="fc7").op("Relu").op("Dropout", outputs=2, **dropout)
    g.gemm(hidden, classes, name="fc8")
    logits = g.last
    g.op("Softmax", name="prob")
    return logits


def test_bvlc_alexnet_layout_at_227_equals_onnxruntime(rng, tmp_path):
    g, hidden, classes = bvlc_alexnet(rng)
    logits = finish_bvlc(g, 16 * 6 * 6, hidden, classes, opset=9)
    model = g.model([1, 3, 227, 227], opset=9)
    net = interop.from_onnx(save(model, tmp_path), classes=[f"c{i}" for i in range(classes)])
    assert net.names == ALEXNET_NAMES
    assert net["conv2"].groups == 2 and net["conv4"].groups == 2 and net["conv3"].groups == 1
    assert net["drop6"].p == 0.5 and net.input_shape == (3, 227, 227)
    assert net.meta["input_size"] == 227 and net.meta["channel_order"] == "RGB"
    assert net.meta["softmax_dropped"] and net.meta["classes"][3] == "c3"
    assert net.summary(file=open(os.devnull, "w")).endswith("trailing Softmax was dropped at import")
    assert len(net.meta["source_sha256"]) == 64
    x = rng.uniform(0, 255, (1, 3, 227, 227)).astype(np.float32)
    ours = net.forward(x, train=False)
    error = relative_error(ours, run_ort(model, x, output=logits))
    print(f"parity bvlc-alexnet-227: {error:.2e}")
    assert error < RTOL
    probs = np.exp(ours - ours.max()) / np.exp(ours - ours.max()).sum()
    np.testing.assert_allclose(probs, run_ort(model, x), rtol=1e-4, atol=1e-6)


def torchvision_alexnet(rng, widths=(8, 16, 24, 24, 16), hidden=32, classes=10, opset=17):
    """torchvision.models.alexnet as torch.onnx.export writes it in evaluation mode: conv1
    padding 2, no LRN, no groups, the 1x1 AveragePool of AdaptiveAvgPool2d((6, 6)) at 224,
    Flatten, Gemm(transB=1) and no Dropout."""
    c1, c2, c3, c4, c5 = widths
    g = Graph(rng)
    g.conv(c1, 11, 4, 2).op("Relu").op("MaxPool", kernel_shape=[3, 3], strides=[2, 2])
    g.conv(c2, 5, pad=2).op("Relu").op("MaxPool", kernel_shape=[3, 3], strides=[2, 2])
    g.conv(c3, 3, pad=1).op("Relu").conv(c4, 3, pad=1).op("Relu").conv(c5, 3, pad=1).op("Relu")
    g.op("MaxPool", kernel_shape=[3, 3], strides=[2, 2])
    g.op("AveragePool", kernel_shape=[1, 1], strides=[1, 1]).op("Flatten", axis=1)
    flat = c5 * 36
    g.gemm(flat, hidden).op("Relu").gemm(hidden, hidden).op("Relu").gemm(hidden, classes)
    return g.model(["batch", 3, 224, 224], opset=opset, output_shape=["batch", classes])


def test_torchvision_layout_at_224_equals_onnxruntime(rng, tmp_path):
    model = torchvision_alexnet(rng)
    net = interop.from_onnx(save(model, tmp_path), mean=[123.675, 116.28, 103.53],
                            std=[58.395, 57.12, 57.375])
    # the 1x1 average pool is the identity and left out; drop6/drop7 are put where
    # minicnn's AlexNet has them, so transfer_net finds the layers it copies
    assert net.names == [n for n in ALEXNET_NAMES if not n.startswith("norm")]
    assert any("1x1 stride-1 average pool" in note for note in net.meta["import_notes"])
    assert net.meta["mean"] == [123.675, 116.28, 103.53] and not net.meta["softmax_dropped"]
    x = rng.uniform(-2, 2, (2, 3, 224, 224)).astype(np.float32)
    error = relative_error(net.forward(x, train=False), run_ort(model, x))
    print(f"parity torchvision-alexnet-224: {error:.2e}")
    assert error < RTOL
    transfer = models.transfer_net(net, 21, hidden=16)
    assert transfer.names[-4:] == ["fca", "relua", "dropa", "fcb"] and transfer["fc7"].frozen


def _light_alexnet():
    path = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light",
                        "light_bvlc_alexnet.onnx")
    expected = path.replace(".onnx", "_output_0.pb")
    if not (os.path.isfile(path) and os.path.isfile(expected)):
        pytest.skip(f"the installed onnx package has no {path} and its expected output")
    return path, expected


def test_light_bvlc_alexnet_of_the_onnx_package_reproduces_its_expected_output():
    path, expected_path = _light_alexnet()
    net = interop.from_onnx(path)
    assert net.names == ALEXNET_NAMES
    # onnx's backend runner feeds the light models arange(n).reshape(shape) / n
    # (onnx/backend/test/runner/__init__.py, generate_dummy_data with random=False)
    shape = (1, 3, 224, 224)
    n = int(np.prod(shape))
    x = (np.arange(n).reshape(shape) / n).astype(np.float32)
    logits = net.forward(x, train=False)
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    expected = numpy_helper.to_array(onnx.load_tensor(expected_path))
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-7)
    # its weights are all 0.02, so the softmax is uniform whatever the logits: check them too
    error = relative_error(logits, run_ort(onnx.load(path), x, output="r24"))
    print(f"parity light_bvlc_alexnet logits: {error:.2e}")
    assert error < RTOL


@pytest.mark.parametrize("opset", [7, 11, 13, 21])
def test_fully_connected_forms_and_folded_constants(rng, tmp_path, opset):
    """Gemm with transB=0, alpha, beta and a (1, out) bias; MatMul + Add; a Reshape whose shape
    is computed from Constant nodes; weights made by ConstantOfShape + Mul."""
    g = Graph(rng)
    g.conv(4, 3, pad=1).op("Relu")
    g.nodes.append(helper.make_node("Constant", [], ["c_shape"], value=numpy_helper.from_array(
        np.array([0, 4 * 6 * 6], np.int64))))
    g.nodes.append(helper.make_node("Identity", ["c_shape"], ["c_shape2"]))
    g.op("Reshape", "c_shape2")
    w1 = rng.standard_normal((144, 12)).astype(np.float32)  # (in, out): transB = 0
    g.op("Gemm", g.const("w1", w1), g.const("b1", rng.standard_normal((1, 12)).astype(np.float32)),
         alpha=0.5, beta=2.0)
    g.op("Relu")
    if opset >= 9:
        one = numpy_helper.from_array(np.array([1.0], np.float32))
        g.nodes.append(helper.make_node("ConstantOfShape", [g.const("w2_shape", np.array([12, 5], np.int64))],
                                        ["w2_ones"], value=one))
    else:
        g.const("w2_ones", np.ones((12, 5), np.float32))
    g.nodes.append(helper.make_node("Mul", ["w2_ones", g.const("w2_scale", rng.standard_normal((12, 5))
                                                                .astype(np.float32))], ["w2"]))
    g.op("MatMul", "w2").op("Add", g.const("b2", rng.standard_normal(5).astype(np.float32)))
    model = g.model([3, 3, 6, 6], opset=opset)
    net = interop.from_onnx(save(model, tmp_path))
    assert [type(layer).__name__ for layer in net.layers] == [
        "Conv2D", "ReLU", "Flatten", "Linear", "ReLU", "Dropout", "Linear"]  # the hidden layer's dropout
    x = rng.standard_normal((3, 3, 6, 6)).astype(np.float32)
    error = relative_error(net.forward(x, train=False), run_ort(model, x))
    print(f"parity gemm/matmul opset {opset}: {error:.2e}")
    assert error < RTOL


# (op, attributes, input H = W)
POOLS = [
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1), 8),
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), 9),
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1]), 12),   # the zoo's pool5
    ("MaxPool", dict(kernel_shape=[2, 3], strides=[1, 2], pads=[1, 0, 1, 0]), 7),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2]), 9),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1), 8),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=0), 8),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1, count_include_pad=0), 8),
    ("AveragePool", dict(kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1]), 7),
    ("GlobalAveragePool", {}, 5),
    # ceil mode's last window would start in the padding: dropped (onnxruntime and PyTorch)
    ("MaxPool", dict(kernel_shape=[2, 2], strides=[3, 3], pads=[1, 1, 1, 1], ceil_mode=1), 5),
    ("AveragePool", dict(kernel_shape=[2, 2], strides=[3, 3], pads=[1, 1, 1, 1], ceil_mode=1,
                         count_include_pad=1), 5),
]


@pytest.mark.parametrize("op,attrs,size", POOLS)
def test_pooling_equals_onnxruntime(rng, tmp_path, op, attrs, size):
    g = Graph(rng, channels=2)
    g.op(op, **attrs)
    model = g.model([2, 2, size, size], opset=19, output_shape=[None] * 4)
    net = interop.from_onnx(save(model, tmp_path))
    x = rng.standard_normal((2, 2, size, size)).astype(np.float32)
    expected = run_ort(model, x)
    ours = net.forward(x, train=False)
    assert ours.shape == expected.shape
    assert relative_error(ours, expected) < RTOL


def test_lrn_with_a_large_alpha_equals_onnxruntime(rng, tmp_path):
    """A large alpha makes a wrong window or a wrong alpha convention show."""
    g = Graph(rng, channels=7)
    g.op("LRN", size=3, alpha=0.9, beta=0.75, bias=2.0)
    model = g.model([1, 7, 4, 4], output_shape=[None] * 4)
    x = rng.standard_normal((1, 7, 4, 4)).astype(np.float32) * 3
    net = interop.from_onnx(save(model, tmp_path))
    assert relative_error(net.forward(x, train=False), run_ort(model, x)) < RTOL


def refusal(rng, case):
    g = Graph(rng, channels=4)
    if case == "pool dilation":
        g.op("MaxPool", kernel_shape=[2, 2], dilations=[2, 2])
        return g, "maxpool_0", "MaxPool", "dilations"
    if case == "empty output":
        g.conv(4, 3)
        g.nodes[-1].attribute.append(helper.make_attribute("dilations", [2, 2]))
        return g, "conv_0", "Conv", "empty"
    if case == "concat on axis 2":
        g.op("Relu", name="r1")
        g.nodes.append(helper.make_node("Concat", ["r1_out", "data"], ["cat"], name="join", axis=2))
        g.last = "cat"
        return g, "join", "Concat", "axis 2"
    if case == "batch norm in training mode":
        c = [g.const(f"bn_{k}", np.ones(4, np.float32)) for k in "sbmv"]
        g.op("BatchNormalization", *c, name="bn", training_mode=1)
        return g, "bn", "BatchNormalization", "training mode"
    if case == "flatten of the batch":
        g.op("Flatten", axis=0, name="flat")
        return g, "flat", "Flatten", "batch would not stay"
    if case == "asymmetric avg pads":
        g.op("AveragePool", kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1], count_include_pad=1)
        return g, "averagepool_0", "AveragePool", "count_include_pad"
    if case == "unsupported op":
        g.op("Sigmoid")
        return g, "sigmoid_0", "Sigmoid", "not supported"
    if case == "softmax inside":
        g.op("Flatten").op("Softmax", name="sm").op("Relu")
        return g, "sm", "Softmax", "only as the last node"
    if case == "even lrn":
        g.op("LRN", size=4)
        return g, "lrn_0", "LRN", "even"
    if case == "merge of a branch and a constant":
        g.op("Relu", name="r1")
        g.nodes.append(helper.make_node("Add", ["r1_out", "data"], ["sum"], name="join"))
        g.nodes.append(helper.make_node("Concat", ["sum", "r1_out"], ["cat"], name="cat", axis=1))
        g.last = "cat"
        return g, "cat", "Concat", "do not all start from one tensor"
    if case == "transA":
        g.op("Flatten")
        g.op("Gemm", g.const("w", np.ones((100, 64), np.float32)), transA=1, name="fc")
        return g, "fc", "Gemm", "transA"
    if case == "shape-based reshape":
        g.nodes.append(helper.make_node("Shape", ["data"], ["shape"], name="shape_of"))
        g.op("Reshape", "shape", name="reshape")
        return g, "shape_of", "Shape", "not supported"
    if case == "pytorch's shape-based reshape":  # the Shape reads the layer before, as the Reshape does
        g.op("Relu", name="r1")
        g.nodes.append(helper.make_node("Shape", ["r1_out"], ["shape"], name="shape_of"))
        g.op("Reshape", "shape", name="reshape")
        return g, "shape_of", "Shape", "shape read at run time"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["pool dilation", "empty output", "asymmetric avg pads", "unsupported op",
                                  "softmax inside", "even lrn", "merge of a branch and a constant", "transA",
                                  "shape-based reshape", "pytorch's shape-based reshape", "concat on axis 2",
                                  "batch norm in training mode", "flatten of the batch"])
def test_what_minicnn_cannot_compute_exactly_is_refused_by_node_and_op(rng, tmp_path, case):
    g, node, op, reason = refusal(rng, case)
    path = tmp_path / "bad.onnx"
    graph = helper.make_graph(g.nodes, "bad", [helper.make_tensor_value_info(
        "data", TensorProto.FLOAT, [1, 4, 4, 4])], [helper.make_tensor_value_info(
            g.last, TensorProto.FLOAT, [None] * 4)], g.inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    with pytest.raises(InputError, match=rf"node {node} \({op}\).*{reason}"):
        interop.from_onnx(path)



def test_a_softmax_followed_only_by_identities_is_the_trailing_softmax(rng, tmp_path):
    g = Graph(rng, channels=4).op("Flatten").op("Softmax", name="prob").op("Identity").op("Identity")
    path = tmp_path / "m.onnx"
    graph = helper.make_graph(g.nodes, "m",
                              [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 4, 4, 4])],
                              [helper.make_tensor_value_info(g.last, TensorProto.FLOAT, [None, 64])], g.inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    net = interop.from_onnx(path)
    assert net.meta["softmax_dropped"] and [type(layer).__name__ for layer in net.layers] == ["Flatten"]
    x = rng.standard_normal((2, 4, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(net.forward(x, train=False), x.reshape(2, 64))  # logits, not probabilities

def test_an_opset_outside_7_to_28_is_refused(rng, tmp_path):
    g = Graph(rng).op("Relu")
    model = g.model([1, 3, 4, 4], opset=13, output_shape=[None] * 4)
    model.opset_import[0].version = 6
    with pytest.raises(InputError, match="opset 6 is outside the supported 7..28"):
        interop.from_onnx(save(model, tmp_path))


# --- export ---------------------------------------------------------------------------------
def assert_same_network(a, b):
    assert a.names == b.names
    assert [type(x).__name__ for x in a.layers] == [type(x).__name__ for x in b.layers]
    assert [x.config() for x in a.layers] == [x.config() for x in b.layers]
    assert [x.frozen for x in a.layers] == [x.frozen for x in b.layers]
    for (name, p, _), (name2, q, _) in zip(a.named_params(), b.named_params(), strict=True):
        assert name == name2
        np.testing.assert_array_equal(mc.to_numpy(p), mc.to_numpy(q))
    assert a.input_shape == b.input_shape


def export_cases():
    mc.seed(0)
    alexnet = models.alexnet(10, input_size=227, groups=2, channels=(8, 16, 24, 24, 16), hidden=32)
    alexnet.meta.update(classes=[f"k{i}" for i in range(10)], mean=[1.0, 2.0, 3.0], std=[4.0, 5.0, 6.0],
                        channel_order="BGR", input_size=227)
    transfer = models.transfer_net(alexnet, 21, hidden=16)
    pools = mc.Sequential(
        [L.Conv2D(3, 4, 3, padding=1), L.ReLU(), L.LRN(3, 0.5, 0.75, 2.0), L.MaxPool2D(3, 2, ceil_mode=True),
         L.AvgPool2D(3, 2, padding=1, ceil_mode=True), L.AvgPool2D(2, 1, count_include_pad=False),
         L.Flatten(), L.Dropout(0.3), L.Linear(4 * 3 * 3, 5, bias=False)],
        ["c1", "r1", "n1", "p1", "a1", "a2", "flat", "d", "out"], input_shape=(3, 12, 12))
    return {"alexnet-groups2": alexnet, "transfer-fca-fcb": transfer, "pools": pools}


@pytest.mark.parametrize("case", ["alexnet-groups2", "transfer-fca-fcb", "pools"])
def test_export_runs_in_onnxruntime_as_the_network_and_imports_back_the_same(rng, tmp_path, case):
    net = export_cases()[case]
    path = tmp_path / "net.onnx"
    model = interop.to_onnx(net, path)
    onnx.checker.check_model(onnx.load(str(path)))
    assert [n.name for n in model.graph.node] == net.names
    x = rng.uniform(-1, 1, (2, *net.input_shape)).astype(np.float32)
    error = relative_error(run_ort(model, x), net.forward(x, train=False))
    print(f"parity export {case}: {error:.2e}")
    assert error < RTOL
    back = interop.from_onnx(path)
    assert_same_network(back, net)
    for key, value in net.meta.items():
        assert back.meta[key] == value, key


def test_cli_import_weights_and_export_onnx(rng, tmp_path, capsys):
    from minicnn.cli import main

    model = torchvision_alexnet(rng)
    src = save(model, tmp_path, "alexnet.onnx")
    (tmp_path / "classes.txt").write_text("".join(f"class {i}\n" for i in range(10)))
    out = tmp_path / "source.npz"
    assert main(["import-weights", str(src), "--out", str(out), "--classes", str(tmp_path / "classes.txt"),
                 "--mean", "1", "2", "3", "--std", "4", "5", "6", "--bgr"]) == 0
    text = capsys.readouterr().out
    assert "sha256" in text and "is not a known published sha1" in text and "output: logits" in text
    net = mc.Sequential.load(out)
    assert net.meta["channel_order"] == "BGR"
    assert net.meta["mean"] == [3.0, 2.0, 1.0] and net.meta["std"] == [6.0, 5.0, 4.0]  # network order
    assert net.meta["classes"][0] == "class 0" and (tmp_path / "source.classes.txt").is_file()
    assert main(["export-onnx", "--weights", str(out), "--out", str(tmp_path / "back.onnx")]) == 0
    text = capsys.readouterr().out
    difference = float(text.split("max relative difference")[1].split()[0])
    assert difference < RTOL
    assert main(["import-weights", str(tmp_path / "missing.onnx"), "--out", str(out)]) == 2


def test_a_missing_onnx_package_says_how_to_install_it(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)
    (tmp_path / "m.onnx").write_bytes(b"")
    with pytest.raises(InputError, match=r'pip install -e "\.\[interop\]"'):
        interop.from_onnx(tmp_path / "m.onnx")


def test_an_imported_alexnet_is_the_source_of_a_transfer_run(rng, tmp_path):
    """An AlexNet built as ONNX (minicnn's small layout: conv1 5x5 at 32 pixels, small widths),
    imported with import-weights, then `minicnn transfer --weights` on tiny generated data."""
    import json

    from minicnn.cli import main
    from minicnn.data.synthetic import DataConfig, generate

    g, hidden, classes = bvlc_alexnet(rng, widths=(8, 16, 16, 16, 16), hidden=24, classes=30,
                                      conv1=(5, 1, 2))
    finish_bvlc(g, 16 * 3 * 3, hidden, classes, opset=13)
    src = save(g.model([1, 3, 32, 32], opset=13), tmp_path, "small_alexnet.onnx")
    weights = tmp_path / "source.npz"
    assert main(["import-weights", str(src), "--out", str(weights),
                 "--mean", "120", "120", "120", "--std", "60", "60", "60"]) == 0
    source = mc.Sequential.load(weights)
    assert source.meta["input_size"] == 32 and set(ALEXNET_NAMES) == set(source.names)
    generate(tmp_path / "data", DataConfig(source_per_class=0, trainval=8, test=5), workers=1)
    out = tmp_path / "transfer"
    assert main(["transfer", "--voc", str(tmp_path / "data" / "VOCdevkit"), "--year", "2007",
                 "--weights", str(weights), "--out", str(out), "--epochs", "1", "--hidden", "16",
                 "--stride", "0.5", "--scales", "1,2", "--batch-size", "32", "--backend", "numpy"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert 0 <= summary["map"] <= 1
    net = mc.Sequential.load(out / "transfer.npz")  # the imported C1..FC7, frozen, then FCa/FCb
    assert net.names[-4:] == ["fca", "relua", "dropa", "fcb"] and net["fc7"].frozen
    np.testing.assert_array_equal(mc.to_numpy(net["conv1"].params["weight"]),
                                  mc.to_numpy(source["conv1"].params["weight"]))
    assert net.meta["source_sha256"] == source.meta["source_sha256"]


def test_imagenet_topk_experiment_honours_the_channel_order(tmp_path):
    """experiments/imagenet_topk.py on a folder of pure red and pure blue images, scored by a
    net whose logits are its first and last input channels: right in RGB, swapped in BGR."""
    import importlib.util
    from pathlib import Path

    from PIL import Image

    script = Path(__file__).resolve().parent.parent / "experiments" / "imagenet_topk.py"
    spec = importlib.util.spec_from_file_location("imagenet_topk", script)
    topk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(topk)
    for name, colour in (("n001", (255, 0, 0)), ("n002", (0, 0, 255))):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (12, 10), colour).save(tmp_path / "data" / name / f"{i}.png")
    net = mc.Sequential([L.AvgPool2D(8), L.Flatten(), L.Linear(3, 2, bias=False)], ["pool", "flatten", "fc"],
                        input_shape=(3, 8, 8), meta={"mean": [100.0] * 3, "std": [2.0] * 3})
    net["fc"].params["weight"] = np.array([[1, 0, 0], [0, 0, 1]], np.float32)
    classes = ["n001 red things", "n002 blue things"]
    for order, expected in (("RGB", 1.0), ("BGR", 0.0)):
        net.meta["channel_order"] = order
        result = topk.topk(net, tmp_path / "data", classes, resize=8, workers=1, log=lambda *a: None)
        assert result["images"] == 6 and result["top1"] == expected and result["top5"] == 1.0


def test_an_open_input_size_must_be_given(rng, tmp_path):
    g = Graph(rng).conv(4, 3).op("Relu").op("MaxPool", kernel_shape=[2, 2], strides=[2, 2])
    path = save(g.model(["N", 3, "H", "W"], output_shape=[None] * 4), tmp_path)
    with pytest.raises(InputError, match="give the input size"):
        interop.from_onnx(path)
    net = interop.from_onnx(path, input_size=10)
    assert net.input_shape == (3, 10, 10) and net.meta["input_size"] == 10


def test_export_refuses_what_onnx_would_compute_differently(tmp_path):
    net = mc.Sequential([L.LRN(size=4)], ["norm1"], input_shape=(6, 3, 3))
    with pytest.raises(InputError, match=r"layer 'norm1' \(LRN\): size 4 is even"):
        interop.to_onnx(net, tmp_path / "lrn.onnx")
    with pytest.raises(InputError, match="opset 11 is outside 13..21"):
        interop.to_onnx(export_cases()["pools"], tmp_path / "old.onnx", opset=11)


def test_export_at_opset_21_runs_in_onnxruntime(rng, tmp_path):
    net = export_cases()["pools"]
    model = interop.to_onnx(net, tmp_path / "net.onnx", opset=21)
    x = rng.uniform(-1, 1, (2, *net.input_shape)).astype(np.float32)
    assert relative_error(run_ort(model, x), net.forward(x, train=False)) < RTOL
    assert_same_network(interop.from_onnx(tmp_path / "net.onnx"), net)
