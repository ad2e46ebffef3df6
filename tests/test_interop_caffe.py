"""Caffe import (minicnn.interop.from_caffe) against naive loops of Caffe's own semantics.

The caffemodels here are encoded byte by byte with a small protobuf writer and the field
numbers of caffe.proto, independently of minicnn's schema, in both storage formats: the
current ``layer`` (string types, blobs with a BlobShape, packed data) and the V1 ``layers``
of the 2014 BVLC files (enum types, legacy num/channels/height/width, unpacked data).
"""

import math
import re
import struct

import numpy as np
import pytest

pytest.importorskip("google.protobuf")
from naive import conv2d, lrn, max_pool2d  # noqa: E402

import minicnn as mc  # noqa: E402
from minicnn import interop, models  # noqa: E402
from minicnn.errors import InputError  # noqa: E402

ALEXNET_NAMES = set(models.alexnet(10, channels=(4, 4, 4, 4, 4), hidden=4).names)
V1 = {"Convolution": 4, "ReLU": 18, "Pooling": 17, "LRN": 15, "InnerProduct": 14, "Dropout": 6,
      "Softmax": 20, "Data": 5, "SoftmaxWithLoss": 21}


# --- a protobuf writer (wire format: varint keys, length-delimited fields) -----------------
def varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, wire, payload):
    return varint(number << 3 | wire) + payload


def length_delimited(number, data):
    return field(number, 2, varint(len(data)) + data)


def string(number, text):
    return length_delimited(number, text.encode())


def integer(number, value):
    return field(number, 0, varint(value))


def blob(array, v1):
    """BlobProto: V1 with num/channels/height/width (1..4) and unpacked data (5, fixed32);
    current with shape (7: BlobShape, dim 1 packed) and packed data (5)."""
    array = np.asarray(array, np.float32)
    if v1:
        legacy = [1] * (4 - array.ndim) + list(array.shape)
        head = b"".join(integer(i + 1, d) for i, d in enumerate(legacy))
        return head + b"".join(field(5, 5, struct.pack("<f", v)) for v in array.ravel())
    shape = length_delimited(1, b"".join(varint(d) for d in array.shape))
    return length_delimited(7, shape) + length_delimited(5, array.astype("<f4").tobytes())


def caffemodel(layers, v1):
    """NetParameter with layers [(name, type, [arrays])]: V1 ``layers`` (2; name 4, type 5
    enum, blobs 6) or ``layer`` (100; name 1, type 2 string, blobs 7)."""
    out = string(1, "test")
    for name, kind, arrays in layers:
        if v1:
            body = string(4, name) + integer(5, V1[kind]) + b"".join(length_delimited(6, blob(a, True))
                                                                        for a in arrays)
            out += length_delimited(2, body)
        else:
            body = string(1, name) + string(2, kind) + b"".join(length_delimited(7, blob(a, False))
                                                                for a in arrays)
            out += length_delimited(100, body)
    return out


# --- the networks ----------------------------------------------------------------------------
def weights(rng, shape):
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)


def small_alexnet_params(rng):
    """conv1 4x3x5x5 s2, conv2 6x2x3x3 g2, conv3 6x6x3x3, conv4 6x3x3x3 g2, conv5 4x3x3x3 g2,
    fc6 8x16, fc7 8x8, fc8 5x8 on a 3x35x35 input; the pools round up (16 -> 8 -> 4 -> 2)."""
    shapes = {"conv1": (4, 3, 5, 5), "conv2": (6, 2, 3, 3), "conv3": (6, 6, 3, 3), "conv4": (6, 3, 3, 3),
              "conv5": (4, 3, 3, 3), "fc6": (8, 16), "fc7": (8, 8), "fc8": (5, 8)}
    return {name: (weights(rng, s), rng.uniform(-0.2, 0.2, s[0]).astype(np.float32))
            for name, s in shapes.items()}


def layer_text(v1, name, kind, bottom, top, body=""):
    if v1:
        return (f'layers {{ name: "{name}" type: {kind_v1(kind)} bottom: "{bottom}" top: "{top}" '
                f"blobs_lr: 1 {body} }}\n")
    return f'layer {{ name: "{name}" type: "{kind}" bottom: "{bottom}" top: "{top}" {body} }}\n'


def kind_v1(kind):
    return {"Convolution": "CONVOLUTION", "ReLU": "RELU", "Pooling": "POOLING", "LRN": "LRN",
            "InnerProduct": "INNER_PRODUCT", "Dropout": "DROPOUT", "Softmax": "SOFTMAX"}[kind]


