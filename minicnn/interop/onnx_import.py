"""ONNX -> :class:`minicnn.Sequential`: Conv, Relu, Clip, LRN, BatchNormalization, pools,
Gemm/MatMul and their reshapes, translated node by node with nothing approximated; a graph
that splits and rejoins (Concat along channels, Add of two branches) becomes a
:class:`minicnn.Join`.

Constant work is done first: initializers, ``Constant`` and ``ConstantOfShape`` nodes and
every node whose inputs are all constant (the reshapes of a shape tensor, casts, ...) are
evaluated with NumPy. What is left is walked from the one graph input to the graph output:
a tensor read by one node continues the chain; a tensor read by several opens a join, whose
branches run from it to the node that merges them (a Concat on axis 1, an Add or Sum of
activations), each branch walked the same way (so joins nest). Each node becomes a layer
(or nothing: Identity, a 1x1 stride-1 average pool, a flatten of what is already flat), a
BatchNormalization right after a convolution is folded into its weights and bias (else it
is a BatchNorm2D layer), and a trailing Softmax is dropped so that the network outputs
logits. The input may have any rank >= 2 (the first axis is the batch). A second graph
output that is a Dropout's mask is left out with a note. Any other operator, or an
attribute value minicnn cannot honour (a pool's dilation, padding a pool cannot express, an
even LRN size, whose window ONNX centres differently), stops the import with an
:class:`InputError` naming the node, its operator and the reason.

A file written by :func:`minicnn.interop.to_onnx` carries the network's architecture in
its metadata; its layer names, blocks, frozen flags and meta are taken from there, so that
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

# Every operator read here has its last version at opset 25 or before (onnx 1.23's schemas),
# and its versions after 21 only admit new tensor types; 26..28 changed none of them.
OPSETS = range(7, 29)
TRANSLATED = {"Conv", "Relu", "Clip", "LRN", "BatchNormalization", "MaxPool", "AveragePool",
              "GlobalAveragePool", "ReduceMean", "Gemm", "MatMul", "Add", "Sum", "Concat", "Flatten",
              "Reshape", "Dropout", "Identity", "Softmax", "Pad",
              "Shape"}  # a Shape is refused where it is read, saying why
ARCH_KEY = "minicnn.architecture"
SUPPORTED = ("Conv (a zero Pad before it folded in), Relu, Clip, LRN, BatchNormalization, MaxPool, "
             "AveragePool, GlobalAveragePool (or ReduceMean over H and W), Gemm, MatMul (+ Add), Concat and "
             "Add/Sum of branches, Flatten, Reshape, Dropout, Identity, a trailing Softmax")
JOIN = "join"


def require_onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise InputError("ONNX import/export needs the onnx and protobuf packages: "
                         "pip install -e \".[interop]\"") from None
    return onnx, numpy_helper


class _Builder:
    """Layer specs of one chain in order, with the current activation shape of one sample
    ((C, H, W), (features,), ...). A join's spec holds a builder per branch (None: identity)."""

    def __init__(self, shape, dtype, notes=None):
        self.specs, self.shape, self.dtype = [], shape, dtype
        self.notes = [] if notes is None else notes
        self.softmax_dropped = False
        # a zero Pad waiting for the convolution it is folded into: (node, (t, l, b, r), shape before)
        self.pad = None

    def check_no_pad(self):
        if self.pad is not None:
            self.pad[0].fail("a zero Pad is supported only right before a convolution (folded into its "
                             "padding)")

    def branch(self):
        return _Builder(self.shape, self.dtype, self.notes)

    def add(self, n, kind, args, params=None, buffers=None):
        self.check_no_pad()
        spec = {"kind": kind, "args": args, "params": params or {}, "buffers": buffers or {}, "node": n}
        layer = self.make(spec)
        if self.shape is not None:
            try:
                self.shape = layer.output_shape(self.shape)
            except (ValueError, TypeError) as e:
                n.fail(f"input shape {self.shape}: {e}")
            if min(self.shape, default=1) < 1:
                n.fail(f"its output {self.shape} is empty (the input is smaller than the window)")
        self.specs.append(spec)

    def add_join(self, n, mode, branches):
        self.check_no_pad()
        for branch in branches:
            if branch is not None:
                branch.check_no_pad()
        shapes = [self.shape if b is None else b.shape for b in branches]
        if mode == "sum" and len(set(shapes)) > 1:
            n.fail(f"adds branches of different shapes {shapes} (minicnn adds equal shapes, no broadcasting)")
        if mode == "concat":
            if len({s[1:] for s in shapes}) > 1 or len({len(s) for s in shapes}) > 1:
                n.fail(f"concatenates branches that differ beyond the channels: {shapes}")
        self.specs.append({"kind": JOIN, "mode": mode, "branches": branches, "node": n})
        self.shape = shapes[0] if mode == "sum" else (sum(s[0] for s in shapes),) + tuple(shapes[0][1:])

    def make(self, spec):
        args = dict(spec["args"])
        if spec["kind"] in (L.Conv2D, L.Linear, L.BatchNorm2D):
            args["dtype"] = self.dtype
        if spec["kind"] in (L.Conv2D, L.Linear):
            args["bias"] = "bias" in spec["params"]
        return spec["kind"](**args)

    def has_joins(self):
        return any(spec["kind"] == JOIN for spec in self.specs)

    def layers(self):
        """The layers (a Join with its branches, named for now by their position; see
        :func:`_name_namespace`)."""
        from minicnn.net import Join, Sequential

        out = []
        for spec in self.specs:
            if spec["kind"] == JOIN:
                branches = []
                for b in spec["branches"]:
                    layers = None if b is None else b.layers()
                    branches.append(None if layers is None else Sequential(
                        layers, [f"{id(layer)}" for layer in layers]))
                out.append(Join(branches, spec["mode"]))
                continue
            layer = self.make(spec)
            for key, value in spec["params"].items():
                layer.params[key] = np.asarray(value).astype(self.dtype)
            for key, value in spec["buffers"].items():
                layer.buffers[key] = np.asarray(value).astype(self.dtype)
            out.append(layer)
        return out


