"""Pretrained weights in and out: ONNX and Caffe import, ONNX export (extra "interop").

    net = interop.from_onnx("model.onnx")                     # -> minicnn.Sequential
    net = interop.from_caffe("deploy.prototxt", "w.caffemodel")
    net = interop.from_caffe("deploy.prototxt", deep_compression="compressed.net")
    interop.to_onnx(net, "out.onnx")                          # checked by onnx.checker

An imported network's ``forward(x, train=False)`` on an NCHW float32 array equals the
source framework's forward on the same array: same channel order, no preprocessing inside,
a trailing softmax dropped (logits out). What the inputs need is in ``net.meta``:
``channel_order`` ("RGB" or "BGR"; Caffe models are BGR), ``mean`` and ``std`` per input
channel of the network on the 0-255 pixel scale, ``input_size``, ``classes`` when given,
and the source file's name and sha256. A chain's layers are named by position as
:func:`minicnn.models.alexnet` names them (:mod:`minicnn.interop.layout`), so
:func:`minicnn.models.transfer_net` takes an imported AlexNet as it takes a trained one. A
Caffe network that splits and rejoins (Concat, Eltwise SUM) becomes blocks of
:class:`minicnn.Join` under Caffe's own names (``fire2/expand3x3`` -> ``fire2.expand3x3``;
:mod:`minicnn.interop.caffe_import`); an imported SqueezeNet is named as
:func:`minicnn.models.squeezenet`.
"""

from __future__ import annotations


def from_onnx(path, **options):
    """:func:`minicnn.interop.onnx_import.from_onnx`."""
    from minicnn.interop.onnx_import import from_onnx as load

    return load(path, **options)


def from_caffe(prototxt, caffemodel=None, **options):
    """:func:`minicnn.interop.caffe_import.from_caffe` (``deep_compression=`` instead of a
    caffemodel reads Han et al.'s compressed weights)."""
    from minicnn.interop.caffe_import import from_caffe as load

    return load(prototxt, caffemodel, **options)


def to_onnx(net, path, **options):
    """:func:`minicnn.interop.onnx_export.to_onnx`."""
    from minicnn.interop.onnx_export import to_onnx as write

    return write(net, path, **options)


__all__ = ["from_caffe", "from_onnx", "to_onnx"]