def alexnet_prototxt(v1, caffenet):
    """AlexNet (LRN then pool) or CaffeNet (pool then LRN); V1 text with input_dim, or the
    current text with an Input layer and the _h/_w forms on conv1."""
    lines = []
    if v1:
        lines.append('name: "net" input: "data" input_dim: 1 input_dim: 3 input_dim: 35 input_dim: 35\n')
    else:
        lines.append('name: "net" layer { name: "data" type: "Input" top: "data" '
                     "input_param { shape { dim: 1 dim: 3 dim: 35 dim: 35 } } }\n")
    filler = 'weight_filler { type: "gaussian" std: 0.01 } bias_filler { type: "constant" value: 0 }'
    conv1 = ("kernel_size: 5 stride: 2" if v1 else "kernel_h: 5 kernel_w: 5 stride_h: 2 stride_w: 2 "
             "pad_h: 0 pad_w: 0")
    convs = {"conv1": (f"num_output: 4 {conv1}", 1),
             "conv2": ("num_output: 6 kernel_size: 3 pad: 1 group: 2", 2),
             "conv3": ("num_output: 6 kernel_size: 3 pad: 1", 3),
             "conv4": ("num_output: 6 kernel_size: 3 pad: 1 group: 2", 4),
             "conv5": ("num_output: 4 kernel_size: 3 pad: 1 group: 2", 5)}
    lrn = "lrn_param { local_size: 3 alpha: 0.3 beta: 0.75 }"  # a large alpha, so a wrong window shows
    pool = "pooling_param { pool: MAX kernel_size: 3 stride: 2 }"
    last = "data"
    for name, (conv, k) in convs.items():
        lines.append(layer_text(v1, name, "Convolution", last, name,
                                f"convolution_param {{ {conv} {filler} }}"))
        lines.append(layer_text(v1, f"relu{k}", "ReLU", name, name))
        last = name
        steps = []
        if k in (1, 2):
            steps = [("pool", "Pooling", pool), ("norm", "LRN", lrn)]
            if not caffenet:
                steps.reverse()
        elif k == 5:
            steps = [("pool", "Pooling", pool)]
        for prefix, kind, body in steps:
            lines.append(layer_text(v1, f"{prefix}{k}", kind, last, f"{prefix}{k}", body))
            last = f"{prefix}{k}"
    for name, out in (("fc6", 8), ("fc7", 8), ("fc8", 5)):
        lines.append(layer_text(v1, name, "InnerProduct", last, name,
                                f"inner_product_param {{ num_output: {out} {filler} }}"))
        last = name
        if name != "fc8":
            k = name[-1]
            lines.append(layer_text(v1, f"relu{k}", "ReLU", name, name))
            lines.append(layer_text(v1, f"drop{k}", "Dropout", name, name,
                                    "dropout_param { dropout_ratio: 0.5 }"))
    lines.append(layer_text(v1, "prob", "Softmax", last, "prob"))
    return "".join(lines)


def naive_alexnet(x, params, caffenet):
    y = x.astype(np.float64)
    for k, name in enumerate(["conv1", "conv2", "conv3", "conv4", "conv5"], start=1):
        w, b = params[name]
        stride, pad = ((2, 2), (0, 0)) if k == 1 else ((1, 1), (1, 1))
        groups = 2 if k in (2, 4, 5) else 1
        y = np.maximum(conv2d(y, w.astype(np.float64), b.astype(np.float64), stride, pad, groups), 0)
        if k in (1, 2):
            steps = [lambda a: max_pool2d(a, 3, 2, 0, True), lambda a: lrn(a, 3, 0.3, 0.75, 1.0)]
            for step in (steps if caffenet else steps[::-1]):
                y = step(y)
        elif k == 5:
            y = max_pool2d(y, 3, 2, 0, True)
    y = y.reshape(len(y), -1)
    for name in ("fc6", "fc7", "fc8"):
        w, b = params[name]
        y = y @ w.T.astype(np.float64) + b
        if name != "fc8":
            y = np.maximum(y, 0)
    return y


def write(tmp_path, prototxt, model_bytes, stem="net"):
    (tmp_path / f"{stem}.prototxt").write_text(prototxt)
    (tmp_path / f"{stem}.caffemodel").write_bytes(model_bytes)
    return tmp_path / f"{stem}.prototxt", tmp_path / f"{stem}.caffemodel"


def blob_layers(params, extra=()):
    kinds = {n: "Convolution" if n.startswith("conv") else "InnerProduct" for n in params}
    # a trained caffemodel also holds the blob-less layers of its training net
    return [("data", "Data", []), *[(n, kinds[n], list(p)) for n, p in params.items()], *extra,
            ("loss", "SoftmaxWithLoss", [])]


