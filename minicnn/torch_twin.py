"""A minicnn network as the PyTorch ``nn.Sequential`` that computes the same, with its
weights: the PyTorch contender of ``minicnn bench`` and ``experiments/gpu_bench.py``. PyTorch
is never a dependency: it is imported only when this is called."""

from __future__ import annotations

import minicnn as mc
from minicnn import layers as L


def torch_model(net):
    """An ``nn.Sequential`` computing what ``net`` computes, with its weights (blocks nest;
    a Join is a module that concatenates or adds its branches' outputs)."""
    import torch
    from torch import nn

    class Join(nn.Module):
        def __init__(self, branches, mode):
            super().__init__()
            self.branches, self.mode = nn.ModuleList(branches), mode

        def forward(self, x):
            outs = [branch(x) for branch in self.branches]
            return torch.cat(outs, 1) if self.mode == "concat" else sum(outs)

    def module(layer):
        if isinstance(layer, mc.Sequential):
            return nn.Sequential(*(module(child) for child in layer.layers))
        if isinstance(layer, mc.Join):
            return Join([nn.Identity() if b is None else module(b) for b in layer.branches], layer.mode)
        # the layer's own precision: a float64 net's twin is a float64 oracle
        dtype = getattr(torch, str(getattr(layer, "dtype", "float32")))
        if isinstance(layer, L.Conv2D):
            symmetric = layer.pads[:2] == layer.pads[2:]
            m = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                          layer.pads[:2] if symmetric else 0, dilation=layer.dilation, groups=layer.groups,
                          bias="bias" in layer.params, dtype=dtype)
            if not symmetric:  # nn.ZeroPad2d takes (left, right, top, bottom)
                top, left, bottom, right = layer.pads
                conv = m
                m = nn.Sequential(nn.ZeroPad2d((left, right, top, bottom)), conv)
                m.weight, m.bias = conv.weight, conv.bias
        elif isinstance(layer, L.BatchNorm2D):
            m = nn.BatchNorm2d(layer.num_features, layer.eps, layer.momentum, dtype=dtype)
        elif isinstance(layer, L.Clip):
            m = nn.Hardtanh(-float("inf") if layer.min is None else layer.min,
                            float("inf") if layer.max is None else layer.max)
        elif isinstance(layer, L.Linear):
            m = nn.Linear(layer.in_features, layer.out_features, bias="bias" in layer.params, dtype=dtype)
        elif isinstance(layer, L.ReLU):
            m = nn.ReLU()
        elif isinstance(layer, L.LRN):
            m = nn.LocalResponseNorm(layer.size, layer.alpha, layer.beta, layer.k)
        elif isinstance(layer, (L.MaxPool2D, L.AvgPool2D)) and layer.pads[:2] != layer.pads[2:]:
            raise ValueError(f"bench: no PyTorch equivalent for layer {layer.name!r} "
                             f"({type(layer).__name__} padded differently per side)")
        elif isinstance(layer, L.MaxPool2D):
            m = nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding, ceil_mode=layer.ceil_mode)
        elif isinstance(layer, L.AvgPool2D):
            m = nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding, ceil_mode=layer.ceil_mode,
                             count_include_pad=layer.count_include_pad)
        elif isinstance(layer, L.Dropout):
            m = nn.Dropout(layer.p)
        elif isinstance(layer, L.Flatten):
            m = nn.Flatten()
        else:
            raise ValueError(f"bench: no PyTorch equivalent for layer {layer.name!r} "
                             f"({type(layer).__name__})")
        with torch.no_grad():
            for key, value in (*layer.params.items(), *layer.buffers.items()):
                getattr(m, key).copy_(torch.from_numpy(mc.to_numpy(value)))
        return m

    return module(net)
