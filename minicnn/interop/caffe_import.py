"""Caffe (deploy prototxt + caffemodel) -> :class:`minicnn.Sequential`.

The prototxt gives the layers, the caffemodel their blobs, matched by layer name, in
either storage format (``layer`` or the V1 ``layers`` of the 2014 BVLC files;
:mod:`minicnn.interop.caffe_schema`). The net must be a chain from its input (``input`` +
``input_dim``/``input_shape``, or an ``Input`` layer) through Convolution, ReLU, LRN
(ACROSS_CHANNELS), Pooling (MAX, AVE), InnerProduct, Dropout and Flatten, with an optional
trailing Softmax, which is dropped (logits out). Caffe and minicnn agree on the rest:

- convolution and inner product: weight (O, C/group, kh, kw) and (O, K) as stored, K the
  flattened (C, H, W) input, so a Flatten is put before the first InnerProduct;
- LRN: y = x / (k + alpha/size * sum_window x^2)^beta, the same formula (alpha is
  divided by local_size in both), k default 1;
- pooling: Caffe rounds the output size up (ceil((H + 2p - k)/s) + 1, less one if the last
  window would start in the padding) and clips windows to the padded input, which is
  minicnn's ceil mode; AVE divides by the window clipped to the padded input, which is
  :class:`minicnn.layers.AvgPool2D` with ``count_include_pad``.

Caffe models take BGR images with the mean subtracted, in the 0-255 scale: meta
``channel_order`` is "BGR" and a mean file (``.binaryproto`` or ``.npy``, 3 x H x W)
becomes its per-channel mean, in the file's (BGR) order.

Refused, by layer name: a blob whose count does not match its layer, a prototxt layer with
parameters that has no blobs in the caffemodel, a caffemodel layer with blobs that is not in
the prototxt (a blob-less one, such as a data or loss layer of the training net, is
ignored, as Caffe does), and any layer type or setting minicnn does not compute exactly.
"""

from __future__ import annotations

import math
import os

import numpy as np

from minicnn import layers as L
from minicnn.errors import InputError
from minicnn.interop import caffe_schema, layout

V1_TYPES = {"CONVOLUTION": "Convolution", "RELU": "ReLU", "LRN": "LRN", "POOLING": "Pooling",
            "INNER_PRODUCT": "InnerProduct", "DROPOUT": "Dropout", "SOFTMAX": "Softmax",
            "FLATTEN": "Flatten", "DATA": "Data", "IMAGE_DATA": "ImageData",
            "SOFTMAX_LOSS": "SoftmaxWithLoss", "ACCURACY": "Accuracy", "SPLIT": "Split",
            "CONCAT": "Concat", "ELTWISE": "Eltwise"}
SUPPORTED = "Input, Convolution, ReLU, LRN, Pooling, InnerProduct, Dropout, Flatten, a trailing Softmax"


class _Layer:
    """One layer of either format, with the fields an import reads."""

    def __init__(self, msg, v1):
        self.msg, self.name = msg, msg.name
        if v1:
            enum = msg.DESCRIPTOR.fields_by_name["type"].enum_type
            value = enum.values_by_number.get(msg.type)
            kind = value.name if value is not None else str(msg.type)
            self.type = V1_TYPES.get(kind, kind)
        else:
            self.type = msg.type
        self.bottom, self.top = list(msg.bottom), list(msg.top)

    def fail(self, reason):
        raise InputError(f"layer {self.name!r} ({self.type}): {reason}")

    def param(self, field):
        return getattr(self.msg, field)

    def in_test_phase(self):
        """Whether Caffe builds this layer in the TEST phase (phase 1), as a deploy net is run."""
        include = [r.phase for r in self.msg.include if r.HasField("phase")]
        exclude = [r.phase for r in self.msg.exclude if r.HasField("phase")]
        return (not include or 1 in include) and 1 not in exclude


def _layers(net):
    if len(net.layer) and len(net.layers):
        raise InputError("the network has both 'layer' and V1 'layers' entries")
    return [_Layer(m, v1=not len(net.layer)) for m in (net.layer if len(net.layer) else net.layers)]


def _blob_array(blob):
    data = np.asarray(blob.double_data if len(blob.double_data) else blob.data, dtype=np.float32)
    if blob.HasField("shape"):
        dims = tuple(int(d) for d in blob.shape.dim)
    else:
        dims = tuple(int(d) for d in (blob.num, blob.channels, blob.height, blob.width))
    return data, dims


