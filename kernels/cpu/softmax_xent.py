"""Softmax cross-entropy on the CPU (reference and math: ``minicnn/ops/softmax_xent.py``).

One thread per row computes the row's loss term and gradient with the reference's order
of operations (in float64 within the row); the mean over rows is numpy's, as in the
reference, so the loss is reduced in a fixed order.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


@njit(parallel=True, fastmath=False, cache=True)
def _softmax_xent(logits, labels, weights, use_weights, nll, grad):
    n, K = logits.shape
    for r in prange(n):
        top = logits[r, 0]
        for k in range(1, K):
            top = max(top, logits[r, k])
        total = 0.0
        for k in range(K):
            e = math.exp(np.float64(logits[r, k] - top))
            grad[r, k] = e
            total += e
        t = labels[r]
        nll[r] = math.log(total) - (logits[r, t] - top)
        for k in range(K):
            g = grad[r, k] / total
            if k == t:
                g -= 1.0
            if use_weights:
                grad[r, k] = g * (weights[r] / n)
            else:
                grad[r, k] = g / n


def softmax_xent(logits, labels, weights):
    logits = np.ascontiguousarray(logits)
    n = logits.shape[0]
    nll = np.empty(n, dtype=logits.dtype)
    grad = np.empty_like(logits)
    use_weights = weights is not None
    w = np.ascontiguousarray(weights, dtype=logits.dtype) if use_weights else np.ones(1, logits.dtype)
    _softmax_xent(logits, np.ascontiguousarray(labels, dtype=np.int64), w, use_weights, nll, grad)
    if use_weights:
        return (w * nll).mean(), grad
    return nll.mean(), grad
