"""Stateful layers: parameters, gradients, train/eval behaviour; the math lives in ``ops``.

Every layer takes NCHW (or (N, features)) arrays and works in float32 by default or in
float64 (layers with parameters take ``dtype``). ``forward(x, train)`` keeps what backward
needs; ``backward(dy)`` fills ``layer.grads`` and returns dx. ``train=False`` is evaluation mode
(dropout off), and a backward may still follow (saliency maps); ``keep_for_backward=False``
promises none will, so the layer keeps nothing (inference: feature extraction, scoring) and
its memory is that of the arrays in flight. A frozen layer (``frozen = True``) runs in
evaluation mode, computes no parameter gradients and is never updated.
"""

from __future__ import annotations

import numpy as np

from minicnn import backend
from minicnn.ops import avg_pool2d as avg_op
from minicnn.ops import batch_norm as bn_op
from minicnn.ops import clip as clip_op
from minicnn.ops import conv2d as conv_op
from minicnn.ops import dropout as dropout_op
from minicnn.ops import flatten as flatten_op
from minicnn.ops import linear as linear_op
from minicnn.ops import lrn as lrn_op
from minicnn.ops import max_pool2d as pool_op
from minicnn.ops import relu as relu_op
from minicnn.ops.im2col import pair, quad

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _check_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


class ParamDict(dict):
    """Parameters by name; a parameter can be replaced only by an array of the same shape."""

    def __init__(self, owner, **arrays):
        super().__init__(**arrays)
        self._owner = owner

    def __setitem__(self, key, value):
        if key not in self:
            raise KeyError(f"layer {self._owner.name!r} has no parameter {key!r}; "
                           f"it has {', '.join(self) or 'none'}")
        old = self[key]
        xp = backend.array_module(old)
        value = xp.asarray(value, dtype=old.dtype)
        if value.shape != old.shape:
            raise ValueError(f"layer {self._owner.name!r}: parameter {key!r} must have shape "
                             f"{old.shape}, got {value.shape}")
        super().__setitem__(key, value)


class Layer:
    """Base class. Subclasses set ``params`` and implement forward, backward and shapes."""

    def __init__(self):
        self.name = type(self).__name__.lower()
        self.params = ParamDict(self)
        # arrays that are saved, loaded and moved with the parameters but never trained
        # (batch normalisation's running statistics)
        self.buffers = ParamDict(self)
        self.grads: dict = {}
        self.frozen = False
        self.lr_mult = 1.0
        # Sequential clears this for the first layer that needs no input gradient.
        self.need_input_grad = True
        self._saved = None

    # --- what backward needs ------------------------------------------------------------
    def _save(self, keep_for_backward, *tensors):
        self._saved = tensors if keep_for_backward else None

    def _saved_tensors(self):
        if self._saved is None:
            raise RuntimeError(f"layer {self.name!r} ({type(self).__name__}): backward needs a forward "
                               "before it that kept its tensors; this one ran with "
                               "keep_for_backward=False, or none ran")
        return self._saved

    # --- description -------------------------------------------------------------------
    def config(self) -> dict:
        """Constructor arguments, JSON-serialisable (used by save/load)."""
        return {}

    def output_shape(self, in_shape: tuple) -> tuple:
        """Output shape of one sample (no batch axis) for an input sample of ``in_shape``."""
        return tuple(in_shape)

    def macs(self, in_shape: tuple) -> int:
        """Multiply-adds of the forward pass for one sample."""
        return 0

    def num_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def trainable(self) -> bool:
        """Whether training updates this layer (it has parameters and is not frozen)."""
        return bool(self.params) and not self.frozen

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    # --- checks -------------------------------------------------------------------------
    def _describe_expected(self):
        return "(N, ...)"

    def _check_input(self, x, ndim=None, channels=None):
        problem = None
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            problem = f"an array, got {type(x).__name__}"
        elif ndim is not None and x.ndim != ndim:
            problem = f"a rank-{ndim} input, got shape {tuple(x.shape)}"
        elif channels is not None and x.shape[1] != channels:
            problem = f"{channels} channels/features on axis 1, got shape {tuple(x.shape)}"
        elif np.dtype(x.dtype) not in FLOAT_DTYPES:
            problem = f"float32 or float64 input, got {x.dtype}"
        elif self.params and np.dtype(x.dtype) != self.dtype:
            problem = f"{self.dtype} input like its parameters, got {x.dtype}"
        if problem:
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) expects input of shape "
                             f"{self._describe_expected()}: {problem}")

    def _make_params(self, weight_shape, fan_in, bias):
        """He-normal weight, N(0, 2 / fan_in), drawn from the seeded numpy generator so that
        every backend starts from the same numbers; zero bias."""
        w = np.random.standard_normal(weight_shape) * np.sqrt(2.0 / fan_in)
        arrays = {"weight": backend.asarray(w.astype(self.dtype))}
        if bias:
            arrays["bias"] = backend.asarray(np.zeros(weight_shape[0], self.dtype))
        self.params = ParamDict(self, **arrays)


