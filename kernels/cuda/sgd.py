"""SGD update on the GPU, in place, one thread per parameter (math: ``minicnn.optim``)."""

from __future__ import annotations

from numba import cuda

from minicnn.backend import array_module

from .launch import flat, launch, scalar


@cuda.jit
def _sgd_update(param, grad, velocity, lr, momentum, weight_decay):
    for i in range(cuda.grid(1), param.size, cuda.gridsize(1)):
        # the reference's order of operations: v *= m; v -= lr * (g + wd * w); w += v
        v = velocity[i] * momentum
        v = v - lr * (grad[i] + weight_decay * param[i])
        velocity[i] = v
        param[i] = param[i] + v


def sgd_update(param, grad, velocity, lr, momentum, weight_decay):
    """In place: velocity = momentum*velocity - lr*(grad + weight_decay*param); param += velocity."""
    xp = array_module(param)
    dtype = param.dtype
    launch(_sgd_update, param.size, flat(param, "sgd_update: param"),
           xp.ascontiguousarray(grad).reshape(-1), flat(velocity, "sgd_update: velocity"),
           scalar(lr, dtype), scalar(momentum, dtype), scalar(weight_decay, dtype))
