""":class:`minicnn.Sequential` -> ONNX (opset 13 unless asked for 14..21), one node per
layer, named by its dotted path (``fire2.expand3x3``).

    Conv2D    -> Conv (kernel_shape, strides, pads (begin, end), dilations, group)
    BatchNorm2D -> BatchNormalization (epsilon, momentum = 1 - minicnn's; evaluation mode)
    Clip      -> Clip (min and max as inputs; an open bound left out)
    Join      -> its branches from one tensor, then Concat (axis 1) or Add (Sum for three
                 or more branches); blocks (nested Sequentials) are inlined
    Linear    -> Gemm (transB=1: the weight is stored (out, in), as minicnn keeps it)
    ReLU      -> Relu          LRN -> LRN (size, alpha, beta, bias = k: the same convention)
    MaxPool2D -> MaxPool (pads, ceil_mode)
    AvgPool2D -> AveragePool (pads, ceil_mode, count_include_pad)
    Dropout   -> Dropout (ratio; the identity at inference)
    Flatten   -> Flatten (axis 1)

Parameters become initializers named ``<layer>.weight`` / ``<layer>.bias``, in float32
(a float64 network comes back from an import as float32). The graph reads ``input``
(N, C, H, W) and writes ``logits`` (N, classes): no softmax, as ``net.forward``. The
architecture (names, types, settings, frozen flags, meta) goes into the model's metadata,
so that :func:`minicnn.interop.from_onnx` rebuilds the same network.
"""

from __future__ import annotations

import json

import numpy as np

from minicnn import backend
from minicnn import layers as L
from minicnn.atomic import atomic_open
from minicnn.errors import InputError
from minicnn.interop.onnx_import import ARCH_KEY, require_onnx

OPSET = 13
OPSETS = range(13, 22)


def _pads(padding):
    from minicnn.ops.im2col import quad

    return [int(p) for p in quad(padding)]