class Conv2D(Layer):
    """Convolution, ``minicnn.ops.conv2d``: weight (O, C/groups, kh, kw), bias (O,).

    ``padding``: one number, (height, width) for both sides alike, or (top, left, bottom,
    right) when the sides differ (ONNX's begin/end pads, TensorFlow's SAME); ``dilation``
    spaces the kernel's taps. ``groups == in_channels`` is a depthwise convolution."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1,
                 bias=True, dtype=np.float32, dilation=1):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2D: in_channels {in_channels} and out_channels {out_channels} "
                             f"must both be divisible by groups {groups}")
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size, self.stride, self.dilation = pair(kernel_size), pair(stride), pair(dilation)
        self.pads = quad(padding)
        if min(self.pads) < 0 or min(self.stride) < 1 or min(self.dilation) < 1:
            raise ValueError(f"Conv2D: padding {self.pads} must be >= 0, stride {self.stride} and "
                             f"dilation {self.dilation} >= 1")
        # (ph, pw) when both sides are alike, as before per-side padding existed
        self.padding = self.pads[:2] if self.pads[:2] == self.pads[2:] else self.pads
        self.dtype = _check_dtype(dtype)
        kh, kw = self.kernel_size
        fan_in = in_channels // groups * kh * kw
        self._make_params((out_channels, in_channels // groups, kh, kw), fan_in, bias)

    def config(self):
        config = dict(in_channels=self.in_channels, out_channels=self.out_channels,
                      kernel_size=list(self.kernel_size), stride=list(self.stride),
                      padding=list(self.padding), groups=self.groups, bias="bias" in self.params,
                      dtype=self.dtype.name)
        if self.dilation != (1, 1):  # left out otherwise: files readable by earlier versions
            config["dilation"] = list(self.dilation)
        return config

    def _describe_expected(self):
        return f"(N, {self.in_channels}, H, W), dtype {self.dtype}"

    def output_shape(self, in_shape):
        if len(in_shape) != 3 or in_shape[0] != self.in_channels:
            raise ValueError(f"layer {self.name!r} (Conv2D) takes samples of shape "
                             f"({self.in_channels}, H, W), gets {tuple(in_shape)}")
        shape = (1, *in_shape)
        return (self.out_channels, *conv_op.output_size(shape, (self.out_channels, 1, *self.kernel_size),
                                                         self.stride, self.pads, self.dilation))

    def macs(self, in_shape):
        O, OH, OW = self.output_shape(in_shape)
        kh, kw = self.kernel_size
        return O * OH * OW * (self.in_channels // self.groups) * kh * kw

    def forward(self, x, train=True, keep_for_backward=True):
        self._check_input(x, 4, self.in_channels)
        out = self.output_shape(x.shape[1:])
        if out[1] < 1 or out[2] < 1:
            raise ValueError(f"layer {self.name!r} (Conv2D): input {tuple(x.shape)} is smaller "
                             f"than the kernel {self.kernel_size} with padding {self.padding}")
        self._save(keep_for_backward, x)
        # What the weight gradient can reuse (Winograd's transformed input), in buffers kept
        # from step to step; inference lets them go.
        if not keep_for_backward:
            self.__dict__.pop("_kept_for_backward", None)
        reuse = train and not self.frozen and keep_for_backward
        self._kept = self.__dict__.setdefault("_kept_for_backward", {}) if reuse else None
        return conv_op.conv2d_forward(x, self.params["weight"], self.params.get("bias"),
                                      self.stride, self.pads, self.groups, keep=self._kept,
                                      dilation=self.dilation)

    def backward(self, dy):
        (x,) = self._saved_tensors()
        dx, dw, db = conv_op.conv2d_backward(
            dy, x, self.params["weight"], self.stride, self.pads, self.groups,
            need_dx=self.need_input_grad, need_dw=not self.frozen, kept=self._kept,
            dilation=self.dilation)
        if not self.frozen:
            self.grads["weight"] = dw
            if "bias" in self.params:
                self.grads["bias"] = db
        return dx


class Linear(Layer):
    """Fully connected, ``minicnn.ops.linear``: weight (out, in), bias (out,)."""

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.dtype = _check_dtype(dtype)
        self._make_params((out_features, in_features), in_features, bias)

    def config(self):
        return dict(in_features=self.in_features, out_features=self.out_features,
                    bias="bias" in self.params, dtype=self.dtype.name)

    def _describe_expected(self):
        return f"(N, {self.in_features}), dtype {self.dtype}"

    def output_shape(self, in_shape):
        if tuple(in_shape) != (self.in_features,):
            raise ValueError(f"layer {self.name!r} (Linear) takes {self.in_features} features, gets samples "
                             f"of shape {tuple(in_shape)}")
        return (self.out_features,)

    def macs(self, in_shape):
        return self.in_features * self.out_features

    def forward(self, x, train=True, keep_for_backward=True):
        self._check_input(x, 2, self.in_features)
        self._save(keep_for_backward, x)
        return linear_op.linear_forward(x, self.params["weight"], self.params.get("bias"))

    def backward(self, dy):
        (x,) = self._saved_tensors()
        dx, dw, db = linear_op.linear_backward(dy, x, self.params["weight"],
                                               need_dx=self.need_input_grad,
                                               need_dw=not self.frozen)
        if not self.frozen:
            self.grads["weight"] = dw
            if "bias" in self.params:
                self.grads["bias"] = db
        return dx


class _Pool2D(Layer):
    """The window geometry pooling layers share: kernel, stride (default: the kernel),
    padding of at most half the kernel (one number, (height, width), or (top, left, bottom,
    right) when the sides differ: TensorFlow's SAME), PyTorch's output sizes in floor and
    ceil mode."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        super().__init__()
        self.kernel_size = pair(kernel_size)
        self.stride = pair(stride) if stride is not None else self.kernel_size
        self.pads = quad(padding)
        self.padding = self.pads[:2] if self.pads[:2] == self.pads[2:] else self.pads
        self.ceil_mode = bool(ceil_mode)
        if min(self.pads) < 0 or any(p > k / 2 for p, k in zip(self.pads, self.kernel_size * 2, strict=True)):
            raise ValueError(f"{type(self).__name__}: padding {self.padding} must be at least 0 and at most "
                             f"half the kernel {self.kernel_size}")

    def config(self):
        return dict(kernel_size=list(self.kernel_size), stride=list(self.stride),
                    padding=list(self.padding), ceil_mode=self.ceil_mode)

    def _describe_expected(self):
        return "(N, C, H, W)"

    def output_shape(self, in_shape):
        C, H, W = in_shape
        (kh, kw), (sh, sw), (pt, pl, pb, pr) = self.kernel_size, self.stride, self.pads
        return (C, pool_op.pool_output_size(H, kh, sh, pt, self.ceil_mode, pb),
                pool_op.pool_output_size(W, kw, sw, pl, self.ceil_mode, pr))

    def _geometry(self):
        """kh, kw, sh, sw and the padding before; the padding after enters by the output size."""
        (kh, kw), (sh, sw), (pt, pl, _, _) = self.kernel_size, self.stride, self.pads
        return kh, kw, sh, sw, pt, pl

    def _output_size(self, x):
        self._check_input(x, 4)
        try:
            return self.output_shape(x.shape[1:])[1:]
        except ValueError as e:
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}): input {tuple(x.shape)}: "
                             f"{e}") from None


