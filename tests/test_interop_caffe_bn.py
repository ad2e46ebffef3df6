"""Caffe's BatchNorm + Scale (ResNet-50's deploy layout, KaimingHe/deep-residual-networks):
a residual network of bias-free convolutions, BatchNorm (statistics times a stored factor)
and Scale layers in place, Eltwise SUM with identity and projection shortcuts, against
PyTorch float64 on the same blobs; ResNet-50's whole deploy graph, written here in its
layout and names, imported with random blobs; refusals naming the layer."""

import collections
import math

import numpy as np
import pytest
from test_interop_caffe import caffemodel, write

import minicnn as mc
from minicnn import interop
from minicnn import layers as L
from minicnn.errors import InputError
from minicnn.interop import caffe_schema

torch = pytest.importorskip("torch")
F = torch.nn.functional


def conv_bn(name, bottom, top, cout, k, stride=1, pad=0, relu=True):
    text = (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{top}" convolution_param '
            f'{{ num_output: {cout} kernel_size: {k} stride: {stride} pad: {pad} bias_term: false }} }}\n'
            f'layer {{ name: "bn_{name}" type: "BatchNorm" bottom: "{top}" top: "{top}" '
            f'batch_norm_param {{ use_global_stats: true }} }}\n'
            f'layer {{ name: "scale_{name}" type: "Scale" bottom: "{top}" top: "{top}" '
            f'scale_param {{ bias_term: true }} }}\n')
    if relu:
        text += f'layer {{ name: "{name}_relu" type: "ReLU" bottom: "{top}" top: "{top}" }}\n'
    return text


def prototxt():
    text = 'name: "tiny-resnet"\ninput: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 12\ninput_dim: 12\n'
    text += conv_bn("conv1", "data", "conv1", 4, 3, pad=1)
    # res2a: projection shortcut (stride 2), ResNet-50's stride on the first 1x1
    text += conv_bn("res2a_branch1", "conv1", "res2a_branch1", 8, 1, stride=2, relu=False)
    text += conv_bn("res2a_branch2a", "conv1", "res2a_branch2a", 4, 1, stride=2)
    text += conv_bn("res2a_branch2b", "res2a_branch2a", "res2a_branch2b", 8, 3, pad=1, relu=False)
    text += ('layer { name: "res2a" type: "Eltwise" bottom: "res2a_branch1" bottom: "res2a_branch2b" '
             'top: "res2a" }\nlayer { name: "res2a_relu" type: "ReLU" bottom: "res2a" top: "res2a" }\n')
    # res2b: identity shortcut
    text += conv_bn("res2b_branch2a", "res2a", "res2b_branch2a", 8, 3, pad=1)
    text += conv_bn("res2b_branch2b", "res2b_branch2a", "res2b_branch2b", 8, 3, pad=1, relu=False)
    text += ('layer { name: "res2b" type: "Eltwise" bottom: "res2a" bottom: "res2b_branch2b" top: "res2b" }\n'
             'layer { name: "res2b_relu" type: "ReLU" bottom: "res2b" top: "res2b" }\n'
             'layer { name: "pool5" type: "Pooling" bottom: "res2b" top: "pool5" pooling_param { pool: AVE '
             'kernel_size: 6 stride: 1 } }\n'
             'layer { name: "fc5" type: "InnerProduct" bottom: "pool5" top: "fc5" inner_product_param '
             '{ num_output: 5 } }\n'
             'layer { name: "prob" type: "Softmax" bottom: "fc5" top: "prob" }\n')
    return text


CONVS = {"conv1": (4, 3, 3), "res2a_branch1": (8, 4, 1), "res2a_branch2a": (4, 4, 1),
         "res2a_branch2b": (8, 4, 3), "res2b_branch2a": (8, 8, 3), "res2b_branch2b": (8, 8, 3)}