@pytest.mark.parametrize("v1,caffenet", [(True, True), (False, False), (True, False)],
                         ids=["V1-layers-caffenet", "layer-alexnet", "V1-layers-alexnet"])
def test_alexnet_and_caffenet_equal_caffes_forward(rng, tmp_path, v1, caffenet):
    params = small_alexnet_params(rng)
    prototxt, model = write(tmp_path, alexnet_prototxt(v1, caffenet), caffemodel(blob_layers(params), v1))
    net = interop.from_caffe(prototxt, model)
    assert set(net.names) == ALEXNET_NAMES
    first, second = ("pool1", "norm1") if caffenet else ("norm1", "pool1")
    assert net.names.index(first) < net.names.index(second)
    assert net["conv2"].groups == 2 and net["pool1"].ceil_mode and net.input_shape == (3, 35, 35)
    assert net.meta["channel_order"] == "BGR" and net.meta["softmax_dropped"]
    assert net.meta["source"] == "net.caffemodel" and len(net.meta["source_sha256"]) == 64
    x = rng.uniform(-50, 50, (2, 3, 35, 35)).astype(np.float32)
    expected = naive_alexnet(x, params, caffenet)
    error = float(np.abs(net.forward(x, train=False) - expected).max() / np.abs(expected).max())
    print(f"parity caffe {'V1' if v1 else 'layer'} {'caffenet' if caffenet else 'alexnet'}: {error:.2e}")
    assert error < 1e-4
    assert models.transfer_net(net, 21, hidden=8)["fc7"].frozen


def caffe_ave_pool(x, k, s, p):
    """Caffe's PoolingLayer AVE forward, loop for loop (pooling_layer.cpp)."""
    N, C, H, W = x.shape

    def out(size):
        o = math.ceil((size + 2 * p - k) / s) + 1
        if p and (o - 1) * s >= size + p:
            o -= 1
        return o

    OH, OW = out(H), out(W)
    y = np.zeros((N, C, OH, OW))
    for ph in range(OH):
        for pw in range(OW):
            hstart, wstart = ph * s - p, pw * s - p
            hend, wend = min(hstart + k, H + p), min(wstart + k, W + p)
            size = (hend - hstart) * (wend - wstart)
            hstart, wstart, hend, wend = max(hstart, 0), max(wstart, 0), min(hend, H), min(wend, W)
            y[:, :, ph, pw] = x[:, :, hstart:hend, wstart:wend].sum(axis=(2, 3)) / size
    return y


@pytest.mark.parametrize("k,s,p,size", [(3, 2, 1, 8), (3, 2, 0, 8), (2, 2, 1, 7), (3, 3, 1, 10)])
def test_ave_pooling_with_caffes_rounding_and_divisor(rng, tmp_path, k, s, p, size):
    text = (f'input: "data" input_shape {{ dim: 2 dim: 3 dim: {size} dim: {size} }}\n'
            + layer_text(False, "pool1", "Pooling", "data", "pool1",
                         f"pooling_param {{ pool: AVE kernel_size: {k} stride: {s} pad: {p} }}"))
    prototxt, model = write(tmp_path, text, caffemodel([], v1=False))
    net = interop.from_caffe(prototxt, model)
    x = rng.standard_normal((2, 3, size, size)).astype(np.float32)
    expected = caffe_ave_pool(x.astype(np.float64), k, s, p)
    ours = net.forward(x, train=False)
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


def test_global_and_padded_max_pooling(rng, tmp_path):
    text = ('input: "data" input_dim: 1 input_dim: 2 input_dim: 9 input_dim: 9\n'
            + layer_text(False, "p", "Pooling", "data", "p", "pooling_param { pool: MAX kernel_size: 3 "
                         "stride: 2 pad: 1 }")
            + layer_text(False, "g", "Pooling", "p", "g", "pooling_param { pool: AVE global_pooling: true }"))
    prototxt, model = write(tmp_path, text, caffemodel([], v1=False))
    net = interop.from_caffe(prototxt, model)
    x = rng.standard_normal((1, 2, 9, 9)).astype(np.float32)
    expected = max_pool2d(x.astype(np.float64), 3, 2, 1, True).mean(axis=(2, 3), keepdims=True)
    np.testing.assert_allclose(net.forward(x, train=False), expected, rtol=1e-5, atol=1e-6)
    assert net.names == ["pool0", "pool0b"]


