"""Import the deploy prototxts users hold (BVLC GoogLeNet, models/bvlc_googlenet/deploy.prototxt;
ResNet-50, KaimingHe/deep-residual-networks prototxt/ResNet-50-deploy.prototxt) with random
blobs written into a caffemodel, and check the imported network: its layer counts, its forward
against its PyTorch twin in float64, and, for GoogLeNet, against minicnn.model_zoo.googlenet
holding the same weights by name. The prototxts are not part of minicnn: give their paths.

    python experiments/caffe_zoo_check.py --googlenet deploy.prototxt --resnet50 ResNet-50-deploy.prototxt
"""

from __future__ import annotations

import argparse
import collections
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_interop_caffe import caffemodel  # noqa: E402  (the tests' protobuf writer)

import minicnn as mc  # noqa: E402
from minicnn import interop, model_zoo  # noqa: E402
from minicnn.interop import caffe_schema  # noqa: E402


def random_blobs(prototxt: Path, rng):
    """[(layer, type, [arrays])] for every layer that takes blobs, shaped by walking the
    prototxt's blob shapes (Caffe's rounding up for pooling)."""
    net = caffe_schema.parse_prototxt(prototxt.read_text(), str(prototxt))
    shapes = {net.input[0]: tuple(net.input_dim[1:])} if len(net.input) else {}
    out = []
    for layer in net.layer:
        if layer.type == "Input":
            shapes[layer.top[0]] = tuple(layer.input_param.shape[0].dim[1:])
            continue
        x = shapes[layer.bottom[0]]
        if layer.type == "Convolution":
            p = layer.convolution_param
            k, s, pad = p.kernel_size[0], (p.stride or [1])[0], (p.pad or [0])[0]
            w = rng.standard_normal((p.num_output, x[0] // p.group, k, k)) * math.sqrt(2 / (x[0] * k * k))
            out.append((layer.name, "Convolution", [w] + ([rng.uniform(-0.1, 0.1, p.num_output)]
                                                          if p.bias_term else [])))
            size = [(d + 2 * pad - k) // s + 1 for d in x[1:]]
            y = (p.num_output, *size)
        elif layer.type == "BatchNorm":
            f = rng.uniform(1, 10)
            out.append((layer.name, "BatchNorm", [rng.standard_normal(x[0]) * 0.1 * f,
                                                  rng.uniform(0.5, 2, x[0]) * f, np.array([f])]))
            y = x
        elif layer.type == "Scale":
            out.append((layer.name, "Scale", [rng.uniform(0.5, 1.5, x[0]), rng.standard_normal(x[0]) * 0.1]))
            y = x
        elif layer.type == "Pooling":
            p = layer.pooling_param
            size = [int(math.ceil((d + 2 * p.pad - p.kernel_size) / p.stride)) + 1 for d in x[1:]]
            size = [o - 1 if p.pad and (o - 1) * p.stride >= d + p.pad else o
                    for o, d in zip(size, x[1:], strict=True)]
            y = (x[0], *size)
        elif layer.type == "InnerProduct":
            n, o = int(np.prod(x)), layer.inner_product_param.num_output
            out.append((layer.name, "InnerProduct", [rng.standard_normal((o, n)) * math.sqrt(1 / n),
                                                     rng.uniform(-0.1, 0.1, o)]))
            y = (o,)
        elif layer.type == "Concat":
            parts = [shapes[b] for b in layer.bottom]
            y = (sum(p[0] for p in parts), *parts[0][1:])
        else:
            y = x
        for t in layer.top:
            shapes[t] = y
    return out


def check(prototxt: Path, rng, zoo=None):
    import torch

    from minicnn.torch_twin import torch_model

    with tempfile.TemporaryDirectory() as d:
        model = Path(d) / "random.caffemodel"
        model.write_bytes(caffemodel(random_blobs(prototxt, rng), v1=False))
        net = interop.from_caffe(prototxt, model, dtype=np.float64)
    kinds = collections.Counter(type(layer).__name__ for _, layer in net.named_layers())
    joins = sum(1 for _ in _joins(net))
    print(f"{prototxt.name}: {dict(kinds)}, {joins} joins, {sum(p.size for _, p, _ in net.named_params()):,} "
          "parameters")
    x = rng.standard_normal((2, *net.input_shape))
    y = net.forward(x, train=False)
    twin = torch_model(net).double().eval()
    with torch.no_grad():
        t = twin(torch.tensor(x)).numpy()
    print("  forward against its PyTorch twin (float64): max rel. difference "
          f"{np.abs(y - t).max() / np.abs(t).max():.1e}")
    if zoo is not None:
        arrays = net.named_arrays()
        missing = [k for k in zoo.named_arrays() if k not in arrays]
        print(f"  names of model_zoo.googlenet missing from the import: {missing[:5] or 'none'}")
        if not missing:
            zoo.load_params({k: mc.to_numpy(v) for k, v in arrays.items()})
            z = zoo.forward(x, train=False)
            print(f"  model_zoo with the imported weights by name: max rel. difference "
                  f"{np.abs(z - y).max() / np.abs(y).max():.1e}")


def _joins(seq):
    for _, layer in seq.namespace():
        if isinstance(layer, mc.Join):
            yield layer
        if isinstance(layer, mc.Sequential):
            yield from _joins(layer)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--googlenet", type=Path)
    p.add_argument("--resnet50", type=Path)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    if args.googlenet:
        check(args.googlenet, rng, model_zoo.googlenet(dtype=np.float64))
    if args.resnet50:
        check(args.resnet50, rng)


if __name__ == "__main__":
    main()
