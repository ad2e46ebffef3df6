"""Backend selection: which array library holds the tensors and which kernels run the hot paths.

| name    | arrays                          | hot paths                                  |
|---------|---------------------------------|--------------------------------------------|
| "numpy" | numpy                           | the reference code written in each op      |
| "cpu"   | numpy                           | Numba kernels from ``minicnn.kernels.cpu`` |
| "cuda"  | cupy (numpy under the simulator)| numba.cuda kernels, ``minicnn.kernels.cuda``|

Every op writes its math once with ``xp`` (numpy or cupy). A function marked ``@hot_path``
is the NumPy reference of a hot spot; when the current backend's kernel module exports a
function of the same name, that kernel runs instead, with the same arguments and result.
Nothing falls back silently from one backend to another: asking for a backend that cannot
run raises :class:`BackendUnavailable` saying what is missing.
"""

from __future__ import annotations

import ctypes.util
import functools
import importlib
import os

import numpy as np

BACKENDS = ("numpy", "cpu", "cuda")


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (message says what is missing)."""


class Backend:
    """One backend: its name, its array module ``xp``, its kernels and its random generator.

    ``activate``, if given, is called when the backend becomes the current one and returns
    the callable that undoes it, called when another backend takes over (the cpu backend
    keeps the BLAS single-threaded meanwhile: it runs its own threads, see
    ``kernels/cpu/gemm.py``)."""

    def __init__(self, name: str, xp, kernels: dict, activate=None):
        self.name = name
        self.xp = xp
        self.kernels = kernels
        self.rng = None  # set by seed(); draws on the backend's own device
        self.simulated = False
        self.activate = activate
        self.deactivate = None

    def __repr__(self):
        return f"Backend({self.name!r})"


def _load_kernels(module_name: str) -> dict:
    module = importlib.import_module(module_name)
    return {name: getattr(module, name) for name in getattr(module, "__all__", ())}


def _make_numpy():
    return Backend("numpy", np, {})


def _make_cpu():
    try:
        kernels = _load_kernels("minicnn.kernels.cpu")
    except ImportError as e:  # numba missing or broken
        raise BackendUnavailable(f"backend 'cpu' needs numba: {e}") from e
    if not kernels:
        raise BackendUnavailable("backend 'cpu' has no kernels built yet")
    from minicnn.kernels.cpu.gemm import single_threaded_blas

    return Backend("cpu", np, kernels, activate=single_threaded_blas)


GPU_INSTALL_HINT = ("install the gpu extra: pip install 'minicnn[gpu]' (CuPy for CUDA 12; "
                    "for a CUDA 13 driver install cupy-cuda13x instead)")
SIMULATOR_HINT = ("or set NUMBA_ENABLE_CUDASIM=1 before anything imports numba to run the CUDA "
                  "kernels in Numba's simulator on NumPy arrays (slow; for tests)")


def _check_gpu():
    """Return cupy if it can run on a GPU here, else raise BackendUnavailable saying what is
    missing: CuPy, a working NVIDIA driver, or a GPU."""
    try:
        import cupy
    except ImportError as e:
        raise BackendUnavailable(f"backend 'cuda' needs CuPy, which is not installed ({e}): "
                                 f"{GPU_INSTALL_HINT}; {SIMULATOR_HINT}") from e
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDARuntimeError, or a missing libcuda/libcudart
        status = getattr(e, "status", None)
        if status == 100:  # cudaErrorNoDevice
            raise BackendUnavailable(f"backend 'cuda': no CUDA GPU found ({e}); {SIMULATOR_HINT}") from e
        if status == 35 and ctypes.util.find_library("cuda") is None:
            # the CUDA runtime says "insufficient driver" also when there is none at all
            raise BackendUnavailable(f"backend 'cuda': no NVIDIA driver found (libcuda is missing; "
                                     f"{e}): install the NVIDIA driver, then {GPU_INSTALL_HINT}; "
                                     f"{SIMULATOR_HINT}") from e
        if status == 35:  # cudaErrorInsufficientDriver
            raise BackendUnavailable(f"backend 'cuda': the NVIDIA driver is too old for this CuPy "
                                     f"build ({e}): update the driver or {GPU_INSTALL_HINT}") from e
        raise BackendUnavailable(f"backend 'cuda': no usable NVIDIA driver ({type(e).__name__}: {e}); "
                                 f"install the NVIDIA driver, then {GPU_INSTALL_HINT}; "
                                 f"{SIMULATOR_HINT}") from e
    if count == 0:
        raise BackendUnavailable(f"backend 'cuda': no CUDA GPU found; {SIMULATOR_HINT}")
    return cupy


def _check_numba_cuda_typing():
    """Load numba.cuda's typing of NumPy, which its first kernel compilation would load, so that
    a numba-cuda too old for this numpy fails here, saying so, and not inside a training step.
    (numba-cuda 0.30.4 types np.row_stack, which numpy 2.5 removed.)"""
    try:
        from numba.cuda.descriptor import cuda_target

        cuda_target.typing_context.refresh()
    except Exception as e:
        try:
            from importlib.metadata import version

            numba_cuda = f"numba-cuda {version('numba-cuda')}"
        except Exception:
            numba_cuda = "numba.cuda"
        raise BackendUnavailable(
            f"backend 'cuda': {numba_cuda} cannot compile kernels with numpy {np.__version__} "
            f"({type(e).__name__}: {e}); install a numpy it supports (for numba-cuda 0.30: "
            "pip install 'numpy<2.5') or a newer numba-cuda") from e


def _make_cuda():
    wants_simulator = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1"
    xp = np if wants_simulator else _check_gpu()
    try:
        kernels = _load_kernels("minicnn.kernels.cuda")
        from minicnn.kernels.cuda.launch import SIMULATED
    except ImportError as e:  # numba (or numba-cuda) missing or broken
        raise BackendUnavailable(f"backend 'cuda' could not load its numba.cuda kernels: {e}") from e
    if SIMULATED != wants_simulator:
        raise BackendUnavailable(
            f"backend 'cuda': NUMBA_ENABLE_CUDASIM is {os.environ.get('NUMBA_ENABLE_CUDASIM')!r} now "
            f"but numba.cuda was imported {'with' if SIMULATED else 'without'} the simulator; set "
            "the variable before anything imports numba")
    if not SIMULATED:
        from numba import cuda

        if not cuda.is_available():
            raise BackendUnavailable("backend 'cuda': CuPy sees a GPU but numba.cuda cannot use it "
                                     "(run `python -c 'from numba import cuda; cuda.detect()'`); "
                                     "numba needs the CUDA driver and, for CUDA 12+, numba-cuda")
        _check_numba_cuda_typing()
    if not kernels:
        raise BackendUnavailable("backend 'cuda' has no kernels built yet")
    backend = Backend("cuda", xp, kernels)
    backend.simulated = SIMULATED
    return backend


_FACTORIES = {"numpy": _make_numpy, "cpu": _make_cpu, "cuda": _make_cuda}
_cache: dict[str, Backend] = {}
_current: Backend = _make_numpy()
_cache["numpy"] = _current
_seed = 0


def backend_named(name: str) -> Backend:
    """The Backend object for ``name`` (built once), without making it current."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name not in _cache:
        backend = _FACTORIES[name]()
        backend.rng = _make_rng(backend, _seed)
        _cache[name] = backend
    return _cache[name]