def blobs(rng):
    out, params = [], {}
    for name, (o, c, k) in CONVS.items():
        w = (rng.standard_normal((o, c, k, k)) * np.sqrt(2 / (c * k * k))).astype(np.float32)
        factor = np.float32(rng.uniform(10, 100))
        mean = rng.standard_normal(o).astype(np.float32) * 0.1
        var, gamma = rng.uniform(0.5, 2, o).astype(np.float32), rng.uniform(0.5, 1.5, o).astype(np.float32)
        beta = rng.standard_normal(o).astype(np.float32) * 0.1
        out += [(name, "Convolution", [w]), (f"bn_{name}", "BatchNorm", [mean * factor, var * factor,
                                                                          np.array([factor])]),
                (f"scale_{name}", "Scale", [gamma, beta])]
        params[name] = (w, mean, var, gamma, beta)
    fc = rng.standard_normal((5, 8)).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    out.append(("fc5", "InnerProduct", list(fc)))
    return out, params, fc


def reference(x, params, fc):
    def cbn(name, x, stride=1, pad=0, relu=True):
        w, mean, var, gamma, beta = (torch.tensor(np.asarray(a, np.float64)) for a in params[name])
        y = F.batch_norm(F.conv2d(x, w, stride=stride, padding=pad), mean, var, gamma, beta, False, 0.0, 1e-5)
        return F.relu(y) if relu else y

    x = cbn("conv1", torch.tensor(x, dtype=torch.float64), pad=1)
    a = F.relu(cbn("res2a_branch1", x, 2, relu=False) +
               cbn("res2a_branch2b", cbn("res2a_branch2a", x, 2), pad=1, relu=False))
    b = F.relu(a + cbn("res2b_branch2b", cbn("res2b_branch2a", a, pad=1), pad=1, relu=False))
    pooled = F.avg_pool2d(b, 6, 1).flatten(1)
    w, bias = (torch.tensor(a, dtype=torch.float64) for a in fc)
    return (pooled @ w.T + bias).numpy()


def test_resnet_layout_with_batch_norm_and_scale_equals_pytorch(rng, tmp_path):
    stored, params, fc = blobs(rng)
    proto, model = write(tmp_path, prototxt(), caffemodel(stored, v1=False))
    net = interop.from_caffe(proto, model, dtype=np.float64)
    x = rng.standard_normal((2, 3, 12, 12))
    y = net.forward(x, train=False)
    expected = reference(x, params, fc)
    assert float(np.abs(y - expected).max() / np.abs(expected).max()) < 1e-6  # float32 blobs, eps
    kinds = [type(layer).__name__ for _, layer in net.named_layers()]
    assert kinds.count("BatchNorm2D") == 6 and kinds.count("Conv2D") == 6
    joins = [layer for layer in net.layers if isinstance(layer, L.Join)]
    assert [j.mode for j in joins] == ["sum", "sum"]


def test_the_moving_average_fraction_becomes_the_momentum(rng, tmp_path):
    stored, _, _ = blobs(rng)
    text = prototxt().replace("use_global_stats: true",
                              "use_global_stats: true moving_average_fraction: 0.9", 1)
    proto, model = write(tmp_path, text, caffemodel(stored, v1=False))
    net = interop.from_caffe(proto, model)
    momenta = [layer.momentum for _, layer in net.named_layers() if isinstance(layer, L.BatchNorm2D)]
    assert momenta == [0.1] + [0.001] * 5  # bn_conv1's 0.9, then Caffe's default 0.999


@pytest.mark.parametrize("case", ["scale without batch norm", "batch statistics"])
def test_refusals_name_the_layer(rng, tmp_path, case):
    stored, _, _ = blobs(rng)
    text = prototxt()
    if case == "batch statistics":
        text = text.replace("use_global_stats: true", "use_global_stats: false", 1)
        match = r"layer 'bn_conv1' \(BatchNorm\): use_global_stats false"
    else:
        text = text.replace('layer { name: "bn_conv1" type: "BatchNorm" bottom: "conv1" top: "conv1" '
                            'batch_norm_param { use_global_stats: true } }\n', "")
        stored = [s for s in stored if s[0] != "bn_conv1"]
        match = r"layer 'scale_conv1' \(Scale\): a Scale is supported only right after a BatchNorm"
    proto, model = write(tmp_path, text, caffemodel(stored, v1=False))
    with pytest.raises(InputError, match=match):
        interop.from_caffe(proto, model)


