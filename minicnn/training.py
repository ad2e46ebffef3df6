"""The one training loop: SGD epochs with a plateau schedule, NaN check, checkpoint and resume.

Source training (``minicnn.pretrain``) and the adaptation layers (``minicnn.transfer``) both
run :func:`fit`; they differ only in the batches of an epoch and in what validation
measures. Everything random in an epoch is a function of ``(seed, epoch)`` (the batches'
order and background draw, which the caller derives from :func:`epoch_rng`) and of
``(seed, epoch, step)`` (the dropout masks: the backend's generator is reseeded before each
step), so a run resumed from the checkpoint of epoch e computes exactly the epochs the
uninterrupted run computes after e, bit for bit on the same backend.

Under MPI (``minicnn.distributed``) each rank gets its slice of every global batch from
``epoch_batches``; the dropout masks are those of the global batch, each slice's loss
gradient is scaled by its share of the global batch and the gradients are summed over the
ranks before the step, so every rank takes the step one process takes on the whole batch,
and the run does not depend on the number of ranks, to float rounding: a slice's forward and
backward round differently from the whole batch's, and over an epoch a 1-ulp difference can
flip a max pool's choice between equal activations and grow. ``batch_parts=P`` makes the
run independent of N bit for bit, for every N that divides P: each global batch is computed
in P fixed parts (each rank computes its P/N of them), whose gradients are summed in
float64, where the sum of a few float32 numbers is exact whatever its order, and rounded
once to float32. Rank 0 alone writes the checkpoint.

The checkpoint (written atomically after every epoch) holds the network, the optimizer's
velocities and learning rate, the schedule's state, the history and the settings; a resume
with different settings (other than a larger number of epochs) is refused, naming them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass

import numpy as np

from minicnn import backend, distributed
from minicnn.checkpoint import load_checkpoint, save_checkpoint
from minicnn.errors import InputError
from minicnn.layers import BatchNorm2D
from minicnn.losses import softmax_cross_entropy
from minicnn.ops.dropout import global_batch
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
    # compute each global batch in this many fixed parts (None: one per rank), see the module
    batch_parts: int | None = None

    def __post_init__(self):
        check_range(self, "epochs", low=1, integer=True)
        check_range(self, "batch_size", low=1, integer=True)
        check_range(self, "lr", low=0, low_open=True)
        check_range(self, "momentum", low=0, high=1, high_open=True)
        check_range(self, "weight_decay", low=0)
        check_range(self, "lr_factor", low=0, high=1, low_open=True)
        check_range(self, "lr_patience", low=0, integer=True)
        if self.batch_parts is not None:
            check_range(self, "batch_parts", low=1, high=self.batch_size, integer=True)
            ranks = distributed.world().size
            if self.batch_parts % ranks:
                raise InputError(f"--batch-parts {self.batch_parts} must be a multiple of the {ranks} ranks, "
                                 "so that every rank computes whole parts")


def add_sgd_arguments(p, defaults: SGDSettings):
    """The options of the SGD recipe that pretrain and transfer share, their defaults from ``defaults``."""
    p.add_argument("--epochs", type=int, default=defaults.epochs,
                   help="passes over the training set")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size,
                   help="samples per SGD step")
    p.add_argument("--batch-parts", type=int, default=None, metavar="P",
                   help="compute each batch in P fixed parts whose gradients are summed in float64 "
                        "(default: one part per MPI rank): then runs with any number of ranks that "
                        "divides P give the same weights, bit for bit")
    p.add_argument("--lr", type=float, default=defaults.lr, help="learning rate")
    p.add_argument("--weight-decay", type=float, default=defaults.weight_decay,
                   help="L2 weight decay of SGD")


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
    world = distributed.world()
    if world.size > 1:
        distributed.check_same("training settings", asdict(settings))
        distributed.check_same("starting points (is the checkpoint on a file system every rank reads?)",
                               _state_digest(net, opt, start))
    # a global step of several passes (parts, ranks) updates the running statistics once
    norms = [layer for _, layer in net.named_layers() if isinstance(layer, BatchNorm2D) and not layer.frozen
             ] if world.size > 1 or settings.batch_parts else []
    for epoch in range(start, settings.epochs):
        started = time.perf_counter()
        distributed.stats.update(allreduce_seconds=0.0, allreduces=0)
        count, batches = epoch_batches(epoch)
        total, samples, step = None, 0, 0
        if world.is_root:
            batches = progress_bar(batches, total=count, desc=f"{desc} epoch {epoch + 1} batches", log=log,
                                   every_fraction=0.25)
        for x, labels, weights in batches:
            n = len(labels)
            first, rows = distributed.global_rows(n)  # (0, n) in a single process
            if rows == 0:  # every image of this global batch was unreadable (--skip-bad)
                continue
            sums = {} if settings.batch_parts else None  # float64 gradient sums over the parts
            with _one_statistics_update(norms):
                for a, b in batch_pieces(first, n, rows, settings.batch_parts):
                    # every part draws the global batch's masks afresh and keeps its rows
                    backend.seed_stream(settings.seed, _DROPOUT, epoch, step)
                    masks = global_batch(a, rows) if b - a != rows else contextlib.nullcontext()
                    with masks:
                        logits = net.forward(backend.asarray(x[a - first : b - first]), train=True)
                    loss, dlogits = softmax_cross_entropy(
                        logits, labels[a - first : b - first],
                        None if weights is None else backend.asarray(weights[a - first : b - first]))
                    if b - a != rows:  # this part's share of the mean over the global batch
                        dlogits = dlogits * ((b - a) / rows)
                    net.backward(dlogits)
                    if sums is not None:
                        _add_gradients(net, sums)
                    # the loss stays on the device until the epoch ends
                    total = loss * (b - a) if total is None else total + loss * (b - a)
            samples += n
            step += 1
            if sums is not None:
                _put_sums(net, sums)
                distributed.allreduce_gradients(net)
                for layer in net.trainable_layers():  # the float64 sum, rounded once
                    for key, param in layer.params.items():
                        layer.grads[key] = layer.grads[key].astype(param.dtype)
            else:
                distributed.allreduce_gradients(net, computed=n > 0)
            opt.step()
            if epoch == start and step == 2:
                warm = time.perf_counter()  # the first steps also load or compile the kernels
            if epoch == start and step == max(6, count // 10) and world.is_root and count > step:
                # know beforehand what the run will take: the rate of its first batches
                per_epoch = (time.perf_counter() - warm) / (step - 2) * count
                log(f"{desc}: {count} batches per epoch; at the first batches' rate about "
                    f"{per_epoch:.0f} s per epoch, {per_epoch * (settings.epochs - start) / 60:.1f} min for "
                    f"the {settings.epochs - start} epochs to go (validation not counted)")
        if world.size > 1:
            total, samples = distributed.sum_values([0.0 if total is None else float(total), samples])
            samples = int(samples)
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
        reduced = distributed.stats
        exchange = (f", all-reduce {1e3 * reduced['allreduce_seconds'] / reduced['allreduces']:.1f} ms/step "
                    f"over {world.size} ranks" if reduced["allreduces"] else "")
        log(f"{desc} epoch {epoch + 1}/{settings.epochs}: loss {mean_loss:.4f} on {samples} samples"
            + (f", {figures}" if figures else "") + f", lr {record['lr']:g}, {record['seconds']:.1f} s"
            + exchange)
        if checkpoint and world.is_root:
            save_checkpoint(checkpoint, net, opt, {
                "epoch": epoch + 1, "history": history, "schedule": [schedule.best, schedule.bad_epochs],
                "settings": asdict(settings)})
    return history


def batch_pieces(first, n, rows, parts):
    """The rows ``[a, b)`` of a global batch of ``rows`` that this rank computes, one forward
    and backward each: its slice ``[first, first + n)`` whole (``parts`` None), or cut at the
    boundaries of ``parts`` equal parts of the global batch (with a number of ranks dividing
    ``parts``, the slices are whole parts)."""
    if parts is None:
        return [(first, first + n)] if n else []
    cuts = sorted({first, first + n} | {rows * j // parts for j in range(parts)
                                        if first < rows * j // parts < first + n})
    return [(a, b) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


@contextlib.contextmanager
def _one_statistics_update(norms):
    """While the block runs the passes of a global step, the batch
    normalisations ``norms`` keep their moments in ``pending``; after it, one update from all
    of them (:func:`_update_running_statistics`). Whatever happens, they update at once again
    afterwards."""
    for layer in norms:
        layer.pending = []
    try:
        yield
        _update_running_statistics(norms)
    finally:
        for layer in norms:
            layer.pending = None


def _update_running_statistics(norms):
    """One update of each training batch normalisation's running statistics per global step,
    from the moments of the whole global batch: every pass's, on every rank, gathered in the
    order of their rows (each rank's slice is contiguous, its parts in order) and pooled in
    float64 (mean: weighted by the values; variance: within plus between the passes). The
    same passes in the same order give the same bytes, whatever the number of ranks."""
    if not norms:
        return
    mine = [[(m, backend.to_numpy(mean).astype(np.float64), backend.to_numpy(var).astype(np.float64))
             for m, mean, var in layer.pending] for layer in norms]
    ranks = distributed.allgather(mine)
    for j, layer in enumerate(norms):
        passes = [p for rank in ranks for p in rank[j]]
        if not passes:
            return
        counts = np.array([m for m, _, _ in passes], dtype=np.float64)[:, None]
        means = np.stack([mean for _, mean, _ in passes])
        variances = np.stack([var for _, _, var in passes])
        total = counts.sum()
        mean = (counts * means).sum(axis=0) / total
        var = (counts * (variances + (means - mean) ** 2)).sum(axis=0) / total
        layer.update_running(backend.asarray(mean.astype(layer.dtype)),
                             backend.asarray((var * (total / (total - 1))).astype(layer.dtype)))


def _add_gradients(net, sums):
    """Add the trainable layers' gradients to their float64 ``sums`` (keyed by layer and parameter)."""
    for i, layer in enumerate(net.trainable_layers()):
        for key in layer.params:
            g = layer.grads[key].astype(np.float64)
            sums[i, key] = g if (i, key) not in sums else sums[i, key] + g


def _put_sums(net, sums):
    """The float64 ``sums`` in place of the gradients (zeros where this rank computed none)."""
    for i, layer in enumerate(net.trainable_layers()):
        for key, param in layer.params.items():
            if (i, key) not in sums:
                sums[i, key] = backend.array_module(param).zeros(param.shape, np.float64)
            layer.grads[key] = sums[i, key]


def _state_digest(net, opt, epoch):
    """What every rank must start from: the epoch, the weights (with batch normalisation's
    running statistics) and the velocities."""
    h = hashlib.sha1(str(epoch).encode())
    for p in net.named_arrays().values():
        h.update(np.ascontiguousarray(backend.to_numpy(p)).tobytes())
    for key in sorted(opt.velocity):
        h.update(key.encode() + np.ascontiguousarray(backend.to_numpy(opt.velocity[key])).tobytes())
    return h.hexdigest()


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
