"""Caffe (deploy prototxt + caffemodel or Deep Compression file) -> :class:`minicnn.Sequential`.

The prototxt gives the layers, the caffemodel their blobs, matched by layer name, in
either storage format (``layer`` or the V1 ``layers`` of the 2014 BVLC files;
:mod:`minicnn.interop.caffe_schema`); or, instead of a caffemodel, a Deep Compression file
(:mod:`minicnn.interop.deep_compression`). The net starts at its input (``input`` +
``input_dim``/``input_shape``, or an ``Input`` layer) and is built of Convolution, ReLU, LRN
(ACROSS_CHANNELS), Pooling (MAX, AVE), InnerProduct, Dropout and Flatten, Concat (channels)
and Eltwise (SUM), BatchNorm (its stored statistics) with the Scale after it (one
:class:`minicnn.layers.BatchNorm2D`), with an optional trailing Softmax, which is dropped
(logits out).

The graph: a layer whose top is its bottom (in place, as ReLU and Dropout usually are)
writes a new version of that blob; a Split layer's tops are its bottom; a blob version read
by several layers is a split, and
the branches that start there must all end in one Concat or Eltwise that reads exactly
their ends (or the split blob itself: an identity branch, a residual shortcut). Such a
split and its join become one :class:`minicnn.layers.Join`, its branches Sequentials in the
join's bottom order; splits nest. A graph of another shape (a blob read again after its
block, two outputs, a join of blobs from different splits) is refused naming the blob.

Names: a chain (no split) is named by position as :func:`minicnn.models.alexnet` names its
layers (:mod:`minicnn.interop.layout`). A network with joins keeps Caffe's names: layers
whose names share a prefix before "/" and follow one another ("fire2/squeeze1x1",
"fire2/relu_squeeze1x1", "fire2/concat") become one block, a Sequential named "fire2"
holding "squeeze1x1", ...; a join's branch layers are named in the namespace of the block
that holds the join ("fire2/expand1x1" -> "expand1x1"); any other "/" or "." becomes "_".
When the imported tree is :func:`minicnn.models.squeezenet`'s, layer for layer, its names
are taken (so Deep Compression's "fire2/conv1x1_1" lands on "fire2.squeeze1x1"). A network
with joins that ends in C x 1 x 1 (SqueezeNet's global pooling) gets a final Flatten.

Caffe and minicnn agree on the rest:

- convolution and inner product: weight (O, C/group, kh, kw) and (O, K) as stored, K the
  flattened (C, H, W) input, so a Flatten is put before the first InnerProduct;
- LRN: y = x / (k + alpha/size * sum_window x^2)^beta, the same formula (alpha is
  divided by local_size in both), k default 1;
- pooling: Caffe rounds the output size up (ceil((H + 2p - k)/s) + 1, less one if the last
  window would start in the padding) and clips windows to the padded input, which is
  minicnn's ceil mode; AVE divides by the window clipped to the padded input, which is
  :class:`minicnn.layers.AvgPool2D` with ``count_include_pad``;
- Concat along channels (axis 1) and Eltwise SUM with unit coefficients are the Join's
  "concat" and "sum";
- BatchNorm stores the running mean and variance times a factor (its third blob, 0 meaning
  none): y = (x - mean) / sqrt(var + eps), BatchNorm2D's evaluation with weight 1 and bias 0;
  the Scale layer that follows (per channel, ``bias_term``) gives its weight and bias;
  ``moving_average_fraction`` f (the statistics' decay when training) becomes momentum 1 - f;

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
from minicnn import models
from minicnn.errors import InputError
from minicnn.interop import caffe_schema, deep_compression, layout
from minicnn.interop.onnx_fold import decimal

V1_TYPES = {"CONVOLUTION": "Convolution", "RELU": "ReLU", "LRN": "LRN", "POOLING": "Pooling",
            "INNER_PRODUCT": "InnerProduct", "DROPOUT": "Dropout", "SOFTMAX": "Softmax",
            "FLATTEN": "Flatten", "DATA": "Data", "IMAGE_DATA": "ImageData",
            "SOFTMAX_LOSS": "SoftmaxWithLoss", "ACCURACY": "Accuracy", "SPLIT": "Split",
            "CONCAT": "Concat", "ELTWISE": "Eltwise"}
SUPPORTED = ("Input, Convolution, ReLU, LRN, Pooling, InnerProduct, Dropout, Flatten, Concat, Eltwise SUM, "
             "BatchNorm (+ Scale), Split, a trailing Softmax")
JOINS = ("Concat", "Eltwise")


class _Layer:
    """One layer of either format, with the fields an import reads."""

    def __init__(self, msg, v1, index, path):
        self.msg, self.index = msg, index
        if v1:
            enum = msg.DESCRIPTOR.fields_by_name["type"].enum_type
            value = enum.values_by_number.get(msg.type)
            kind = value.name if value is not None else str(msg.type)
            self.type = V1_TYPES.get(kind, kind)
        else:
            self.type = msg.type
        # a file that is not Caffe's may still parse (protobuf skips what it does not know):
        # its "names" are then bytes, which no message quotes
        for text in [msg.name, self.type, *msg.bottom, *msg.top]:
            if not isinstance(text, str) or not text.isprintable():
                raise InputError(f"{path}: layer {index + 1} has a name, type or blob name that is "
                                 "not printable text: not a Caffe network file?")
        self.name = msg.name
        self.bottom, self.top = list(msg.bottom), list(msg.top)
        self.inputs, self.outputs = [], []  # blob versions (_graph)

    def fail(self, reason):
        raise InputError(f"layer {self.name!r} ({self.type}): {reason}")

    def param(self, field):
        return getattr(self.msg, field)

    def in_test_phase(self):
        """Whether Caffe builds this layer in the TEST phase (phase 1), as a deploy net is run."""
        include = [r.phase for r in self.msg.include if r.HasField("phase")]
        exclude = [r.phase for r in self.msg.exclude if r.HasField("phase")]
        return (not include or 1 in include) and 1 not in exclude


def _layers(net, path):
    if len(net.layer) and len(net.layers):
        raise InputError(f"{path}: the network has both 'layer' and V1 'layers' entries")
    v1 = not len(net.layer)
    return [_Layer(m, v1, i, path) for i, m in enumerate(net.layers if v1 else net.layer)]


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


class _Shared:
    """What every chain of one import adds to: the layers that take blobs, notes."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.with_blobs = []  # (caffe layer, minicnn layer, [expected blob shapes], transposed)
        self.softmax_dropped, self.notes = False, []