# --- ResNet-50's deploy prototxt, in its layout and names --------------------------------------
def resnet50_prototxt(size):
    """KaimingHe's ResNet-50-deploy.prototxt for a size x size input (pool5's window the final
    map: 7 at 224): conv1 (7x7/2, with bias), pool1 (3x3/2, rounded up), stages res2..res5 of
    3, 4, 6, 3 bottlenecks (branch2a 1x1 with the stride, 2b 3x3, 2c 1x1; branch1 the
    projection of each stage's first block), BatchNorm + Scale after every convolution."""
    def layer(name, kind, bottom, top, body=""):
        return f'layer {{ bottom: "{bottom}" top: "{top}" name: "{name}" type: "{kind}" {body} }}\n'

    def conv(name, bottom, cout, k, stride, pad, bn, bias=False):
        text = layer(name, "Convolution", bottom, name, f"convolution_param {{ num_output: {cout} "
                     f"kernel_size: {k} pad: {pad} stride: {stride} {'' if bias else 'bias_term: false'} }}")
        text += layer(f"bn{bn}", "BatchNorm", name, name, "batch_norm_param { use_global_stats: true }")
        return text + layer(f"scale{bn}", "Scale", name, name, "scale_param { bias_term: true }")

    text = ('name: "ResNet-50"\ninput: "data"\ninput_dim: 1\ninput_dim: 3\n'
            f"input_dim: {size}\ninput_dim: {size}\n")
    text += conv("conv1", "data", 64, 7, 2, 3, "_conv1", bias=True)
    text += layer("conv1_relu", "ReLU", "conv1", "conv1")
    text += layer("pool1", "Pooling", "conv1", "pool1",
                  "pooling_param { kernel_size: 3 stride: 2 pool: MAX }")
    bottom = "pool1"
    for stage, (width, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3), strict=True), 2):
        for i in range(blocks):
            b = f"{stage}{chr(ord('a') + i)}"
            stride = 2 if i == 0 and stage > 2 else 1
            shortcut = bottom
            if i == 0:
                text += conv(f"res{b}_branch1", bottom, width * 4, 1, stride, 0, f"{b}_branch1")
                shortcut = f"res{b}_branch1"
            text += conv(f"res{b}_branch2a", bottom, width, 1, stride, 0, f"{b}_branch2a")
            text += layer(f"res{b}_branch2a_relu", "ReLU", f"res{b}_branch2a", f"res{b}_branch2a")
            text += conv(f"res{b}_branch2b", f"res{b}_branch2a", width, 3, 1, 1, f"{b}_branch2b")
            text += layer(f"res{b}_branch2b_relu", "ReLU", f"res{b}_branch2b", f"res{b}_branch2b")
            text += conv(f"res{b}_branch2c", f"res{b}_branch2b", width * 4, 1, 1, 0, f"{b}_branch2c")
            text += f'layer {{ bottom: "{shortcut}" bottom: "res{b}_branch2c" top: "res{b}" name: "res{b}" ' \
                    'type: "Eltwise" }\n'
            text += layer(f"res{b}_relu", "ReLU", f"res{b}", f"res{b}")
            bottom = f"res{b}"
    text += layer("pool5", "Pooling", bottom, "pool5",
                  f"pooling_param {{ kernel_size: {size // 32} stride: 1 pool: AVE }}")
    text += layer("fc1000", "InnerProduct", "pool5", "fc1000", "inner_product_param { num_output: 1000 }")
    return text + layer("prob", "Softmax", "fc1000", "prob")


