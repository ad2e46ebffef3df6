"""Deep Compression files (Han et al.): the reader against files this test encodes itself.

The encoder below follows the format as the reference decoder of
songhan/SqueezeNet-Deep-Compression reads it (header of non-zero counts; per layer a
2**b-entry float32 codebook, the biases, b-bit codes, 4-bit index gaps with long gaps
bridged by stored zeros), written independently of minicnn's reader.
"""

import hashlib
import struct

import numpy as np
import pytest

pytest.importorskip("google.protobuf")
torch = pytest.importorskip("torch")
from test_interop_caffe_dag import (  # noqa: E402
    conv,
    relu,
    small_dag,
    squeezenet_prototxt,
    torch_squeezenet,
)

import minicnn as mc  # noqa: E402
from minicnn import interop, models  # noqa: E402
from minicnn.errors import InputError  # noqa: E402
from minicnn.interop import caffe_import  # noqa: E402


def nibbles(values):
    values = list(values) + ([0] if len(values) % 2 else [])
    return bytes(values[i] | values[i + 1] << 4 for i in range(0, len(values), 2))


def encode_layer(weight, bias, bits):
    """(count, bytes) of one layer: codebook entry 0 is zero, the others the distinct
    non-zero values; a run of more than 15 zeros is bridged by a stored zero (code 0)."""
    values = sorted(set(weight[weight != 0].tolist()))
    assert len(values) < 2 ** bits
    codebook = [0.0] + values + [0.0] * (2 ** bits - 1 - len(values))
    codes, gaps, last = [], [], -1
    for position, value in enumerate(weight.ravel().tolist()):
        if value == 0:
            continue
        while position - last - 1 > 15:
            last += 16
            codes.append(0)
            gaps.append(15)
        codes.append(values.index(value) + 1)
        gaps.append(position - last - 1)
        last = position
    body = struct.pack(f"<{2 ** bits}f", *codebook) + struct.pack(f"<{len(bias)}f", *bias.tolist())
    body += bytes(codes) if bits == 8 else nibbles(codes)
    return len(codes), body + nibbles(gaps)


def encode(layers):
    """A Deep Compression file of [(weight, bias, bits)] in file order."""
    counts, bodies = zip(*(encode_layer(w, b, bits) for w, b, bits in layers), strict=True)
    return struct.pack(f"<{len(counts)}I", *counts) + b"".join(bodies)


def pruned_quantized(rng, shape, levels, keep):
    """Weights that take ``levels`` distinct non-zero values on about ``keep`` of the positions."""
    values = rng.uniform(-1, 1, levels).astype(np.float32)
    weight = values[rng.integers(0, levels, shape)]
    weight[rng.random(shape) > keep] = 0
    return weight.astype(np.float32)


CHAIN = ('input: "data" input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'
         'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" '
         "convolution_param { num_output: 5 kernel_size: 3 } }\n"
         'layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }\n'
         'layer { name: "fc2" type: "InnerProduct" bottom: "conv1" top: "fc2" '
         "inner_product_param { num_output: 7 } }\n")


def chain_params(rng):
    # fc2 is 7 x 180 at about 5% density: gaps longer than 15 and an odd count of 4-bit codes
    w1, w2 = pruned_quantized(rng, (5, 3, 3, 3), 40, 0.6), pruned_quantized(rng, (7, 180), 9, 0.05)
    if (w2 != 0).sum() % 2 == 0:
        w2[0, 0] = w2[w2 != 0][0] if w2[0, 0] == 0 else 0
    return {"conv1": (w1, rng.uniform(-1, 1, 5).astype(np.float32)),
            "fc2": (w2, rng.uniform(-1, 1, 7).astype(np.float32))}


def write_chain(tmp_path, rng, mutate=None):
    params = chain_params(rng)
    data = encode([(*params["conv1"], 8), (*params["fc2"], 4)])
    if mutate:
        data = mutate(data)
    (tmp_path / "deploy.prototxt").write_text(CHAIN)
    (tmp_path / "w.net").write_bytes(data)
    return tmp_path / "deploy.prototxt", tmp_path / "w.net", params


