"""The "cpu" backend end to end: convolution through its kernels, a whole tiny net's
gradients against the NumPy reference, and repeatability with a fixed seed.

Parity to rtol 1e-4 (float32) is asked of the im2col path, whose arithmetic is the
reference's; with Winograd on (the cpu default for 3x3 stride-1 convolutions) rounding
differs by a bounded amount relative to each tensor's scale (``tests/test_winograd.py``)."""

import importlib
import inspect
import pkgutil

import numpy as np
import pytest

import minicnn as mc
from minicnn import layers as L
from minicnn.ops import conv2d as conv_op

pytest.importorskip("numba")

RTOL = {np.float32: 1e-4, np.float64: 1e-10}


def hot_paths():
    """Names of every @hot_path in minicnn.ops and minicnn.optim."""
    import minicnn.ops

    modules = [importlib.import_module(f"minicnn.ops.{m.name}")
               for m in pkgutil.iter_modules(minicnn.ops.__path__)] + [mc.optim]
    return {name for module in modules for name, f in inspect.getmembers(module, callable)
            if hasattr(f, "reference")}


def test_cpu_kernels_replace_the_hot_paths():
    kernels = set(mc.backend.backend_named("cpu").kernels)
    paths = hot_paths()
    # a kernel whose name matches no hot path would never run
    assert kernels <= paths, f"kernels without a hot path: {kernels - paths}"
    assert {"im2col", "col2im", "max_pool_forward", "max_pool_backward", "lrn_forward", "lrn_backward",
            "relu_forward", "relu_backward", "dropout_apply", "softmax_xent", "sgd_update", "gemm",
            "nchw_to_cnhw", "cnhw_to_nchw"} <= kernels


