"""Launching numba.cuda kernels on CuPy arrays, on CuPy's current stream, or in Numba's simulator.

On a GPU a CuPy array reaches a kernel through ``__cuda_array_interface__`` with
``sync=False``: the kernel runs on the stream CuPy is using, so it is already ordered after
the work that produced the array, and a sync there would make the host wait at every
launch. Under ``NUMBA_ENABLE_CUDASIM=1`` the same kernels run on NumPy arrays.

Every kernel walks its work with a grid-stride loop, so any grid covers any size: on a GPU
the grid is sized to the work; in the simulator, where each thread is a Python thread, a
grid of two small blocks whose threads stride over the work is far faster, and two blocks
still exercise the block arithmetic.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

# numba.cuda decides once, when first imported, whether it is the simulator; its API module
# says which (numba.cuda.simulator.api under the simulator).
SIMULATED = "simulator" in cuda.jit.__module__

THREADS = 8 if SIMULATED else 256          # threads per block for element-wise kernels
MAX_BLOCKS = 2 if SIMULATED else 65535     # grid-stride loops take whatever is beyond
ROW_THREADS = 8 if SIMULATED else 128      # threads per block for row reductions (power of 2)

_streams: dict = {}


def current_stream():
    """CuPy's current stream as a Numba stream (0, the default, under the simulator)."""
    if SIMULATED:
        return 0
    import cupy

    ptr = cupy.cuda.get_current_stream().ptr
    stream = _streams.get(ptr)
    if stream is None:
        # ptr 0 is the legacy default stream, which Numba names itself
        stream = cuda.legacy_default_stream() if ptr == 0 else cuda.external_stream(ptr)
        _streams[ptr] = stream
    return stream


def _kernel_arg(a):
    if SIMULATED or not hasattr(a, "__cuda_array_interface__"):
        return a
    return cuda.as_cuda_array(a, sync=False)


def launch(kernel, work: int, *args, threads: int = THREADS):
    """Run ``kernel`` over ``work`` items (its grid-stride loop covers them) on the current stream."""
    if work <= 0:
        return
    blocks = max(1, min(-(-work // threads), MAX_BLOCKS))
    kernel[blocks, threads, current_stream()](*(_kernel_arg(a) for a in args))


def launch_rows(kernel, rows: int, *args):
    """Run ``kernel`` with one block of ROW_THREADS threads per row (grid-stride over rows)."""
    if rows <= 0:
        return
    blocks = min(rows, MAX_BLOCKS)
    kernel[blocks, ROW_THREADS, current_stream()](*(_kernel_arg(a) for a in args))


def scalar(value, dtype):
    """``value`` as a scalar of the array dtype, so float32 kernels compute in float32 as the
    NumPy reference does with Python-float scalars."""
    return np.dtype(dtype).type(value)


def flat(a, what: str):
    """A 1-D view of a C-contiguous array that a kernel updates in place."""
    if not a.flags.c_contiguous:
        raise ValueError(f"{what} must be C-contiguous to be updated in place, got strides {a.strides}")
    return a.reshape(-1)
