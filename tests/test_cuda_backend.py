"""The "cuda" backend as a whole: a training step equals the numpy backend's, nets move
between backends, and a missing GPU stack is a clear BackendUnavailable."""

import os
import subprocess
import sys
import types

import numpy as np
import pytest
from cuda_support import assert_close, cuda_backend, real_gpu

import minicnn as mc
from minicnn import backend
from minicnn.ops import conv2d as conv_op
from minicnn.ops import dropout as dropout_op


def host_masks(seed=1):
    """Dropout masks drawn on the host, so that both backends drop the same units (the GPU's
    own generator draws other numbers than NumPy's)."""
    rng = np.random.default_rng(seed)

    def mask(shape, p, dtype):
        return mc.asarray((rng.random(shape) >= p).astype(dtype) / dtype.type(1.0 - p))

    return mask


def train_steps(name, dtype, x, labels, monkeypatch, steps=2, batch_shape=None):
    """Build tiny_alexnet on numpy (seed 0), move it to ``name``, take ``steps`` SGD steps;
    return the losses and the final parameters and gradients as numpy arrays."""
    mc.set_backend("numpy")
    mc.seed(0)
    net = mc.models.tiny_alexnet(num_classes=5, input_size=16, dtype=dtype)
    mc.set_backend(name)
    net.to(name)
    monkeypatch.setattr(dropout_op, "dropout_mask", host_masks())
    opt = mc.optim.SGD(net, lr=0.05, momentum=0.9, weight_decay=5e-4)
    losses = []
    for _ in range(steps):
        loss, dlogits = mc.losses.softmax_cross_entropy(net.forward(mc.asarray(x)), labels)
        net.backward(dlogits)
        opt.step()
        losses.append(float(loss))
    params = {n: mc.to_numpy(p) for n, p, _ in net.named_params()}
    grads = {n: mc.to_numpy(g) for n, _, g in net.named_params()}
    return losses, params, grads


@pytest.mark.parametrize("convolutions", ["winograd", "im2col"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_training_step_on_cuda_equals_numpy(dtype, convolutions, monkeypatch, rng):
    cuda_backend()
    if convolutions == "im2col":
        monkeypatch.setattr(conv_op, "WINOGRAD_BACKENDS", ())
    x = rng.standard_normal((4, 3, 16, 16)).astype(dtype)
    labels = np.array([0, 3, 4, 1])
    ref_losses, ref_params, ref_grads = train_steps("numpy", dtype, x, labels, monkeypatch)
    losses, params, grads = train_steps("cuda", dtype, x, labels, monkeypatch)
    rtol = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(losses, ref_losses, rtol=rtol)
    assert params.keys() == ref_params.keys()
    for name in ref_params:
        assert_close(grads[name], ref_grads[name])
        assert_close(params[name], ref_params[name])
    # the step did something: the parameters moved
    mc.set_backend("numpy")
    mc.seed(0)
    initial = mc.models.tiny_alexnet(num_classes=5, input_size=16, dtype=dtype)
    assert not np.allclose(initial["fc8"].params["weight"], params["fc8.weight"])


@pytest.mark.gpu
def test_alexnet_training_step_on_gpu_equals_numpy(monkeypatch, rng):
    """Realistic size: the full AlexNet, batch 2, float32, one step."""
    if not real_gpu():
        pytest.skip("needs a real CUDA GPU")
    x = rng.standard_normal((2, 3, 227, 227)).astype(np.float32)
    labels = np.array([3, 999])
    results = []
    for name in ("numpy", "cuda"):
        mc.set_backend("numpy")
        mc.seed(0)
        net = mc.models.alexnet(num_classes=1000, input_size=227, groups=2)
        mc.set_backend(name)
        net.to(name)
        monkeypatch.setattr(dropout_op, "dropout_mask", host_masks())
        loss, dlogits = mc.losses.softmax_cross_entropy(net.forward(mc.asarray(x)), labels)
        net.backward(dlogits)
        mc.optim.SGD(net, lr=0.01).step()
        results.append((float(loss), {n: mc.to_numpy(g) for n, _, g in net.named_params()}))
    (ref_loss, ref_grads), (loss, grads) = results
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-4)
    for name in ref_grads:  # sums of thousands of float32 products: cuBLAS vs BLAS order
        assert_close(grads[name], ref_grads[name], rtol=2e-3)


def test_net_to_moves_parameters_and_keeps_save_load(tmp_path, rng):
    cuda = cuda_backend()
    mc.set_backend("numpy")
    net = mc.models.tiny_alexnet(num_classes=3, input_size=16, dtype=np.float32)
    before = {n: p.copy() for n, p, _ in net.named_params()}
    assert net.to("cuda") is net
    for name, p, _ in net.named_params():
        assert backend.array_module(p) is cuda.xp
        assert p.dtype == np.float32
        np.testing.assert_array_equal(mc.to_numpy(p), before[name])
    net.save(tmp_path / "net.npz")  # from the device: the file holds numpy arrays
    loaded = mc.Sequential.load(tmp_path / "net.npz")
    for name, p, _ in loaded.named_params():
        assert isinstance(p, np.ndarray)
        np.testing.assert_array_equal(p, before[name])
    mc.set_backend("cuda")
    net.load(tmp_path / "net.npz")  # into a net on the device: stays there
    assert all(backend.array_module(p) is cuda.xp for _, p, _ in net.named_params())
    net.to("numpy")
    for name, p, _ in net.named_params():
        assert isinstance(p, np.ndarray)
        np.testing.assert_array_equal(p, before[name])


@pytest.mark.parametrize("convolutions", ["winograd", "im2col"])
def test_cuda_forward_runs_the_cuda_kernels(convolutions, monkeypatch, rng):
    cuda = cuda_backend()
    if convolutions == "im2col":
        monkeypatch.setattr(conv_op, "WINOGRAD_BACKENDS", ())
    called = []
    for name, kernel in list(cuda.kernels.items()):
        def counted(*args, _kernel=kernel, _name=name):
            called.append(_name)
            return _kernel(*args)
        monkeypatch.setitem(cuda.kernels, name, counted)
    net = mc.models.tiny_alexnet(num_classes=3, input_size=16)
    loss, d = mc.losses.softmax_cross_entropy(net.forward(mc.asarray(rng.standard_normal((2, 3, 16, 16)))),
                                              np.array([0, 2]))
    net.backward(d)
    mc.optim.SGD(net).step()
    conv_kernels = ({"im2col", "col2im"} if convolutions == "im2col" else
                    {"winograd_input_transform", "winograd_input_adjoint", "winograd_output_transform",
                     "winograd_output_adjoint"})
    assert set(called) == conv_kernels | {"max_pool_forward", "max_pool_backward", "relu_forward",
                                          "relu_backward", "lrn_forward", "lrn_backward", "dropout_apply",
                                          "softmax_xent", "sgd_update"}


def test_host_labels_are_still_checked(rng):
    cuda_backend()
    logits = mc.asarray(rng.standard_normal((3, 4)))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        mc.losses.softmax_cross_entropy(logits, np.array([0, 4, 1]))


# --- BackendUnavailable -----------------------------------------------------------------------------

def fake_cupy(get_count):
    cupy = types.ModuleType("cupy")
    cupy.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=get_count))
    return cupy


