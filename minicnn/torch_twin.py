"""A minicnn network as the PyTorch ``nn.Sequential`` that computes the same, with its
weights: the PyTorch contender of ``minicnn bench`` and ``experiments/gpu_bench.py``. PyTorch
is never a dependency: it is imported only when this is called."""

from __future__ import annotations

import minicnn as mc
from minicnn import layers as L


def torch_model(net):
    """An ``nn.Sequential`` computing what ``net`` computes, with its weights."""
    import torch
    from torch import nn

    modules = []
    for layer in net.layers:
        if isinstance(layer, L.Conv2D):
            m = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                          layer.padding, groups=layer.groups, bias="bias" in layer.params)
        elif isinstance(layer, L.Linear):
            m = nn.Linear(layer.in_features, layer.out_features, bias="bias" in layer.params)
        elif isinstance(layer, L.ReLU):
            m = nn.ReLU()
        elif isinstance(layer, L.LRN):
            m = nn.LocalResponseNorm(layer.size, layer.alpha, layer.beta, layer.k)
        elif isinstance(layer, L.MaxPool2D):
            m = nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding, ceil_mode=layer.ceil_mode)
        elif isinstance(layer, L.Dropout):
            m = nn.Dropout(layer.p)
        elif isinstance(layer, L.Flatten):
            m = nn.Flatten()
        else:
            raise ValueError(f"bench: no PyTorch equivalent for layer {layer.name!r} "
                             f"({type(layer).__name__})")
        with torch.no_grad():
            for key, value in layer.params.items():
                getattr(m, key).copy_(torch.from_numpy(mc.to_numpy(value)))
        modules.append(m)
    return nn.Sequential(*modules)