class _Chain:
    """The layers of one Sequential being built (the network, or a branch of a join), with
    their Caffe names and the shape after the last one; a join is a :class:`_JoinSpec`."""

    def __init__(self, shape, shared):
        self.layers, self.names, self.shape, self.shared = [], [], shape, shared
        self.dtype, self.with_blobs = shared.dtype, shared.with_blobs

    def add(self, caffe_layer, layer, name=None, shape=None):
        if shape is None:
            try:
                shape = layer.output_shape(self.shape)
            except ValueError as e:
                caffe_layer.fail(f"input {self.shape}: {e}")
        if len(shape) == 3 and min(shape[1:]) < 1:
            caffe_layer.fail(f"its output {shape} is empty")
        self.shape = shape
        self.layers.append(layer)
        self.names.append(name or caffe_layer.name)

    @property
    def notes(self):
        return self.shared.notes


class _JoinSpec:
    """A join before it is built: its mode and branches (a :class:`_Chain` each, or None)."""

    def __init__(self, mode, branches):
        self.mode, self.branches = mode, branches


MAX_PARAMS = 1 << 28  # a quarter of a billion weights in one layer, 1 GiB of float32; VGG's fc6 has 0.1


def _check_size(layer, count):
    """Refuse a layer too large to be real before its weights are allocated."""
    if count > MAX_PARAMS:
        layer.fail(f"{count:,} weights, more than minicnn allocates for one layer ({MAX_PARAMS:,})")
    if count < 1:
        layer.fail("has no weights (a zero size)")


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
    _check_size(layer, out * channels // groups * kernel[0] * kernel[1])
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
        chain.add(layer, L.Flatten(), name=f"{layer.name}_flatten")
    features, out = chain.shape[0], int(p.num_output)
    _check_size(layer, features * out)
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
    ceil = p.round_mode == 0 and not p.global_pooling  # one window: either rounding gives 1x1
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


def _batch_norm(chain, layer):
    p = layer.param("batch_norm_param")
    if p.HasField("use_global_stats") and not p.use_global_stats:
        layer.fail("use_global_stats false normalises by each batch's statistics; a trained network "
                   "uses its stored ones")
    if len(chain.shape) != 3:
        layer.fail(f"needs a (C, H, W) input, got {chain.shape}")
    C = chain.shape[0]
    # Caffe's running statistics decay by moving_average_fraction per batch (0.999 by default):
    # PyTorch's momentum, and minicnn's, is one minus it
    fraction = decimal(p.moving_average_fraction)  # 0.999, not 0.99900001
    bn = L.BatchNorm2D(C, eps=float(p.eps), momentum=round(1.0 - fraction, 12), dtype=chain.dtype)

    def assign(mean, var, factor):
        f = 0.0 if factor[0] == 0 else 1.0 / float(factor[0])
        bn.buffers["running_mean"], bn.buffers["running_var"] = mean * f, var * f

    chain.add(layer, bn)
    chain.with_blobs.append((layer, assign, [(C,), (C,), (1,)], False))


def _scale(chain, layer):
    p = layer.param("scale_param")
    before = chain.layers[-1] if chain.layers else None
    if not isinstance(before, L.BatchNorm2D) or getattr(before, "scaled", False):
        layer.fail("a Scale is supported only right after a BatchNorm (its weight and bias)")
    if p.axis != 1 or p.num_axes != 1:
        layer.fail(f"axis {p.axis}, num_axes {p.num_axes}: only one factor per channel is supported")
    before.scaled = True
    C = before.num_features

    def assign(gamma, beta=None):
        before.params["weight"] = gamma
        if beta is not None:
            before.params["bias"] = beta

    chain.with_blobs.append((layer, assign, [(C,)] + ([(C,)] if p.bias_term else []), False))


def _translate(chain, layer, is_last):
    t = layer.type
    if t == "Convolution":
        _convolution(chain, layer)
    elif t == "BatchNorm":
        _batch_norm(chain, layer)
    elif t == "Scale":
        _scale(chain, layer)
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
    elif t in JOINS:
        layer.fail("reads one blob: a join of one input is not supported")
    elif t == "Softmax":
        if not is_last:
            layer.fail("a Softmax is supported only as the last layer (it is dropped: minicnn "
                       "networks output logits)")
        if layer.param("softmax_param").axis != 1:
            layer.fail(f"axis {layer.param('softmax_param').axis} is not the class axis")
        chain.shared.softmax_dropped = True
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


# --- the graph: blob versions, splits and joins -> a tree of chains --------------------------
def _blob(version):
    return version[0]


def _graph(layers, input_blob):
    """The layers as a tree: a list of items, each a layer with one input and one output or
    a ``(join layer, [branch item lists or None])`` (module docstring)."""
    versions, written = {input_blob: (input_blob, 0)}, {input_blob: 0}
    readers = {}
    for layer in layers:
        if not layer.bottom:
            layer.fail("reads no blob; only the input may (import a deploy prototxt)")
        for b in layer.bottom:
            if b not in versions:
                layer.fail(f"reads blob {b!r}, which neither the input nor a layer before it writes")
        if layer.type == "Split":  # Caffe's explicit copy: each top is the bottom itself
            if len(layer.bottom) != 1:
                layer.fail(f"splits {len(layer.bottom)} blobs; a Split reads one")
            for t in layer.top:
                versions[t] = versions[layer.bottom[0]]
            continue
        for b in layer.bottom:
            layer.inputs.append(versions[b])
            readers.setdefault(versions[b], []).append(layer)
        if len(layer.top) != 1:
            layer.fail(f"writes {len(layer.top)} blobs {layer.top}; minicnn layers write one")
        for t in layer.top:
            written[t] = written.get(t, -1) + 1
            versions[t] = (t, written[t])
            layer.outputs.append(versions[t])
    seen = {id(layer) for layer in layers if layer.type == "Split"}
    items, end = _sequence(versions[input_blob], readers, seen, top=True)
    missed = [layer for layer in layers if id(layer) not in seen]
    if missed:
        missed[0].fail(f"is not on the way from the input to the output {_blob(end)!r}: minicnn "
                       "networks have one input and one output")
    return items


def _sequence(version, readers, seen, top):
    """Items from a blob version on, and the version it ends at: one with no reader (the
    output), or, inside a branch, one read by a join alone (the enclosing split's)."""
    items = []
    while True:
        after = readers.get(version, [])
        if not after:
            return items, version
        if len(after) == 1 and after[0].type in JOINS and len(after[0].inputs) > 1:
            if top:
                after[0].fail(f"joins blob {_blob(version)!r} with blobs that do not branch from it: "
                              "minicnn joins the branches of one split")
            return items, version
        if len(after) == 1:
            layer = after[0]
            if len(layer.inputs) != 1:  # a Convolution may read two blobs in Caffe (shared weights)
                layer.fail(f"reads {layer.bottom}: only Concat and Eltwise read several blobs")
            seen.add(id(layer))
            items.append(layer)
            version = layer.outputs[0]
            continue
        join, branches = _split(version, after, readers, seen)
        seen.add(id(join))
        items.append((join, branches))
        version = join.outputs[0]


def _split(version, after, readers, seen):
    """The join that closes the split at ``version`` and its branches, in its bottom order."""
    name = _blob(version)
    who = ", ".join(repr(layer.name) for layer in after)
    ends = []  # (version the branch ends at, its items or None)
    for first in after:
        if first.type in JOINS and len(first.inputs) > 1:
            ends.append((version, None, first))  # the split blob itself joins: identity
            continue
        if len(first.inputs) != 1:
            first.fail(f"reads {first.bottom}: only Concat and Eltwise read several blobs")
        seen.add(id(first))
        rest, end = _sequence(first.outputs[0], readers, seen, top=False)
        closing = readers.get(end, [])
        if not closing:
            raise InputError(f"blob {name!r} is read by {who}, and the branch of {first.name!r} ends "
                             f"at blob {_blob(end)!r}, which nothing joins: minicnn networks have one "
                             "output, and a split must rejoin in one Concat or Eltwise")
        ends.append((end, [first, *rest], closing[0]))
    joins = {id(j): j for _, _, j in ends}
    if len(joins) != 1:
        raise InputError(f"blob {name!r} is read by {who}, whose branches end in different layers "
                         f"({', '.join(repr(j.name) for j in joins.values())}): minicnn expresses a "
                         "split only as branches that all rejoin in one Concat or Eltwise")
    join = ends[0][2]
    pending = list(ends)
    ordered = []
    for v in join.inputs:
        match = next((e for e in pending if e[0] == v), None)
        if match is None:
            join.fail(f"reads blob {_blob(v)!r}, which is not a branch of the split at blob {name!r}: "
                      "a blob reused across blocks cannot be expressed (minicnn joins the branches "
                      "of one split)")
        pending.remove(match)
        ordered.append(match[1])
    if pending:
        join.fail(f"does not read every branch of the split at blob {name!r} ({who})")
    return join, ordered


# --- the tree -> minicnn layers ----------------------------------------------------------------
def _translate_items(chain, items, top):
    for i, item in enumerate(items):
        try:
            if isinstance(item, _Layer):
                _translate(chain, item, is_last=top and i == len(items) - 1)
            else:
                _join(chain, *item)
        except InputError:
            raise
        except ValueError as e:  # a layer's constructor refusing a setting the file gives
            (item if isinstance(item, _Layer) else item[0]).fail(str(e))


def _join(chain, layer, branches):
    if layer.type == "Concat":
        p = layer.param("concat_param")
        axis = p.axis if p.HasField("axis") or not p.HasField("concat_dim") else p.concat_dim
        if axis != 1:
            layer.fail(f"concatenation along axis {axis}: minicnn joins along channels (axis 1)")
        mode = "concat"
    else:
        p = layer.param("eltwise_param")
        op = p.DESCRIPTOR.fields_by_name["operation"].enum_type.values_by_number[p.operation].name
        if op != "SUM":
            layer.fail(f"operation {op} is not supported (SUM is)")
        if any(c != 1 for c in p.coeff):
            layer.fail(f"coefficients {list(p.coeff)}: only a plain sum (all 1) is supported")
        mode = "sum"
    subs, shapes = [], []
    for branch in branches:
        if branch is None:
            subs.append(None)
            shapes.append(chain.shape)
            continue
        sub = _Chain(chain.shape, chain.shared)
        _translate_items(sub, branch, top=False)
        subs.append(sub)
        shapes.append(sub.shape)
    if mode == "concat":
        if len({s[1:] for s in shapes}) != 1:
            layer.fail(f"concatenates blobs of shapes {shapes}: all but the channels must agree")
        out = (sum(s[0] for s in shapes), *shapes[0][1:])
    else:
        if len(set(shapes)) != 1:
            layer.fail(f"adds blobs of different shapes {shapes}")
        out = shapes[0]
    chain.add(layer, _JoinSpec(mode, subs), shape=tuple(out))


def _local_name(name, block):
    """A Caffe layer name in the namespace of ``block`` (module docstring)."""
    if block is not None and name.startswith(block + "/"):
        name = name[len(block) + 1:]
    return name.replace("/", "_").replace(".", "_") or "layer"  # Caffe allows an empty name


def _claim(name, taken):
    """``name``, or with a letter added, unused in the namespace ``taken`` (which it joins)."""
    base, letter = name, ord("b")
    while name in taken:
        name, letter = f"{base}{chr(letter)}", letter + 1
    taken.add(name)
    return name


def _build_items(layers, names, block, taken):
    """(minicnn layers, names) of one Sequential in the namespace of ``block``: a join's
    branches share it (``taken``, the names used there so far)."""
    from minicnn.net import Sequential

    built, local = [], []
    for layer, name in zip(layers, names, strict=True):
        if isinstance(layer, _JoinSpec):
            branches = []
            for branch in layer.branches:
                if branch is not None:
                    branch = Sequential(*_build_items(branch.layers, branch.names, block, taken))
                branches.append(branch)
            layer = L.Join(branches, mode=layer.mode)
        built.append(layer)
        local.append(_claim(_local_name(name, block), taken))
    return built, local


def _blocks(chain):
    """The top-level (layers, names) of a network with joins: consecutive layers whose names
    share a prefix before "/" grouped into one block Sequential named by the prefix."""
    from minicnn.net import Sequential

    groups = []  # [block name or None, [layer], [caffe name]]
    for layer, name in zip(chain.layers, chain.names, strict=True):
        block = name.partition("/")[0] if "/" in name else None
        if block is not None and groups and groups[-1][0] == block:
            groups[-1][1].append(layer)
            groups[-1][2].append(name)
        else:
            groups.append([block, [layer], [name]])
    layers, names, taken = [], [], set()
    for block, members, caffe_names in groups:
        if block is None:
            built, local = _build_items(members, caffe_names, None, taken)
            layers += built
            names += local
        else:
            layers.append(Sequential(*_build_items(members, caffe_names, block, set())))
            names.append(_claim(_local_name(block, None), taken))
    return layers, names


def _as_known_model(net):
    """``net`` renamed as :func:`minicnn.models.squeezenet` when it is that network layer for
    layer (types, settings and nesting); otherwise ``net``."""
    squeezenet = getattr(models, "squeezenet", None)
    if squeezenet is None or not net.input_shape or net.input_shape[1] != net.input_shape[2]:
        return net
    classes = net.shapes()[-1][0]
    for version in ("1.0", "1.1"):
        try:
            known = squeezenet(version=version, num_classes=classes, input_size=net.input_shape[-1])
        except (TypeError, ValueError):
            continue
        if _skeleton(known.architecture()["layers"]) == _skeleton(net.architecture()["layers"]):
            known.input_shape, known.meta = net.input_shape, net.meta
            # the same tree: parameters pair up in order
            known.load_params({theirs: p for (theirs, _, _), (_, p, _)
                               in zip(known.named_params(), net.named_params(), strict=True)},
                              source="the import")
            ours = [n for n, _ in net.named_layers()]
            theirs = [n for n, _ in known.named_layers()]
            renamed = [f"{a} -> {b}" for a, b in zip(ours, theirs, strict=True) if a != b]
            if renamed:
                net.meta["import_notes"].append(
                    f"named as minicnn.models.squeezenet(version={version!r}): {len(renamed)} layers "
                    f"renamed ({', '.join(renamed[:3])}{', ...' if len(renamed) > 3 else ''})")
            net.meta["architecture"] = f"squeezenet {version}"
            return known
    return net


def _skeleton(specs):
    """An architecture's layer list without names, frozen flags and learning-rate factors."""
    if isinstance(specs, list):
        return [_skeleton(s) for s in specs]
    if isinstance(specs, dict):
        return {k: _skeleton(v) for k, v in specs.items()
                if k not in ("name", "names", "frozen", "lr_mult", "dtype")}
    return specs


# --- the import ----------------------------------------------------------------------------------
def from_caffe(prototxt, caffemodel=None, *, deep_compression=None, mean_file=None, mean=None, std=None,
               classes=None, channel_order="BGR", dtype=np.float32):
    """The network of a Caffe deploy ``prototxt`` with the weights of ``caffemodel``, or of
    the Deep Compression file ``deep_compression`` (module docstring). ``mean`` (per input
    channel, in the network's order, BGR for Caffe models) overrides ``mean_file``; ``std``
    defaults to 1 (Caffe's AlexNet does not scale). A Deep Compression file whose sha1 is
    in :data:`PUBLISHED_MEAN` gets that mean unless one is given. Every InputError names a
    file: one about a layer of the graph names the prototxt."""
    if (caffemodel is None) == (deep_compression is None):
        raise InputError(f"{prototxt}: give the weights as a caffemodel or a Deep Compression file (one)")
    try:
        return _from_caffe(prototxt, caffemodel, deep_compression, mean_file, mean, std, classes,
                           channel_order, dtype)
    except InputError as e:
        files = [os.path.basename(os.fspath(p)) for p in (prototxt, caffemodel, deep_compression, mean_file)
                 if p is not None]
        if any(name in str(e) for name in files):
            raise
        raise InputError(f"{prototxt}: {e}") from None


def _from_caffe(prototxt, caffemodel, deep_compression, mean_file, mean, std, classes, channel_order, dtype):
    weights_path = caffemodel if deep_compression is None else deep_compression
    proto_facts, model_facts = layout.file_facts(prototxt), layout.file_facts(weights_path)
    with open(prototxt, "rb") as f:
        net_def = caffe_schema.parse_prototxt(f.read(), prototxt)
    stored = None
    if caffemodel is not None:
        with open(caffemodel, "rb") as f:
            stored = _stored_blobs(caffe_schema.parse_binary(f.read(), "NetParameter", caffemodel),
                                   caffemodel)
    layers = [layer for layer in _layers(net_def, prototxt) if layer.in_test_phase()]
    blob_name, dims, layers = _input(net_def, layers, prototxt)
    if len(dims) != 4:
        raise InputError(f"{prototxt}: input shape {dims} is not N x C x H x W")
    shape = tuple(int(d) for d in dims[1:])
    seen = set()
    for layer in layers:
        if layer.name in seen:
            layer.fail("a second layer of this name")
        seen.add(layer.name)
    items = _graph(layers, blob_name)
    shared = _Shared(np.dtype(dtype))
    chain = _Chain(shape, shared)
    _translate_items(chain, items, top=True)
    branching = any(isinstance(layer, _JoinSpec) for layer in chain.layers)
    if branching and len(chain.shape) == 3 and chain.shape[1:] == (1, 1):
        chain.add(None, L.Flatten(), name="flatten", shape=(chain.shape[0],))
        shared.notes.append("a Flatten was added after the last layer: the network outputs "
                            f"{chain.shape[0]} logits per image")
    if stored is None:
        stored = _deep_compression_blobs(shared.with_blobs, deep_compression)
    _load_blobs(shared.with_blobs, stored, weights_path)

    notes = list(shared.notes)
    mean_source = None
    published = PUBLISHED_MEAN.get(model_facts["sha1"]) if deep_compression is not None else None
    if mean is None and mean_file is not None:
        mean = read_mean_file(mean_file)
        mean_source = layout.file_facts(mean_file)
    elif mean is not None and mean_file is not None:
        notes.append("the mean given overrides the mean file")
    elif mean is None and published is not None:
        mean = published[0]
        notes.append(f"mean {published[0]} (BGR) from {published[1]}")
    if mean is None:
        notes.append("no mean given: the network expects the mean-subtracted BGR pixels its "
                     "training used (give --mean-file or --mean)")
    meta = layout.preprocessing_meta(channel_order, mean, std, shape, classes)
    meta.update(source_format="caffe" if deep_compression is None else "deep-compression",
                source=model_facts["name"], source_sha256=model_facts["sha256"],
                source_sha1=model_facts["sha1"], known_source=layout.KNOWN_SHA1.get(model_facts["sha1"]),
                prototxt=proto_facts["name"], prototxt_sha256=proto_facts["sha256"],
                output="logits", softmax_dropped=shared.softmax_dropped, import_notes=notes)
    if mean_source:
        meta.update(mean_file=mean_source["name"], mean_file_sha256=mean_source["sha256"])
    if not branching:
        net = layout.build_network(chain.layers, shape, meta)
        layout.check_classes(net, net.meta)
        return net
    from minicnn.net import Sequential

    top_layers, names = _blocks(chain)
    net = Sequential(top_layers, names, input_shape=shape, meta=meta)
    if classes is not None and len(classes) != chain.shape[0]:
        raise InputError(f"the class list has {len(classes)} names, the network has {chain.shape[0]} outputs")
    return _as_known_model(net)


# the per-channel mean (BGR) a Deep Compression file was trained with, by the file's sha1,
# where its publisher gives it (the file holds weights only)
PUBLISHED_MEAN = {
    "d366493d585f65f4badc23b1ae943e9275db1cf4": (
        [104.0, 117.0, 123.0], "SqueezeNet_trainval.prototxt of songhan/SqueezeNet-Deep-Compression"),
}


def _stored_blobs(weights, caffemodel):
    """{layer name: (caffe layer, [arrays])} of the layers with blobs in a caffemodel."""
    stored = {}
    for layer in _layers(weights, caffemodel):
        if len(layer.msg.blobs):
            if layer.name in stored:
                layer.fail(f"appears twice with blobs in {caffemodel}")
            stored[layer.name] = (layer, [_blob_array(b) for b in layer.msg.blobs])
    return stored


def _deep_compression_blobs(with_blobs, path):
    """The blobs of a Deep Compression file, as :func:`_stored_blobs` gives a caffemodel's;
    the file stores the layers in prototxt order, each with its bias."""
    order = sorted(with_blobs, key=lambda entry: entry[0].index)
    for layer, target, shapes, _ in order:
        if callable(target):
            layer.fail(f"{os.path.basename(path)} (Deep Compression) stores convolutions and inner "
                       "products only")
        if len(shapes) != 2:
            layer.fail(f"has no bias: {os.path.basename(path)} (Deep Compression) stores a bias per layer")
    arrays = deep_compression.read(path, [(layer.name, layer.type, shapes[0], shapes[1][0])
                                          for layer, _, shapes, _ in order])
    return {layer.name: (layer, [(a.ravel(), a.shape) for a in arrays[layer.name]])
            for layer, *_ in order}


def _load_blobs(with_blobs, stored, source):
    wanted = {layer.name for layer, *_ in with_blobs}
    extra = sorted(set(stored) - wanted)
    if extra:
        stored[extra[0]][0].fail(f"has weights in {os.path.basename(source)} but no layer of that "
                                 "name in the prototxt takes them")
    for layer, target, shapes, transposed in with_blobs:
        if layer.name not in stored:
            layer.fail(f"has no weights in {os.path.basename(source)}")
        blobs = stored[layer.name][1]
        if len(blobs) != len(shapes):
            layer.fail(f"the caffemodel has {len(blobs)} blobs, the layer needs {len(shapes)} "
                       f"(weight{' and bias' if len(shapes) == 2 else ''})")
        keys = ("weight", "bias") if not callable(target) else ("mean", "variance", "factor") \
            if layer.type == "BatchNorm" else ("scale", "bias")
        values = []
        for key, (data, _), expected in zip(keys, blobs, shapes, strict=False):
            need = int(np.prod(expected))
            if data.size != need:
                layer.fail(f"blob {key} holds {data.size} values, the layer needs {expected} = {need}")
            value = data.reshape(expected)
            values.append(value)
            if not callable(target):
                target.params[key] = value.T if transposed and key == "weight" else value
        if callable(target):  # BatchNorm's statistics, Scale's factors (stored by the layer taking them)
            target(*values)