def _spatial(layer, p, name, default, repeated=True):
    """(h, w) of a Caffe kernel/pad/stride setting: name_h/name_w, or the one field (one or
    two values; ``kernel_size`` for the kernel)."""
    h, w = f"{name}_h", f"{name}_w"
    if p.HasField(h) or p.HasField(w):
        if not (p.HasField(h) and p.HasField(w)) and default is None:
            layer.fail(f"{h} and {w} must be given together")
        return int(getattr(p, h)), int(getattr(p, w))
    field = "kernel_size" if name == "kernel" else name
    if repeated:
        values = list(getattr(p, field))
    else:
        values = [getattr(p, field)] if p.HasField(field) else []
    if not values:
        if default is None:
            layer.fail(f"no {field} given")
        return default, default
    if len(values) > 2:
        layer.fail(f"{field} {values}: only 2-D layers are supported")
    return int(values[0]), int(values[-1])


def _caffe_pool_size(size, kernel, stride, pad, ceil):
    if ceil:
        out = int(math.ceil((size + 2 * pad - kernel) / stride)) + 1
    else:
        out = (size + 2 * pad - kernel) // stride + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


class _Chain:
    def __init__(self, shape, dtype):
        self.layers, self.shape, self.dtype = [], shape, dtype
        self.with_blobs = []  # (caffe layer, minicnn layer, [expected blob shapes])
        self.softmax_dropped, self.notes = False, []

    def add(self, caffe_layer, layer):
        try:
            self.shape = layer.output_shape(self.shape)
        except ValueError as e:
            caffe_layer.fail(f"input {self.shape}: {e}")
        if len(self.shape) == 3 and min(self.shape[1:]) < 1:
            caffe_layer.fail(f"its output {self.shape} is empty")
        self.layers.append(layer)


