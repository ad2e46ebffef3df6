"""SGD with momentum and weight decay, in place, on the CPU (reference and math:
``minicnn/optim.py``): one pass over the parameter instead of the reference's four."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, fastmath=False, cache=True)
def _sgd_update(param, grad, velocity, lr, momentum, weight_decay):
    for t in prange(param.size):
        v = velocity[t] * momentum - lr * (grad[t] + weight_decay * param[t])
        velocity[t] = v
        param[t] += v


def sgd_update(param, grad, velocity, lr, momentum, weight_decay):
    if not (param.flags.c_contiguous and velocity.flags.c_contiguous):
        # in place on a strided view: update contiguous copies and write them back
        p, v = np.ascontiguousarray(param), np.ascontiguousarray(velocity)
        sgd_update(p, grad, v, lr, momentum, weight_decay)
        param[...], velocity[...] = p, v
        return
    # the scalars in the parameter's precision, so float32 arithmetic matches numpy's
    scalar = param.dtype.type
    _sgd_update(param.reshape(-1), np.ascontiguousarray(grad, dtype=param.dtype).reshape(-1),
                velocity.reshape(-1), scalar(lr), scalar(momentum), scalar(weight_decay))
