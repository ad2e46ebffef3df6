"""Caffe import of networks that split and rejoin (Concat, Eltwise SUM, in-place layers, blobs
read by several layers) onto Sequential/Join, against PyTorch float64 and naive oracles.

The SqueezeNet prototxts are written here layer for layer as DeepScale/SqueezeNet's
SqueezeNet_v1.0/deploy.prototxt and SqueezeNet_v1.1/deploy.prototxt (and, for v1.0, with the
layer names of songhan/SqueezeNet-Deep-Compression's SqueezeNet_deploy.prototxt), on a
smaller input; the weights are random, the caffemodels written by the test's own protobuf
writer (tests/test_interop_caffe.py).
"""

import numpy as np
import pytest

pytest.importorskip("google.protobuf")
torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from naive import conv2d  # noqa: E402
from test_interop_caffe import caffemodel, weights, write  # noqa: E402

import minicnn as mc  # noqa: E402
from minicnn import interop, models  # noqa: E402
from minicnn.errors import InputError  # noqa: E402
from minicnn.interop.caffe_import import _skeleton  # noqa: E402

FIRES = ((16, 64), (16, 64), (32, 128), (32, 128), (48, 192), (48, 192), (64, 256), (64, 256))
VERSIONS = {"1.0": dict(conv1=(96, 7), pools_after=("conv1", "fire4", "fire8"), conv10_pad=1),
            "1.1": dict(conv1=(64, 3), pools_after=("conv1", "fire3", "fire5"), conv10_pad=0)}
# DeepScale's layer names, and those of the Deep Compression repository's deploy file
NAMES = {"deepscale": dict(squeeze="squeeze1x1", e1="expand1x1", e3="expand3x3", conv10="conv10",
                           pool10="pool10"),
         "deep-compression": dict(squeeze="conv1x1_1", e1="conv1x1_2", e3="conv3x3_2", conv10="conv_final",
                                  pool10="pool_final")}


def layer(name, kind, bottoms, top, body=""):
    bottoms = "".join(f'bottom: "{b}" ' for b in ([bottoms] if isinstance(bottoms, str) else bottoms))
    return f'layer {{ name: "{name}" type: "{kind}" {bottoms}top: "{top}" {body} }}\n'


def conv_body(out, k, stride=1, pad=0):
    return (f"convolution_param {{ num_output: {out} kernel_size: {k}"
            + (f" stride: {stride}" if stride != 1 else "") + (f" pad: {pad}" if pad else "") + " }")


MAX_POOL = "pooling_param { pool: MAX kernel_size: 3 stride: 2 }"
GLOBAL_AVE = "pooling_param { pool: AVE global_pooling: true }"


def squeezenet_prototxt(version, size, names="deepscale"):
    """(prototxt text, {caffe layer name: weight shape}) of a SqueezeNet deploy file."""
    spec, n = VERSIONS[version], NAMES[names]
    width, k = spec["conv1"]
    text = (f'name: "SqueezeNet" layer {{ name: "data" type: "Input" top: "data" '
            f"input_param {{ shape: {{ dim: 2 dim: 3 dim: {size} dim: {size} }} }} }}\n")
    text += layer("conv1", "Convolution", "data", "conv1", conv_body(width, k, stride=2))
    text += layer("relu_conv1", "ReLU", "conv1", "conv1")
    text += layer("pool1", "Pooling", "conv1", "pool1", MAX_POOL)
    shapes, last, channels = {"conv1": (width, 3, k, k)}, "pool1", width
    for i, (squeeze, expand) in enumerate(FIRES, 2):
        f = f"fire{i}"
        s, e1, e3 = f"{f}/{n['squeeze']}", f"{f}/{n['e1']}", f"{f}/{n['e3']}"
        text += layer(s, "Convolution", last, s, conv_body(squeeze, 1))
        text += layer(f"{f}/relu_{n['squeeze']}", "ReLU", s, s)
        text += layer(e1, "Convolution", s, e1, conv_body(expand, 1))
        text += layer(f"{f}/relu_{n['e1']}", "ReLU", e1, e1)
        text += layer(e3, "Convolution", s, e3, conv_body(expand, 3, pad=1))
        text += layer(f"{f}/relu_{n['e3']}", "ReLU", e3, e3)
        text += layer(f"{f}/concat", "Concat", [e1, e3], f"{f}/concat")
        shapes.update({s: (squeeze, channels, 1, 1), e1: (expand, squeeze, 1, 1),
                       e3: (expand, squeeze, 3, 3)})
        last, channels = f"{f}/concat", 2 * expand
        if f in spec["pools_after"]:
            pool = f"pool{i}"
            text += layer(pool, "Pooling", last, pool, MAX_POOL)
            last = pool
    text += layer("drop9", "Dropout", last, last, "dropout_param { dropout_ratio: 0.5 }")
    c10 = n["conv10"]
    text += layer(c10, "Convolution", last, c10, conv_body(10, 1, pad=spec["conv10_pad"]))
    text += layer(f"relu_{c10}", "ReLU", c10, c10)
    text += layer(n["pool10"], "Pooling", c10, n["pool10"], GLOBAL_AVE)
    if names == "deepscale":  # the Deep Compression deploy file ends at the pooling
        text += layer("prob", "Softmax", n["pool10"], "prob")
    shapes[c10] = (10, channels, 1, 1)
    return text, shapes


