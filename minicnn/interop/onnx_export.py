""":class:`minicnn.Sequential` -> ONNX (opset 13 unless asked for 14..21), one node per
layer, named as the layer.

    Conv2D    -> Conv (kernel_shape, strides, pads, group)
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
    return [int(padding[0]), int(padding[1]), int(padding[0]), int(padding[1])]


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
    current = "input"
    for i, (name, layer) in enumerate(zip(net.names, net.layers, strict=True)):
        out = "logits" if i == len(net.layers) - 1 else f"{name}.out"
        params = {k: backend.to_numpy(v) for k, v in layer.params.items()}
        if isinstance(layer, L.Conv2D):
            inputs = [current, init(f"{name}.weight", params["weight"])]
            if "bias" in params:
                inputs.append(init(f"{name}.bias", params["bias"]))
            nodes.append(helper.make_node("Conv", inputs, [out], name=name,
                                          kernel_shape=list(layer.kernel_size),
                                          strides=list(layer.stride), pads=_pads(layer.padding),
                                          dilations=[1, 1], group=layer.groups))
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
        current = out
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
