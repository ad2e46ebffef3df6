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
from minicnn.errors import InputError, shown
from minicnn.layers import LAYER_TYPES, Layer, ParamDict

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
    """Arrays of an .npz file; a missing or unreadable file is an InputError naming it and
    saying what the file should be (the message quotes none of the file's bytes)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise InputError(f"{path}: cannot read the file ({e.strerror or type(e).__name__})") from None
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):  # every .npz is a zip archive
        raise InputError(f"{path}: not an .npz file (a NumPy zip archive of arrays, as minicnn saves "
                         f"networks); {_convert_hint(path)}")
    name = None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {}
            for name in data.files:
                arrays[name] = data[name]
            return arrays
    except Exception as e:  # a truncated zip, a pickled entry, a damaged array header...
        entry = f" (entry {name!r})" if name is not None else ""
        if isinstance(e, ValueError) and "allow_pickle" in str(e):
            raise InputError(f"{path}: entry {name!r} holds pickled Python objects, which minicnn never "
                             "loads: a network file holds plain arrays only") from None
        raise InputError(f"{path}: a damaged .npz file{entry} ({type(e).__name__}); "
                         "save the network again") from None


def _convert_hint(path) -> str:
    """What to do with a file that is not an .npz: ONNX and Caffe files are converted."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".onnx":
        return "an ONNX model is converted to one by `minicnn import-weights MODEL.onnx --out NET.npz`"
    if suffix in (".prototxt", ".caffemodel"):
        return ("Caffe files are converted to one by `minicnn import-weights DEPLOY.prototxt --caffemodel "
                "WEIGHTS.caffemodel --out NET.npz`")
    return "an ONNX model or Caffe files are converted to one by `minicnn import-weights`"


class Container(Layer):
    """A layer made of layers (:class:`Sequential`, :class:`Join`). It holds no parameters of
    its own: its leaves do. Freezing it freezes every leaf; ``lr_mult`` is set on every leaf."""

    def __init__(self):
        # not Layer.__init__: frozen and lr_mult are views of the leaves here
        self.name = type(self).__name__.lower()
        self.params, self.buffers = ParamDict(self), ParamDict(self)
        self.grads: dict = {}
        self.need_input_grad = True
        self._saved = None

    def named_layers(self, prefix=""):  # pragma: no cover - each container defines it
        raise NotImplementedError

    def leaves(self):
        return [layer for _, layer in self.named_layers()]

    @property
    def frozen(self):
        leaves = self.leaves()
        return bool(leaves) and all(layer.frozen for layer in leaves)

    @frozen.setter
    def frozen(self, value):
        for layer in self.leaves():
            layer.frozen = value

    @property
    def lr_mult(self):
        mults = {layer.lr_mult for layer in self.leaves()}
        return mults.pop() if len(mults) == 1 else None

    @lr_mult.setter
    def lr_mult(self, value):
        for layer in self.leaves():
            layer.lr_mult = value

    def trainable(self):
        return any(layer.trainable() for layer in self.leaves())

    def num_params(self):
        return sum(layer.num_params() for layer in self.leaves())


