import numpy as np
import pytest

import minicnn as mc


# --- cuda backend: Numba's CUDA simulator when no GPU is usable (issue 4) -------------------
def _simulate_cuda_without_gpu():
    """numba.cuda picks the simulator or the GPU once, when first imported, from numba's
    config, which reads NUMBA_ENABLE_CUDASIM. Without CuPy and a GPU, set it so that the
    "cuda" backend's kernels run in the simulator on NumPy arrays (tests/test_cuda_*.py,
    tiny shapes); with a GPU they run on it. A value set from outside is kept."""
    import os
    import sys

    if "NUMBA_ENABLE_CUDASIM" in os.environ:
        return
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            return
    except Exception:  # no CuPy, no driver or no GPU
        pass
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    if "numba" in sys.modules and "numba.cuda" not in sys.modules:
        sys.modules["numba"].config.reload_config()


_simulate_cuda_without_gpu()
# --- end of the cuda block ---------------------------------------------------------------


@pytest.fixture(autouse=True)
def _reset_backend_and_seed():
    """Every test starts on the numpy reference backend with seed 0 (MatConvNet resets its
    seed per test too), and leaves the backend as it found it."""
    mc.set_backend("numpy")
    mc.seed(0)
    yield
    mc.set_backend("numpy")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
