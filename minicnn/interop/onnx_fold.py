"""ONNX graph nodes as the importer sees them, and constant folding: the initializers,
``Constant`` and ``ConstantOfShape`` nodes and every node whose inputs are all constant
(the reshapes of a shape tensor, casts, ...) evaluated with NumPy before translation."""

from __future__ import annotations

import numpy as np

from minicnn.errors import InputError


def decimal(value):
    """A float32 attribute as the shortest decimal that rounds to it (alpha 1e-4 stays 1e-4,
    not 9.99999974e-05), so that settings read back as they were written."""
    if isinstance(value, float):
        return float(str(np.float32(value)))
    return value


class Node:
    """A node and how error messages name it."""

    def __init__(self, node, index, onnx):
        self.node, self.op = node, node.op_type
        self.attrs = {a.name: decimal(onnx.helper.get_attribute_value(a)) for a in node.attribute}
        label = node.name or f"#{index} (output {node.output[0]!r})"
        self.label = f"node {label} ({node.op_type})"

    def fail(self, reason):
        raise InputError(f"{self.label}: {reason}")

    def attr(self, name, default=None):
        return self.attrs.get(name, default)


# --- constant folding ---------------------------------------------------------------------
def constant_value(n: Node, numpy_helper):
    for key in ("value", "sparse_value"):
        if key in n.attrs:
            if key == "sparse_value":
                n.fail("sparse constants are not supported")
            return numpy_helper.to_array(n.attrs[key])
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in n.attrs:
            return np.asarray(n.attrs[key], dtype=dtype)
    n.fail("a Constant without a numeric value")


def fold(n: Node, args, numpy_helper, onnx):
    """The value of a node whose inputs are all constant, or None if it is not foldable."""
    op, a = n.op, args
    if op == "Constant":
        return [constant_value(n, numpy_helper)]
    if op == "ConstantOfShape":
        value = n.attr("value")
        fill = numpy_helper.to_array(value).reshape(-1) if value is not None else np.zeros(1, np.float32)
        return [np.full(tuple(int(d) for d in a[0]), fill[0], dtype=fill.dtype)]
    if op == "Identity":
        return [a[0]]
    if op == "Cast":
        return [a[0].astype(onnx.helper.tensor_dtype_to_np_dtype(n.attr("to")))]
    if op == "Reshape":
        shape = [d if d != 0 or n.attr("allowzero", 0) else a[0].shape[i] for i, d in enumerate(a[1])]
        return [a[0].reshape(shape)]
    if op == "Unsqueeze":
        axes = n.attr("axes") if len(a) < 2 else a[1]
        out = a[0]
        for axis in sorted(int(x) % (out.ndim + len(axes)) for x in axes):
            out = np.expand_dims(out, axis)
        return [out]
    if op == "Squeeze":
        axes = n.attr("axes") if len(a) < 2 else a[1]
        return [np.squeeze(a[0], axis=tuple(int(x) for x in axes) if axes is not None else None)]
    if op == "Concat":
        return [np.concatenate(a, axis=n.attr("axis"))]
    if op == "Gather":
        return [np.take(a[0], a[1], axis=n.attr("axis", 0))]
    if op == "Transpose":
        return [np.transpose(a[0], n.attr("perm"))]
    if op in ("Add", "Sub", "Mul", "Div"):
        f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op]
        out = f(a[0], a[1])
        if op == "Div" and np.issubdtype(a[0].dtype, np.integer):
            out = np.trunc(out).astype(a[0].dtype)
        return [out.astype(np.result_type(a[0], a[1]), copy=False)]
    if op == "Shape":  # of a constant (PyTorch's F.pad sizes its pads so, unfolded)
        shape = np.array(a[0].shape, dtype=np.int64)
        return [shape[n.attr("start", 0):n.attr("end", None)]]
    if op == "Slice":  # inputs from opset 10 (PyTorch's F.pad computes its pads with one)
        starts, ends = (a[1], a[2]) if len(a) > 2 else (n.attr("starts"), n.attr("ends"))
        axes = a[3] if len(a) > 3 else n.attr("axes", list(range(len(starts))))
        steps = a[4] if len(a) > 4 else [1] * len(starts)
        index = [slice(None)] * a[0].ndim
        for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
            index[int(axis)] = slice(int(start), int(end), int(step))
        return [a[0][tuple(index)]]
    if op == "Flatten":
        axis = n.attr("axis", 1)
        return [a[0].reshape(int(np.prod(a[0].shape[:axis])), -1)]
    return None


# --- the chain ----------------------------------------------------------------------------