def _convolution(chain, layer):
    p = layer.param("convolution_param")
    if p.axis != 1:
        layer.fail(f"axis {p.axis} is not supported")
    if any(d != 1 for d in p.dilation):
        layer.fail(f"dilation {list(p.dilation)} is not supported")
    kernel = _spatial(layer, p, "kernel", None)
    pad = _spatial(layer, p, "pad", 0)
    stride = _spatial(layer, p, "stride", 1)
    channels, out, groups = chain.shape[0], int(p.num_output), int(p.group)
    if len(chain.shape) != 3:
        layer.fail(f"needs a (C, H, W) input, got {chain.shape}")
    if channels % groups or out % groups:
        layer.fail(f"{channels} input and {out} output channels are not divisible by group {groups}")
    conv = L.Conv2D(channels, out, kernel, stride=stride, padding=pad, groups=groups,
                    bias=p.bias_term, dtype=chain.dtype)
    shapes = [(out, channels // groups, *kernel)] + ([(out,)] if p.bias_term else [])
    chain.add(layer, conv)
    chain.with_blobs.append((layer, conv, shapes, False))


def _inner_product(chain, layer):
    p = layer.param("inner_product_param")
    if p.axis != 1:
        layer.fail(f"axis {p.axis} is not supported")
    if len(chain.shape) != 1:
        chain.add(layer, L.Flatten())
    features, out = chain.shape[0], int(p.num_output)
    fc = L.Linear(features, out, bias=p.bias_term, dtype=chain.dtype)
    shapes = [(features, out) if p.transpose else (out, features)] + ([(out,)] if p.bias_term else [])
    chain.add(layer, fc)
    chain.with_blobs.append((layer, fc, shapes, bool(p.transpose)))


def _pooling(chain, layer):
    p = layer.param("pooling_param")
    method = p.DESCRIPTOR.fields_by_name["pool"].enum_type.values_by_number[p.pool].name
    if method not in ("MAX", "AVE"):
        layer.fail(f"pool {method} is not supported (MAX and AVE are)")
    if len(chain.shape) != 3:
        layer.fail(f"needs a (C, H, W) input, got {chain.shape}")
    _, H, W = chain.shape
    if p.global_pooling:
        kernel, pad, stride = (H, W), (0, 0), (1, 1)
    else:
        kernel = _spatial(layer, p, "kernel", None, repeated=False)
        pad = _spatial(layer, p, "pad", 0, repeated=False)
        stride = _spatial(layer, p, "stride", 1, repeated=False)
    ceil = p.round_mode == 0
    from minicnn.ops.max_pool2d import pool_output_size

    caffe = tuple(_caffe_pool_size(s, k, st, pd, ceil) for s, k, st, pd in zip((H, W), kernel, stride, pad,
                                                                              strict=True))
    try:
        ours = tuple(pool_output_size(s, k, st, pd, ceil) for s, k, st, pd in zip((H, W), kernel, stride, pad,
                                                                                 strict=True))
    except ValueError as e:
        layer.fail(f"input {chain.shape}: {e}")
    if caffe != ours or any(pd > k / 2 for pd, k in zip(pad, kernel, strict=True)):
        layer.fail(f"kernel {kernel}, stride {stride}, pad {pad} on a {H}x{W} input: Caffe's "
                   f"{caffe[0]}x{caffe[1]} windows cannot be expressed in minicnn (pad at most half "
                   "the kernel, PyTorch's rounding)")
    kind = L.MaxPool2D if method == "MAX" else L.AvgPool2D
    chain.add(layer, kind(kernel, stride=stride, padding=pad, ceil_mode=ceil))


def _translate(chain, layer, is_last):
    t = layer.type
    if t == "Convolution":
        _convolution(chain, layer)
    elif t == "InnerProduct":
        _inner_product(chain, layer)
    elif t == "ReLU":
        if layer.param("relu_param").negative_slope != 0:
            layer.fail(f"negative_slope {layer.param('relu_param').negative_slope} (leaky ReLU) "
                       "is not supported")
        chain.add(layer, L.ReLU())
    elif t == "LRN":
        p = layer.param("lrn_param")
        if p.norm_region != 0:
            layer.fail("norm_region WITHIN_CHANNEL is not supported (minicnn's LRN is across channels)")
        if p.local_size % 2 == 0:
            layer.fail(f"local_size {p.local_size} is even (Caffe requires an odd size)")
        if len(chain.shape) != 3:
            layer.fail(f"needs a (C, H, W) input, got {chain.shape}")
        chain.add(layer, L.LRN(size=p.local_size, alpha=p.alpha, beta=p.beta, k=p.k))
    elif t == "Pooling":
        _pooling(chain, layer)
    elif t == "Dropout":
        chain.add(layer, L.Dropout(float(layer.param("dropout_param").dropout_ratio)))
    elif t == "Flatten":
        p = layer.param("flatten_param")
        if p.axis != 1 or p.end_axis != -1:
            layer.fail(f"axis {p.axis}, end_axis {p.end_axis}: only a flatten from axis 1 is supported")
        if len(chain.shape) != 1:
            chain.add(layer, L.Flatten())
    elif t == "Softmax":
        if not is_last:
            layer.fail("a Softmax is supported only as the last layer (it is dropped: minicnn "
                       "networks output logits)")
        if layer.param("softmax_param").axis != 1:
            layer.fail(f"axis {layer.param('softmax_param').axis} is not the class axis")
        chain.softmax_dropped = True
        chain.notes.append("the trailing Softmax was dropped: the network outputs logits")
    else:
        layer.fail(f"layer type not supported by minicnn (supported: {SUPPORTED}); "
                   "import a deploy prototxt")


def _input(net, layers, path):
    """(input blob name, (C, H, W)) and the layers after the Input layer."""
    if len(net.input):
        if len(net.input) != 1:
            raise InputError(f"{path}: {len(net.input)} inputs; minicnn networks have one")
        if len(net.input_shape):
            dims = list(net.input_shape[0].dim)
        elif len(net.input_dim) == 4:
            dims = list(net.input_dim)
        else:
            raise InputError(f"{path}: input {net.input[0]!r} has no input_dim (4 values) or input_shape")
        return net.input[0], dims, layers
    if layers and layers[0].type == "Input":
        shapes = layers[0].param("input_param").shape
        if len(layers[0].top) != 1 or len(shapes) != 1:
            layers[0].fail("needs one top and one shape")
        return layers[0].top[0], list(shapes[0].dim), layers[1:]
    raise InputError(f"{path}: no input (an 'input' with input_dim/input_shape, or an Input layer); "
                     "import a deploy prototxt")


def read_mean_file(path) -> list:
    """Per-channel mean of a Caffe mean image (.binaryproto BlobProto or .npy, C x H x W)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    if path.endswith(".npy"):
        try:
            image = np.load(path, allow_pickle=False)
        except Exception as e:
            raise InputError(f"{path}: not a readable .npy file ({e})") from None
    else:
        with open(path, "rb") as f:
            blob = caffe_schema.parse_binary(f.read(), "BlobProto", path)
        data, dims = _blob_array(blob)
        dims = [d for d in dims if d] or [data.size]
        if int(np.prod(dims)) != data.size:
            raise InputError(f"{path}: the mean blob holds {data.size} values, its shape {dims} needs "
                             f"{int(np.prod(dims))}")
        image = data.reshape(dims)
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3:
        raise InputError(f"{path}: a mean image of shape {image.shape}, expected C x H x W")
    return [float(v) for v in image.mean(axis=(1, 2))]


def from_caffe(prototxt, caffemodel, *, mean_file=None, mean=None, std=None, classes=None,
               channel_order="BGR", dtype=np.float32):
    """The network of a Caffe deploy ``prototxt`` with the weights of ``caffemodel`` (module
    docstring). ``mean`` (per input channel, in the network's order, BGR for Caffe models)
    overrides ``mean_file``; ``std`` defaults to 1 (Caffe's AlexNet does not scale)."""
    proto_facts, model_facts = layout.file_facts(prototxt), layout.file_facts(caffemodel)
    with open(prototxt, encoding="utf-8", errors="replace") as f:
        net_def = caffe_schema.parse_prototxt(f.read(), prototxt)
    with open(caffemodel, "rb") as f:
        weights = caffe_schema.parse_binary(f.read(), "NetParameter", caffemodel)
    layers = [layer for layer in _layers(net_def) if layer.in_test_phase()]
    blob_name, dims, layers = _input(net_def, layers, prototxt)
    if len(dims) != 4:
        raise InputError(f"{prototxt}: input shape {dims} is not N x C x H x W")
    shape = tuple(int(d) for d in dims[1:])
    chain = _Chain(shape, np.dtype(dtype))
    current = blob_name
    seen = set()
    for i, layer in enumerate(layers):
        if layer.name in seen:
            layer.fail("a second layer of this name")
        seen.add(layer.name)
        if layer.bottom != [current] or len(layer.top) != 1:
            layer.fail(f"reads {layer.bottom} and writes {layer.top}, not the one blob {current!r} of the "
                       "layer before: minicnn imports sequential networks only")
        _translate(chain, layer, is_last=i == len(layers) - 1)
        current = layer.top[0]
    _load_blobs(chain, weights, caffemodel)

    notes = list(chain.notes)
    mean_source = None
    if mean is None and mean_file is not None:
        mean = read_mean_file(mean_file)
        mean_source = layout.file_facts(mean_file)
    elif mean is not None and mean_file is not None:
        notes.append("the mean given overrides the mean file")
    if mean is None:
        notes.append("no mean given: the network expects the mean-subtracted BGR pixels its "
                     "training used (give --mean-file or --mean)")
    meta = layout.preprocessing_meta(channel_order, mean, std, shape, classes)
    meta.update(source_format="caffe", source=model_facts["name"], source_sha256=model_facts["sha256"],
                source_sha1=model_facts["sha1"], known_source=layout.KNOWN_SHA1.get(model_facts["sha1"]),
                prototxt=proto_facts["name"], prototxt_sha256=proto_facts["sha256"],
                output="logits", softmax_dropped=chain.softmax_dropped, import_notes=notes)
    if mean_source:
        meta.update(mean_file=mean_source["name"], mean_file_sha256=mean_source["sha256"])
    net = layout.build_network(chain.layers, shape, meta)
    layout.check_classes(net, net.meta)
    return net


def _load_blobs(chain, weights, caffemodel):
    stored = {}
    for layer in _layers(weights):
        if len(layer.msg.blobs):
            if layer.name in stored:
                layer.fail(f"appears twice with blobs in {caffemodel}")
            stored[layer.name] = layer
    wanted = {layer.name for layer, *_ in chain.with_blobs}
    extra = sorted(set(stored) - wanted)
    if extra:
        stored[extra[0]].fail(f"has weights in {os.path.basename(caffemodel)} but no layer of that "
                              "name in the prototxt takes them")
    for layer, target, shapes, transposed in chain.with_blobs:
        source = stored.get(layer.name)
        if source is None:
            layer.fail(f"has no weights in {os.path.basename(caffemodel)}")
        blobs = source.msg.blobs
        if len(blobs) != len(shapes):
            layer.fail(f"the caffemodel has {len(blobs)} blobs, the layer needs {len(shapes)} "
                       f"(weight{' and bias' if len(shapes) == 2 else ''})")
        for key, blob, expected in zip(("weight", "bias"), blobs, shapes, strict=False):
            data, dims = _blob_array(blob)
            need = int(np.prod(expected))
            if data.size != need:
                layer.fail(f"blob {key} holds {data.size} values, the layer needs {expected} = {need}")
            value = data.reshape(expected)
            target.params[key] = value.T if transposed and key == "weight" else value
