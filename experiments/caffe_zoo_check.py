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
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_interop_caffe import caffemodel  # noqa: E402  (the tests' protobuf writer)
from test_interop_caffe_bn import random_blobs  # noqa: E402

import minicnn as mc  # noqa: E402
from minicnn import interop, model_zoo  # noqa: E402


def check(prototxt: Path, rng, zoo=None):
    import torch

    from minicnn.torch_twin import torch_model

    with tempfile.TemporaryDirectory() as d:
        model = Path(d) / "random.caffemodel"
        model.write_bytes(caffemodel(random_blobs(prototxt.read_text(), rng), v1=False))
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
