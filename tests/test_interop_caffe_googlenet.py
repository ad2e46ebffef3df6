"""BVLC GoogLeNet's deploy graph (models/bvlc_googlenet/deploy.prototxt), written here in its
layout and names, imported with random blobs: nine concat joins, Caffe's rounded-up pools,
and the imported network lands name by name on minicnn.model_zoo.googlenet, which then
computes the same forward; its PyTorch twin agrees in float64."""

import collections

import numpy as np
import pytest
from test_interop_caffe import caffemodel, write
from test_interop_caffe_bn import random_blobs

import minicnn as mc
from minicnn import interop, model_zoo
from minicnn import layers as L

torch = pytest.importorskip("torch")


def googlenet_prototxt(size):
    """The deploy file for a size x size input (pool5's window the final map: 7 at 224)."""
    def layer(name, kind, bottoms, top, body=""):
        bottoms = " ".join(f'bottom: "{b}"' for b in ([bottoms] if isinstance(bottoms, str) else bottoms))
        return f'layer {{ name: "{name}" type: "{kind}" {bottoms} top: "{top}" {body} }}\n'

    def conv(name, bottom, cout, k, stride=1, pad=0, relu="relu"):
        body = f"convolution_param {{ num_output: {cout} kernel_size: {k} " + \
            (f"stride: {stride} " if stride > 1 else "") + (f"pad: {pad} " if pad else "") + "}"
        block, part = name.split("/")
        return layer(name, "Convolution", bottom, name, body) + \
            layer(f"{block}/{relu}_{part.split('_')[-1] if relu != 'relu' else part}", "ReLU", name, name)

    def pool(name, bottom, kind, k, stride, pad=0):
        return layer(name, "Pooling", bottom, name, f"pooling_param {{ pool: {kind} kernel_size: {k} "
                     f"stride: {stride} " + (f"pad: {pad} " if pad else "") + "}")

    lrn = "lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 }"
    text = ('name: "GoogleNet"\nlayer { name: "data" type: "Input" top: "data" input_param { shape: '
            f'{{ dim: 10 dim: 3 dim: {size} dim: {size} }} }} }}\n')
    text += layer("conv1/7x7_s2", "Convolution", "data", "conv1/7x7_s2",
                  "convolution_param { num_output: 64 pad: 3 kernel_size: 7 stride: 2 }")
    text += layer("conv1/relu_7x7", "ReLU", "conv1/7x7_s2", "conv1/7x7_s2")
    text += pool("pool1/3x3_s2", "conv1/7x7_s2", "MAX", 3, 2)
    text += layer("pool1/norm1", "LRN", "pool1/3x3_s2", "pool1/norm1", lrn)
    text += conv("conv2/3x3_reduce", "pool1/norm1", 64, 1)
    text += conv("conv2/3x3", "conv2/3x3_reduce", 192, 3, pad=1)
    text += layer("conv2/norm2", "LRN", "conv2/3x3", "conv2/norm2", lrn)
    text += pool("pool2/3x3_s2", "conv2/norm2", "MAX", 3, 2)
    bottom = "pool2/3x3_s2"
    for key, (c1, r3, c3, r5, c5, pp) in model_zoo.INCEPTION.items():
        m = f"inception_{key}"
        text += conv(f"{m}/1x1", bottom, c1, 1)
        text += conv(f"{m}/3x3_reduce", bottom, r3, 1) + conv(f"{m}/3x3", f"{m}/3x3_reduce", c3, 3, pad=1)
        text += conv(f"{m}/5x5_reduce", bottom, r5, 1) + conv(f"{m}/5x5", f"{m}/5x5_reduce", c5, 5, pad=2)
        text += pool(f"{m}/pool", bottom, "MAX", 3, 1, pad=1) + conv(f"{m}/pool_proj", f"{m}/pool", pp, 1)
        text += layer(f"{m}/output", "Concat", [f"{m}/1x1", f"{m}/3x3", f"{m}/5x5", f"{m}/pool_proj"],
                      f"{m}/output")
        bottom = f"{m}/output"
        if key in ("3b", "4e"):
            name = f"pool{3 if key == '3b' else 4}/3x3_s2"
            text += pool(name, bottom, "MAX", 3, 2)
            bottom = name
    text += pool("pool5/7x7_s1", bottom, "AVE", size // 32, 1)
    text += layer("pool5/drop_7x7_s1", "Dropout", "pool5/7x7_s1", "pool5/7x7_s1",
                  "dropout_param { dropout_ratio: 0.4 }")
    text += layer("loss3/classifier", "InnerProduct", "pool5/7x7_s1", "loss3/classifier",
                  "inner_product_param { num_output: 1000 }")
    return text + layer("prob", "Softmax", "loss3/classifier", "prob")


def test_googlenet_deploy_graph_lands_on_model_zoo_googlenet(rng, tmp_path):
    text = googlenet_prototxt(64)
    proto, model = write(tmp_path, text, caffemodel(random_blobs(text, rng), v1=False))
    net = interop.from_caffe(proto, model, dtype=np.float64)
    kinds = collections.Counter(type(layer).__name__ for _, layer in net.named_layers())
    assert kinds["Conv2D"] == 57 and kinds["MaxPool2D"] == 13 and kinds["LRN"] == 2
    blocks = [layer for layer in net.layers if isinstance(layer, L.Sequential)]
    joins = [x for block in blocks for _, x in block.namespace() if isinstance(x, L.Join)]
    assert len(joins) == 9 and all(j.mode == "concat" and len(j.branches) == 4 for j in joins)
    x = rng.standard_normal((2, 3, 64, 64))
    y = net.forward(x, train=False)
    zoo = model_zoo.googlenet(num_classes=1000, input_size=64, dtype=np.float64)
    assert set(zoo.named_arrays()) == set(net.named_arrays())  # name by name
    zoo.load_params({k: mc.to_numpy(v) for k, v in net.named_arrays().items()})
    # Caffe's alpha is float32 (1e-4 to 7 digits), the model's the decimal 1e-4
    assert float(np.abs(zoo.forward(x, train=False) - y).max() / np.abs(y).max()) < 1e-9
    from minicnn.torch_twin import torch_model

    with torch.no_grad():
        t = torch_model(net).double().eval()(torch.tensor(x)).numpy()
    assert float(np.abs(t - y).max() / np.abs(t).max()) < 1e-10
