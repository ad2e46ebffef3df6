"""Training on labelled patches, and the patch probabilities that scoring aggregates.

Every variant trains through :func:`minicnn.training.fit` (the loop source training uses):
the adaptation layers on cached FC7 (or C5) features, or whole networks on patch pixels.
What differs is only ``inputs_of(patches)``, the network input of the chosen patches (rows
of a feature cache, or rendered pixels).

Each epoch keeps every object patch and a fresh random fraction of the background patches
(docs/method.md section 5; ``balance="reweight"`` instead uses every patch and weighs background
by that fraction), shuffles, and runs SGD; the draw and the order come from
``(seed, epoch)`` alone, so a resumed run repeats the uninterrupted one.

Under MPI (``minicnn.distributed``) every rank draws the same epoch and takes its slice of
each batch; patch probabilities are computed in whole batches spread over the ranks and
gathered, so every rank holds all of them, equal to one process's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minicnn import backend, distributed
from minicnn.data.loader import ordered_map
from minicnn.errors import InputError
from minicnn.evaluate.ap import METRICS
from minicnn.losses import softmax
from minicnn.training import SGDSettings, check_range, epoch_rng, fit
from minicnn.transfer.labels import background_weights, resample_background
from minicnn.transfer.scores import DEFAULT_K

BALANCES = ("resample", "reweight")


@dataclass
class TrainSettings(SGDSettings):
    background_fraction: float = 0.1   # docs/method.md 5: a fresh 10% of the background each epoch
    balance: str = "resample"          # or "reweight"
    k: float = DEFAULT_K               # the power of the aggregation mean(p^k)
    metric: str = "voc07"

    def __post_init__(self):
        super().__post_init__()
        if self.balance not in BALANCES:
            raise InputError(f"--balance must be one of {', '.join(BALANCES)}, got {self.balance!r}")
        if self.metric not in METRICS:
            raise InputError(f"--metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        check_range(self, "background_fraction", low=0, high=1, low_open=True, option="--background")
        check_range(self, "k", low=0, low_open=True, option="-k")


def prefetched(inputs_of, batches):
    """(indices, inputs) of each batch, the next one prepared in a background thread while
    the network computes on the current one."""
    # a rank's slice of a batch may be empty (fewer patches than ranks): nothing to read
    return ordered_map(lambda idx: (idx, inputs_of(idx) if len(idx) else None), batches, workers=1,
                       prefetch=2)


def patch_probabilities(net, inputs_of, patches, batch_size=256):
    """(len(patches), K) softmax outputs of the patches ``patches`` (evaluation mode)."""
    out = []
    batches = [patches[s : s + batch_size] for s in range(0, len(patches), batch_size)]
    batches = batches[distributed.shard(len(batches))]  # whole batches per rank: one process's sums
    for _, x in prefetched(inputs_of, batches):
        scores = net.forward(backend.asarray(x), train=False, keep_for_backward=False)
        out.append(backend.to_numpy(softmax(scores)))
    if distributed.world().size > 1:
        last = net.layers[-1]  # the classifier: an empty part still has the rows' width and type
        empty = np.zeros((0, last.out_features), last.dtype)
        return distributed.gather_rows(np.concatenate(out) if out else empty)
    return np.concatenate(out) if out else np.zeros((0, 0))


def epoch_patches(labels, background, settings: TrainSettings, epoch):
    """Positions (into ``labels``) of the patches epoch ``epoch`` trains on, in its order."""
    rng = epoch_rng(settings.seed, epoch)
    if settings.balance == "resample":
        chosen = resample_background(labels, background, settings.background_fraction, rng)
    else:
        chosen = np.flatnonzero(labels >= 0)
    return rng.permutation(chosen)


def train_patches(net, inputs_of, labels, background, settings: TrainSettings, validate=None,
                  checkpoint=None, resume=False, log=print, desc="train"):
    """Train ``net`` (its trainable layers) on patches with ``labels`` (-1 = discarded,
    ``background`` = background class); ``inputs_of(positions)`` gives the network input of
    the patches at those positions of ``labels``. ``validate(net) -> {"val_map": ...}`` runs
    after each epoch and drives the plateau schedule. Returns the history."""
    labels = np.asarray(labels)
    weights = (background_weights(labels, background, settings.background_fraction)
               if settings.balance == "reweight" else None)

    def epoch_batches(epoch):
        chosen = epoch_patches(labels, background, settings, epoch)
        batches = [chosen[s : s + settings.batch_size] for s in range(0, len(chosen), settings.batch_size)]
        batches = [b[distributed.shard(len(b))] for b in batches]  # this rank's slice (one process: all)
        return len(batches), ((x, labels[idx], None if weights is None else weights[idx])
                              for idx, x in prefetched(inputs_of, batches))

    return fit(net, epoch_batches, settings, validate=validate, monitor="val_map", mode="max",
               checkpoint=checkpoint, resume=resume, log=log, desc=desc)
