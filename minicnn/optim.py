"""Stochastic gradient descent with momentum and weight decay, and learning-rate schedules.

The update is Krizhevsky et al.'s (and Caffe's), with the learning rate inside the velocity:

    v <- momentum * v - lr * lr_mult * (g + weight_decay * w)
    w <- w + v

Weight decay applies to weights, not to biases (Caffe's usual setting). Frozen layers get
no update. ``lr_mult`` is per layer (``layer.lr_mult``, or the ``lr_mult`` argument by
layer name).
"""

from __future__ import annotations

import math

from minicnn import backend
from minicnn.backend import hot_path


@hot_path
def sgd_update(param, grad, velocity, lr, momentum, weight_decay):
    """In place: velocity = momentum*velocity - lr*(grad + weight_decay*param); param += velocity."""
    velocity *= momentum
    velocity -= lr * (grad + weight_decay * param) if weight_decay else lr * grad
    param += velocity


class SGD:
    def __init__(self, net, lr=0.01, momentum=0.9, weight_decay=5e-4, lr_mult=None):
        if lr <= 0 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError(f"SGD: need lr > 0, 0 <= momentum < 1, weight_decay >= 0; got "
                             f"lr={lr}, momentum={momentum}, weight_decay={weight_decay}")
        self.net, self.lr = net, float(lr)
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)
        for name, mult in (lr_mult or {}).items():
            net[name].lr_mult = float(mult)
        self.velocity: dict = {}

    def step(self):
        """Apply one update to every trainable layer from its current grads."""
        for name, layer in self.net.named_layers():
            if not layer.trainable():
                continue
            for key, param in layer.params.items():
                grad = layer.grads.get(key)
                if grad is None:
                    raise RuntimeError(f"SGD.step: layer {name!r} has no gradient for {key!r}; "
                                       "run net.backward first")
                vkey = f"{name}.{key}"
                if vkey not in self.velocity:
                    self.velocity[vkey] = backend.array_module(param).zeros_like(param)
                sgd_update(param, grad, self.velocity[vkey], self.lr * layer.lr_mult,
                           self.momentum, self.weight_decay if key == "weight" else 0.0)

    def state_dict(self) -> dict:
        """Velocities (numpy) and the learning rate, for checkpoints."""
        state = {f"velocity/{k}": backend.to_numpy(v) for k, v in self.velocity.items()}
        state["lr"] = self.lr
        return state

    def load_state_dict(self, state: dict):
        self.lr = float(state["lr"])
        self.velocity = {k[len("velocity/"):]: backend.asarray(v)
                         for k, v in state.items() if k.startswith("velocity/")}


class StepLR:
    """Divide the learning rate by ``1/gamma`` every ``step_size`` epochs: call ``step()``
    once per epoch."""

    def __init__(self, opt, step_size, gamma=0.1):
        self.opt, self.step_size, self.gamma = opt, int(step_size), float(gamma)
        self.base_lr, self.epoch = opt.lr, 0

    def step(self, metric=None):
        self.epoch += 1
        self.opt.lr = self.base_lr * self.gamma ** (self.epoch // self.step_size)
        return self.opt.lr


class PlateauLR:
    """Multiply the learning rate by ``factor`` when the monitored value has not improved
    (by more than ``threshold``, relative) for ``patience`` epochs: Krizhevsky's "divide by
    10 when the validation error stops improving". ``mode`` is "min" (errors, losses) or
    "max" (accuracies, mAP)."""

    def __init__(self, opt, factor=0.1, patience=2, mode="min", threshold=1e-3, min_lr=0.0):
        if mode not in ("min", "max"):
            raise ValueError(f"PlateauLR: mode must be 'min' or 'max', got {mode!r}")
        self.opt, self.factor, self.patience = opt, float(factor), int(patience)
        self.mode, self.threshold, self.min_lr = mode, float(threshold), float(min_lr)
        self.best = math.inf if mode == "min" else -math.inf
        self.bad_epochs = 0

    def _better(self, value):
        if math.isinf(self.best):
            return True
        if self.mode == "min":
            return value < self.best - abs(self.best) * self.threshold
        return value > self.best + abs(self.best) * self.threshold

    def step(self, metric):
        if self._better(metric):
            self.best, self.bad_epochs = metric, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.patience:
                self.opt.lr = max(self.min_lr, self.opt.lr * self.factor)
                self.bad_epochs = 0
        return self.opt.lr