class MaxPool2D(_Pool2D):
    """Max pooling, ``minicnn.ops.max_pool2d``, PyTorch semantics in floor and ceil mode."""

    def forward(self, x, train=True, keep_for_backward=True):
        oh, ow = self._output_size(x)
        y, argmax = pool_op.max_pool_forward(x, *self._geometry(), oh, ow)
        self._save(keep_for_backward, argmax, x.shape)
        return y

    def backward(self, dy):
        argmax, shape = self._saved_tensors()
        return pool_op.max_pool_backward(dy, argmax, shape)


class ReLU(Layer):
    """max(x, 0), ``minicnn.ops.relu``."""

    def forward(self, x, train=True, keep_for_backward=True):
        y = relu_op.relu_forward(x)
        self._save(keep_for_backward, y)
        return y

    def backward(self, dy):
        (y,) = self._saved_tensors()
        return relu_op.relu_backward(y, dy)


class LRN(Layer):
    """Cross-channel local response normalisation, ``minicnn.ops.lrn``:
    ``y = x / (k + alpha/size * sum_window x^2)^beta``."""

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        if int(size) < 1:
            raise ValueError(f"LRN: size must be >= 1, got {size}")
        self.size, self.alpha, self.beta, self.k = int(size), float(alpha), float(beta), float(k)

    def config(self):
        return dict(size=self.size, alpha=self.alpha, beta=self.beta, k=self.k)

    def _describe_expected(self):
        return "(N, C, H, W)"

    def macs(self, in_shape):
        return int(np.prod(in_shape)) * (self.size + 2)

    def forward(self, x, train=True, keep_for_backward=True):
        self._check_input(x, 4)
        y, scale = lrn_op.lrn_forward(x, self.size, self.alpha, self.beta, self.k)
        self._save(keep_for_backward, x, y, scale)
        return y

    def backward(self, dy):
        x, y, scale = self._saved_tensors()
        return lrn_op.lrn_backward(x, y, scale, dy, self.size, self.alpha, self.beta)