def set_backend(name: str) -> Backend:
    """Make ``name`` ("numpy", "cpu" or "cuda") the current backend and return it."""
    global _current
    backend = backend_named(name)
    if backend is not _current:
        if _current.deactivate is not None:
            _current.deactivate()
            _current.deactivate = None
        if backend.activate is not None:
            backend.deactivate = backend.activate()
        _current = backend
    return _current


def get_backend() -> Backend:
    return _current


def _make_rng(backend: Backend, n: int):
    if backend.xp is np:
        return np.random.default_rng(n)
    return backend.xp.random.default_rng(n)


def seed(n: int) -> None:
    """Seed every backend's generator (dropout masks, initialisation draws use them)."""
    global _seed
    _seed = int(n)
    np.random.seed(_seed % 2**32)
    for backend in _cache.values():
        backend.rng = _make_rng(backend, _seed)


def seed_stream(*key: int) -> None:
    """Reseed the current backend's generator from ``key`` (e.g. seed, epoch, step) alone, so
    that the dropout masks of a training step do not depend on what ran before it: a run
    resumed at an epoch boundary draws exactly the masks of the uninterrupted run."""
    state = np.random.SeedSequence([int(k) for k in key]).generate_state(2, dtype=np.uint32)
    _current.rng = _make_rng(_current, int(state[0]) << 32 | int(state[1]))


seed(0)


def array_module(x):
    """numpy or cupy, whichever holds ``x`` (Chainer's get_array_module)."""
    if type(x).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np


def to_numpy(x) -> np.ndarray:
    """Any backend's array as a numpy array (a copy only when it lives on a GPU)."""
    if type(x).__module__.startswith("cupy"):
        return x.get()
    return np.asarray(x)


def asarray(x, dtype=None):
    """A numpy (or any) array as an array of the current backend."""
    return _current.xp.asarray(x, dtype=dtype)


def hot_path(reference):
    """Mark ``reference`` as a hot spot that a backend may replace by a kernel of the same name."""
    name = reference.__name__

    @functools.wraps(reference)
    def dispatch(*args, **kwargs):
        return _current.kernels.get(name, reference)(*args, **kwargs)

    dispatch.reference = reference
    return dispatch


def set_kernel_threads(threads: int):
    """Use ``threads`` Numba threads (at most NUMBA_NUM_THREADS) for the cpu kernels. Their
    module is imported first: it keeps Numba's workqueue threading layer, which
    ``numba.set_num_threads`` called before it would fix to the default, OpenMP's, whose idle
    threads spin (a forward of the cpu backend measured 2.5 times slower on a busy 2-core
    machine)."""
    import numba

    import minicnn.kernels.cpu  # noqa: F401

    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
