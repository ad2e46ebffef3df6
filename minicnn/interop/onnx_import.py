"""ONNX -> :class:`minicnn.Sequential`: a chain of Conv, Relu, LRN, pools, Gemm/MatMul and
their reshapes, translated node by node with nothing approximated.

Constant work is done first: initializers, ``Constant`` and ``ConstantOfShape`` nodes and
every node whose inputs are all constant (the reshapes of a shape tensor, casts, ...) are
evaluated with NumPy. What is left must be a chain from the one graph input to the one
graph output. Each node becomes a layer (or nothing: Identity, a 1x1 stride-1 average pool,
a flatten of what is already flat), and a trailing Softmax is dropped so that the network
outputs logits. Any other operator, or an attribute value minicnn cannot honour (dilation,
padding it cannot express, an even LRN size, whose window ONNX centres differently), stops
the import with an :class:`InputError` naming the node, its operator and the reason.

A file written by :func:`minicnn.interop.to_onnx` carries the network's architecture in
its metadata; its layer names, frozen flags and meta are taken from there, so that
``from_onnx(to_onnx(net))`` is the same network.
"""

from __future__ import annotations

import json
import math

import numpy as np

from minicnn import layers as L
from minicnn.errors import InputError
from minicnn.interop import layout
from minicnn.interop.onnx_fold import Node, decimal, fold

OPSETS = range(7, 22)
ARCH_KEY = "minicnn.architecture"
SUPPORTED = ("Conv, Relu, LRN, MaxPool, AveragePool, GlobalAveragePool, Gemm, MatMul (+ Add), "
             "Flatten, Reshape, Dropout, Identity, a trailing Softmax")


def require_onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise InputError("ONNX import/export needs the onnx and protobuf packages: "
                         "pip install -e \".[interop]\"") from None
    return onnx, numpy_helper


class _Builder:
    """Layer specs in order, with the current activation shape (C, H, W) or (features,)."""

    def __init__(self, shape, dtype):
        self.specs, self.shape, self.dtype, self.notes = [], shape, dtype, []
        self.softmax_dropped = False

    def add(self, n, kind, args, params=None):
        spec = {"kind": kind, "args": args, "params": params or {}, "node": n}
        layer = self.make(spec)
        if self.shape is not None:
            try:
                self.shape = layer.output_shape(self.shape)
            except ValueError as e:
                n.fail(f"input shape {self.shape}: {e}")
        self.specs.append(spec)

    def make(self, spec):
        args = dict(spec["args"])
        if spec["kind"] in (L.Conv2D, L.Linear):
            args["dtype"] = self.dtype
            args["bias"] = "bias" in spec["params"]
        return spec["kind"](**args)

    def layers(self):
        out = []
        for spec in self.specs:
            layer = self.make(spec)
            for key, value in spec["params"].items():
                layer.params[key] = value.astype(self.dtype)
            out.append(layer)
        return out


