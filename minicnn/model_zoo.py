"""The networks users hold, in minicnn's layers: GoogLeNet (BVLC's deploy layout), ResNet-18
and ResNet-50 (torchvision's), MobileNet v1 (TensorFlow's, with ReLU6 and SAME padding).

Names follow the source that people hold the weights of, so that weights land by name:

* ``resnet18``/``resnet50``: torchvision's state_dict names exactly (``conv1``, ``bn1``,
  ``layer1.0.conv1``, ``layer2.0.downsample.0``, ``layer4.1.bn2.running_var``, ``fc``). A
  residual block ``layerK.i`` holds its main path and shortcut in a sum :class:`Join`
  (``add``), then ``relu``.
* ``googlenet``: the Caffe deploy file's layer names, ``/`` read as a block
  (``inception_3a/5x5_reduce`` is ``inception_3a.5x5_reduce``); no auxiliary heads.
* ``mobilenet_v1``: TensorFlow-slim's layer names in lower case (``conv_0``,
  ``conv_1_depthwise``, ``conv_1_pointwise``, ... each with ``conv``, ``bn``, ``relu6``).

Every builder takes ``input_size`` (the networks end in an average over the whole map, whose
window is fixed here) and ``dtype``. Weights are He-normal, batch normalisation the
identity, the classifier small (:func:`minicnn.models.small_init`).
"""

from __future__ import annotations

import numpy as np

from minicnn import layers as L
from minicnn.net import Join, Sequential
from minicnn.ops.im2col import same_padding


def _global_pool(layers, input_size, what):
    """The AvgPool2D over the whole map the layers give for an input of ``input_size``."""
    shape = (3, input_size, input_size)
    for layer in layers:
        try:
            shape = layer.output_shape(shape)
        except ValueError as e:
            raise ValueError(f"{what}: input_size {input_size} is too small ({e})") from None
        if min(shape[1:]) < 1:
            raise ValueError(f"{what}: input_size {input_size} is too small")
    return L.AvgPool2D(tuple(shape[1:]), stride=1), shape[0]


def _finish(named, input_size, num_classes, dtype, what, dropout=None):
    names, layers = (list(x) for x in zip(*named, strict=True))
    pool, channels = _global_pool(layers, input_size, what)
    tail = [("avgpool", pool)] + ([("dropout", L.Dropout(dropout))] if dropout else []) + \
        [("flatten", L.Flatten()), ("fc", L.Linear(channels, num_classes, dtype=dtype))]
    names += [n for n, _ in tail]
    layers += [layer for _, layer in tail]
    net = Sequential(layers, names, input_shape=(3, input_size, input_size))
    from minicnn.models import small_init

    small_init(net["fc"])
    return net