class Dropout(Layer):
    """Inverted dropout, ``minicnn.ops.dropout``; identity when train=False."""

    def __init__(self, p=0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = float(p)

    def config(self):
        return dict(p=self.p)

    def forward(self, x, train=True, keep_for_backward=True):
        mask = None
        if train and self.p > 0.0:
            mask = dropout_op.dropout_mask(x.shape, self.p, np.dtype(x.dtype))
            x = dropout_op.dropout_apply(x, mask)
        self._save(keep_for_backward, mask)
        return x

    def backward(self, dy):
        (mask,) = self._saved_tensors()
        return dy if mask is None else dropout_op.dropout_apply(dy, mask)


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W)."""

    def output_shape(self, in_shape):
        return (int(np.prod(in_shape)),)

    def forward(self, x, train=True, keep_for_backward=True):
        self._save(keep_for_backward, x.shape)
        return flatten_op.flatten_forward(x)

    def backward(self, dy):
        (shape,) = self._saved_tensors()
        return flatten_op.flatten_backward(dy, shape)


class AvgPool2D(_Pool2D):
    """Average pooling, ``minicnn.ops.avg_pool2d``: PyTorch's output sizes in floor and ceil
    mode; ``count_include_pad`` divides by the window clipped to the padded input (Caffe's
    AVE pooling and PyTorch's default), otherwise by its part inside the input."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.count_include_pad = bool(count_include_pad)
        if self.count_include_pad and self.pads[:2] != self.pads[2:]:
            # the divisor clips a window to the input padded alike on both sides
            raise ValueError(f"AvgPool2D: padding {self.padding} that differs per side needs "
                             "count_include_pad=False")

    def config(self):
        return dict(super().config(), count_include_pad=self.count_include_pad)

    def macs(self, in_shape):
        _, oh, ow = self.output_shape(in_shape)
        return in_shape[0] * oh * ow * self.kernel_size[0] * self.kernel_size[1]

    def forward(self, x, train=True, keep_for_backward=True):
        oh, ow = self._output_size(x)
        self._save(keep_for_backward, x.shape)
        return avg_op.avg_pool_forward(x, *self._geometry(), oh, ow, self.count_include_pad)

    def backward(self, dy):
        (shape,) = self._saved_tensors()
        return avg_op.avg_pool_backward(dy, shape, *self._geometry(), self.count_include_pad)


class Clip(Layer):
    """min(max(x, min), max), ``minicnn.ops.clip``; ``Clip(0, 6)`` is ReLU6. A bound given
    as None is open."""

    def __init__(self, min=None, max=None):  # noqa: A002 - ONNX's and PyTorch's names
        super().__init__()
        self.min = None if min is None else float(min)
        self.max = None if max is None else float(max)
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"Clip: min {self.min} is above max {self.max}")

    def config(self):
        return dict(min=self.min, max=self.max)

    def _bounds(self):
        return (-np.inf if self.min is None else self.min), (np.inf if self.max is None else self.max)

    def forward(self, x, train=True, keep_for_backward=True):
        y = clip_op.clip_forward(x, *self._bounds())
        self._save(keep_for_backward, y)
        return y

    def backward(self, dy):
        (y,) = self._saved_tensors()
        return clip_op.clip_backward(y, dy, *self._bounds())


