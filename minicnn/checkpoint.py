"""Training checkpoints: network, optimizer state and loop state in one atomically written .npz.

Written to a temporary file and renamed, so a killed run never leaves a broken checkpoint;
``load_checkpoint`` restores all three so that ``--resume`` continues where the run stopped.
"""

from __future__ import annotations

import json

import numpy as np

from minicnn import backend
from minicnn.errors import InputError
from minicnn.net import ARCH_KEY, Sequential, atomic_savez, read_npz

STATE_KEY = "__training_state__"


def save_checkpoint(path, net, opt=None, state=None):
    """``state``: a JSON-able dict (epoch, history, generator state, ...)."""
    arrays = {name: backend.to_numpy(p) for name, p in net.named_arrays().items()}
    arrays[ARCH_KEY] = np.array(json.dumps(net.architecture()))
    if opt is not None:
        for key, value in opt.state_dict().items():
            arrays[f"__optim__/{key}"] = np.asarray(value)
    arrays[STATE_KEY] = np.array(json.dumps(state or {}))
    atomic_savez(path, arrays)


def load_checkpoint(path, net=None, opt=None):
    """Return (net, state): the network built from the file (or ``net`` filled from it), the
    optimizer's state restored into ``opt`` when given, and the loop state dict."""
    arrays = read_npz(path)
    net = Sequential.load(path) if net is None else net.load(path, strict=True)
    if opt is not None:
        opt.load_state_dict({k[len("__optim__/"):]: (v if v.ndim else v.item())
                             for k, v in arrays.items() if k.startswith("__optim__/")})
    try:
        state = json.loads(str(arrays[STATE_KEY])) if STATE_KEY in arrays else {}
    except ValueError as e:
        raise InputError(f"{path}: the training state is not readable ({e}); start over with "
                         "--fresh") from None
    return net, state
