"""Sequential networks: named layers, forward/backward, parameters, summary, save/load.

A network file is a plain ``.npz`` (read with ``allow_pickle=False``): one array per
parameter, named ``<layer>.<param>``, plus ``__architecture__``, a JSON string with the
layer types, their constructor arguments, which are frozen, the input shape and any
metadata (for example the class list of a trained model).
"""

from __future__ import annotations

import json
import os
import types

import numpy as np

from minicnn import backend
from minicnn.atomic import atomic_open
from minicnn.errors import InputError
from minicnn.layers import LAYER_TYPES, Layer

ARCH_KEY = "__architecture__"


class _either:
    """A method callable on the class (builds a new object) or on an instance (fills it)."""

    def __init__(self, on_class, on_instance):
        self.on_class, self.on_instance = on_class, on_instance

    def __get__(self, obj, cls):
        return types.MethodType(self.on_class, cls) if obj is None else types.MethodType(
            self.on_instance, obj)


def atomic_savez(path, arrays: dict):
    """Write an .npz atomically (:func:`minicnn.atomic.atomic_open`)."""
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def read_npz(path) -> dict:
    """Arrays of an .npz file; a missing or unreadable file is an InputError naming it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception as e:  # a truncated zip, a pickled entry, not an npz at all...
        raise InputError(f"{path}: not a readable .npz file ({e})") from None


class Sequential:
    """Layers applied in order. ``net["conv1"]`` is a layer by name, ``net.layers`` in order."""

    def __init__(self, layers, names=None, input_shape=None, meta=None):
        layers = list(layers)
        if names is None:
            names = [f"{type(layer).__name__.lower()}{i}" for i, layer in enumerate(layers)]
        names = list(names)
        if len(names) != len(layers):
            raise ValueError(f"Sequential: {len(layers)} layers but {len(names)} names")
        if len(set(names)) != len(names):
            raise ValueError(f"Sequential: layer names must be unique, got {names}")
        for layer, name in zip(layers, names, strict=True):
            if not isinstance(layer, Layer):
                raise ValueError(f"Sequential: {name!r} is not a Layer ({type(layer).__name__})")
            layer.name = name
        self.layers, self.names = layers, names
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.meta = dict(meta or {})

    # --- access -------------------------------------------------------------------------
    def __getitem__(self, key):
        if isinstance(key, str):
            try:
                return self.layers[self.names.index(key)]
            except ValueError:
                raise KeyError(f"no layer named {key!r}; layers: {', '.join(self.names)}") from None
        return self.layers[key]

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def named_params(self):
        """(name, param, grad) triples in layer order, weight before bias; grad None until
        a backward pass computed it."""
        return [(f"{n}.{k}", p, layer.grads.get(k))
                for n, layer in zip(self.names, self.layers, strict=True)
                for k, p in layer.params.items()]

    def trainable_layers(self):
        return [layer for layer in self.layers if layer.params and not layer.frozen]

    def freeze(self, names, frozen=True):
        """Freeze (or unfreeze) the named layers: eval mode, no gradients, no updates."""
        for name in names:
            self[name].frozen = frozen

    def to(self, name):
        """Move every parameter and gradient to the arrays of backend ``name`` ("numpy",
        "cpu" or "cuda": ``net.to("cuda")``, ``net.to("cpu")``) and return the net. Arrays
        already there stay as they are; raises BackendUnavailable if ``name`` cannot run here.
        Make the backend current too (``mc.set_backend(name)``) and build the optimizer
        after moving, since SGD keeps its velocities on the backend it started on."""
        xp = backend.backend_named(name).xp

        def move(a):
            return a if backend.array_module(a) is xp else xp.asarray(backend.to_numpy(a))

        for layer in self.layers:
            for key, p in layer.params.items():
                dict.__setitem__(layer.params, key, move(p))  # same shape and dtype: no re-check
            layer.grads = {key: move(g) for key, g in layer.grads.items() if g is not None}
        return self

    # --- compute ------------------------------------------------------------------------
    def forward(self, x, train=True, keep_for_backward=True):
        """Run the layers in order. ``train=False`` is evaluation mode; a frozen layer is always
        in it. ``keep_for_backward=False`` (inference) keeps nothing for a backward pass."""
        for layer in self.layers:
            x = layer.forward(x, train=train and not layer.frozen, keep_for_backward=keep_for_backward)
        return x

    def backward(self, dy, input_grad=False):
        """Backpropagate ``dy``; fills every trainable layer's grads. Layers below the
        lowest trainable one are skipped (no gradient is needed there) unless
        ``input_grad`` asks for dx of the network input, which is then returned."""
        lowest = 0
        if not input_grad:
            trainable = [i for i, layer in enumerate(self.layers) if layer.params and not layer.frozen]
            if not trainable:
                return None
            lowest = trainable[0]
        for i in range(len(self.layers) - 1, lowest - 1, -1):
            layer = self.layers[i]
            layer.need_input_grad = input_grad or i > lowest
            dy = layer.backward(dy)
        return dy if input_grad else None

    # --- description --------------------------------------------------------------------
    def shapes(self, input_shape=None):
        """Output shape of every layer for one sample of ``input_shape`` (C, H, W)."""
        shape = tuple(input_shape or self.input_shape or ())
        if not shape:
            raise ValueError("Sequential.shapes: give input_shape (C, H, W); the net has none")
        out = []
        for layer in self.layers:
            shape = layer.output_shape(shape)
            out.append(shape)
        return out

    def summary(self, input_shape=None, file=None) -> str:
        """A table of output shape, parameter count and multiply-adds per layer (printed)."""
        shape = tuple(input_shape or self.input_shape or ())
        rows = [("layer", "type", "output", "params", "MACs")]
        total_p = total_m = 0
        for name, layer in zip(self.names, self.layers, strict=True):
            macs = layer.macs(shape) if shape else 0
            shape = layer.output_shape(shape) if shape else ()
            p = layer.num_params()
            total_p, total_m = total_p + p, total_m + macs
            kind = type(layer).__name__ + (" (frozen)" if layer.frozen and layer.params else "")
            rows.append((name, kind, "x".join(map(str, shape)) or "?", f"{p:,}", f"{macs:,}"))
        rows.append(("total", "", "", f"{total_p:,}", f"{total_m:,}"))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                           for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines.insert(len(lines) - 1, "-" * len(lines[0]))
        if self.meta.get("softmax_dropped"):
            lines.append("outputs are logits: the source model's trailing Softmax was dropped at import")
        text = "\n".join(lines)
        print(text, file=file)
        return text

    # --- save / load --------------------------------------------------------------------
    def architecture(self) -> dict:
        return {
            "layers": [{"type": type(layer).__name__, "name": name, "config": layer.config(),
                        "frozen": layer.frozen, "lr_mult": layer.lr_mult}
                       for name, layer in zip(self.names, self.layers, strict=True)],
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "meta": self.meta,
        }

    def save(self, path):
        """Write the architecture and every parameter to ``path`` (.npz), atomically."""
        arrays = {name: backend.to_numpy(p) for name, p, _ in self.named_params()}
        arrays[ARCH_KEY] = np.array(json.dumps(self.architecture()))
        atomic_savez(path, arrays)

    def _load_into(self, path, strict=True):
        """Copy the parameters stored in ``path`` into this net, checking every name and
        shape; an error names the offending layer."""
        arrays = {k: v for k, v in read_npz(path).items() if not k.startswith("__")}
        self.load_params(arrays, strict=strict, source=os.fspath(path))
        return self

    def load_params(self, arrays: dict, strict=True, source="parameters"):
        """Copy ``arrays`` ({"<layer>.<param>": array}) into the parameters, cast to their
        dtype. Weights that do not fit (a missing or unexpected name when ``strict``, another
        shape, a non-floating dtype) raise InputError naming ``source`` and the parameter;
        every array is checked before any is copied."""
        expected = {name: p for name, p, _ in self.named_params()}
        if strict:
            missing = [n for n in expected if n not in arrays]
            extra = [n for n in arrays if n not in expected]
            if missing or extra:
                raise InputError(f"{source}: parameters do not match the network: "
                                 f"missing {missing or 'none'}, unexpected {extra or 'none'}")
        for name, value in arrays.items():
            if name not in expected:
                continue
            layer_name, key = name.rsplit(".", 1)
            if tuple(value.shape) != tuple(expected[name].shape):
                raise InputError(f"{source}: layer {layer_name!r} parameter {key!r} has shape "
                                 f"{tuple(value.shape)}, the network expects "
                                 f"{tuple(expected[name].shape)}")
            # an integer (or boolean, complex...) array would be cast silently, truncating
            # nothing visible but meaning nothing: the file is not a trained network's
            if np.dtype(value.dtype).kind != "f":
                raise InputError(f"{source}: layer {layer_name!r} parameter {key!r} is {value.dtype}; "
                                 "parameters must be floating-point (float16, float32 or float64)")
        for name, value in arrays.items():
            if name in expected:
                layer_name, key = name.rsplit(".", 1)
                self[layer_name].params[key] = value

    def _load_new(cls, path):
        """Build the network stored in ``path`` and load its parameters."""
        path = os.fspath(path)
        arrays = read_npz(path)
        if ARCH_KEY not in arrays:
            raise InputError(f"{path}: no {ARCH_KEY} entry; was it written by Sequential.save?")
        # everything below reads the file's architecture: an error is the file's
        try:
            arch = json.loads(str(arrays[ARCH_KEY]))
            specs = list(arch["layers"])
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{path}: {ARCH_KEY} is not a network architecture ({e})") from None
        layers, names = [], []
        for i, spec in enumerate(specs):
            try:
                name, kind_name, config = spec["name"], spec["type"], spec["config"]
            except (KeyError, TypeError):
                raise InputError(f"{path}: layer {i} of {ARCH_KEY} lacks its name, type or config") from None
            kind = LAYER_TYPES.get(kind_name)
            if kind is None:
                raise InputError(f"{path}: layer {name!r} has unknown type {kind_name!r}")
            try:
                layer = kind(**config)
            except (TypeError, ValueError) as e:
                raise InputError(f"{path}: layer {name!r} ({kind_name}) has a bad config {config}: "
                                 f"{e}") from None
            layer.frozen = spec.get("frozen", False)
            layer.lr_mult = spec.get("lr_mult", 1.0)
            layers.append(layer)
            names.append(name)
        try:
            net = cls(layers, names, input_shape=arch.get("input_shape"), meta=arch.get("meta"))
            if net.input_shape:  # layers that do not fit together (an edited architecture)
                net.shapes()
        except ValueError as e:  # repeated layer names, shapes that do not chain
            raise InputError(f"{path}: {e}") from None
        return net._load_into(path)

    load = _either(_load_new, _load_into)
