"""Model builders: Krizhevsky's AlexNet, scaled-down variants, SqueezeNet, and the transfer
head; GoogLeNet, ResNet-18/50 and MobileNet v1 (``minicnn.model_zoo``) are here too.

Layer names follow the paper: conv1..conv5 (C1..C5), fc6, fc7 (FC6, FC7), fc8 (the
source classifier); the transfer head adds fca and fcb (FCa, FCb).
"""

from __future__ import annotations

import numpy as np

from minicnn import layers as L
from minicnn.model_zoo import googlenet, mobilenet_v1, resnet18, resnet50  # noqa: F401  (mc.models.*)
from minicnn.net import Join, Sequential, clone_layer


def alexnet(num_classes=1000, input_size=227, groups=2, channels=(96, 256, 384, 384, 256),
            hidden=4096, conv1=None, dropout=0.5, dtype=np.float32):
    """AlexNet (Krizhevsky et al. 2012), docs/method.md section 2.

    ``input_size`` 227 (Caffe: conv1 11x11 stride 4, no padding) or 224 (conv1 padding 2,
    as torchvision); both give 55x55 after conv1 and 6x6 after pool5. ``groups`` = 2 is
    the original two-GPU split (conv2, conv4, conv5 grouped), 1 the one-group variant.
    ``channels`` and ``hidden`` scale the widths; ``conv1`` = (kernel, stride, padding)
    overrides the first layer for other input sizes.
    """
    if conv1 is None:
        if input_size not in (224, 227):
            raise ValueError(f"alexnet: input_size must be 224 or 227 (or pass conv1=(k, s, p)), "
                             f"got {input_size}")
        conv1 = (11, 4, 2 if input_size == 224 else 0)
    c1, c2, c3, c4, c5 = channels
    k1, s1, p1 = conv1
    lrn = dict(size=5, alpha=1e-4, beta=0.75, k=1.0)  # CaffeNet's k = 1 (the paper's k = 2 also works)
    body = [
        ("conv1", L.Conv2D(3, c1, k1, stride=s1, padding=p1, dtype=dtype)), ("relu1", L.ReLU()),
        ("norm1", L.LRN(**lrn)), ("pool1", L.MaxPool2D(3, 2)),
        ("conv2", L.Conv2D(c1, c2, 5, padding=2, groups=groups, dtype=dtype)), ("relu2", L.ReLU()),
        ("norm2", L.LRN(**lrn)), ("pool2", L.MaxPool2D(3, 2)),
        ("conv3", L.Conv2D(c2, c3, 3, padding=1, dtype=dtype)), ("relu3", L.ReLU()),
        ("conv4", L.Conv2D(c3, c4, 3, padding=1, groups=groups, dtype=dtype)), ("relu4", L.ReLU()),
        ("conv5", L.Conv2D(c4, c5, 3, padding=1, groups=groups, dtype=dtype)), ("relu5", L.ReLU()),
        ("pool5", L.MaxPool2D(3, 2)), ("flatten", L.Flatten()),
    ]
    shape = (3, input_size, input_size)
    for _, layer in body:
        shape = layer.output_shape(shape)
        if len(shape) == 3 and min(shape[1:]) < 1:
            raise ValueError(f"alexnet: input_size {input_size} is too small for this layout")
    flat = shape[0]
    head = [
        ("fc6", L.Linear(flat, hidden, dtype=dtype)), ("relu6", L.ReLU()), ("drop6", L.Dropout(dropout)),
        ("fc7", L.Linear(hidden, hidden, dtype=dtype)), ("relu7", L.ReLU()), ("drop7", L.Dropout(dropout)),
        ("fc8", L.Linear(hidden, num_classes, dtype=dtype)),
    ]
    names, layers = zip(*(body + head), strict=True)
    net = Sequential(layers, names, input_shape=(3, input_size, input_size))
    small_init(net["fc8"])
    return net


def small_init(layer, std=0.01):
    """Draw a classifier's weights from N(0, std^2) (Krizhevsky's 0.01): logits start near 0
    and the loss near log(classes). He-normal there gives large logits and a first update
    big enough to silence the ReLUs below."""
    w = np.random.standard_normal(layer.params["weight"].shape) * std
    layer.params["weight"] = w.astype(layer.dtype)


def small_alexnet(num_classes, input_size=32, groups=2, channels=(32, 64, 96, 96, 64), hidden=256,
                  dropout=0.5, dtype=np.float32):
    """AlexNet's layout scaled for small images and small machines: the same layers and
    names, conv1 5x5 (stride 1 for inputs up to 48 pixels, else 2), narrower widths."""
    stride = 1 if input_size <= 48 else 2
    return alexnet(num_classes, input_size=input_size, groups=groups, channels=channels,
                   hidden=hidden, conv1=(5, stride, 2), dropout=dropout, dtype=dtype)