def _namespace(layers):
    """The layers in the order of their namespace: each Join followed by its branches' layers."""
    for layer in layers:
        yield layer
        if isinstance(layer, L.Join):
            for branch in layer.branches:
                if branch is not None:
                    yield from _namespace(branch.layers)


def _name_branches(layers, names: dict):
    """Give every branch layer its name from ``names`` ({id(layer): name})."""
    for layer in layers:
        if isinstance(layer, L.Join):
            for branch in layer.branches:
                if branch is not None:
                    _name_branches(branch.layers, names)
                    branch.names = [names[id(x)] for x in branch.layers]
                    for x in branch.layers:
                        x.name = names[id(x)]


def _pads(n: Node, shape, kernel, strides, dilations):
    """(top, left, bottom, right) of the node: its pads, or what its auto_pad asks for on this
    input: SAME_UPPER / SAME_LOWER give ceil(size / stride) outputs, the odd pad after
    (UPPER, TensorFlow's SAME) or before (LOWER); VALID none."""
    auto = n.attr("auto_pad", "NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("NOTSET", ""):
        pads = list(n.attr("pads") or [0, 0, 0, 0])
        if len(pads) != 4:
            n.fail(f"pads {pads} are not the 4 of a 2-D window")
        if min(pads) < 0:
            n.fail(f"negative pads {pads} are not supported")
        return pads
    if auto == "VALID":
        return [0, 0, 0, 0]
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        n.fail(f"auto_pad {auto!r} is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER")
    from minicnn.ops.im2col import same_padding

    begin, end = [], []
    for size, k, s, d in zip(shape, kernel, strides, dilations, strict=True):
        small, large = same_padding(size, k, s, d)
        begin.append(small if auto == "SAME_UPPER" else large)
        end.append(large if auto == "SAME_UPPER" else small)
    return begin + end


def _pool_geometry(n: Node, shape, kind):
    kernel = list(n.attr("kernel_shape") or [])
    if len(kernel) != 2:
        n.fail(f"kernel_shape {kernel} is not 2-D")
    strides = list(n.attr("strides") or [1, 1])
    if any(d != 1 for d in n.attr("dilations") or [1, 1]):
        n.fail(f"dilations {n.attr('dilations')} are not supported (minicnn pools are not dilated)")
    ceil = bool(n.attr("ceil_mode", 0))
    if shape is None or len(shape) != 3:
        n.fail(f"needs a known (C, H, W) input, got {shape}")
    pads = _pads(n, shape[1:], kernel, strides, [1, 1])
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
    fits = all(p <= k / 2 for p, k in zip(pads, kernel * 2, strict=True))
    if begin != end and fits:  # padding per side (TensorFlow's SAME), as ONNX counts the windows
        ours = [pool_output_size(size, k, s, b, ceil, e)
                for size, k, s, b, e in zip(shape[1:], kernel, strides, begin, end, strict=True)]
        if ours == onnx_out:
            args = dict(kernel_size=kernel, stride=strides, padding=pads, ceil_mode=ceil)
            if kind is L.AvgPool2D:
                args["count_include_pad"] = False
            return args
    n.fail(f"pads {pads} (ceil_mode {int(ceil)}) on input {tuple(shape)} give windows that minicnn's "
           "padding (at most half the kernel) cannot express")


def _conv(b: _Builder, n: Node, consts):
    w = consts.get(n.node.input[1])
    if w is None:
        n.fail("the weight is not a constant")
    if w.ndim != 4:
        n.fail(f"weight of shape {w.shape}: only 2-D convolutions are supported")
    if b.shape is None or len(b.shape) != 3:
        n.fail(f"needs a known (C, H, W) input, got {b.shape}")
    kernel = list(n.attr("kernel_shape") or w.shape[2:])
    if tuple(kernel) != tuple(w.shape[2:]):
        n.fail(f"kernel_shape {kernel} does not match the weight {w.shape}")
    strides = list(n.attr("strides") or [1, 1])
    dilations = list(n.attr("dilations") or [1, 1])
    if len(strides) != 2 or len(dilations) != 2 or min(strides + dilations) < 1:
        n.fail(f"strides {strides} and dilations {dilations} must be two positive numbers")
    pads = _pads(n, b.shape[1:], kernel, strides, dilations)
    if b.pad is not None:  # the zero Pad before, folded in
        pads = [p + q for p, q in zip(pads, b.pad[1], strict=True)]
        b.notes.append(f"{b.pad[0].label}: folded into the padding of {n.label}")
        b.shape, b.pad = b.pad[2], None
    groups = int(n.attr("group", 1))
    channels = w.shape[1] * groups
    if b.shape[0] != channels:
        n.fail(f"weight {w.shape} with group {groups} expects {channels} input channels, "
               f"got {b.shape[0]}")
    if w.shape[0] % groups:
        n.fail(f"{w.shape[0]} output channels do not divide into {groups} groups")
    params = {"weight": w}
    if len(n.node.input) > 2 and n.node.input[2]:
        bias = consts.get(n.node.input[2])
        if bias is None or bias.size != w.shape[0]:
            n.fail("the bias is not a constant of one value per output channel")
        params["bias"] = bias.reshape(-1)
    b.add(n, L.Conv2D, dict(in_channels=channels, out_channels=w.shape[0], kernel_size=kernel,
                            stride=strides, padding=pads, dilation=dilations, groups=groups), params)


def _batch_norm(b: _Builder, n: Node, consts, fold):
    """A BatchNormalization in evaluation mode: folded into the convolution (or, on features,
    the Gemm or MatMul) just before it (w' = w s, b' = (b - mean) s + beta per output, with
    s = gamma / sqrt(var + eps), in float64, rounded once), else a BatchNorm2D layer with the
    running statistics."""
    if n.attr("training_mode", 0) or len([o for o in n.node.output if o]) > 1:
        n.fail("training mode (the batch's statistics, updated running statistics as outputs) is not "
               "supported: export the network in evaluation mode")
    if n.attr("spatial", 1) != 1:
        n.fail("spatial=0 (statistics per pixel) is not supported")
    values = [consts.get(x) for x in n.node.input[1:5]]
    if len(values) != 4 or any(v is None for v in values):
        n.fail("scale, B, mean and var must be constants")
    if b.shape is None or len(b.shape) not in (1, 3):
        n.fail(f"needs an (N, C, H, W) or (N, features) input, got a sample of shape {b.shape}")
    C = b.shape[0]
    if any(v.size != C for v in values):
        n.fail(f"scale, B, mean and var must hold one value per channel ({C}), got sizes "
               f"{[int(v.size) for v in values]}")
    gamma, beta, mean, var = (v.reshape(-1).astype(np.float64) for v in values)
    eps = float(n.attr("epsilon", 1e-5))
    last = b.specs[-1] if b.specs else None
    if fold and last is not None and last["kind"] in (L.Conv2D, L.Linear):
        s = gamma / np.sqrt(var + eps)
        bias = last["params"].get("bias")
        bias = np.zeros(C) if bias is None else np.asarray(bias, np.float64)
        weight = np.asarray(last["params"]["weight"], np.float64)
        last["params"]["weight"] = weight * s.reshape((-1,) + (1,) * (weight.ndim - 1))
        last["params"]["bias"] = (bias - mean) * s + beta
        b.notes.append(f"{n.label}: folded into the {'convolution' if last['kind'] is L.Conv2D else 'layer'} "
                       "before it")
        return
    if len(b.shape) != 3:
        n.fail("a batch normalisation of features is supported only right after a Gemm or MatMul "
               "(folded into it)")
    momentum = float(n.attr("momentum", 0.9))  # ONNX's: running = running * momentum + batch * (1 - momentum)
    b.add(n, L.BatchNorm2D, dict(num_features=C, eps=eps, momentum=decimal(1.0 - momentum)),
          params={"weight": gamma, "bias": beta}, buffers={"running_mean": mean, "running_var": var})


def _clip(b: _Builder, n: Node, consts):
    lo, hi = n.attr("min"), n.attr("max")  # before opset 11: attributes
    for i, name in ((1, "min"), (2, "max")):
        if len(n.node.input) > i and n.node.input[i]:
            value = consts.get(n.node.input[i])
            if value is None or value.size != 1:
                n.fail(f"{name} must be a constant scalar")
            if i == 1:
                lo = decimal(float(value.reshape(-1)[0]))
            else:
                hi = decimal(float(value.reshape(-1)[0]))
    lo = None if lo is None or lo <= np.finfo(np.float32).min else float(lo)
    hi = None if hi is None or hi >= np.finfo(np.float32).max else float(hi)
    if lo is not None and hi is not None and lo > hi:
        n.fail(f"min {lo} above max {hi} (ONNX then gives max everywhere; not a layer minicnn has)")
    b.add(n, L.Clip, dict(min=lo, max=hi))


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


def _pad(b: _Builder, n: Node, consts):
    """A zero Pad of the height and width (PyTorch's F.pad before a convolution, TensorFlow's
    explicit SAME), kept for the convolution after it."""
    mode = n.attr("mode", "constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    pads, value = n.attr("pads"), n.attr("value", 0.0)
    inputs = list(n.node.input)
    if len(inputs) > 1 and inputs[1]:
        pads = consts.get(inputs[1])
        if pads is None:
            n.fail("the pads are not a constant")
    if len(inputs) > 2 and inputs[2]:
        value = consts.get(inputs[2])
        value = None if value is None else float(np.asarray(value).reshape(-1)[0])
    if len(inputs) > 3 and inputs[3]:
        n.fail("pads on chosen axes (the axes input) are not supported")
    pads = [int(p) for p in (pads if pads is not None else [])]
    if mode != "constant" or value != 0.0:
        n.fail(f"mode {mode!r} with value {value}: only a zero (constant) pad is supported")
    if b.shape is None or len(b.shape) != 3 or len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) \
            or min(pads) < 0:
        n.fail(f"pads {pads} on a sample of shape {b.shape}: only non-negative pads of the height and width "
               "of (N, C, H, W) are supported")
    b.check_no_pad()
    top, left, bottom, right = pads[2], pads[3], pads[6], pads[7]
    b.pad = (n, (top, left, bottom, right), b.shape)
    b.shape = (b.shape[0], b.shape[1] + top + bottom, b.shape[2] + left + right)


def _global_average(b: _Builder, n: Node, keep_trivial):
    if b.shape is None or len(b.shape) != 3:
        n.fail(f"needs a known (C, H, W) input, got {b.shape}")
    if b.shape[1:] == (1, 1) and not keep_trivial:
        b.notes.append(f"{n.label}: a global average pool of a 1x1 map is the identity; left out")
        return
    b.add(n, L.AvgPool2D, dict(kernel_size=list(b.shape[1:]), stride=[1, 1]))


def _flatten(b: _Builder, n: Node, keep_trivial):
    rank = None if b.shape is None else len(b.shape) + 1
    axis = int(n.attr("axis", 1))
    if rank is not None:
        axis = axis + rank if axis < 0 else axis
        if axis <= 0 or axis > rank or any(d != 1 for d in b.shape[: axis - 1]):
            n.fail(f"axis {n.attr('axis', 1)} on a sample of shape {b.shape}: the batch would not stay "
                   "the first axis (only a flatten to (N, features) is supported)")
    elif axis != 1:
        n.fail(f"axis {axis} on an input of unknown shape")
    if b.shape is None or len(b.shape) != 1 or keep_trivial:
        b.add(n, L.Flatten, {})


def _translate(b: _Builder, n: Node, consts, const_inputs, is_last, keep_trivial):
    op = n.op
    if op == "Conv":
        _conv(b, n, consts)
    elif op == "Relu":
        b.add(n, L.ReLU, {})
    elif op == "Clip":
        _clip(b, n, consts)
    elif op == "Pad":
        _pad(b, n, consts)
    elif op == "BatchNormalization":
        _batch_norm(b, n, consts, fold=not keep_trivial)
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
        _global_average(b, n, keep_trivial)
    elif op == "ReduceMean":  # PyTorch's exporter writes adaptive_avg_pool2d(x, 1) so
        axes = n.attr("axes")
        if len(n.node.input) > 1 and n.node.input[1]:  # an input from opset 18
            axes = consts.get(n.node.input[1])
            if axes is None:
                n.fail("the axes are not a constant")
        rank = None if b.shape is None else len(b.shape) + 1
        axes = [] if axes is None else axes
        axes = sorted(int(a) + (rank or 0) if int(a) < 0 else int(a) for a in axes)
        if rank != 4 or axes != [2, 3]:
            n.fail(f"a mean over axes {axes} of a sample of shape {b.shape}: only the mean over the height "
                   "and width of (N, C, H, W) (a global average pool) is supported")
        _global_average(b, n, keep_trivial)
        if not n.attr("keepdims", 1):
            b.add(n, L.Flatten, {})
    elif op == "Gemm":
        _gemm(b, n, consts)
    elif op == "MatMul":
        _matmul(b, n, consts)
    elif op == "Add" and const_inputs:
        _add(b, n, consts, const_inputs[0])
    elif op in ("Add", "Sum", "Concat"):
        n.fail("merges branches that do not all start from one tensor before it (minicnn joins "
               "branches of one input)")
    elif op == "Flatten":
        _flatten(b, n, keep_trivial)
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
    if len(inputs) != 1 or not graph.output:
        raise InputError(f"{path}: expects one input and an output, the graph has inputs "
                         f"{[i.name for i in inputs]} and outputs {[o.name for o in graph.output]}")
    elem = inputs[0].type.tensor_type.elem_type
    if elem not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE):
        raise InputError(f"{path}: input {inputs[0].name!r} is of type "
                         f"{onnx.TensorProto.DataType.Name(elem)}: minicnn networks take float32 (or "
                         "float64) arrays")
    dims = _value_shape(inputs[0])
    if len(dims) < 2:
        raise InputError(f"{path}: input {inputs[0].name!r} has shape {dims}: minicnn needs a batch axis "
                         "and at least one more (rank >= 2)")
    if input_size is not None:
        if len(dims) != 4:
            raise InputError(f"{path}: input_size is for an (N, C, H, W) input, {inputs[0].name!r} has "
                             f"shape {dims}")
        size = (input_size, input_size) if np.isscalar(input_size) else tuple(input_size)
        dims[2:] = [int(s) for s in size]
    if not all(dims[1:]):
        what = "the input size (input_size=, or --input-size) to fix its height and width" \
            if len(dims) == 4 and dims[1] else "a file with its sizes fixed"
        raise InputError(f"{path}: input {inputs[0].name!r} has shape {dims}: give {what}")
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
    for n in live:
        if n.op not in TRANSLATED:
            n.fail(f"operator not supported by minicnn (supported: {SUPPORTED})")
    notes = []
    walk = _Walk(live, consts, stored is not None, graph.output[0].name)
    for extra in graph.output[1:]:
        producer = walk.producer.get(extra.name)
        if producer is None or producer.op != "Dropout" or list(producer.node.output).index(extra.name) != 1:
            made = "" if producer is None else f", written by {producer.label},"
            raise InputError(f"{path}: graph output {extra.name!r}{made} is not what a trained network needs "
                             "(only a Dropout's mask is left out); minicnn networks have one output")
        notes.append(f"graph output {extra.name!r}, the mask of {producer.label}, left out (a trained "
                     "network does not need it)")
    used = {x for n in live for x in n.node.input} | {graph.output[0].name}
    for n in live:
        extra = [o for o in n.node.output[1:] if o and o in used]
        if extra:
            n.fail(f"its second output {extra[0]!r} (a mask or indices) is used: not supported")
    builder = _Builder(shape, np.dtype(dtype), notes)
    walk.chain(builder, inputs[0].name, graph.output[0].name, top=True)
    builder.check_no_pad()
    layers = builder.layers()
    meta = layout.preprocessing_meta(channel_order or "RGB", mean, std, shape, classes)
    meta.update(source_format="onnx", source=facts["name"], source_sha256=facts["sha256"],
                source_sha1=facts["sha1"], opset=int(opset), producer=model.producer_name,
                output="logits", softmax_dropped=walk.softmax_dropped)
    if stored is not None:
        given = {"channel_order": channel_order, "mean": mean, "std": std, "classes": classes}
        return _apply_stored(stored, layers, shape, meta, {k for k, v in given.items() if v is not None},
                             builder.notes, np.dtype(dtype), path)
    meta["import_notes"] = list(meta.get("import_notes", [])) + builder.notes
    names = None
    if builder.has_joins():
        layers = layout.add_hidden_dropouts(layers, meta["import_notes"])
        order = list(_namespace(layers))
        names = dict(zip((id(x) for x in order), layout.positional_names(order), strict=True))
        _name_branches(layers, names)
        names = [names[id(x)] for x in layers]
    net = layout.build_network(layers, shape, meta, names=names)
    if classes is not None:
        layout.check_classes(net, net.meta)
    return net