class BatchNorm2D(Layer):
    """Batch normalisation of (N, C, H, W) per channel, ``minicnn.ops.batch_norm``: weight
    (gamma) and bias (beta), (C,); running_mean and running_var, buffers (saved, never
    trained). Training mode normalises by the batch's statistics and updates the running
    ones with ``momentum`` (PyTorch's convention and defaults); evaluation mode, and a frozen
    layer, by the running ones.

    ``pending``: None, or a list where training passes leave their moments (values per
    channel, batch mean, biased variance) instead of updating the running ones:
    ``minicnn.training.fit`` then makes one update per global step from the moments of every
    part on every rank, those of the whole global batch (``update_running``)."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=np.float32):
        super().__init__()
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        if self.num_features < 1 or not self.eps > 0 or not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"BatchNorm2D: num_features {num_features} must be >= 1, eps {eps} > 0 "
                             f"and momentum {momentum} in [0, 1]")
        self.dtype = _check_dtype(dtype)
        C = self.num_features
        self.params = ParamDict(self, weight=backend.asarray(np.ones(C, self.dtype)),
                                bias=backend.asarray(np.zeros(C, self.dtype)))
        self.buffers = ParamDict(self, running_mean=backend.asarray(np.zeros(C, self.dtype)),
                                 running_var=backend.asarray(np.ones(C, self.dtype)))
        self.pending = None

    def config(self):
        return dict(num_features=self.num_features, eps=self.eps, momentum=self.momentum,
                    dtype=self.dtype.name)

    def _describe_expected(self):
        return f"(N, {self.num_features}, H, W), dtype {self.dtype}"

    def output_shape(self, in_shape):
        if len(in_shape) != 3 or in_shape[0] != self.num_features:
            raise ValueError(f"layer {self.name!r} (BatchNorm2D) takes samples of shape "
                             f"({self.num_features}, H, W), gets {tuple(in_shape)}")
        return tuple(in_shape)

    def macs(self, in_shape):
        return int(np.prod(in_shape))

    def scale_shift(self):
        """(s, t) of the evaluation map y = x s + t, per channel."""
        xp = backend.array_module(self.params["weight"])
        inv_std = 1.0 / xp.sqrt(self.buffers["running_var"] + self.eps)
        scale = self.params["weight"] * inv_std
        return scale, self.params["bias"] - self.buffers["running_mean"] * scale

    def forward(self, x, train=True, keep_for_backward=True):
        self._check_input(x, 4, self.num_features)
        gamma, beta = self.params["weight"], self.params["bias"]
        if not train:
            self._save(keep_for_backward, x, False)
            return bn_op.channel_affine(x, *self.scale_shift())
        M = x.size // x.shape[1]
        if M < 2:
            raise ValueError(f"layer {self.name!r} (BatchNorm2D): training needs more than one value "
                             f"per channel, got input {tuple(x.shape)}")
        mean, var = bn_op.batch_moments(x)
        y, xhat, inv_std = bn_op.batch_norm_forward(x, gamma, beta, mean, var, self.eps)
        if self.pending is None:
            self.update_running(mean, var * (M / (M - 1)))
        else:
            self.pending.append((M, mean, var))
        self._save(keep_for_backward, xhat, inv_std, True)
        return y

    def update_running(self, mean, unbiased_var):
        """running = (1 - momentum) running + momentum batch, for the mean and the variance."""
        m = self.momentum
        self.buffers["running_mean"] = (1 - m) * self.buffers["running_mean"] + m * mean
        self.buffers["running_var"] = (1 - m) * self.buffers["running_var"] + m * unbiased_var

    def backward(self, dy):
        saved = self._saved_tensors()
        if saved[-1]:
            xhat, inv_std, _ = saved
        else:  # evaluation: the running statistics, constants of x
            x, _ = saved
            mean, var = self.buffers["running_mean"], self.buffers["running_var"]
            _, xhat, inv_std = bn_op.batch_norm_forward(x, self.params["weight"], self.params["bias"],
                                                        mean, var, self.eps)
        dx, dgamma, dbeta = bn_op.batch_norm_backward(dy, xhat, self.params["weight"], inv_std,
                                                      batch_stats=saved[-1], need_dx=self.need_input_grad)
        if not self.frozen:
            self.grads["weight"], self.grads["bias"] = dgamma, dbeta
        return dx


def __getattr__(name):
    # the containers live in minicnn.net (they hold layers of this module); L.Join works too
    if name in ("Join", "Sequential"):
        from minicnn import net
        return getattr(net, name)
    raise AttributeError(f"module 'minicnn.layers' has no attribute {name!r}")


LAYER_TYPES = {cls.__name__: cls for cls in (Conv2D, Linear, MaxPool2D, AvgPool2D, ReLU, LRN, Dropout,
                                             Flatten, Clip, BatchNorm2D)}