def default_cut(source_net):
    """The mid-level representation of a source network: ``fc7`` for an AlexNet, otherwise the
    last layer holding parameters before the classifier (``fire9`` for a SqueezeNet)."""
    holding = [n for n, layer in zip(source_net.names, source_net.layers, strict=True) if layer.num_params()]
    if "fc7" in source_net.names:
        return "fc7"
    if len(holding) < 2:
        raise ValueError(f"transfer_net: the source network has no layer below its classifier "
                         f"(its layers: {', '.join(source_net.names)})")
    return holding[-2]


def default_update(source_net, cut):
    """The layers that variant update-top trains: FC6 and FC7 for an AlexNet cut at fc7 (the
    paper's PRE-1000U/PRE-1512U), otherwise the cut layer alone."""
    if cut == "fc7" and "fc6" in source_net.names:
        return ["fc6", "fc7"]
    return [cut]


def transfer_net(source_net, num_classes, hidden=2048, dropout=0.5, dtype=None, cut=None, update=None):
    """The network of docs/method.md section 3: the source network's layers up to ``cut`` (the
    mid-level representation; :func:`default_cut`: fc7 for an AlexNet), with the parameter-free
    layers and batch normalisations that follow it (fc7's ReLU and dropout, conv10's ReLU and
    pooling, a ResNet conv1's bn1), copied and frozen;
    a map is then averaged over space (``cut_pool``, ``cut_flatten``); then FCa (``hidden``,
    ReLU, dropout) and FCb (``num_classes``, which counts the background class).

    ``update`` names the copied layers that variant update-top trains (:func:`default_update`);
    they are returned frozen here, and ``net.meta["update"]`` records them. Frozen layers run in
    evaluation mode, so the copied dropouts are the identity until their layers are unfrozen."""
    cut = cut or default_cut(source_net)
    if cut not in source_net.names:
        raise ValueError(f"transfer_net: the source network has no layer {cut!r} to cut at "
                         f"(its layers: {', '.join(source_net.names)})")
    end = source_net.names.index(cut) + 1
    # the cut's batch normalisation, non-linearity, dropout and pooling come with it
    while end < len(source_net.layers) and (not source_net.layers[end].num_params()
                                            or isinstance(source_net.layers[end], L.BatchNorm2D)):
        end += 1
    update = list(update) if update is not None else default_update(source_net, cut)
    for name in update:
        if name.partition(".")[0] not in source_net.names[:end]:
            raise ValueError(f"transfer_net: layer {name!r} to update is not among the transferred "
                             f"layers ({', '.join(source_net.names[:end])})")
    copied = []
    for name, layer in zip(source_net.names[:end], source_net.layers[:end], strict=True):
        clone = clone_layer(layer)
        clone.frozen = True
        copied.append((name, clone))
    prefix = Sequential([c for _, c in copied], [n for n, _ in copied])
    if not source_net.input_shape:
        raise ValueError("transfer_net: the source network has no input shape")
    shape = prefix.output_shape(source_net.input_shape)
    if len(shape) == 3:  # a map: its average over space is the representation
        copied += [("cut_pool", L.AvgPool2D(tuple(shape[1:]), stride=1)), ("cut_flatten", L.Flatten())]
    elif len(shape) != 1:
        raise ValueError(f"transfer_net: the output of {cut!r} has shape {shape}, neither a map nor a vector")
    width = int(np.prod(shape[:1]))
    dtype = dtype or next(layer.dtype for _, layer in reversed(prefix.named_layers()) if layer.params)
    head = [("fca", L.Linear(width, hidden, dtype=dtype)), ("relua", L.ReLU()),
            ("dropa", L.Dropout(dropout)), ("fcb", L.Linear(hidden, num_classes, dtype=dtype))]
    small_init(head[-1][1])
    names, layers = zip(*(copied + head), strict=True)
    meta = dict(source_net.meta, cut=cut, update=update)
    return Sequential(layers, names, input_shape=source_net.input_shape, meta=meta)


# (squeeze, expand) widths of fire2..fire9, and the fire modules each max pool follows
SQUEEZENET = {
    "1.0": dict(conv1=(96, 7), pools_after=("conv1", "fire4", "fire8"), conv10_pad=1),
    "1.1": dict(conv1=(64, 3), pools_after=("conv1", "fire3", "fire5"), conv10_pad=0),
}
FIRE_WIDTHS = ((16, 64), (16, 64), (32, 128), (32, 128), (48, 192), (48, 192), (64, 256), (64, 256))


