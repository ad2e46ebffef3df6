"""Softmax cross-entropy, averaged over the batch, with optional per-sample weights.

For logits z (N, K), labels t (N,) and weights w (N,) (all 1 by default):

    log p[n, k] = z[n, k] - logsumexp(z[n])           (logsumexp computed stably)
    loss        = (1/N) sum_n w[n] * (-log p[n, t[n]])
    dz[n, k]    = (w[n] / N) * (p[n, k] - [k = t[n]])
"""

from __future__ import annotations

import numpy as np

from minicnn.backend import array_module, hot_path


@hot_path
def softmax_xent(logits, labels, weights):
    """Return (loss as a 0-d array, dlogits); ``weights`` may be None."""
    xp = array_module(logits)
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = xp.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    rows = xp.arange(n)
    nll = xp.log(total[:, 0]) - shifted[rows, labels]
    grad = exp / total
    grad[rows, labels] -= 1
    if weights is None:
        return nll.mean(), grad / n
    return (weights * nll).mean(), grad * (weights[:, None] / n)


def softmax(logits):
    """Row-wise softmax, stable."""
    xp = array_module(logits)
    e = xp.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_cross_entropy(logits, labels, weights=None):
    """Return (loss, dlogits): mean (optionally weighted) cross-entropy and its gradient.

    The loss is a 0-d array of the logits' backend (``float(loss)`` reads it; on a GPU
    that waits for the device, so training loops read it only when they report).

    ``labels`` are class indices in [0, K); ``weights`` a per-sample weight or None.
    Raises ValueError on shapes or labels that do not fit the logits. Labels given on the
    host are range-checked there; labels already on a GPU are not (reading them would wait
    for the device at every step): there a label out of range makes the loss NaN.
    """
    xp = array_module(logits)
    if logits.ndim != 2:
        raise ValueError(f"softmax_cross_entropy: logits must be (N, K), got shape {logits.shape}")
    n, k = logits.shape
    on_host = array_module(labels) is np
    labels = np.asarray(labels) if on_host else labels
    if labels.shape != (n,):
        raise ValueError(f"softmax_cross_entropy: labels must have shape ({n},), got {labels.shape}")
    if on_host and n and (int(labels.min()) < 0 or int(labels.max()) >= k):
        raise ValueError(f"softmax_cross_entropy: labels must lie in [0, {k}), "
                         f"got range [{int(labels.min())}, {int(labels.max())}]")
    labels = xp.asarray(labels).astype(xp.int64, copy=False)
    if weights is not None:
        weights = xp.asarray(weights, dtype=logits.dtype)
        if weights.shape != (n,):
            raise ValueError(f"softmax_cross_entropy: weights must have shape ({n},), "
                             f"got {weights.shape}")
    return softmax_xent(logits, labels, weights)
