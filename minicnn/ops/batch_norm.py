"""Batch normalisation over the channels of (N, C, H, W) (Ioffe & Szegedy 2015; PyTorch's
BatchNorm2d). With gamma (weight), beta (bias), eps, over the M = N*H*W values of channel c:

    training:    mu = mean(x), var = mean((x - mu)^2)   (the batch's, biased)
    evaluation:  mu, var = the running statistics
    xhat = (x - mu) / sqrt(var + eps),   y = gamma xhat + beta

Evaluation is one per-channel affine map, y = x s + t with s = gamma / sqrt(var + eps) and
t = beta - mu s (:func:`channel_affine`, the hot path). Training updates the running
statistics with momentum m (PyTorch's convention): running = (1 - m) running + m batch,
the variance unbiased there (var * M / (M - 1)). Backward:

    evaluation:  dx = dy s
    training:    dx = (1 / sqrt(var + eps)) (dxhat - mean(dxhat) - xhat mean(dxhat xhat)),
                 dxhat = gamma dy
    dgamma = sum(dy xhat),   dbeta = sum(dy)      (sums over n, h, w)
"""

from __future__ import annotations

from minicnn.backend import array_module, hot_path

AXES = (0, 2, 3)


def _per_channel(v):
    return v.reshape(1, -1, 1, 1)


@hot_path
def channel_affine(x, scale, shift):
    """y[n, c, h, w] = x[n, c, h, w] * scale[c] + shift[c]."""
    return x * _per_channel(scale) + _per_channel(shift)


def batch_norm_forward(x, gamma, beta, mean, var, eps):
    """(y, xhat, inv_std) with the given statistics (the batch's or the running ones)."""
    xp = array_module(x)
    inv_std = 1.0 / xp.sqrt(var + eps)
    xhat = (x - _per_channel(mean)) * _per_channel(inv_std)
    return xhat * _per_channel(gamma) + _per_channel(beta), xhat, inv_std


def batch_moments(x):
    """(mean, biased variance) per channel."""
    mean = x.mean(axis=AXES)
    return mean, ((x - _per_channel(mean)) ** 2).mean(axis=AXES)


def batch_norm_backward(dy, xhat, gamma, inv_std, batch_stats, need_dx=True):
    """(dx, dgamma, dbeta); ``batch_stats``: whether the forward normalised by the batch's
    own statistics (training), so that they depend on x."""
    dgamma, dbeta = (dy * xhat).sum(axis=AXES), dy.sum(axis=AXES)
    if not need_dx:
        return None, dgamma, dbeta
    if not batch_stats:
        return dy * _per_channel(gamma * inv_std), dgamma, dbeta
    M = dy.size // dy.shape[1]
    dxhat = dy * _per_channel(gamma)
    dx = (dxhat - _per_channel(dbeta * gamma / M) - xhat * _per_channel(dgamma * gamma / M)) \
        * _per_channel(inv_std)
    return dx, dgamma, dbeta