class _Walk:
    """The live nodes as a graph, walked from the input into a builder (module docstring)."""

    def __init__(self, live, consts, keep_trivial, output):
        self.live, self.consts, self.keep_trivial, self.output = live, consts, keep_trivial, output
        self.order = {id(n): i for i, n in enumerate(live)}
        self.producer = {o: n for n in live for o in n.node.output if o}
        self.readers: dict = {}
        for n in live:
            for x in self.activations(n):
                self.readers.setdefault(x, []).append(n)
        self.softmax_dropped = False
        self.done: set = set()

    def activations(self, n):
        return [x for x in n.node.input if x and x not in self.consts]

    def reach(self, n):
        """ids of the nodes reachable from n, n included."""
        seen, todo = set(), [n]
        while todo:
            m = todo.pop()
            if id(m) in seen:
                continue
            seen.add(id(m))
            for o in m.node.output:
                todo.extend(self.readers.get(o, []))
        return seen

    def chain(self, b: _Builder, t, stop, first=None, top=False):
        """Translate the nodes from tensor ``t`` to tensor ``stop`` into ``b`` (``first``: the
        reader of t this branch starts with)."""
        while t != stop:
            readers = [first] if first is not None else self.readers.get(t, [])
            first = None
            if not readers:
                where = "the graph output" if stop == self.output else f"{stop!r}, which its join reads"
                raise InputError(f"the nodes from the input end at {t!r}, never reaching {where}")
            if len(readers) > 1:
                t = self.join(b, t, readers)
                continue
            n = readers[0]
            if id(n) in self.done:
                n.fail("is reached twice: the graph is not one minicnn can express")
            self.done.add(id(n))
            acts = self.activations(n)
            if n.op in ("Concat", "Sum") and any(x in self.consts for x in n.node.input if x):
                n.fail("joins the activations with a constant: not supported (minicnn joins branches)")
            if len(acts) > 1 and n.op in ("Add", "Sum", "Concat"):
                n.fail("merges branches that do not all start from one tensor before it (minicnn joins "
                       "branches of one input)")
            if acts != [t]:
                n.fail(f"reads {acts or 'only constants'}, not only {t!r}: not a graph minicnn can express")
            if n.op == "Shape":
                n.fail("a shape read at run time is not supported: export with a fixed reshape "
                       "(torch.flatten, or a constant shape)")
            const_inputs = [x for x in n.node.input if x and x in self.consts]
            is_last = top and all(m.op == "Identity" for m in self.live[self.order[id(n)] + 1:])
            _translate(b, n, self.consts, const_inputs, is_last, self.keep_trivial)
            if n.op == "Softmax":
                self.softmax_dropped = True
            t = n.node.output[0]

    def join(self, b: _Builder, t, readers):
        """Translate the join of the branches that start at the readers of ``t``; returns the
        merge's output."""
        b.check_no_pad()
        for m in readers:  # PyTorch's Shape -> Gather -> Concat -> Reshape: name the Shape
            if m.op == "Shape":
                m.fail("a shape read at run time is not supported: export with a fixed reshape "
                       "(torch.flatten, or a constant shape)")
        reach = [self.reach(m) for m in readers]
        common = set.intersection(*reach)
        merge = min((m for m in self.live if id(m) in common), key=lambda m: self.order[id(m)], default=None)
        if merge is None:
            raise InputError(f"tensor {t!r} feeds {len(readers)} nodes whose branches never merge: "
                             "minicnn networks have one output")
        if merge.op == "Concat":
            rank = None if b.shape is None else len(b.shape) + 1
            axis = int(merge.attr("axis", 1))
            if rank is not None and axis < 0:
                axis += rank
            if axis != 1:
                merge.fail(f"concatenates along axis {merge.attr('axis')}: minicnn joins along the "
                           "channels (axis 1) only")
            mode = "concat"
        elif merge.op in ("Add", "Sum"):
            mode = "sum"
        else:
            merge.fail("the branches of tensor " f"{t!r} meet here: minicnn joins branches only by Concat "
                       "(axis 1) or Add/Sum")
        inputs = [x for x in merge.node.input if x]
        if any(x in self.consts for x in inputs):
            merge.fail("joins branches with a constant: not supported")
        starts, branches = {}, []
        for x in inputs:
            if x == t:
                branches.append(None)
                continue
            producer = self.producer.get(x)
            owners = [i for i in range(len(readers)) if producer is not None and id(producer) in reach[i]]
            if len(owners) != 1 or owners[0] in starts.values():
                merge.fail(f"its input {x!r} is not the end of one branch from {t!r}: not a join minicnn "
                           "can express")
            starts[x] = owners[0]
            sub = b.branch()
            self.chain(sub, t, x, first=readers[owners[0]])
            sub.check_no_pad()
            branches.append(sub)
        if len(starts) + inputs.count(t) != len(readers):
            merge.fail(f"the {len(readers)} readers of {t!r} do not each start one of its "
                       f"{len(inputs)} inputs: not a join minicnn can express")
        self.done.add(id(merge))
        b.add_join(merge, mode, branches)
        return merge.node.output[0]