def mean_blob(image):
    c, h, w = image.shape
    return (integer(1, 1) + integer(2, c) + integer(3, h) + integer(4, w)
            + length_delimited(5, image.astype("<f4").tobytes()))


def test_mean_files_become_per_channel_means_in_bgr_order(rng, tmp_path):
    params = small_alexnet_params(rng)
    prototxt, model = write(tmp_path, alexnet_prototxt(True, True), caffemodel(blob_layers(params), True))
    image = np.stack([np.full((256, 256), v, np.float32) for v in (104.0, 117.0, 123.0)])
    image[0, :128] += 2.0  # the mean of the channel, not one pixel
    (tmp_path / "mean.binaryproto").write_bytes(mean_blob(image))
    np.save(tmp_path / "mean.npy", image)
    for name in ("mean.binaryproto", "mean.npy"):
        net = interop.from_caffe(prototxt, model, mean_file=tmp_path / name)
        np.testing.assert_allclose(net.meta["mean"], [105.0, 117.0, 123.0], rtol=1e-6)
        assert net.meta["std"] == [1.0, 1.0, 1.0] and net.meta["mean_file"] == name


def test_cli_imports_a_caffe_model_with_its_mean_and_says_if_the_sha1_is_published(rng, tmp_path, capsys,
                                                                                 monkeypatch):
    from minicnn.cli import main
    from minicnn.interop import layout

    params = small_alexnet_params(rng)
    prototxt, model = write(tmp_path, alexnet_prototxt(False, False), caffemodel(blob_layers(params), False))
    (tmp_path / "mean.binaryproto").write_bytes(mean_blob(np.full((3, 4, 4), 7.0, np.float32)))
    out = tmp_path / "source.npz"
    argv = ["import-weights", str(prototxt), "--caffemodel", str(model), "--out", str(out),
            "--mean-file", str(tmp_path / "mean.binaryproto")]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "is not a known published sha1" in text and "Softmax dropped" in text
    net = mc.Sequential.load(out)
    assert net.meta["mean"] == [7.0, 7.0, 7.0] and net.meta["channel_order"] == "BGR"
    monkeypatch.setitem(layout.KNOWN_SHA1, net.meta["source_sha1"], "test.caffemodel (a test)")
    assert main([*argv[:-2], "--mean", "123", "117", "104"]) == 0
    assert "matches the published sha1 of test.caffemodel" in capsys.readouterr().out
    assert mc.Sequential.load(out).meta["mean"] == [104.0, 117.0, 123.0]  # R G B given, BGR stored


def refusal(rng, case):
    """(prototxt text, caffemodel layers, v1, expected message) of a file minicnn must refuse."""
    params = small_alexnet_params(rng)
    text, layers = alexnet_prototxt(False, False), blob_layers(params)
    if case == "blob count":
        w, b = params["conv3"]
        layers = [(n, k, [w[:, :5], b] if n == "conv3" else a) for n, k, a in layers]
        return text, layers, r"layer 'conv3' \(Convolution\): blob weight holds 270 values, the layer needs"
    if case == "missing from the caffemodel":
        layers = [entry for entry in layers if entry[0] != "fc7"]
        return text, layers, r"layer 'fc7' \(InnerProduct\): has no weights in net.caffemodel"
    if case == "missing from the prototxt":
        layers = [*layers, ("fc9", "InnerProduct", [np.zeros((2, 5), np.float32)])]
        return text, layers, r"layer 'fc9' \(InnerProduct\): has weights in net.caffemodel but no layer"
    if case == "within channel":
        text = text.replace("lrn_param { local_size: 3",
                            "lrn_param { norm_region: WITHIN_CHANNEL local_size: 3", 1)
        return text, layers, r"layer 'norm1' \(LRN\): norm_region WITHIN_CHANNEL is not supported"
    if case == "unsupported type":
        text = text.replace('name: "relu3" type: "ReLU"', 'name: "relu3" type: "Sigmoid"')
        return text, layers, r"layer 'relu3' \(Sigmoid\): layer type not supported"
    if case == "stochastic":
        text = text.replace("pool: MAX", "pool: STOCHASTIC", 1)
        return text, layers, r"layer 'pool1' \(Pooling\): pool STOCHASTIC is not supported"
    if case == "not a chain":
        text = text.replace('bottom: "conv2" top: "conv2" ', 'bottom: "data" top: "conv2" ', 1)
        return text, layers, r"blob 'data' is read by 'conv1', 'relu2'.*a split must rejoin in one Concat"
    if case == "softmax inside":
        text = text.replace('name: "drop6" type: "Dropout"', 'name: "drop6" type: "Softmax"')
        return text, layers, r"layer 'drop6' \(Softmax\): a Softmax is supported only as the last layer"
    if case == "dilation":
        text = text.replace("group: 2", "group: 2 dilation: 2", 1)
        return text, layers, r"layer 'conv2' \(Convolution\): dilation \[2\] is not supported"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["blob count", "missing from the caffemodel", "missing from the prototxt",
                                  "within channel", "unsupported type", "stochastic", "not a chain",
                                  "softmax inside", "dilation"])