def to_onnx(net, path, opset=OPSET):
    """Write ``net`` to ``path`` as an ONNX model checked by ``onnx.checker``; returns the model."""
    import minicnn

    onnx, numpy_helper = require_onnx()
    helper = onnx.helper
    if opset not in OPSETS:
        # Dropout reads its ratio as an input from opset 12 and Softmax/Squeeze changed in 13
        raise InputError(f"to_onnx: opset {opset} is outside {OPSETS.start}..{OPSETS.stop - 1}")
    nodes, inits = [], []

    def init(name, value):
        # np.asarray, not ascontiguousarray: that would make the 0-d dropout ratio 1-d
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32).copy(order="C"), name))
        return name

    shape = tuple(net.input_shape) if net.input_shape else None
    if shape is None and net.meta.get("input_size") is not None:
        size = net.meta["input_size"]
        shape = (3, *(size if isinstance(size, list) else (size, size)))

    def chain(seq, current, prefix, out_name=None):
        """Nodes of ``seq``'s layers from tensor ``current``; the last writes ``out_name`` if given."""
        for i, (name, layer) in enumerate(zip(seq.names, seq.layers, strict=True)):
            path = prefix + name
            last = i == len(seq.layers) - 1
            out = out_name if last and out_name else f"{path}.out"
            current = emit(path, layer, current, out)
        return current

    def emit(name, layer, current, out):
        from minicnn.net import Join, Sequential

        if isinstance(layer, Sequential):
            return chain(layer, current, f"{name}.", out)
        if isinstance(layer, Join):
            # branch layers live in the namespace of the Sequential holding the Join
            prefix = name.rsplit(".", 1)[0] + "." if "." in name else ""
            ends = [current if b is None or not b.layers else chain(b, current, prefix)
                    for b in layer.branches]
            if len(ends) == 1:
                nodes.append(helper.make_node("Identity", ends, [out], name=name))
            elif layer.mode == "concat":
                nodes.append(helper.make_node("Concat", ends, [out], name=name, axis=1))
            else:
                nodes.append(helper.make_node("Add" if len(ends) == 2 else "Sum", ends, [out], name=name))
            return out
        params = {k: backend.to_numpy(v) for k, v in (*layer.params.items(), *layer.buffers.items())}
        if isinstance(layer, L.Conv2D):
            inputs = [current, init(f"{name}.weight", params["weight"])]
            if "bias" in params:
                inputs.append(init(f"{name}.bias", params["bias"]))
            nodes.append(helper.make_node("Conv", inputs, [out], name=name,
                                          kernel_shape=list(layer.kernel_size),
                                          strides=list(layer.stride), pads=_pads(layer.pads),
                                          dilations=list(layer.dilation), group=layer.groups))
        elif isinstance(layer, L.BatchNorm2D):
            inputs = [current] + [init(f"{name}.{k}", params[k])
                                  for k in ("weight", "bias", "running_mean", "running_var")]
            nodes.append(helper.make_node("BatchNormalization", inputs, [out], name=name, epsilon=layer.eps,
                                          momentum=1.0 - layer.momentum))
        elif isinstance(layer, L.Clip):
            inputs = [current, "" if layer.min is None else init(f"{name}.min", np.array(layer.min)),
                      "" if layer.max is None else init(f"{name}.max", np.array(layer.max))]
            while inputs[-1] == "":
                inputs.pop()
            nodes.append(helper.make_node("Clip", inputs, [out], name=name))
        elif isinstance(layer, L.Linear):
            inputs = [current, init(f"{name}.weight", params["weight"])]
            if "bias" in params:
                inputs.append(init(f"{name}.bias", params["bias"]))
            nodes.append(helper.make_node("Gemm", inputs, [out], name=name, transB=1))
        elif isinstance(layer, L.ReLU):
            nodes.append(helper.make_node("Relu", [current], [out], name=name))
        elif isinstance(layer, L.LRN):
            if layer.size % 2 == 0:
                raise InputError(f"layer {name!r} (LRN): size {layer.size} is even: ONNX centres an even "
                                 "window one channel later than minicnn")
            nodes.append(helper.make_node("LRN", [current], [out], name=name, size=layer.size,
                                          alpha=layer.alpha, beta=layer.beta, bias=layer.k))
        elif isinstance(layer, L.MaxPool2D):
            nodes.append(helper.make_node("MaxPool", [current], [out], name=name,
                                          kernel_shape=list(layer.kernel_size),
                                          strides=list(layer.stride), pads=_pads(layer.padding),
                                          ceil_mode=int(layer.ceil_mode)))
        elif isinstance(layer, L.AvgPool2D):
            nodes.append(helper.make_node("AveragePool", [current], [out], name=name,
                                          kernel_shape=list(layer.kernel_size),
                                          strides=list(layer.stride), pads=_pads(layer.padding),
                                          ceil_mode=int(layer.ceil_mode),
                                          count_include_pad=int(layer.count_include_pad)))
        elif isinstance(layer, L.Dropout):
            ratio = init(f"{name}.ratio", np.array(layer.p, np.float32))
            nodes.append(helper.make_node("Dropout", [current, ratio], [out], name=name))
        elif isinstance(layer, L.Flatten):
            nodes.append(helper.make_node("Flatten", [current], [out], name=name, axis=1))
        else:
            raise InputError(f"layer {name!r} ({type(layer).__name__}) has no ONNX translation")
        return out

    if net.layers:
        chain(net, "input", "", "logits")
    if not nodes:
        raise InputError("to_onnx: the network has no layers")
    in_dims = ["N", *(shape if shape else (3, "H", "W"))]
    out_dims = ["N", *(net.shapes(shape)[-1] if shape else [None])]
    graph = helper.make_graph(
        nodes, "minicnn", [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, in_dims)],
        [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, out_dims)], inits)
    model = helper.make_model(graph, producer_name="minicnn", producer_version=minicnn.__version__,
                              opset_imports=[helper.make_opsetid("", opset)])
    # the lowest IR version the opset allows, so that older runtimes read the file
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    helper.set_model_props(model, {ARCH_KEY: json.dumps(net.architecture())})
    onnx.checker.check_model(model)
    with atomic_open(path, "wb") as f:
        f.write(model.SerializeToString())
    return model