def torch_squeezenet(x, params, version, names="deepscale"):
    """SqueezeNet's forward in PyTorch float64, from the paper's description and the Caffe
    semantics (pooling rounded up, conv10's padding per version), weights by Caffe name."""
    spec, n = VERSIONS[version], NAMES[names]

    def conv(y, name, stride=1, pad=0):
        w, b = params[name]
        return F.relu(F.conv2d(y, torch.from_numpy(w).double(), torch.from_numpy(b).double(), stride, pad))

    def pool(y):
        return F.max_pool2d(y, 3, 2, ceil_mode=True)

    y = pool(conv(torch.from_numpy(x).double(), "conv1", stride=2))
    for i in range(2, 10):
        s = conv(y, f"fire{i}/{n['squeeze']}")
        y = torch.cat([conv(s, f"fire{i}/{n['e1']}"), conv(s, f"fire{i}/{n['e3']}", pad=1)], 1)
        if f"fire{i}" in spec["pools_after"]:
            y = pool(y)
    y = conv(y, n["conv10"], pad=spec["conv10_pad"])
    return y.mean(dim=(2, 3)).numpy()


def random_params(rng, shapes):
    return {name: (weights(rng, s), rng.uniform(-0.1, 0.1, s[0]).astype(np.float32))
            for name, s in shapes.items()}


def blob_layers(params):
    return [(name, "Convolution", list(p)) for name, p in params.items()]


@pytest.mark.parametrize("version,names", [("1.0", "deepscale"), ("1.1", "deepscale"),
                                           ("1.0", "deep-compression")])
def test_squeezenet_deploy_files_import_with_their_graph_and_minicnns_names(rng, tmp_path, version, names):
    text, shapes = squeezenet_prototxt(version, 67, names)
    params = random_params(rng, shapes)
    prototxt, model = write(tmp_path, text, caffemodel(blob_layers(params), v1=False))
    net = interop.from_caffe(prototxt, model)
    known = models.squeezenet(version, num_classes=10, input_size=67)
    assert [n for n, *_ in net.named_params()] == [n for n, *_ in known.named_params()]
    assert _skeleton(net.architecture()["layers"]) == _skeleton(known.architecture()["layers"])
    assert net.names == known.names and net["fire2"].names == ["squeeze1x1", "relu_squeeze1x1", "concat"]
    np.testing.assert_array_equal(net["fire3.expand3x3"].params["weight"],
                                  params[f"fire3/{NAMES[names]['e3']}"][0])
    x = rng.uniform(-60, 60, (2, 3, 67, 67)).astype(np.float32)
    expected = torch_squeezenet(x, params, version, names)
    ours = net.forward(x, train=False)
    assert ours.shape == (2, 10)
    error = float(np.abs(ours - expected).max() / np.abs(expected).max())
    print(f"squeezenet {version} ({names} names) parity against torch float64: {error:.2e}")
    assert error < 1e-4
    assert net.meta["softmax_dropped"] == (names == "deepscale")
    saved = tmp_path / "net.npz"
    net.save(saved)
    np.testing.assert_array_equal(mc.Sequential.load(saved).forward(x, train=False), ours)