class FakeCudaError(RuntimeError):
    def __init__(self, status, text):
        super().__init__(text)
        self.status = status


def raising(error):
    def get_count():
        raise error
    return get_count


@pytest.mark.parametrize("cupy,expected", [
    (None, r"needs CuPy, which is not installed.*minicnn\[gpu\].*NUMBA_ENABLE_CUDASIM=1"),
    (fake_cupy(lambda: 0), r"no CUDA GPU found"),
    (fake_cupy(raising(FakeCudaError(100, "cudaErrorNoDevice"))), r"no CUDA GPU found \(cudaErrorNoDevice\)"),
    (fake_cupy(raising(OSError("libcuda.so.1: cannot open shared object file"))),
     r"no usable NVIDIA driver \(OSError: libcuda.so.1.*minicnn\[gpu\]"),
])
def test_missing_gpu_stack_says_what_is_missing(cupy, expected, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", cupy)  # None makes `import cupy` fail
    with pytest.raises(mc.BackendUnavailable, match=expected):
        backend._check_gpu()


@pytest.mark.parametrize("libcuda,expected", [
    (None, r"no NVIDIA driver found \(libcuda is missing.*minicnn\[gpu\]"),
    ("libcuda.so.1", r"NVIDIA driver is too old.*minicnn\[gpu\]"),
])
def test_insufficient_driver_tells_missing_from_old(libcuda, expected, monkeypatch):
    insufficient = FakeCudaError(35, "cudaErrorInsufficientDriver")
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(raising(insufficient)))
    monkeypatch.setattr(backend.ctypes.util, "find_library", lambda name: libcuda)
    with pytest.raises(mc.BackendUnavailable, match=expected):
        backend._check_gpu()


def run_python(code, **env_changes):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env.update(env_changes)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


TRY_CUDA = """
import minicnn as mc
try:
    mc.set_backend("cuda")
except mc.BackendUnavailable as e:
    print("UNAVAILABLE:", e)
    raise SystemExit(3)
print("AVAILABLE")
"""


def test_set_backend_cuda_without_gpu_or_simulator_raises():
    if real_gpu():
        pytest.skip("a GPU is usable here")
    out = run_python(TRY_CUDA)
    assert out.returncode == 3, out.stdout + out.stderr
    message = out.stdout
    assert "backend 'cuda'" in message
    assert any(what in message for what in ("CuPy", "driver", "GPU")), message
    assert "NUMBA_ENABLE_CUDASIM=1" in message


def test_simulator_switched_on_after_numba_cuda_import_is_reported():
    code = "import os\nfrom numba import cuda\nos.environ['NUMBA_ENABLE_CUDASIM'] = '1'\n" + TRY_CUDA
    out = run_python(code)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "set the variable before anything imports numba" in out.stdout


def test_numba_cuda_too_old_for_numpy_is_reported(monkeypatch):
    """numba-cuda 0.30.4 with numpy 2.5 (as seen on a GPU machine): the first compilation
    fails on np.row_stack; set_backend("cuda") says so, with the fix."""
    def refresh():
        raise AttributeError("module 'numpy' has no attribute 'row_stack'")

    descriptor = types.ModuleType("numba.cuda.descriptor")
    descriptor.cuda_target = types.SimpleNamespace(typing_context=types.SimpleNamespace(refresh=refresh))
    monkeypatch.setitem(sys.modules, "numba.cuda.descriptor", descriptor)
    with pytest.raises(mc.BackendUnavailable,
                       match=r"cannot compile kernels with numpy .*row_stack.*pip install 'numpy<2.5'"):
        backend._check_numba_cuda_typing()