def _stored_architecture(model, path):
    props = {p.key: p.value for p in model.metadata_props}
    if model.producer_name != "minicnn" or ARCH_KEY not in props:
        return None
    try:
        return json.loads(props[ARCH_KEY])
    except ValueError:
        raise InputError(f"{path}: its {ARCH_KEY} metadata is not JSON") from None


def _skeleton(layers):
    """What an import can see of a network's structure: leaf types in order and each Join's
    mode and branches (blocks inlined: the graph does not keep them)."""
    out = []
    for layer in layers:
        if isinstance(layer, L.Sequential):
            out += _skeleton(layer.layers)
        elif isinstance(layer, L.Join):
            out.append((layer.mode, [None if b is None else _skeleton(b.layers) for b in layer.branches]))
        else:
            out.append(type(layer).__name__)
    return out


def _with_dtype(spec, dtype):
    spec = dict(spec)
    config = dict(spec.get("config") or {})
    if "dtype" in config:
        config["dtype"] = dtype.name
    for key in ("layers",):
        if key in config:
            config[key] = [_with_dtype(s, dtype) for s in config[key]]
    if "branches" in config:
        config["branches"] = [None if b is None else {"layers": [_with_dtype(s, dtype) for s in b["layers"]]}
                              for b in config["branches"]]
    spec["config"] = config
    return spec