# --- small DAGs, each against a naive forward ---------------------------------------------------
def conv(y, w, b, pad=0):
    return conv2d(y, w.astype(np.float64), b.astype(np.float64), (1, 1), (pad, pad), 1)


def relu(y):
    return np.maximum(y, 0)


INPUT = 'input: "data" input_shape { dim: 2 dim: 4 dim: 6 dim: 6 }\n'


def small_dag(case):
    """(prototxt text, {conv name: weight shape}, forward(x, params)) of a small DAG."""
    if case == "concat in bottom order":
        # the 3x3 branch is written first in the file, the concat puts the 1x1 first
        text = (INPUT + layer("b/c3", "Convolution", "data", "b/c3", conv_body(3, 3, pad=1))
                + layer("b/c1", "Convolution", "data", "b/c1", conv_body(2, 1))
                + layer("b/relu_c1", "ReLU", "b/c1", "b/c1")
                + layer("b/concat", "Concat", ["b/c1", "b/c3"], "b/concat"))
        shapes = {"b/c3": (3, 4, 3, 3), "b/c1": (2, 4, 1, 1)}

        def forward(x, p):
            return np.concatenate([relu(conv(x, *p["b/c1"])), conv(x, *p["b/c3"], pad=1)], axis=1)
    elif case == "residual with identity":
        text = (INPUT + layer("res/a", "Convolution", "data", "res/a", conv_body(4, 3, pad=1))
                + layer("res/relu_a", "ReLU", "res/a", "res/a")
                + layer("res/b", "Convolution", "res/a", "res/b", conv_body(4, 3, pad=1))
                + layer("res/sum", "Eltwise", ["data", "res/b"], "res/sum")
                + layer("res/relu", "ReLU", "res/sum", "res/sum"))
        shapes = {"res/a": (4, 4, 3, 3), "res/b": (4, 4, 3, 3)}

        def forward(x, p):
            return relu(x + conv(relu(conv(x, *p["res/a"], pad=1)), *p["res/b"], pad=1))
    elif case == "nested split":
        # branch 2 splits again into two convolutions that are summed; then all concatenated
        text = (INPUT + layer("m/c1", "Convolution", "data", "m/c1", conv_body(2, 1))
                + layer("m/r", "Convolution", "data", "m/r", conv_body(3, 1))
                + layer("m/relu_r", "ReLU", "m/r", "m/r")
                + layer("m/r_a", "Convolution", "m/r", "m/r_a", conv_body(2, 3, pad=1))
                + layer("m/r_b", "Convolution", "m/r", "m/r_b", conv_body(2, 1))
                + layer("m/r_sum", "Eltwise", ["m/r_a", "m/r_b"], "m/r_sum",
                        "eltwise_param { operation: SUM }")
                + layer("m/concat", "Concat", ["m/r_sum", "data", "m/c1"], "m/concat")
                + layer("pool", "Pooling", "m/concat", "pool", GLOBAL_AVE))
        shapes = {"m/c1": (2, 4, 1, 1), "m/r": (3, 4, 1, 1), "m/r_a": (2, 3, 3, 3), "m/r_b": (2, 3, 1, 1)}

        def forward(x, p):
            r = relu(conv(x, *p["m/r"]))
            y = np.concatenate([conv(r, *p["m/r_a"], pad=1) + conv(r, *p["m/r_b"]), x,
                                conv(x, *p["m/c1"])], 1)
            return y.mean(axis=(2, 3))
    elif case == "read before an in-place layer":
        # Caffe runs layers in file order: t/a reads the blob before the in-place ReLU writes it
        text = (INPUT + layer("t/a", "Convolution", "data", "t/a", conv_body(3, 1))
                + layer("t/b", "Convolution", "t/a", "t/b", conv_body(2, 1))
                + layer("t/relu_a", "ReLU", "t/a", "t/a")
                + layer("t/c", "Convolution", "t/a", "t/c", conv_body(2, 3, pad=1))
                + layer("t/concat", "Concat", ["t/b", "t/c"], "t/concat"))
        shapes = {"t/a": (3, 4, 1, 1), "t/b": (2, 3, 1, 1), "t/c": (2, 3, 3, 3)}

        def forward(x, p):
            a = conv(x, *p["t/a"])
            return np.concatenate([conv(a, *p["t/b"]), conv(relu(a), *p["t/c"], pad=1)], 1)
    elif case == "explicit split":  # Caffe's Split layer (as its own net surgery writes it)
        text = (INPUT + layer("s", "Split", "data", "x1", "top: \"x2\"")
                + layer("a", "Convolution", "x1", "a", conv_body(2, 1))
                + layer("b", "Convolution", "x2", "b", conv_body(3, 3, pad=1))
                + layer("cat", "Concat", ["b", "a"], "cat"))
        shapes = {"a": (2, 4, 1, 1), "b": (3, 4, 3, 3)}

        def forward(x, p):
            return np.concatenate([conv(x, *p["b"], pad=1), conv(x, *p["a"])], 1)
    else:
        raise AssertionError(case)
    return text, shapes, forward


