"""Average pooling (the op imports need for Caffe AVE pooling and ONNX AveragePool): the
reference against naive loops, its gradient against finite differences (float64), and the
cpu (Numba) and cuda (numba.cuda, in the simulator without a GPU) kernels against the
reference.

The kernels are called from their modules here, and the backends run them through
kernels/cpu/__init__.py and kernels/cuda/__init__.py, which list them.
"""

import math

import numpy as np
import pytest
from cuda_support import assert_close, cuda_backend

import minicnn as mc
from minicnn import gradcheck
from minicnn import layers as L
from minicnn.ops import avg_pool2d as avg_op
from minicnn.ops.max_pool2d import pool_output_size

# (x shape, (kh, kw), (sh, sw), (ph, pw), ceil_mode, count_include_pad)
CASES = [
    ((2, 3, 8, 8), (3, 3), (2, 2), (1, 1), True, True),      # Caffe AVE with pad, rounded up
    ((2, 3, 8, 8), (3, 3), (2, 2), (1, 1), True, False),
    ((1, 2, 9, 7), (3, 2), (2, 1), (0, 1), False, True),     # non-square kernel and padding
    ((1, 2, 7, 7), (2, 2), (3, 3), (1, 0), True, False),     # stride > kernel
    ((2, 2, 6, 6), (6, 6), (1, 1), (0, 0), False, True),     # global
    ((1, 1, 5, 5), (1, 1), (1, 1), (0, 0), False, True),     # the identity
]


def naive_avg_pool(x, k, s, p, ceil, include_pad):
    """Caffe's / PyTorch's loop: the window clipped to the padded input counts, or only
    its part inside the input."""
    N, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw) = k, s, p

    def out_size(size, kk, ss, pp):
        o = (math.ceil if ceil else math.floor)((size + 2 * pp - kk) / ss) + 1
        if ceil and (o - 1) * ss >= size + pp:
            o -= 1
        return o

    OH, OW = out_size(H, kh, sh, ph), out_size(W, kw, sw, pw)
    y = np.zeros((N, C, OH, OW))
    for a in range(OH):
        for b in range(OW):
            h0, w0 = a * sh - ph, b * sw - pw
            h1, w1 = min(h0 + kh, H + ph), min(w0 + kw, W + pw)
            count = (h1 - h0) * (w1 - w0)
            h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, H), min(w1, W)
            if not include_pad:
                count = (h1 - h0) * (w1 - w0)
            for n in range(N):
                for c in range(C):
                    y[n, c, a, b] = x[n, c, h0:h1, w0:w1].sum() / count
    return y


def geometry(shape, k, s, p, ceil):
    oh = pool_output_size(shape[2], k[0], s[0], p[0], ceil)
    ow = pool_output_size(shape[3], k[1], s[1], p[1], ceil)
    return (k[0], k[1], s[0], s[1], p[0], p[1]), oh, ow


@pytest.mark.parametrize("shape,k,s,p,ceil,include_pad", CASES)
def test_reference_equals_naive_loops(rng, shape, k, s, p, ceil, include_pad):
    x = rng.standard_normal(shape)
    layer = L.AvgPool2D(k, s, p, ceil_mode=ceil, count_include_pad=include_pad)
    y = layer.forward(x, train=False)
    expected = naive_avg_pool(x, k, s, p, ceil, include_pad)
    assert y.shape == expected.shape and layer.output_shape(shape[1:]) == expected.shape[1:]
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape,k,s,p,ceil,include_pad", CASES)
def test_backward_is_the_adjoint_and_matches_finite_differences(rng, shape, k, s, p, ceil, include_pad):
    layer = L.AvgPool2D(k, s, p, ceil_mode=ceil, count_include_pad=include_pad)
    x = rng.standard_normal(shape)
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    # a linear map: <A x, dy> = <x, A^T dy>
    np.testing.assert_allclose((y * dy).sum(), (x * dx).sum(), rtol=1e-12)
    result = gradcheck.check_layer(layer, x, mode="exhaustive")
    assert result.passed(1e-7), result


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,k,s,p,ceil,include_pad", CASES)
def test_cpu_kernel_equals_reference(rng, shape, k, s, p, ceil, include_pad, dtype):
    from minicnn.kernels.cpu import avg_pool2d as cpu

    x = rng.standard_normal(shape).astype(dtype)
    g, oh, ow = geometry(shape, k, s, p, ceil)
    y_ref = avg_op.avg_pool_forward.reference(x, *g, oh, ow, include_pad)
    assert_close(cpu.avg_pool_forward(x, *g, oh, ow, include_pad), y_ref)
    dy = rng.standard_normal(y_ref.shape).astype(dtype)
    expected = avg_op.avg_pool_backward.reference(dy, shape, *g, include_pad)
    assert_close(cpu.avg_pool_backward(dy, shape, *g, include_pad), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,k,s,p,ceil,include_pad", CASES[:4])
def test_cuda_kernel_equals_reference(rng, shape, k, s, p, ceil, include_pad, dtype):
    cuda_backend()
    from minicnn.kernels.cuda import avg_pool2d as gpu

    x = rng.standard_normal(shape).astype(dtype)
    g, oh, ow = geometry(shape, k, s, p, ceil)
    y_ref = avg_op.avg_pool_forward.reference(x, *g, oh, ow, include_pad)
    assert_close(gpu.avg_pool_forward(mc.asarray(x), *g, oh, ow, include_pad), y_ref)
    dy = rng.standard_normal(y_ref.shape).astype(dtype)
    expected = avg_op.avg_pool_backward.reference(dy, shape, *g, include_pad)
    assert_close(gpu.avg_pool_backward(mc.asarray(dy), shape, *g, include_pad), expected)


@pytest.mark.parametrize("name", ["numpy", "cpu"])
def test_the_layer_runs_saves_and_loads_on_each_backend(rng, tmp_path, name):
    mc.set_backend(name)
    net = mc.Sequential([L.Conv2D(2, 3, 3, padding=1), L.AvgPool2D(3, 2, 1, ceil_mode=True,
                                                                     count_include_pad=False)],
                        ["conv1", "pool1"], input_shape=(2, 8, 8))
    x = rng.standard_normal((2, 2, 8, 8)).astype(np.float32)
    y = mc.to_numpy(net.forward(mc.asarray(x), train=False))
    net.save(tmp_path / "net.npz")
    back = mc.Sequential.load(tmp_path / "net.npz")
    assert back["pool1"].config() == net["pool1"].config()
    np.testing.assert_array_equal(mc.to_numpy(back.forward(mc.asarray(x), train=False)), y)


def test_padding_over_half_the_kernel_is_refused():
    with pytest.raises(ValueError, match="at most half the kernel"):
        L.AvgPool2D(2, 2, padding=2)