class Sequential(Container):
    """Layers applied in order. ``net["conv1"]`` is a layer by name (a dotted path reaches
    into blocks: ``net["fire2.expand3x3"]``), ``net.layers`` the layers in order.

    A layer may itself be a ``Sequential`` (a block) or a :class:`Join`. The layers of a
    Join's branches are named in the namespace of the Sequential that holds the Join, as
    Caffe names them, so names are unique across branches and a path never counts branches.
    """

    def __init__(self, layers, names=None, input_shape=None, meta=None):
        super().__init__()
        # as a whole network, backward computes no input gradient unless asked; as a block,
        # the network holding it sets this before each backward
        self.need_input_grad = False
        layers = list(layers)
        if names is None:
            names = [f"{type(layer).__name__.lower()}{i}" for i, layer in enumerate(layers)]
        names = list(names)
        if len(names) != len(layers):
            raise ValueError(f"Sequential: {len(layers)} layers but {len(names)} names")
        for layer, name in zip(layers, names, strict=True):
            if not isinstance(layer, Layer):
                raise ValueError(f"Sequential: {name!r} is not a Layer ({type(layer).__name__})")
            if not isinstance(name, str) or not name or "." in name:
                raise ValueError(f"Sequential: layer names are non-empty and hold no '.', got {name!r}")
            layer.name = name
        self.layers, self.names = layers, names
        seen = [name for name, _ in self.namespace()]
        if len(set(seen)) != len(seen):
            repeated = sorted({n for n in seen if seen.count(n) > 1})
            raise ValueError(f"Sequential: layer names must be unique (a Join's branches share the "
                             f"names of the Sequential holding it); repeated: {', '.join(repeated)}")
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.meta = dict(meta or {})

    # --- access -------------------------------------------------------------------------
    def namespace(self):
        """(name, layer) of every layer named here: the layers in order, each Join followed
        by the layers of its branches."""
        for name, layer in zip(self.names, self.layers, strict=True):
            yield name, layer
            if isinstance(layer, Join):
                for branch in layer.branches:
                    if branch is not None:
                        yield from branch.namespace()

    def named_layers(self, prefix=""):
        """(dotted path, layer) of every leaf layer (one that is not a container), in the
        order forward runs them."""
        out = []
        for name, layer in self.namespace():
            if isinstance(layer, Sequential):
                out += layer.named_layers(f"{prefix}{name}.")
            elif not isinstance(layer, Join):  # a Join's layers follow it in the namespace
                out.append((prefix + name, layer))
        return out

    def __getitem__(self, key):
        if not isinstance(key, str):
            return self.layers[key]
        head, _, rest = key.partition(".")
        found = dict(self.namespace()).get(head)
        if found is None:
            raise KeyError(f"no layer named {head!r}; layers: {', '.join(self.names)}")
        if rest:
            if not isinstance(found, Sequential):
                raise KeyError(f"layer {head!r} ({type(found).__name__}) holds no layer {rest!r}")
            return found[rest]
        return found

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def named_params(self):
        """(name, param, grad) triples in layer order, weight before bias; grad None until
        a backward pass computed it. Names are dotted paths: ``fire2.expand3x3.weight``."""
        return [(f"{path}.{k}", p, layer.grads.get(k))
                for path, layer in self.named_layers() for k, p in layer.params.items()]

    def named_arrays(self):
        """{name: array} of what a network file holds: every parameter (as named_params) and
        every buffer (batch normalisation's running statistics: ``bn1.running_mean``)."""
        return {f"{path}.{k}": a for path, layer in self.named_layers()
                for store in (layer.params, layer.buffers) for k, a in store.items()}

    def trainable_layers(self):
        return [layer for layer in self.leaves() if layer.trainable()]

    def freeze(self, names, frozen=True):
        """Freeze (or unfreeze) the named layers (a block: all its layers): eval mode, no
        gradients, no updates."""
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

        for layer in self.leaves():
            for store in (layer.params, layer.buffers):
                for key, p in store.items():
                    dict.__setitem__(store, key, move(p))  # same shape and dtype: no re-check
            layer.grads = {key: move(g) for key, g in layer.grads.items() if g is not None}
        return self

    # --- compute ------------------------------------------------------------------------
    def forward(self, x, train=True, keep_for_backward=True):
        """Run the layers in order. ``train=False`` is evaluation mode; a frozen layer is always
        in it. ``keep_for_backward=False`` (inference) keeps nothing for a backward pass."""
        for layer in self.layers:
            x = layer.forward(x, train=train and not layer.frozen, keep_for_backward=keep_for_backward)
        return x

    def backward(self, dy, input_grad=None):
        """Backpropagate ``dy``; fills every trainable layer's grads. Layers below the
        lowest trainable one are skipped (no gradient is needed there) unless
        ``input_grad`` asks for dx of the network input, which is then returned. Left out,
        ``input_grad`` is ``need_input_grad``: False for a whole network, set by the network
        holding a block."""
        if input_grad is None:
            input_grad = self.need_input_grad
        lowest = 0
        if not input_grad:
            trainable = [i for i, layer in enumerate(self.layers) if layer.trainable()]
            if not trainable:
                return None
            lowest = trainable[0]
        for i in range(len(self.layers) - 1, lowest - 1, -1):
            layer = self.layers[i]
            layer.need_input_grad = input_grad or i > lowest
            dy = layer.backward(dy)
        return dy if input_grad else None

    # --- description --------------------------------------------------------------------
    def output_shape(self, in_shape):
        for layer in self.layers:
            in_shape = layer.output_shape(in_shape)
        return tuple(in_shape)

    def macs(self, in_shape):
        total = 0
        for layer in self.layers:
            total += layer.macs(in_shape)
            in_shape = layer.output_shape(in_shape)
        return total

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

    def _summary_rows(self, shape, depth, mark=""):
        """(name, type, output, params, MACs) rows: a block's and a Join's layers indented
        under them, the first layer of each branch of a Join marked [1], [2], ..."""
        rows = []
        for name, layer in zip(self.names, self.layers, strict=True):
            macs = layer.macs(shape) if shape else 0
            out = layer.output_shape(shape) if shape else ()
            kind = type(layer).__name__ + (f" ({layer.mode})" if isinstance(layer, Join) else "")
            kind += " (frozen)" if layer.frozen and layer.num_params() else ""
            rows.append(("  " * depth + mark + name, kind, "x".join(map(str, out)) or "?",
                         f"{layer.num_params():,}", f"{macs:,}"))
            mark = ""
            if isinstance(layer, Sequential):
                rows += layer._summary_rows(shape, depth + 1)
            elif isinstance(layer, Join):
                for i, branch in enumerate(layer.branches, 1):
                    if branch is None:
                        rows.append(("  " * (depth + 1) + f"[{i}] identity", "",
                                     "x".join(map(str, shape)) or "?", "0", "0"))
                    else:
                        rows += branch._summary_rows(shape, depth + 1, mark=f"[{i}] ")
            shape = out
        return rows

    def summary(self, input_shape=None, file=None) -> str:
        """A table of output shape, parameter count and multiply-adds per layer (printed);
        the layers of blocks and of a Join's branches indented under them."""
        shape = tuple(input_shape or self.input_shape or ())
        rows = [("layer", "type", "output", "params", "MACs")]
        rows += self._summary_rows(shape, 0)
        rows.append(("total", "", "", f"{self.num_params():,}", f"{self.macs(shape) if shape else 0:,}"))
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
    def config(self):
        return {"layers": [layer_spec(name, layer) for name, layer in zip(self.names, self.layers,
                                                                          strict=True)]}

    def architecture(self) -> dict:
        return {
            "layers": self.config()["layers"],
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "meta": self.meta,
        }

    def save(self, path):
        """Write the architecture and every parameter to ``path`` (.npz), atomically."""
        arrays = {name: backend.to_numpy(p) for name, p in self.named_arrays().items()}
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
        expected = self.named_arrays()
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
                layer = self[layer_name]
                (layer.params if key in layer.params else layer.buffers)[key] = value

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
            raise InputError(f"{path}: {ARCH_KEY} is not a network architecture "
                             f"({shown(e, 200, quote=False)})") from None
        layers = [build_layer(spec, path, f"layer {i} of {ARCH_KEY}") for i, spec in enumerate(specs)]
        names = [spec["name"] for spec in specs]
        try:
            net = cls(layers, names, input_shape=arch.get("input_shape"), meta=arch.get("meta"))
            if net.input_shape:  # layers that do not fit together (an edited architecture)
                net.shapes()
        except (ValueError, TypeError, ArithmeticError) as e:  # repeated names, shapes that do not chain
            raise InputError(f"{path}: {shown(e, 300, quote=False)}") from None
        return net._load_into(path)

    load = _either(_load_new, _load_into)