def test_a_pruned_quantized_chain_decodes_exactly(rng, tmp_path):
    prototxt, path, params = write_chain(tmp_path, rng)
    assert (params["fc2"][0] != 0).sum() % 2 == 1
    net = interop.from_caffe(prototxt, deep_compression=path)
    for name in ("conv1", "fc2"):
        np.testing.assert_array_equal(net[name].params["weight"], params[name][0])
        np.testing.assert_array_equal(net[name].params["bias"], params[name][1])
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    hidden = relu(conv(x.astype(np.float64), *params["conv1"])).reshape(2, -1)
    expected = hidden @ params["fc2"][0].T.astype(np.float64) + params["fc2"][1]
    np.testing.assert_allclose(net.forward(x, train=False), expected, rtol=1e-5, atol=1e-5)
    assert net.meta["source_format"] == "deep-compression" and net.meta["source"] == "w.net"


def test_positions_not_stored_are_zero_whatever_the_first_codebook_entry(tmp_path):
    # the reference decoder scatters codebook[code] into zeros: codebook[0] reaches only the
    # positions that store code 0
    from minicnn.interop import deep_compression

    codebook = [5.0, 2.0] + [0.0] * 14
    codes, gaps = [1, 0], [1, 1]  # positions 1 (2.0) and 3 (5.0) of 5
    data = struct.pack("<I", 2) + struct.pack("<16f", *codebook) + struct.pack("<f", 0.5)
    data += nibbles(codes) + nibbles(gaps)
    (tmp_path / "w.net").write_bytes(data)
    weight, bias = deep_compression.read(tmp_path / "w.net", [("fc", "InnerProduct", (1, 5), 1)])["fc"]
    np.testing.assert_array_equal(weight, [[0.0, 2.0, 0.0, 5.0, 0.0]])
    np.testing.assert_array_equal(bias, [0.5])


def test_layers_are_read_in_prototxt_order_not_in_the_joins_branch_order(rng, tmp_path):
    # b/c3 comes first in the file, the concat reads b/c1 first
    text, shapes, forward = small_dag("concat in bottom order")
    params = {name: (pruned_quantized(rng, s, 20, 0.5), rng.uniform(-1, 1, s[0]).astype(np.float32))
              for name, s in shapes.items()}
    (tmp_path / "d.prototxt").write_text(text)
    (tmp_path / "d.net").write_bytes(encode([(*params["b/c3"], 8), (*params["b/c1"], 8)]))
    net = interop.from_caffe(tmp_path / "d.prototxt", deep_compression=tmp_path / "d.net")
    x = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(net.forward(x, train=False), forward(x.astype(np.float64), params),
                               rtol=1e-5, atol=1e-5)


def test_a_compressed_squeezenet_lands_on_minicnns_squeezenet(rng, tmp_path):
    text, shapes = squeezenet_prototxt("1.0", 67, "deep-compression")
    params = {name: (pruned_quantized(rng, s, 30, 0.4) * np.float32(np.sqrt(2 / np.prod(s[1:]))),
                     rng.uniform(-0.1, 0.1, s[0]).astype(np.float32)) for name, s in shapes.items()}
    (tmp_path / "SqueezeNet_deploy.prototxt").write_text(text)
    (tmp_path / "c.net").write_bytes(encode([(w, b, 8) for w, b in params.values()]))
    net = interop.from_caffe(tmp_path / "SqueezeNet_deploy.prototxt", deep_compression=tmp_path / "c.net")
    known = models.squeezenet("1.0", num_classes=10, input_size=67)
    assert [n for n, *_ in net.named_params()] == [n for n, *_ in known.named_params()]
    x = rng.uniform(-60, 60, (2, 3, 67, 67)).astype(np.float32)
    expected = torch_squeezenet(x, params, "1.0", "deep-compression")
    assert float(np.abs(net.forward(x, train=False) - expected).max() / np.abs(expected).max()) < 1e-4


