"""The one preprocessing between pixels and a network: channel order, mean, standard deviation.

Every path that feeds images to a network (source training and its validation, the feature
cache, adaptation training, scoring, localization, the experiments) turns decoded pixels
into network inputs with this function and nothing else:

    x[:, c] = (pixels[:, order[c]] - mean[c]) / std[c]

``pixels`` are (n, 3, H, W) RGB values in [0, 255] as the loaders produce them; ``order`` is
the identity for an "RGB" network and (2, 1, 0) for a "BGR" one (Caffe's); ``mean`` and
``std`` are per input channel of the network, in the 0-255 scale, as stored in its
``meta``. A network without them gets mean 0, std 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minicnn.errors import InputError

CHANNEL_ORDERS = {"RGB": (0, 1, 2), "BGR": (2, 1, 0)}


@dataclass(frozen=True)
class Preprocessing:
    mean: tuple = (0.0, 0.0, 0.0)
    std: tuple = (1.0, 1.0, 1.0)
    channel_order: str = "RGB"

    def __post_init__(self):
        if self.channel_order not in CHANNEL_ORDERS:
            raise InputError(f"channel_order must be RGB or BGR, got {self.channel_order!r}")
        for name in ("mean", "std"):
            value = tuple(float(v) for v in np.ravel(getattr(self, name)))
            if len(value) != 3 or not np.all(np.isfinite(value)):
                raise InputError(f"preprocessing {name} needs 3 finite numbers, got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)
        if min(self.std) <= 0:
            raise InputError(f"preprocessing std must be positive, got {self.std}")

    @classmethod
    def of(cls, net):
        """The preprocessing a network was trained with, from its ``meta``."""
        meta = net.meta if hasattr(net, "meta") else dict(net)
        return cls(mean=meta.get("mean", cls.mean), std=meta.get("std", cls.std),
                   channel_order=meta.get("channel_order", "RGB"))

    def to_meta(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "channel_order": self.channel_order}

    def __call__(self, pixels):
        """(n, 3, H, W) float32 network inputs from RGB pixels, a NumPy or a CuPy array
        (uint8 pixels uploaded to the GPU are preprocessed there, with the same float32
        operations, so to the same bits); a float32 input is overwritten (the batch is not
        needed afterwards), anything else is copied."""
        from minicnn.backend import array_module

        xp = array_module(pixels)
        x = pixels if isinstance(pixels, xp.ndarray) and pixels.dtype == np.float32 else \
            xp.asarray(pixels, dtype=np.float32).copy()
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"preprocessing expects (n, 3, H, W) pixels, got shape {x.shape}")
        if self.channel_order != "RGB":
            x[:] = x[:, list(CHANNEL_ORDERS[self.channel_order])]
        x -= xp.asarray(np.asarray(self.mean, np.float32).reshape(1, 3, 1, 1))
        x *= xp.asarray((1.0 / np.asarray(self.std, np.float32)).reshape(1, 3, 1, 1))
        return x
