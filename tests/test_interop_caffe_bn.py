"""Caffe's BatchNorm + Scale (ResNet-50's deploy layout, KaimingHe/deep-residual-networks):
a residual network of bias-free convolutions, BatchNorm (statistics times a stored factor)
and Scale layers in place, Eltwise SUM with identity and projection shortcuts, against
PyTorch float64 on the same blobs; refusals naming the layer."""

import numpy as np
import pytest
from test_interop_caffe import caffemodel, write

from minicnn import interop
from minicnn import layers as L
from minicnn.errors import InputError

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