# --- ResNet (He et al. 2016), torchvision's layout --------------------------------------------
def _conv_bn(cin, cout, k, stride, dtype):
    return [L.Conv2D(cin, cout, k, stride=stride, padding=k // 2, bias=False, dtype=dtype),
            L.BatchNorm2D(cout, dtype=dtype)]


def residual_block(cin, width, stride, bottleneck, dtype=np.float32):
    """One block: the main path (two 3x3 convolutions, or 1x1, 3x3 (the stride), 1x1 for a
    bottleneck of 4 x ``width`` outputs), each followed by batch normalisation (and ReLU but
    the last), added to the shortcut (the identity, or ``downsample``: a 1x1 convolution of
    the stride and batch normalisation where the shape changes), then ReLU."""
    cout = width * 4 if bottleneck else width
    if bottleneck:
        main = [*_conv_bn(cin, width, 1, 1, dtype), L.ReLU(), *_conv_bn(width, width, 3, stride, dtype),
                L.ReLU(), *_conv_bn(width, cout, 1, 1, dtype)]
        names = ["conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "conv3", "bn3"]
    else:
        main = [*_conv_bn(cin, width, 3, stride, dtype), L.ReLU(), *_conv_bn(width, width, 3, 1, dtype)]
        names = ["conv1", "bn1", "relu1", "conv2", "bn2"]
    shortcut = None
    if stride != 1 or cin != cout:
        shortcut = Sequential([Sequential(_conv_bn(cin, cout, 1, stride, dtype), ["0", "1"])], ["downsample"])
    return Sequential([Join([Sequential(main, names), shortcut], "sum"), L.ReLU()], ["add", "relu"])


def _resnet(depths, bottleneck, num_classes, input_size, dtype, what):
    named = [("conv1", L.Conv2D(3, 64, 7, stride=2, padding=3, bias=False, dtype=dtype)),
             ("bn1", L.BatchNorm2D(64, dtype=dtype)), ("relu", L.ReLU()),
             ("maxpool", L.MaxPool2D(3, 2, padding=1))]
    cin = 64
    for stage, (width, depth) in enumerate(zip((64, 128, 256, 512), depths, strict=True), 1):
        blocks = []
        for i in range(depth):
            blocks.append(residual_block(cin, width, 2 if i == 0 and stage > 1 else 1, bottleneck, dtype))
            cin = width * 4 if bottleneck else width
        named.append((f"layer{stage}", Sequential(blocks, [str(i) for i in range(depth)])))
    return _finish(named, input_size, num_classes, dtype, what)


def resnet18(num_classes=1000, input_size=224, dtype=np.float32):
    """ResNet-18: BasicBlocks [2, 2, 2, 2] (torchvision's ``resnet18``)."""
    return _resnet((2, 2, 2, 2), False, num_classes, input_size, dtype, "resnet18")


def resnet50(num_classes=1000, input_size=224, dtype=np.float32):
    """ResNet-50: Bottlenecks [3, 4, 6, 3], the stride on the 3x3 convolution (torchvision's
    ``resnet50``, "ResNet v1.5")."""
    return _resnet((3, 4, 6, 3), True, num_classes, input_size, dtype, "resnet50")


# --- MobileNet v1 (Howard et al. 2017), TensorFlow's layout -------------------------------------
MOBILENET_V1 = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
                (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def mobilenet_v1(width=1.0, num_classes=1000, input_size=224, dtype=np.float32):
    """MobileNet v1: a 3x3 stride-2 convolution, then 13 depthwise-separable blocks (a 3x3
    depthwise convolution, ``groups`` = channels, then a 1x1 pointwise one), each convolution
    followed by batch normalisation and ReLU6; ``width`` multiplies every width (0.25 .. 1.0).
    Padding is TensorFlow's SAME for ``input_size`` (after the input on a stride 2)."""
    def ch(c):
        return max(8, int(c * width))

    def unit(cin, cout, k, stride, size, groups=1):
        top, bottom = same_padding(size, k, stride)
        layers = [L.Conv2D(cin, cout, k, stride=stride, padding=(top, top, bottom, bottom), groups=groups,
                           bias=False, dtype=dtype), L.BatchNorm2D(cout, dtype=dtype), L.Clip(0.0, 6.0)]
        return Sequential(layers, ["conv", "bn", "relu6"]), -(-size // stride)

    if not 0 < width <= 4:
        raise ValueError(f"mobilenet_v1: width {width} must be in (0, 4]")
    block, size = unit(3, ch(32), 3, 2, input_size)
    named, cin = [("conv_0", block)], ch(32)
    for i, (c, stride) in enumerate(MOBILENET_V1, 1):
        dw, size = unit(cin, cin, 3, stride, size, groups=cin)
        pw, size = unit(cin, ch(c), 1, 1, size)
        named += [(f"conv_{i}_depthwise", dw), (f"conv_{i}_pointwise", pw)]
        cin = ch(c)
    return _finish(named, input_size, num_classes, dtype, "mobilenet_v1", dropout=1e-3)


# --- GoogLeNet (Szegedy et al. 2015), BVLC's deploy layout ---------------------------------------
# (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection) of each inception module
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128), "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


def inception(cin, widths, dtype=np.float32):
    """An inception module: 1x1; 1x1 then 3x3; 1x1 then 5x5; 3x3 max pool (stride 1) then
    1x1, each convolution with its ReLU, concatenated along channels (``output``)."""
    c1, r3, c3, r5, c5, pp = widths

    def conv(cin, cout, k):
        return L.Conv2D(cin, cout, k, padding=k // 2, dtype=dtype)

    branches = [
        Sequential([conv(cin, c1, 1), L.ReLU()], ["1x1", "relu_1x1"]),
        Sequential([conv(cin, r3, 1), L.ReLU(), conv(r3, c3, 3), L.ReLU()],
                   ["3x3_reduce", "relu_3x3_reduce", "3x3", "relu_3x3"]),
        Sequential([conv(cin, r5, 1), L.ReLU(), conv(r5, c5, 5), L.ReLU()],
                   ["5x5_reduce", "relu_5x5_reduce", "5x5", "relu_5x5"]),
        Sequential([L.MaxPool2D(3, 1, padding=1, ceil_mode=True), conv(cin, pp, 1), L.ReLU()],
                   ["pool", "pool_proj", "relu_pool_proj"]),
    ]
    return Sequential([Join(branches, "concat")], ["output"]), c1 + c3 + c5 + pp


def googlenet(num_classes=1000, input_size=224, dropout=0.4, dtype=np.float32):
    """GoogLeNet (BVLC ``bvlc_googlenet`` deploy.prototxt, no auxiliary classifiers): the stem
    (7x7/2 convolution, 3x3/2 max pool, LRN, 1x1 and 3x3 convolutions, LRN, 3x3/2 max pool),
    inception 3a-3b, max pool, 4a-4e, max pool, 5a-5b, the 7x7 average pool, dropout 0.4 and
    ``loss3/classifier``. Caffe's pools round their output size up (``ceil_mode``)."""
    lrn = dict(size=5, alpha=1e-4, beta=0.75)
    named = [
        ("conv1", Sequential([L.Conv2D(3, 64, 7, stride=2, padding=3, dtype=dtype), L.ReLU()],
                             ["7x7_s2", "relu_7x7"])),
        ("pool1", Sequential([L.MaxPool2D(3, 2, ceil_mode=True), L.LRN(**lrn)], ["3x3_s2", "norm1"])),
        ("conv2", Sequential([L.Conv2D(64, 64, 1, dtype=dtype), L.ReLU(),
                              L.Conv2D(64, 192, 3, padding=1, dtype=dtype), L.ReLU(), L.LRN(**lrn)],
                             ["3x3_reduce", "relu_3x3_reduce", "3x3", "relu_3x3", "norm2"])),
        ("pool2", Sequential([L.MaxPool2D(3, 2, ceil_mode=True)], ["3x3_s2"])),
    ]
    cin = 192
    for key, widths in INCEPTION.items():
        block, cin = inception(cin, widths, dtype)
        named.append((f"inception_{key}", block))
        if key in ("3b", "4e"):
            named.append((f"pool{3 if key == '3b' else 4}", Sequential([L.MaxPool2D(3, 2, ceil_mode=True)],
                                                                        ["3x3_s2"])))
    names, layers = (list(x) for x in zip(*named, strict=True))
    pool, channels = _global_pool(layers, input_size, "googlenet")
    names += ["pool5", "flatten", "loss3"]
    layers += [Sequential([pool, L.Dropout(dropout)], ["7x7_s1", "drop_7x7_s1"]), L.Flatten(),
               Sequential([L.Linear(channels, num_classes, dtype=dtype)], ["classifier"])]
    net = Sequential(layers, names, input_shape=(3, input_size, input_size))
    from minicnn.models import small_init

    small_init(net["loss3.classifier"])
    return net