def random_blobs(prototxt_text, rng):
    """[(layer, type, [arrays])] for every layer of a deploy prototxt that takes blobs, shaped
    by walking its blobs' shapes (Caffe's rounding up for pooling)."""
    net = caffe_schema.parse_prototxt(prototxt_text, "deploy.prototxt")
    shapes = {net.input[0]: tuple(net.input_dim[1:])} if len(net.input) else {}
    out = []
    for layer in net.layer:
        if layer.type == "Input":
            shapes[layer.top[0]] = tuple(layer.input_param.shape[0].dim[1:])
            continue
        x = shapes[layer.bottom[0]]
        y = x
        if layer.type == "Convolution":
            p = layer.convolution_param
            k, stride, pad = p.kernel_size[0], (p.stride or [1])[0], (p.pad or [0])[0]
            w = rng.standard_normal((p.num_output, x[0] // p.group, k, k)) * math.sqrt(2 / (x[0] * k * k))
            out.append((layer.name, "Convolution",
                        [w] + ([rng.uniform(-0.1, 0.1, p.num_output)] if p.bias_term else [])))
            y = (p.num_output, *[(d + 2 * pad - k) // stride + 1 for d in x[1:]])
        elif layer.type == "BatchNorm":
            f = rng.uniform(1, 10)
            out.append((layer.name, "BatchNorm", [rng.standard_normal(x[0]) * 0.1 * f,
                                                  rng.uniform(0.5, 2, x[0]) * f, np.array([f])]))
        elif layer.type == "Scale":
            out.append((layer.name, "Scale", [rng.uniform(0.5, 1.5, x[0]), rng.standard_normal(x[0]) * 0.1]))
        elif layer.type == "Pooling":
            p = layer.pooling_param
            size = [int(math.ceil((d + 2 * p.pad - p.kernel_size) / p.stride)) + 1 for d in x[1:]]
            y = (x[0], *[o - 1 if p.pad and (o - 1) * p.stride >= d + p.pad else o
                         for o, d in zip(size, x[1:], strict=True)])
        elif layer.type == "InnerProduct":
            n, o = int(np.prod(x)), layer.inner_product_param.num_output
            out.append((layer.name, "InnerProduct", [rng.standard_normal((o, n)) * math.sqrt(1 / n),
                                                     rng.uniform(-0.1, 0.1, o)]))
            y = (o,)
        elif layer.type == "Concat":
            parts = [shapes[b] for b in layer.bottom]
            y = (sum(part[0] for part in parts), *parts[0][1:])
        for t in layer.top:
            shapes[t] = y
    return out


def test_resnet50_deploy_graph_imports_exactly(rng, tmp_path):
    text = resnet50_prototxt(64)
    proto, model = write(tmp_path, text, caffemodel(random_blobs(text, rng), v1=False))
    net = interop.from_caffe(proto, model, dtype=np.float64)
    kinds = collections.Counter(type(layer).__name__ for _, layer in net.named_layers())
    assert kinds["Conv2D"] == 53 and kinds["BatchNorm2D"] == 53 and kinds["ReLU"] == 49
    assert sum(p.size for _, p, _ in net.named_params()) == 25_557_032 + 64  # torchvision's + conv1's bias

    def joins(seq):
        return [layer for _, layer in seq.namespace() if isinstance(layer, L.Join)] + \
            [j for _, layer in seq.namespace() if isinstance(layer, L.Sequential) for j in joins(layer)]

    found = joins(net)
    assert len(found) == 16 and all(j.mode == "sum" for j in found)
    assert sum(j.branches[0] is None or j.branches[1] is None for j in found) == 12  # identity shortcuts
    from minicnn.torch_twin import torch_model

    x = rng.standard_normal((1, 3, 64, 64))
    twin = torch_model(net).double().eval()
    with torch.no_grad():
        expected = twin(torch.tensor(x)).numpy()
    y = net.forward(x, train=False)
    assert float(np.abs(y - expected).max() / np.abs(expected).max()) < 1e-10
    assert mc.to_numpy(y).shape == (1, 1000)