def fire(in_channels, squeeze, expand, dtype=np.float32):
    """A fire module (Iandola et al. 2016): a 1x1 squeeze convolution, then 1x1 and 3x3
    expand convolutions side by side, their outputs concatenated (2 x ``expand`` channels).
    Layers named as the Caffe deploy files name them (``fire2/expand3x3`` is
    ``fire2.expand3x3``)."""
    def expand_branch(k):
        return Sequential([L.Conv2D(squeeze, expand, k, padding=k // 2, dtype=dtype), L.ReLU()],
                          [f"expand{k}x{k}", f"relu_expand{k}x{k}"])
    return Sequential([L.Conv2D(in_channels, squeeze, 1, dtype=dtype), L.ReLU(),
                       Join([expand_branch(1), expand_branch(3)], "concat")],
                      ["squeeze1x1", "relu_squeeze1x1", "concat"])


def squeezenet(version="1.0", num_classes=1000, input_size=227, dropout=0.5, dtype=np.float32):
    """SqueezeNet v1.0 or v1.1 (Iandola et al. 2016) with the exact graph of the Caffe deploy
    prototxts (DeepScale/SqueezeNet): conv1, fire2..fire9 (:func:`fire`), max pools of 3x3
    stride 2 rounded up (Caffe's pooling output size, ``ceil_mode``), drop9, conv10 (1x1,
    ``num_classes``; padding 1 in v1.0's deploy file, 0 in v1.1's), and pool10, the average over
    the whole map, then flatten: logits of shape (N, num_classes)."""
    if version not in SQUEEZENET:
        raise ValueError(f"squeezenet: version must be '1.0' or '1.1', got {version!r}")
    spec = SQUEEZENET[version]
    width, k = spec["conv1"]
    layers = [("conv1", L.Conv2D(3, width, k, stride=2, dtype=dtype)), ("relu_conv1", L.ReLU())]
    pools = {after: f"pool{1 if after == 'conv1' else int(after[4:])}" for after in spec["pools_after"]}
    layers.append((pools["conv1"], L.MaxPool2D(3, 2, ceil_mode=True)))
    channels = width
    for i, (squeeze, expand) in enumerate(FIRE_WIDTHS, 2):
        layers.append((f"fire{i}", fire(channels, squeeze, expand, dtype)))
        channels = 2 * expand
        if f"fire{i}" in pools:
            layers.append((pools[f"fire{i}"], L.MaxPool2D(3, 2, ceil_mode=True)))
    layers += [("drop9", L.Dropout(dropout)),
               ("conv10", L.Conv2D(channels, num_classes, 1, padding=spec["conv10_pad"], dtype=dtype)),
               ("relu_conv10", L.ReLU())]
    shape = (3, input_size, input_size)
    for _, layer in layers:
        shape = layer.output_shape(shape)
        if min(shape[1:]) < 1:
            raise ValueError(f"squeezenet: input_size {input_size} is too small")
    layers += [("pool10", L.AvgPool2D(tuple(shape[1:]), stride=1)), ("flatten", L.Flatten())]
    names, ls = zip(*layers, strict=True)
    net = Sequential(ls, names, input_shape=(3, input_size, input_size))
    small_init(net["conv10"])  # as torchvision: the classifier starts near zero
    return net


def tiny_alexnet(num_classes=5, input_size=16, dtype=np.float64):
    """A very small AlexNet-like net (grouped convs, LRN, ceil- and floor-mode pools,
    dropout) for gradient checks and tests."""
    layers = [
        ("conv1", L.Conv2D(3, 4, 3, stride=1, padding=1, dtype=dtype)), ("relu1", L.ReLU()),
        ("norm1", L.LRN(size=3, alpha=0.5, beta=0.75, k=2.0)), ("pool1", L.MaxPool2D(3, 2, ceil_mode=True)),
        ("conv2", L.Conv2D(4, 6, 3, padding=1, groups=2, dtype=dtype)), ("relu2", L.ReLU()),
        ("pool2", L.MaxPool2D(2, 2, padding=1)), ("flatten", L.Flatten()),
    ]
    shape = (3, input_size, input_size)
    for _, layer in layers:
        shape = layer.output_shape(shape)
    layers += [("fc6", L.Linear(shape[0], 10, dtype=dtype)), ("relu6", L.ReLU()),
               ("drop6", L.Dropout(0.5)), ("fc7", L.Linear(10, 8, dtype=dtype)),
               ("relu7", L.ReLU()), ("drop7", L.Dropout(0.5)),
               ("fc8", L.Linear(8, num_classes, dtype=dtype))]
    names, ls = zip(*layers, strict=True)
    return Sequential(ls, names, input_shape=(3, input_size, input_size))