@pytest.mark.parametrize("case", ["concat in bottom order", "residual with identity", "nested split",
                                  "read before an in-place layer", "explicit split"])
def test_small_dags_equal_their_naive_forward(rng, tmp_path, case):
    text, shapes, forward = small_dag(case)
    params = random_params(rng, shapes)
    prototxt, model = write(tmp_path, text, caffemodel(blob_layers(params), v1=False))
    net = interop.from_caffe(prototxt, model)
    x = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    expected = forward(x.astype(np.float64), params)
    ours = net.forward(x, train=False)
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)
    # the backward runs through the same tree: every convolution gets its gradient
    net.forward(x, train=True)
    net.backward(np.ones_like(ours))
    assert all(g is not None and np.abs(g).sum() > 0
               for name, _, g in net.named_params() if name.endswith("weight"))


def test_block_names_and_a_dags_summary(rng, tmp_path):
    text, shapes, _ = small_dag("nested split")
    prototxt, model = write(tmp_path, text, caffemodel(blob_layers(random_params(rng, shapes)), v1=False))
    net = interop.from_caffe(prototxt, model)
    assert net.names == ["m", "pool", "flatten"]
    paths = [n for n, _ in net.named_layers()]
    assert paths == ["m.r", "m.relu_r", "m.r_a", "m.r_b", "m.c1", "pool", "flatten"]
    join = net["m"]["concat"]
    assert join.mode == "concat" and join.branches[1] is None and join.branches[0]["r_sum"].mode == "sum"


def test_the_v1_format_with_concat(rng, tmp_path):
    text = ('input: "data" input_dim: 1 input_dim: 2 input_dim: 5 input_dim: 5\n'
            'layers { name: "c1" type: CONVOLUTION bottom: "data" top: "c1" '
            "convolution_param { num_output: 3 kernel_size: 1 } }\n"
            'layers { name: "c2" type: CONVOLUTION bottom: "data" top: "c2" '
            "convolution_param { num_output: 2 kernel_size: 3 pad: 1 } }\n"
            'layers { name: "cat" type: CONCAT bottom: "c2" bottom: "c1" top: "cat" '
            "concat_param { concat_dim: 1 } }\n")
    params = random_params(rng, {"c1": (3, 2, 1, 1), "c2": (2, 2, 3, 3)})
    model = caffemodel([(n, "Convolution", list(p)) for n, p in params.items()], v1=True)
    prototxt, model = write(tmp_path, text, model)
    net = interop.from_caffe(prototxt, model)
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    expected = np.concatenate([conv(x, *params["c2"], pad=1), conv(x, *params["c1"])], 1)
    np.testing.assert_allclose(net.forward(x, train=False), expected, rtol=1e-5, atol=1e-5)


