"""The one training loop: SGD epochs with a plateau schedule, NaN check, checkpoint and resume.

Source training (``minicnn.pretrain``) and the adaptation layers (``minicnn.transfer``) both
run :func:`fit`; they differ only in the batches of an epoch and in what validation
measures. Everything random in an epoch is a function of ``(seed, epoch)`` (the batches'
order and background draw, which the caller derives from :func:`epoch_rng`) and of
``(seed, epoch, step)`` (the dropout masks: the backend's generator is reseeded before each
step), so a run resumed from the checkpoint of epoch e computes exactly the epochs the
uninterrupted run computes after e, bit for bit on the same backend.

The checkpoint (written atomically after every epoch) holds the network, the optimizer's
velocities and learning rate, the schedule's state, the history and the settings; a resume
with different settings (other than a larger number of epochs) is refused, naming them.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass

import numpy as np

from minicnn import backend
from minicnn.checkpoint import load_checkpoint, save_checkpoint
from minicnn.errors import InputError
from minicnn.losses import softmax_cross_entropy
from minicnn.optim import SGD, PlateauLR
from minicnn.runrecord import progress_bar

_DROPOUT, _EPOCH = 1, 2  # SeedSequence tags: the step streams never coincide with the epoch ones


@dataclass
class SGDSettings:
    """Krizhevsky's recipe (docs/method.md 2): SGD with momentum and weight decay, the learning
    rate multiplied by ``lr_factor`` when the validation figure has not improved for
    ``lr_patience`` epochs."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_factor: float = 0.1
    lr_patience: int = 2
    seed: int = 0

    def __post_init__(self):
        check_range(self, "epochs", low=1, integer=True)
        check_range(self, "batch_size", low=1, integer=True)
        check_range(self, "lr", low=0, low_open=True)
        check_range(self, "momentum", low=0, high=1, high_open=True)
        check_range(self, "weight_decay", low=0)
        check_range(self, "lr_factor", low=0, high=1, low_open=True)
        check_range(self, "lr_patience", low=0, integer=True)


def check_range(settings, name, low=None, high=None, low_open=False, high_open=False, integer=False,
                option=None):
    """InputError naming the setting (as its command-line ``option``, by default ``--name``)
    when it is out of range."""
    value = getattr(settings, name)
    ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and np.isfinite(value)
    ok = ok and (not integer or float(value) == int(value))
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "" if low is None else f"{'(' if low_open else '['}{low:g}, "
        hi = "inf)" if high is None else f"{high:g}{')' if high_open else ']'}"
        kind = "an integer" if integer else "a number"
        option = option or f"--{name.replace('_', '-')}"
        raise InputError(f"{option} must be {kind} in {lo or '(-inf, '}{hi}, got {value!r}")
    if integer:
        setattr(settings, name, int(value))


def epoch_rng(seed, epoch):
    """The generator of everything an epoch draws on the host (order, background sample)."""
    return np.random.default_rng([int(seed), _EPOCH, int(epoch)])


def fit(net, epoch_batches, settings: SGDSettings, *, validate=None, monitor=None, mode="max",
        checkpoint=None, resume=False, log=print, desc="train"):
    """Train ``net``'s trainable layers; returns the history, one dict per epoch.

    ``epoch_batches(epoch)`` -> (number of batches, iterable of (x, labels, weights or None))
    for 0-based ``epoch``; x may be a host or device array. ``validate(net)`` -> dict of
    figures (e.g. ``{"val_map": 0.6}``) after each epoch; ``monitor`` names the one that
    drives the schedule, better when larger (``mode="max"``) or smaller ("min").
    """
    opt = SGD(net, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)
    schedule = PlateauLR(opt, factor=settings.lr_factor, patience=settings.lr_patience, mode=mode)
    history, start = [], 0
    if resume and checkpoint and os.path.exists(checkpoint):
        _, state = load_checkpoint(checkpoint, net, opt)
        _check_same_settings(checkpoint, state.get("settings", {}), asdict(settings))
        history, start = state["history"], state["epoch"]
        schedule.best, schedule.bad_epochs = state["schedule"]
        log(f"{desc}: resumed from {checkpoint} after epoch {start}")
    for epoch in range(start, settings.epochs):
        started = time.perf_counter()
        count, batches = epoch_batches(epoch)
        total, samples = None, 0
        bar = progress_bar(batches, total=count, desc=f"{desc} epoch {epoch + 1} batches", log=log,
                           every_fraction=0.25)
        for step, (x, labels, weights) in enumerate(bar):
            backend.seed_stream(settings.seed, _DROPOUT, epoch, step)
            loss, dlogits = softmax_cross_entropy(net.forward(backend.asarray(x), train=True), labels,
                                                  None if weights is None else backend.asarray(weights))
            net.backward(dlogits)
            opt.step()
            # the loss stays on the device until the epoch ends
            total = loss * len(labels) if total is None else total + loss * len(labels)
            samples += len(labels)
        mean_loss = float(total) / samples if samples else float("nan")
        if not np.isfinite(mean_loss):
            raise InputError(f"{desc}: the loss became {mean_loss} in epoch {epoch + 1}; lower --lr "
                             f"(now {opt.lr:g})")
        record = {"epoch": epoch + 1, "loss": mean_loss, "samples": samples, "lr": opt.lr}
        if validate is not None:
            record.update(validate(net))
            if monitor is not None and np.isfinite(record.get(monitor, np.nan)):
                schedule.step(record[monitor])
        record["seconds"] = time.perf_counter() - started
        history.append(record)
        figures = ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k.startswith("val_"))
        log(f"{desc} epoch {epoch + 1}/{settings.epochs}: loss {mean_loss:.4f} on {samples} samples"
            + (f", {figures}" if figures else "") + f", lr {record['lr']:g}, {record['seconds']:.1f} s")
        if checkpoint:
            save_checkpoint(checkpoint, net, opt, {
                "epoch": epoch + 1, "history": history, "schedule": [schedule.best, schedule.bad_epochs],
                "settings": asdict(settings)})
    return history


def _check_same_settings(checkpoint, saved: dict, current: dict):
    """A resume continues the same run: every setting but the number of epochs must agree."""
    def plain(d):
        return json.loads(json.dumps(d, default=str))

    saved, current = plain(saved), plain(current)
    differ = [f"{k} {saved.get(k)!r} -> {current.get(k)!r}" for k in sorted(set(saved) | set(current))
              if k not in ("epochs", "workers") and saved.get(k) != current.get(k)]
    if differ:
        raise InputError(f"{checkpoint}: cannot resume with other settings ({'; '.join(differ)}); "
                         "use the run's settings, or start over")
