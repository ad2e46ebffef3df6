"""minicnn: a from-scratch CNN engine (NumPy reference, Numba CPU, numba.cuda GPU) and the
mid-level transfer method of Oquab, Bottou, Laptev and Sivic (CVPR 2014)."""

from minicnn import gradcheck, layers, losses, models, optim
from minicnn.backend import (
    BackendUnavailable,
    asarray,
    get_backend,
    seed,
    set_backend,
    to_numpy,
)
from minicnn.errors import InputError
from minicnn.net import Join, Sequential

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailable",
    "InputError",
    "Join",
    "Sequential",
    "asarray",
    "get_backend",
    "gradcheck",
    "layers",
    "losses",
    "models",
    "optim",
    "seed",
    "set_backend",
    "to_numpy",
]