def _pool_geometry(n: Node, shape, kind):
    if n.attr("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
        n.fail(f"auto_pad {n.attr('auto_pad')!r} is not supported (give explicit pads)")
    kernel = list(n.attr("kernel_shape") or [])
    if len(kernel) != 2:
        n.fail(f"kernel_shape {kernel} is not 2-D")
    strides = list(n.attr("strides") or [1, 1])
    pads = list(n.attr("pads") or [0, 0, 0, 0])
    if any(d != 1 for d in n.attr("dilations") or [1, 1]):
        n.fail(f"dilations {n.attr('dilations')} are not supported (minicnn pools are not dilated)")
    ceil = bool(n.attr("ceil_mode", 0))
    if shape is None or len(shape) != 3:
        n.fail(f"needs a known (C, H, W) input, got {shape}")
    # ONNX's output size; minicnn's pads are symmetric, so find a (padding, ceil_mode) of
    # minicnn with the same windows: same starts (the leading pad) and the same count.
    begin, end = pads[:2], pads[2:]
    onnx_out = []
    for size, k, s, b, e in zip(shape[1:], kernel, strides, begin, end, strict=True):
        span = size + b + e - k
        out = (math.ceil(span / s) if ceil else span // s) + 1
        if ceil and (out - 1) * s >= size + b:
            out -= 1
        onnx_out.append(out)
    from minicnn.ops.max_pool2d import pool_output_size

    count_include_pad = bool(n.attr("count_include_pad", 0))
    if begin == end:
        candidates = [ceil]
    elif kind is L.AvgPool2D and count_include_pad:
        n.fail(f"asymmetric pads {pads} with count_include_pad=1 divide by padding minicnn "
               "cannot express")
    else:
        candidates = [False, True]
    for mode in candidates:
        try:
            ours = [pool_output_size(size, k, s, b, mode)
                    for size, k, s, b in zip(shape[1:], kernel, strides, begin, strict=True)]
        except ValueError:
            continue
        if ours == onnx_out and all(b <= k / 2 for b, k in zip(begin, kernel, strict=True)):
            args = dict(kernel_size=kernel, stride=strides, padding=begin, ceil_mode=mode)
            if kind is L.AvgPool2D:
                args["count_include_pad"] = count_include_pad
            return args
    n.fail(f"pads {pads} (ceil_mode {int(ceil)}) on input {tuple(shape)} give windows that minicnn's "
           "symmetric padding (at most half the kernel) cannot express")


def _conv(b: _Builder, n: Node, consts):
    w = consts.get(n.node.input[1])
    if w is None:
        n.fail("the weight is not a constant")
    if w.ndim != 4:
        n.fail(f"weight of shape {w.shape}: only 2-D convolutions are supported")
    if n.attr("auto_pad", "NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
        n.fail(f"auto_pad {n.attr('auto_pad')!r} is not supported (give explicit pads)")
    if any(d != 1 for d in n.attr("dilations") or [1, 1]):
        n.fail(f"dilations {n.attr('dilations')} are not supported")
    kernel = list(n.attr("kernel_shape") or w.shape[2:])
    if tuple(kernel) != tuple(w.shape[2:]):
        n.fail(f"kernel_shape {kernel} does not match the weight {w.shape}")
    pads = list(n.attr("pads") or [0, 0, 0, 0])
    if pads[:2] != pads[2:]:
        n.fail(f"asymmetric pads {pads} are not supported (minicnn pads both sides alike)")
    groups = int(n.attr("group", 1))
    channels = w.shape[1] * groups
    if b.shape is not None and b.shape[0] != channels:
        n.fail(f"weight {w.shape} with group {groups} expects {channels} input channels, "
               f"got {b.shape[0]}")
    params = {"weight": w}
    if len(n.node.input) > 2 and n.node.input[2]:
        bias = consts.get(n.node.input[2])
        if bias is None or bias.size != w.shape[0]:
            n.fail("the bias is not a constant of one value per output channel")
        params["bias"] = bias.reshape(-1)
    b.add(n, L.Conv2D, dict(in_channels=channels, out_channels=w.shape[0], kernel_size=kernel,
                            stride=list(n.attr("strides") or [1, 1]), padding=pads[:2],
                            groups=groups), params)


def _features(b: _Builder, n: Node):
    if b.shape is not None and len(b.shape) != 1:
        n.fail(f"expects a flat (N, features) input, got a sample of shape {b.shape}")


def _gemm(b: _Builder, n: Node, consts):
    _features(b, n)
    if n.attr("transA", 0):
        n.fail("transA=1 (the batch on axis 1) is not supported")
    w = consts.get(n.node.input[1])
    if w is None or w.ndim != 2:
        n.fail("B must be a constant matrix")
    w = w if n.attr("transB", 0) else w.T
    w = w * np.asarray(n.attr("alpha", 1.0), dtype=w.dtype)
    params = {"weight": w}
    if len(n.node.input) > 2 and n.node.input[2]:
        c = consts.get(n.node.input[2])
        if c is None:
            n.fail("C must be a constant")
        if c.size not in (1, w.shape[0]) or (c.ndim == 2 and c.shape[0] != 1):
            n.fail(f"C of shape {c.shape} is not one bias per output ({w.shape[0]})")
        params["bias"] = np.broadcast_to(c.reshape(-1), (w.shape[0],)) * np.asarray(
            n.attr("beta", 1.0), dtype=c.dtype)
    b.add(n, L.Linear, dict(in_features=w.shape[1], out_features=w.shape[0]), params)


def _matmul(b: _Builder, n: Node, consts):
    _features(b, n)
    w = consts.get(n.node.input[1])
    if w is None or w.ndim != 2:
        n.fail("the second input must be a constant matrix (in, out)")
    b.add(n, L.Linear, dict(in_features=w.shape[0], out_features=w.shape[1]), {"weight": w.T})


def _add(b: _Builder, n: Node, consts, const_input):
    last = b.specs[-1] if b.specs else None
    value = consts[const_input]
    if last is None or last["kind"] not in (L.Linear, L.Conv2D) or "bias" in last["params"]:
        n.fail("an Add is supported only as the bias of the MatMul or Conv just before it")
    out = last["args"].get("out_features") or last["args"]["out_channels"]
    squeezed = value.reshape(-1) if value.size == out else None
    if squeezed is None or (last["kind"] is L.Conv2D and value.ndim >= 3 and value.shape[-2:] != (1, 1)):
        n.fail(f"constant of shape {value.shape} is not one bias per output ({out})")
    last["params"]["bias"] = squeezed


def _reshape(b: _Builder, n: Node, consts):
    target = consts.get(n.node.input[1])
    if target is None:
        n.fail("the target shape is not a constant (a shape computed from the input, e.g. through "
               "Shape, is not supported)")
    target = [int(d) for d in target]
    if b.shape is None:
        n.fail("needs a known input shape")
    features = int(np.prod(b.shape))
    if len(target) != 2 or target[1] not in (features, -1) or target[0] not in (0, 1, -1) \
            or (target[0] == -1 and target[1] == -1) or (target[1] == 0 and n.attr("allowzero", 0)):
        n.fail(f"reshape of a sample {b.shape} to {target}: only a flatten to (N, {features}) is supported")
    if target[0] == 1:
        b.notes.append(f"{n.label}: the reshape to {target} fixes the batch at 1; imported as a flatten")
    if len(b.shape) != 1:
        b.add(n, L.Flatten, {})


def _dropout(b: _Builder, n: Node, consts):
    ratio = n.attr("ratio", 0.5)
    if len(n.node.input) > 1 and n.node.input[1]:
        if n.node.input[1] not in consts:
            n.fail("the ratio is not a constant")
        ratio = decimal(float(consts[n.node.input[1]]))
    if len(n.node.input) > 2 and n.node.input[2]:
        mode = consts.get(n.node.input[2])
        if mode is None or bool(mode):
            n.fail("training_mode must be a constant false")
    b.add(n, L.Dropout, dict(p=float(ratio)))


def _translate(b: _Builder, n: Node, consts, const_inputs, is_last, keep_trivial):
    op = n.op
    if op == "Conv":
        _conv(b, n, consts)
    elif op == "Relu":
        b.add(n, L.ReLU, {})
    elif op == "LRN":
        size = int(n.attr("size"))
        if size % 2 == 0:
            n.fail(f"size {size} is even: ONNX centres an even window one channel later than "
                   "minicnn (and Caffe); only odd sizes are imported")
        b.add(n, L.LRN, dict(size=size, alpha=float(n.attr("alpha", 1e-4)),
                             beta=float(n.attr("beta", 0.75)), k=float(n.attr("bias", 1.0))))
    elif op == "MaxPool":
        if n.attr("storage_order", 0):
            n.fail("storage_order=1 is not supported")
        b.add(n, L.MaxPool2D, _pool_geometry(n, b.shape, L.MaxPool2D))
    elif op == "AveragePool":
        args = _pool_geometry(n, b.shape, L.AvgPool2D)
        if not keep_trivial and args["kernel_size"] == [1, 1] and args["stride"] == [1, 1] \
                and args["padding"] == [0, 0]:
            b.notes.append(f"{n.label}: a 1x1 stride-1 average pool is the identity; left out")
            return
        b.add(n, L.AvgPool2D, args)
    elif op == "GlobalAveragePool":
        if b.shape is None or len(b.shape) != 3:
            n.fail(f"needs a known (C, H, W) input, got {b.shape}")
        if b.shape[1:] == (1, 1) and not keep_trivial:
            b.notes.append(f"{n.label}: a global average pool of a 1x1 map is the identity; left out")
            return
        b.add(n, L.AvgPool2D, dict(kernel_size=list(b.shape[1:]), stride=[1, 1]))
    elif op == "Gemm":
        _gemm(b, n, consts)
    elif op == "MatMul":
        _matmul(b, n, consts)
    elif op == "Add" and const_inputs:
        _add(b, n, consts, const_inputs[0])
    elif op == "Flatten":
        if n.attr("axis", 1) != 1:
            n.fail(f"axis {n.attr('axis')} is not supported (only axis=1, the batch kept)")
        if b.shape is None or len(b.shape) != 1 or keep_trivial:
            b.add(n, L.Flatten, {})
    elif op == "Reshape":
        _reshape(b, n, consts)
    elif op == "Dropout":
        _dropout(b, n, consts)
    elif op == "Identity":
        return
    elif op == "Softmax":
        if not is_last:
            n.fail("a Softmax is supported only as the last node (it is dropped: minicnn "
                   "networks output logits)")
        axis = n.attr("axis", 1)
        if axis not in (1, -1) or (b.shape is not None and len(b.shape) != 1):
            n.fail(f"axis {axis} on a sample of shape {b.shape}: only the class axis of (N, classes)")
        b.notes.append("the trailing Softmax was dropped: the network outputs logits")
        b.softmax_dropped = True
    else:
        n.fail(f"operator not supported by minicnn (supported: {SUPPORTED})")


def _value_shape(value_info):
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else None for d in dims]


def from_onnx(path, *, channel_order=None, mean=None, std=None, classes=None, input_size=None,
              dtype=np.float32):
    """The network of the ONNX file ``path`` (module docstring). ``mean``/``std`` (per input
    channel, 0-255 scale, in ``channel_order``) and ``classes`` go into ``net.meta``, as
    does ``input_size`` when the file leaves the height and width open."""
    onnx, numpy_helper = require_onnx()
    facts = layout.file_facts(path)
    try:
        model = onnx.load(str(path))
    except Exception as e:
        raise InputError(f"{path}: not a readable ONNX model ({e})") from None
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None)
    if opset not in OPSETS:
        raise InputError(f"{path}: opset {opset} is outside the supported {OPSETS.start}..{OPSETS.stop - 1}")
    graph = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise InputError(f"{path}: expects one input and one output, the graph has inputs "
                         f"{[i.name for i in inputs]} and outputs {[o.name for o in graph.output]}")
    dims = _value_shape(inputs[0])
    if len(dims) != 4:
        raise InputError(f"{path}: input {inputs[0].name!r} has shape {dims}, not (N, C, H, W)")
    if input_size is not None:
        size = (input_size, input_size) if np.isscalar(input_size) else tuple(input_size)
        dims[2:] = [int(s) for s in size]
    if not all(dims[1:]):
        raise InputError(f"{path}: input {inputs[0].name!r} has shape {dims}: give the input size "
                         "(input_size=, or --input-size) to fix its height and width")
    shape = tuple(dims[1:])
    stored = _stored_architecture(model, path)

    nodes = [Node(node, i, onnx) for i, node in enumerate(graph.node)]
    for n in nodes:
        if n.node.domain not in ("", "ai.onnx"):
            n.fail(f"domain {n.node.domain!r} is not supported")
    # fold everything computable from constants alone
    live = []
    for n in nodes:
        args = [consts.get(x) for x in n.node.input if x]
        folded = None
        if all(a is not None for a in args) and (args or n.op in ("Constant",)):
            try:
                folded = fold(n, args, numpy_helper, onnx)
            except InputError:
                raise
            except Exception as e:  # numpy's own error on a malformed constant node
                n.fail(f"could not fold its constant inputs ({e})")
        if folded is not None:
            consts.update(zip(n.node.output, folded, strict=False))
        else:
            live.append(n)
    used = {x for n in live for x in n.node.input} | {o.name for o in graph.output}
    consumers: dict = {}
    for x in [x for n in live for x in n.node.input] + [o.name for o in graph.output]:
        consumers[x] = consumers.get(x, 0) + 1
    builder = _Builder(shape, np.dtype(dtype))
    current = inputs[0].name
    for i, n in enumerate(live):
        activations = [x for x in n.node.input if x and x not in consts]
        if activations != [current]:
            n.fail(f"reads {activations or 'only constants'}, not the output {current!r} of the layer "
                   "before: minicnn imports sequential networks only")
        extra = [o for o in n.node.output[1:] if o and o in used]
        if extra:
            n.fail(f"its second output {extra[0]!r} (a mask or indices) is used: not supported")
        if consumers.get(n.node.output[0], 0) > 1:
            for m in live:  # PyTorch's Shape -> Gather -> Concat -> Reshape: name the Shape
                if m.op == "Shape" and n.node.output[0] in m.node.input:
                    m.fail("a shape read at run time is not supported: export with a fixed reshape "
                           "(torch.flatten, or a constant shape)")
            n.fail("its output feeds more than one node: minicnn imports sequential networks only")
        const_inputs = [x for x in n.node.input if x and x in consts]
        _translate(builder, n, consts, const_inputs,  # last but for Identity nodes
                   is_last=all(m.op == "Identity" for m in live[i + 1 :]), keep_trivial=stored is not None)
        current = n.node.output[0]
    if current != graph.output[0].name:
        raise InputError(f"{path}: the chain of nodes ends at {current!r}, not at the graph output "
                         f"{graph.output[0].name!r}")
    layers = builder.layers()
    meta = layout.preprocessing_meta(channel_order or "RGB", mean, std, shape, classes)
    names = None
    if stored is not None:
        given = {"channel_order": channel_order, "mean": mean, "std": std, "classes": classes}
        names = _apply_stored(stored, layers, meta, {k for k, v in given.items() if v is not None}, path)
    meta.update(source_format="onnx", source=facts["name"], source_sha256=facts["sha256"],
                source_sha1=facts["sha1"], opset=int(opset), producer=model.producer_name,
                output="logits", softmax_dropped=builder.softmax_dropped)
    meta["import_notes"] = list(meta.get("import_notes", [])) + builder.notes
    net = layout.build_network(layers, shape, meta, names=names)
    if classes is not None:
        layout.check_classes(net, net.meta)
    if stored is not None:
        for spec, layer in zip(stored["layers"], net.layers, strict=True):
            layer.frozen = bool(spec.get("frozen", False))
            layer.lr_mult = float(spec.get("lr_mult", 1.0))
    return net


def _stored_architecture(model, path):
    props = {p.key: p.value for p in model.metadata_props}
    if model.producer_name != "minicnn" or ARCH_KEY not in props:
        return None
    try:
        return json.loads(props[ARCH_KEY])
    except ValueError:
        raise InputError(f"{path}: its {ARCH_KEY} metadata is not JSON") from None


def _apply_stored(stored, layers, meta, given, path):
    """Names (and meta) of a minicnn-written file, after checking they describe these layers."""
    specs = stored.get("layers", [])
    kinds = [type(layer).__name__ for layer in layers]
    if [s["type"] for s in specs] != kinds:
        raise InputError(f"{path}: the graph's layers {kinds} do not match its {ARCH_KEY} metadata "
                         f"{[s['type'] for s in specs]}")
    base = dict(stored.get("meta") or {})
    base.update({k: v for k, v in meta.items() if k not in base or k in given or k == "input_size"})
    meta.clear()
    meta.update(base)
    return [s["name"] for s in specs]