def test_what_does_not_match_or_cannot_be_computed_is_refused_by_layer(rng, tmp_path, case):
    text, layers, message = refusal(rng, case)
    prototxt, model = write(tmp_path, text, caffemodel(layers, v1=False))
    with pytest.raises(InputError, match=message):
        interop.from_caffe(prototxt, model)


def test_unreadable_files_are_named(tmp_path):
    (tmp_path / "bad.prototxt").write_text("layer { name: ")
    (tmp_path / "w.caffemodel").write_bytes(b"\xff\xff\xff")
    with pytest.raises(InputError, match="bad.prototxt: not a readable Caffe prototxt"):
        interop.from_caffe(tmp_path / "bad.prototxt", tmp_path / "w.caffemodel")
    with pytest.raises(InputError, match="no such file"):
        interop.from_caffe(tmp_path / "missing.prototxt", tmp_path / "w.caffemodel")


@pytest.mark.parametrize("step", ["prototxt", "caffemodel"])
def test_a_missing_protobuf_package_says_how_to_install_it(monkeypatch, tmp_path, step):
    import sys

    from minicnn.interop import caffe_schema

    monkeypatch.setattr(caffe_schema, "_classes", None)  # as in a process that never parsed one
    monkeypatch.setitem(sys.modules, "google.protobuf", None)
    with pytest.raises(InputError, match=r'protobuf package: pip install -e "\.\[interop\]"'):
        if step == "prototxt":
            caffe_schema.parse_prototxt("name: 'x'", "deploy.prototxt")
        else:
            caffe_schema.parse_binary(b"", "NetParameter", "w.caffemodel")


# --- issue 26, defect 5: what a careless input gets from import-weights ------------------------
def binary_names_caffemodel():
    """A protobuf that parses as a NetParameter whose layer name is bytes, not text."""
    body = (length_delimited(1, b"\x1b[31m\xff\xfe\x00garbage") + string(2, "Convolution")
            + length_delimited(7, blob(np.zeros(3), False)))
    return length_delimited(100, body)


@pytest.mark.parametrize("case", ["empty onnx", "empty caffemodel", "binary prototxt", "binary names",
                                  "empty deep compression", "control characters"])
def test_import_weights_names_a_careless_input_in_printable_text(rng, tmp_path, capsys, case):
    from minicnn.cli import main

    prototxt, model = write(tmp_path, alexnet_prototxt(False, False),
                            caffemodel(blob_layers(small_alexnet_params(rng)), False))
    out = tmp_path / "out.npz"
    if case == "empty onnx":
        (tmp_path / "m.onnx").write_bytes(b"")
        argv, expected = [str(tmp_path / "m.onnx")], r"m.onnx: empty file"
    elif case == "empty caffemodel":
        model.write_bytes(b"")
        argv, expected = [str(prototxt), "--caffemodel", str(model)], r"net.caffemodel: empty file"
    elif case == "empty deep compression":
        (tmp_path / "w.net").write_bytes(b"")
        argv, expected = [str(prototxt), "--deep-compression", str(tmp_path / "w.net")], r"w.net: empty file"
    elif case == "control characters":  # UTF-8 text, but not a prototxt's
        prototxt.write_bytes(b"\x1b[31m\x00\x01\x02 layer { name: 'a' }")
        argv, expected = [str(prototxt), "--caffemodel", str(model)], r"net.prototxt: not a Caffe prototxt"
    elif case == "binary prototxt":
        prototxt.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))
        argv, expected = [str(prototxt), "--caffemodel", str(model)], r"net.prototxt: not a Caffe prototxt"
    else:
        model.write_bytes(binary_names_caffemodel())
        argv, expected = ([str(prototxt), "--caffemodel", str(model)],
                          r"net.caffemodel: layer 1 has a name, type or blob name that is not printable text")
    assert main(["import-weights", *argv, "--out", str(out)]) == 2
    message = capsys.readouterr().err
    assert re.search(expected, message), message
    assert "opset" not in message and "\\x" not in message and "b'" not in message
    assert all(c.isprintable() for c in message.strip()), repr(message)
    assert not out.exists()