def dag_refusal(case):
    text, shapes, _ = small_dag("concat in bottom order")
    if case == "blob reused across blocks":
        # a second block concatenates the first block's 1x1 output again
        text += (layer("c/conv", "Convolution", "b/concat", "c/conv", conv_body(2, 1))
                 + layer("c/concat", "Concat", ["c/conv", "b/c1"], "c/concat"))
        shapes = {**shapes, "c/conv": (2, 5, 1, 1)}
        return text, shapes, r"blob 'b/c1' is read by .*whose branches end in different layers"
    if case == "two outputs":
        text = INPUT + layer("a", "Convolution", "data", "a", conv_body(2, 1)) + layer(
            "b", "Convolution", "data", "b", conv_body(2, 1))
        message = r"blob 'data' is read by 'a', 'b'.*which nothing joins"
        return text, {"a": (2, 4, 1, 1), "b": (2, 4, 1, 1)}, message
    if case == "product":
        text = text.replace('type: "Concat"', 'type: "Eltwise" eltwise_param { operation: PROD }')
        return text, shapes, r"layer 'b/concat' \(Eltwise\): operation PROD is not supported"
    if case == "coefficients":
        text = text.replace('type: "Concat"', 'type: "Eltwise" eltwise_param { coeff: 1 coeff: -1 }')
        return text, shapes, r"layer 'b/concat' \(Eltwise\): coefficients \[1.0, -1.0\]"
    if case == "axis":
        text = text.replace('top: "b/concat"', 'top: "b/concat" concat_param { axis: 2 }')
        return text, shapes, r"layer 'b/concat' \(Concat\): concatenation along axis 2"
    if case == "sum of different shapes":
        text = text.replace('type: "Concat"', 'type: "Eltwise"')
        return text, shapes, r"layer 'b/concat' \(Eltwise\): adds blobs of different shapes"
    if case == "unknown blob":
        text = text.replace('bottom: "b/c3" ', 'bottom: "nowhere" ')
        return text, shapes, r"layer 'b/concat' \(Concat\): reads blob 'nowhere', which neither"
    if case == "a convolution of two blobs":  # Caffe would run it on each with shared weights
        text += layer("two", "Convolution", ["b/concat", "b/concat"], "two", conv_body(2, 1))
        return text, {**shapes, "two": (2, 5, 1, 1)}, r"layer 'two' \(Convolution\): reads \['b/concat', 'b/c"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["a convolution of two blobs", "blob reused across blocks", "two outputs",
                                  "product", "coefficients", "axis", "sum of different shapes",
                                  "unknown blob"])
def test_graphs_the_join_cannot_express_are_refused_naming_the_blob_or_layer(rng, tmp_path, case):
    text, shapes, message = dag_refusal(case)
    prototxt, model = write(tmp_path, text, caffemodel(blob_layers(random_params(rng, shapes)), v1=False))
    with pytest.raises(InputError, match=message):
        interop.from_caffe(prototxt, model)



def test_names_minicnn_cannot_hold_are_made_valid(rng, tmp_path):
    # found by the fuzzer: an empty name, a name that is only its block's prefix, a dot
    text, shapes, forward = small_dag("concat in bottom order")
    text = text.replace('name: "b/relu_c1"', 'name: "b/"').replace('name: "b/concat"', 'name: "b/con.cat"')
    text = text.replace('name: "b/c3"', 'name: ""')
    params = random_params(rng, shapes)
    model = caffemodel([("" if n == "b/c3" else n, "Convolution", list(p)) for n, p in params.items()],
                       v1=False)
    prototxt, model = write(tmp_path, text, model)
    net = interop.from_caffe(prototxt, model)
    # one namespace for the block and its join's branches: the second empty name gets a letter
    assert [n for n, _ in net.named_layers()] == ["b.c1", "b.layer", "b.layerb"]
    assert net.names == ["b"] and net["b"].names == ["con_cat"]
    x = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(net.forward(x, train=False), forward(x.astype(np.float64), params), atol=1e-5)