class Join(Container):
    """Several branches run on the same input, their outputs joined.

    With branches f_1 .. f_B (each a :class:`Sequential`, or ``None`` for the identity
    f(x) = x) and an input x of shape (N, C, H, W):

        concat:  y = [f_1(x), f_2(x), ..., f_B(x)]   along channels, C_y = sum_b C_b
        sum:     y = f_1(x) + f_2(x) + ... + f_B(x)   (every f_b(x) of one shape)

    Backward, for dL/dy = g:

        concat:  g_b = g[:, c_b : c_b + C_b]   (branch b's channel slice, c_b = C_1 + .. + C_{b-1})
        sum:     g_b = g
        dL/dx = sum_b J_b^T g_b                (each branch's input gradient, added)

    Concat is Torch7's ``nn.Concat(2)`` and Caffe's ``Concat`` (SqueezeNet's fire modules,
    GoogLeNet's inception modules); sum with an identity branch is a residual block with its
    shortcut (Caffe's ``Eltwise`` SUM). Each branch's output is written once into its slice
    of one joined output. The branches' layers are named in the namespace of the Sequential
    that holds the Join (see :class:`Sequential`).
    """

    MODES = ("concat", "sum")

    def __init__(self, branches, mode="concat"):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"Join: mode must be 'concat' or 'sum', got {mode!r}")
        branches = list(branches)
        if not branches:
            raise ValueError("Join: needs at least one branch")
        for i, branch in enumerate(branches):
            if branch is not None and not isinstance(branch, Sequential):
                raise ValueError(f"Join: branch {i + 1} must be a Sequential or None (the identity), "
                                 f"got {type(branch).__name__}")
        self.branches, self.mode = branches, mode

    def named_layers(self, prefix=""):
        return [pair for branch in self.branches if branch is not None
                for pair in branch.named_layers(prefix)]

    def config(self):
        return {"mode": self.mode, "branches": [None if b is None else b.config() for b in self.branches]}

    # --- shapes -------------------------------------------------------------------------
    def _branch_shapes(self, in_shape):
        return [tuple(in_shape) if b is None else b.output_shape(in_shape) for b in self.branches]

    def output_shape(self, in_shape):
        shapes = self._branch_shapes(in_shape)
        if self.mode == "sum":
            if len(set(shapes)) > 1:
                raise ValueError(f"Join {self.name!r} (sum): branch outputs differ: {shapes}")
            return shapes[0]
        if len({s[1:] for s in shapes}) > 1 or len({len(s) for s in shapes}) > 1:
            raise ValueError(f"Join {self.name!r} (concat): branch outputs differ beyond channels: {shapes}")
        return (sum(s[0] for s in shapes),) + shapes[0][1:]

    def macs(self, in_shape):
        total = sum(b.macs(in_shape) for b in self.branches if b is not None)
        if self.mode == "sum":
            total += (len(self.branches) - 1) * int(np.prod(self.output_shape(in_shape)))
        return total

    # --- compute ------------------------------------------------------------------------
    def forward(self, x, train=True, keep_for_backward=True):
        outs = [x if b is None else b.forward(x, train=train, keep_for_backward=keep_for_backward)
                for b in self.branches]
        if self.mode == "sum":
            if len({o.shape for o in outs}) > 1:
                raise ValueError(f"Join {self.name!r} (sum): branch outputs differ: "
                                 f"{[tuple(o.shape) for o in outs]}")
            y = outs[0] if len(outs) == 1 else outs[0] + outs[1]  # a new array: no branch's own
            for o in outs[2:]:
                y += o
            self._save(keep_for_backward, None)
            return y
        if len({(o.ndim, o.shape[0]) + tuple(o.shape[2:]) for o in outs}) > 1:
            raise ValueError(f"Join {self.name!r} (concat): branch outputs differ beyond channels: "
                             f"{[tuple(o.shape) for o in outs]}")
        widths = [o.shape[1] for o in outs]
        y = backend.array_module(x).empty((x.shape[0], sum(widths)) + tuple(outs[0].shape[2:]),
                                          dtype=outs[0].dtype)
        start = 0
        for o, width in zip(outs, widths, strict=True):
            y[:, start:start + width] = o
            start += width
        self._save(keep_for_backward, widths)
        return y

    def backward(self, dy):
        (widths,) = self._saved_tensors()
        xp = backend.array_module(dy)
        grads, start = [], 0
        for branch, width in zip(self.branches, widths or [None] * len(self.branches), strict=True):
            # a branch's slice is made contiguous for its kernels (the identity's needs no copy)
            g = dy if width is None else dy[:, start:start + width]
            if width is not None:
                start += width
                if branch is not None:
                    g = xp.ascontiguousarray(g)
            if branch is None:
                grads.append(g if self.need_input_grad else None)
            else:
                grads.append(branch.backward(g, input_grad=self.need_input_grad))
        if not self.need_input_grad:
            return None
        dx = grads[0] if len(grads) == 1 else grads[0] + grads[1]  # new array: dy stays intact
        for g in grads[2:]:
            dx += g
        return dx