def run_conv(backend, x, dy, weight, bias, stride, padding, groups, need_dx=True):
    mc.set_backend(backend)
    y = conv_op.conv2d_forward(x, weight, bias, stride, padding, groups)
    return (y,) + conv_op.conv2d_backward(dy, x, weight, stride, padding, groups, need_dx=need_dx)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,out,k,stride,padding,groups,one_image_chunks", [
    ((2, 4, 9, 7), 6, (3, 3), (1, 1), (1, 1), 2, False),
    ((1, 3, 8, 11), 4, (2, 3), (3, 4), (1, 0), 1, False),   # stride > kernel, batch 1
    ((3, 6, 11, 11), 6, (5, 5), (2, 2), (2, 2), 3, True),   # chunked batch
])
def test_conv2d_on_cpu_matches_reference(shape, out, k, stride, padding, groups, one_image_chunks,
                                         dtype, rng, monkeypatch):
    monkeypatch.setattr(conv_op, "WINOGRAD_BACKENDS", ())
    if one_image_chunks:
        monkeypatch.setattr(conv_op, "WORKSPACE_BYTES", 1)
    C = shape[1]
    x = rng.standard_normal((shape[0], shape[1], shape[2], 2 * shape[3])).astype(dtype)[..., ::2]
    weight = rng.standard_normal((out, C // groups) + k).astype(dtype)
    bias = rng.standard_normal(out).astype(dtype)
    y = conv_op.conv2d_forward(x, weight, bias, stride, padding, groups)
    dy = rng.standard_normal(y.shape).astype(dtype)
    for need_dx in (True, False):
        expected = run_conv("numpy", x, dy, weight, bias, stride, padding, groups, need_dx)
        got = run_conv("cpu", x, dy, weight, bias, stride, padding, groups, need_dx)
        for name, a, b in zip(("y", "dx", "dw", "db"), got, expected, strict=True):
            if b is None:
                assert a is None, name
                continue
            assert a.dtype == dtype and a.shape == b.shape, name
            np.testing.assert_allclose(a, b, rtol=RTOL[dtype], atol=RTOL[dtype] * 1e-2, err_msg=name)


def tiny_net_gradients(backend, dtype):
    mc.set_backend(backend)
    mc.seed(3)
    net = mc.models.tiny_alexnet(num_classes=5, input_size=13, dtype=dtype)
    rng = np.random.default_rng(1)
    x = mc.asarray(rng.standard_normal((3, 3, 13, 13)).astype(dtype))
    labels = np.array([0, 4, 2])
    loss, dlogits = mc.losses.softmax_cross_entropy(net.forward(x), labels)
    dx = net.backward(dlogits, input_grad=True)
    grads = {name: mc.to_numpy(g) for name, _, g in net.named_params()}
    return float(loss), mc.to_numpy(dx), grads


@pytest.mark.parametrize("winograd", [False, True], ids=["im2col", "winograd"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiny_net_gradients_on_cpu_equal_the_reference(dtype, winograd, monkeypatch):
    if not winograd:
        monkeypatch.setattr(conv_op, "WINOGRAD_BACKENDS", ())
    loss_ref, dx_ref, grads_ref = tiny_net_gradients("numpy", dtype)
    loss, dx, grads = tiny_net_gradients("cpu", dtype)
    rtol = RTOL[dtype]
    assert loss == pytest.approx(loss_ref, rel=rtol)
    assert grads.keys() == grads_ref.keys() and len(grads) == 10
    for name, a, b in [("input", dx, dx_ref)] + [(k, grads[k], grads_ref[k]) for k in grads]:
        assert np.abs(a).max() > 0, name  # every layer gets a real gradient
        # Rounding is bounded relative to the tensor's scale, not per element: an entry that
        # sums terms which cancel has a larger relative error, and how much larger depends on
        # the BLAS kernel's summation order (OpenBLAS's SkylakeX kernel moved one fc6.weight
        # entry of 0.0025 by 3.6e-7, 1.5e-4 of itself)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max(), err_msg=name)


def train_a_few_steps(seed):
    mc.set_backend("cpu")
    mc.seed(seed)
    net = mc.models.tiny_alexnet(num_classes=3, input_size=12, dtype=np.float32)
    opt = mc.optim.SGD(net, lr=0.05, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(seed)
    for _ in range(3):
        x = rng.standard_normal((4, 3, 12, 12)).astype(np.float32)
        _, dlogits = mc.losses.softmax_cross_entropy(net.forward(x), rng.integers(0, 3, 4))
        net.backward(dlogits)
        opt.step()
    return {name: p.copy() for name, p, _ in net.named_params()}


def test_same_seed_gives_identical_weights_on_cpu():
    a, b = train_a_few_steps(5), train_a_few_steps(5)
    c = train_a_few_steps(6)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert any(not np.array_equal(a[name], c[name]) for name in a)


def test_layers_run_on_cpu_with_float32_by_default(rng):
    mc.set_backend("cpu")
    net = mc.Sequential([L.Conv2D(3, 4, 3, padding=1), L.ReLU(), L.LRN(3), L.MaxPool2D(2),
                         L.Flatten(), L.Linear(4 * 4 * 4, 2), L.Dropout(0.5)])
    y = net.forward(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    assert y.dtype == np.float32 and y.shape == (2, 2)


def test_cpu_backend_keeps_the_blas_single_threaded_while_current():
    import threadpoolctl

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]

    mc.set_backend("numpy")
    before = blas_threads()
    try:
        mc.set_backend("cpu")
        assert blas_threads() and all(n == 1 for n in blas_threads())
        mc.set_backend("cpu")  # making it current again changes nothing
        assert all(n == 1 for n in blas_threads())
    finally:
        mc.set_backend("numpy")
    assert blas_threads() == before


def test_a_training_step_gives_the_same_bits_with_one_or_two_threads(rng):
    """Forward and backward of the demo's source network on the cpu backend: every
    activation and gradient bit for bit the same with 1 and 2 kernel threads, which is what
    lets one process with its cores give the bytes of N single-threaded ranks."""
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 threads")
    from minicnn import backend
    from minicnn.demo import DemoSettings

    mc.set_backend("cpu")
    net = DemoSettings().pretrain.build(30)
    x = rng.standard_normal((32, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 30, 32)

    def step(threads):
        before = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            backend.seed_stream(1, 2, 3)  # the same dropout masks
            logits = net.forward(x, train=True)
            _, dlogits = mc.losses.softmax_cross_entropy(logits, labels)
            net.backward(dlogits)
            return [np.array(logits)] + [np.array(g) for _, _, g in net.named_params()]
        finally:
            numba.set_num_threads(before)

    one, two = step(1), step(2)
    assert len(one) == 17
    for a, b in zip(one, two, strict=True):
        assert np.array_equal(a, b)