def truncated(data):
    return data[:-3]


def left_over(data):
    return data + b"\0\0\0\0\0"


def count_too_large(data):
    return struct.pack("<I", 5 * 3 * 3 * 3 + 1) + data[4:]


def gaps_too_long(data):
    # all of conv1's gap bytes at 15: its 80-odd stored weights then reach past its 135 positions
    n = struct.unpack("<I", data[:4])[0]
    start = 8 + 4 * 256 + 4 * 5 + n
    return data[:start] + b"\xff" * ((n + 1) // 2) + data[start + (n + 1) // 2:]


def header_only(data):
    return data[:6]


@pytest.mark.parametrize("mutate,message", [
    (truncated, r"w.net: truncated: layer 'fc2' needs \d+ bytes at offset \d+, the file has \d+ left"),
    (left_over, r"w.net: 5 bytes left over after the last layer 'fc2'"),
    (count_too_large, r"w.net: layer 'conv1': the header gives 136 stored weights, the layer has 135"),
    (gaps_too_long, r"w.net: layer 'conv1': the index gaps reach position \d+, the layer has 135 weights"),
    (header_only, r"w.net: 6 bytes, shorter than the header of 2 counts"),
], ids=["truncated", "left over", "count too large", "gaps too long", "header only"])
def test_a_file_that_does_not_fit_is_refused_naming_the_layer(rng, tmp_path, mutate, message):
    prototxt, path, _ = write_chain(tmp_path, rng, mutate)
    with pytest.raises(InputError, match=message):
        interop.from_caffe(prototxt, deep_compression=path)


def test_a_layer_without_bias_cannot_come_from_deep_compression(rng, tmp_path):
    prototxt, path, _ = write_chain(tmp_path, rng)
    prototxt.write_text(CHAIN.replace("num_output: 7", "num_output: 7 bias_term: false"))
    with pytest.raises(InputError, match=r"layer 'fc2' \(InnerProduct\): has no bias: w.net"):
        interop.from_caffe(prototxt, deep_compression=path)


def test_cli_writes_the_network_with_the_published_mean_and_the_class_names(rng, tmp_path, capsys,
                                                                           monkeypatch):
    from minicnn.cli import main

    prototxt, path, params = write_chain(tmp_path, rng)
    (tmp_path / "classes.txt").write_text("".join(f"n0{i} class {i}\n" for i in range(7)))
    out = tmp_path / "net.npz"
    argv = ["import-weights", str(prototxt), "--deep-compression", str(path), "--out", str(out),
            "--classes", str(tmp_path / "classes.txt")]
    assert main(argv) == 0
    assert "no mean given" in capsys.readouterr().out
    sha1 = hashlib.sha1(path.read_bytes()).hexdigest()
    monkeypatch.setitem(caffe_import.PUBLISHED_MEAN, sha1, ([104.0, 117.0, 123.0], "a test"))
    assert main(argv) == 0
    assert "mean [104.0, 117.0, 123.0] (BGR) from a test" in capsys.readouterr().out
    net = mc.Sequential.load(out)
    assert net.meta["mean"] == [104.0, 117.0, 123.0] and net.meta["channel_order"] == "BGR"
    assert net.meta["classes"][3] == "n03 class 3" and net.meta["input_size"] == 8
    np.testing.assert_array_equal(net["fc2"].params["weight"], params["fc2"][0])
    assert main([*argv, "--mean", "1", "2", "3"]) == 0  # R G B given: stored as B G R
    assert mc.Sequential.load(out).meta["mean"] == [3.0, 2.0, 1.0]
    capsys.readouterr()
    assert main([*argv, "--caffemodel", str(path)]) == 2
    assert "give the Caffe weights once" in capsys.readouterr().err
