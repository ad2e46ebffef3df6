"""Shared pieces of the cuda backend tests (tests/test_cuda_*.py).

Without a GPU, tests/conftest.py turns on Numba's CUDA simulator, so the "cuda" backend
runs its numba.cuda kernels on NumPy arrays; with a GPU the same tests run on it, and the
``gpu``-marked ones (realistic sizes) run too.
"""

import numpy as np
import pytest

import minicnn as mc
from minicnn.backend import BackendUnavailable, backend_named

# float32 and float64 tolerances of the issue: relative to the largest reference entry, so
# that entries near zero are held to the same absolute accuracy
RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}


def cuda_backend():
    """Make "cuda" current and return it; skip (saying why) where it cannot run."""
    try:
        backend_named("cuda")
    except BackendUnavailable as e:
        pytest.skip(f"cuda backend unavailable: {e}")
    return mc.set_backend("cuda")


def real_gpu() -> bool:
    try:
        return not backend_named("cuda").simulated
    except BackendUnavailable:
        return False


def assert_close(actual, expected, rtol=None):
    actual, expected = mc.to_numpy(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    rtol = RTOL[expected.dtype] if rtol is None else rtol
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)
