import numpy as np
import pytest

import minicnn as mc


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
