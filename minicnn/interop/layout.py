"""The minicnn network an import builds: layers named by position, and the source's facts.

Names follow :func:`minicnn.models.alexnet`: every Conv2D or Linear opens a new stage k
(conv1..conv5, then fc6, fc7, fc8 counting on), and the layers after it take the stage's
number: relu{k}, norm{k} (LRN), pool{k} (either pooling), drop{k}, bn{k}, clip{k}, a join
concat{k} or sum{k} (its branches' layers after it, in the same namespace); a flatten is
``flatten``. A second layer of one kind in one stage gets a letter (pool5b). So an imported
AlexNet, CaffeNet (pool before norm) or torchvision AlexNet has exactly the names that
:func:`minicnn.models.transfer_net` copies (up to drop7).

A hidden fully connected layer (fc{k} ReLU, then another Linear) always gets its dropout
drop{k} after the ReLU, as in minicnn's AlexNet: the source's own when it has one there,
Dropout(0.5) otherwise (an ONNX export in evaluation mode writes none). A dropout is the
identity in evaluation mode, so the imported forward is unchanged; it matters only when
such a layer is trained again. Each insertion is noted in ``meta["import_notes"]``.
"""

from __future__ import annotations

import hashlib
import os

from minicnn import layers as L
from minicnn.errors import InputError
from minicnn.net import Sequential

_PREFIX = {L.Conv2D: "conv", L.Linear: "fc", L.ReLU: "relu", L.LRN: "norm",
           L.MaxPool2D: "pool", L.AvgPool2D: "pool", L.Dropout: "drop", L.BatchNorm2D: "bn",
           L.Clip: "clip"}

# published checksums of well-known weight files (sha1, as their publishers give them)
KNOWN_SHA1 = {
    "9116a64c0fbe4459d18f4bb6b56d647b63920377": "bvlc_alexnet.caffemodel (BVLC model zoo)",
}


def positional_names(layers) -> list[str]:
    names, stage = [], 0
    for layer in layers:
        kind = type(layer)
        if kind in (L.Conv2D, L.Linear):
            stage += 1
        if kind is L.Flatten:
            base = "flatten"
        elif kind is L.Join:  # a join after stage k: concat{k} or sum{k}
            base = f"{layer.mode}{stage}"
        elif kind in _PREFIX:
            base = f"{_PREFIX[kind]}{stage}"
        else:
            base = type(layer).__name__.lower()
        name, letter = base, ord("b")
        while name in names:
            name, letter = f"{base}{chr(letter)}", letter + 1
        names.append(name)
    return names


def add_hidden_dropouts(layers, notes):
    """Give each hidden Linear + ReLU its Dropout after the ReLU (module docstring)."""
    out = list(layers)
    linears = [i for i, layer in enumerate(out) if isinstance(layer, L.Linear)]
    for i in reversed(linears[:-1]):
        if i + 1 < len(out) and isinstance(out[i + 1], L.ReLU):
            after = out[i + 2] if i + 2 < len(out) else None
            if not isinstance(after, L.Dropout):
                out.insert(i + 2, L.Dropout(0.5))
                notes.append(f"inserted Dropout(0.5) after the ReLU of fully connected layer "
                             f"{linears.index(i) + 1} (identity at inference)")
    return out


def build_network(layers, input_shape, meta, names=None) -> Sequential:
    """A Sequential of ``layers`` (named by position unless ``names``), checked end to end
    on ``input_shape`` so that a wrong size stops the import, not a later forward."""
    notes = meta.setdefault("import_notes", [])
    if names is None:
        layers = add_hidden_dropouts(layers, notes)
        names = positional_names(layers)
    net = Sequential(layers, names, input_shape=input_shape, meta=meta)
    if input_shape is not None:
        shape = tuple(input_shape)
        for name, layer in zip(net.names, net.layers, strict=True):
            expected = getattr(layer, "in_channels", None) or getattr(layer, "in_features", None)
            if expected is not None and shape[0] != expected:
                raise InputError(f"layer {name!r} ({type(layer).__name__}) expects {expected} "
                                 f"input channels/features, the layer before gives shape {shape}")
            try:
                shape = layer.output_shape(shape)
            except ValueError as e:
                raise InputError(f"layer {name!r} ({type(layer).__name__}): input {shape}: {e}") from None
            if len(shape) == 3 and min(shape[1:]) < 1:
                raise InputError(f"layer {name!r} ({type(layer).__name__}): output {shape} is empty")
    return net


def file_facts(path) -> dict:
    """Name, sha256 and sha1 of a file (sha1 because that is what the Caffe zoo publishes)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    h256, h1 = hashlib.sha256(), hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h256.update(block)
            h1.update(block)
    return {"name": os.path.basename(path), "sha256": h256.hexdigest(), "sha1": h1.hexdigest()}


def preprocessing_meta(channel_order, mean, std, input_shape, classes):
    """meta entries every import sets: channel order, mean and std per input channel of the
    network (in ``channel_order``, on the 0-255 pixel scale), input size, classes."""
    if channel_order not in ("RGB", "BGR"):
        raise InputError(f"channel_order must be 'RGB' or 'BGR', got {channel_order!r}")
    meta = {"channel_order": channel_order}
    channels = input_shape[0] if input_shape else 3
    for key, value, default in (("mean", mean, 0.0), ("std", std, 1.0)):
        value = [default] * channels if value is None else [float(v) for v in value]
        if len(value) != channels:
            raise InputError(f"{key} has {len(value)} values, the network has {channels} input channels")
        if key == "std" and any(v <= 0 for v in value):
            raise InputError(f"std must be positive, got {value}")
        meta[key] = value
    if input_shape and len(input_shape) == 3:  # an image; not a feature vector
        meta["input_size"] = int(input_shape[-1]) if input_shape[-1] == input_shape[-2] else \
            [int(input_shape[-2]), int(input_shape[-1])]
    if classes is not None:
        classes = [str(c) for c in classes]
        meta["classes"] = classes
    return meta


def check_classes(net, meta):
    classes = meta.get("classes")
    if classes is None:
        return
    last = [layer for layer in net.layers if isinstance(layer, L.Linear)]
    outputs = last[-1].out_features if last else None
    if outputs is not None and len(classes) != outputs:
        raise InputError(f"the class list has {len(classes)} names, the network has {outputs} outputs")