def _apply_stored(stored, layers, shape, meta, given, notes, dtype, path):
    """The network a minicnn-written file describes (names, blocks, frozen flags, meta), built
    from its architecture and holding the weights of the graph, after checking that the two
    describe the same layers."""
    from minicnn.net import Sequential, build_layer

    try:
        specs = [_with_dtype(spec, dtype) for spec in stored.get("layers", [])]
        built = [build_layer(spec, path, f"layer {i} of {ARCH_KEY}") for i, spec in enumerate(specs)]
        net = Sequential(built, [spec["name"] for spec in specs])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(f"{path}: its {ARCH_KEY} metadata is not a network architecture ({e})") from None
    if _skeleton(layers) != _skeleton(net.layers):
        raise InputError(f"{path}: the graph's layers {_skeleton(layers)} do not match its {ARCH_KEY} "
                         f"metadata {_skeleton(net.layers)}")
    imported = Sequential(layers, [str(i) for i in range(len(layers))])
    for (_, src), (name, dst) in zip(imported.named_layers(), net.named_layers(), strict=True):
        for store, target in ((src.params, dst.params), (src.buffers, dst.buffers)):
            if set(store) != set(target):
                raise InputError(f"{path}: layer {name!r} holds {sorted(store)} in the graph, "
                                 f"{sorted(target)} in its {ARCH_KEY} metadata")
            for key, value in store.items():
                try:
                    target[key] = value
                except ValueError as e:
                    raise InputError(f"{path}: layer {name!r}: {e}") from None
    base = dict(stored.get("meta") or {})
    base.update({k: v for k, v in meta.items() if k not in base or k in given or k == "input_size"})
    base["import_notes"] = list(base.get("import_notes", [])) + notes
    net.input_shape, net.meta = tuple(shape), base
    try:
        net.shapes()
    except ValueError as e:
        raise InputError(f"{path}: {e}") from None
    if "classes" in given:
        layout.check_classes(net, net.meta)
    return net