def layer_spec(name, layer) -> dict:
    """The JSON description of one layer in a network file: type, name, constructor config
    (a container's holds its layers' specs), frozen and lr_mult (a leaf's)."""
    spec = {"type": type(layer).__name__, "name": name, "config": layer.config()}
    if not isinstance(layer, Container):
        spec.update(frozen=layer.frozen, lr_mult=layer.lr_mult)
    return spec


def build_layer(spec, path, where):
    """The layer a :func:`layer_spec` describes (a container with its layers); a bad spec is
    an InputError naming ``path`` and the layer."""
    try:
        name, kind_name, config = spec["name"], spec["type"], spec["config"]
    except (KeyError, TypeError):
        raise InputError(f"{path}: {where} lacks its name, type or config") from None
    try:
        if kind_name in ("Sequential", "Join"):
            def block(cfg, part):
                specs = list(cfg["layers"])
                return Sequential([build_layer(s, path, f"layer {i} of {name!r}{part}")
                                   for i, s in enumerate(specs)], [s["name"] for s in specs])
            if kind_name == "Sequential":
                return block(config, "")
            return Join([None if b is None else block(b, f" branch {i + 1}")
                         for i, b in enumerate(config["branches"])], config["mode"])
        kind = LAYER_TYPES.get(kind_name)
        if kind is None:
            raise InputError(f"{path}: layer {name!r} has unknown type {kind_name!r}")
        layer = kind(**config)
    except InputError:
        raise
    except MemoryError:  # sizes no parameters of the file can have
        raise InputError(f"{path}: layer {name!r} ({shown(kind_name, quote=False)}) has sizes too large to "
                         f"build: {shown(config, 200, quote=False)}") from None
    except (TypeError, ValueError, KeyError, ArithmeticError) as e:  # (a size 0 or infinite)
        raise InputError(f"{path}: layer {name!r} ({shown(kind_name, quote=False)}) has a bad config "
                         f"{shown(config, 200, quote=False)}: {shown(e, 200, quote=False)}") from None
    layer.frozen = spec.get("frozen", False)
    layer.lr_mult = spec.get("lr_mult", 1.0)
    return layer


def clone_layer(layer, params=True):
    """A new layer of the same architecture (a container with all its layers), holding a copy
    of ``layer``'s parameters and frozen flags, or, with ``params=False``, a fresh random start
    (drawn from the seeded generator, as a new layer's)."""
    name = getattr(layer, "name", type(layer).__name__.lower())
    clone = build_layer(layer_spec(name, layer), "clone", "the layer")
    if isinstance(layer, Sequential):
        clone.input_shape, clone.meta = layer.input_shape, dict(layer.meta)
    if params:
        leaves = [layer] if not isinstance(layer, Container) else layer.leaves()
        copies = [clone] if not isinstance(clone, Container) else clone.leaves()
        for old, new in zip(leaves, copies, strict=True):
            for key, value in old.params.items():
                new.params[key] = value.copy()
            for key, value in old.buffers.items():
                new.buffers[key] = value.copy()
    return clone
