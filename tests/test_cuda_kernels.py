"""Every numba.cuda kernel of the "cuda" backend equals its NumPy reference (the ``@hot_path``
function's ``.reference``), forward and backward, in float32 and float64.

Tiny shapes run in Numba's CUDA simulator when there is no GPU; the ``gpu``-marked cases
(realistic AlexNet sizes) run only on a real GPU.
"""

import numpy as np
import pytest
from cuda_support import RTOL, assert_close, cuda_backend, real_gpu

import minicnn as mc
from minicnn import optim
from minicnn.ops import conv2d as conv_op
from minicnn.ops import dropout, lrn, max_pool2d, relu, softmax_xent, winograd
from minicnn.ops import im2col as im2col_op

DTYPES = [np.float32, np.float64]


def gpu_case(*values):
    return pytest.param(*values, marks=pytest.mark.gpu)


@pytest.fixture(autouse=True)
def kernels(request):
    """The cuda backend's kernels, with the backend current; gpu cases skip without a GPU."""
    if request.node.get_closest_marker("gpu") and not real_gpu():
        pytest.skip("needs a real CUDA GPU (realistic sizes)")
    return cuda_backend().kernels


def random(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


# --- im2col / col2im ---------------------------------------------------------------------------

# (x shape, (kh, kw, sh, sw, ph, pw))
CONV_CASES = [
    ((2, 3, 7, 6), (3, 3, 1, 1, 1, 1)),
    ((2, 3, 7, 6), (3, 2, 2, 1, 1, 0)),
    ((1, 2, 9, 9), (5, 5, 2, 2, 2, 2)),
    gpu_case((16, 96, 27, 27), (5, 5, 1, 1, 2, 2)),     # AlexNet conv2
    gpu_case((8, 3, 227, 227), (11, 11, 4, 4, 0, 0)),   # conv1
]


def conv_columns_shape(x_shape, geometry):
    n, C, H, W = x_shape
    kh, kw, sh, sw, ph, pw = geometry
    OH = im2col_op.conv_output_size(H, kh, sh, ph)
    OW = im2col_op.conv_output_size(W, kw, sw, pw)
    return (C * kh * kw, n * OH * OW)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape,geometry", CONV_CASES)
def test_im2col_equals_reference(kernels, x_shape, geometry, dtype, rng):
    x = random(rng, x_shape, dtype)
    shape = conv_columns_shape(x_shape, geometry)
    expected = im2col_op.im2col.reference(x, *geometry, np.empty(shape, dtype))
    out = mc.get_backend().xp.empty(shape, dtype)
    got = kernels["im2col"](mc.asarray(x), *geometry, out)
    assert got is out
    np.testing.assert_array_equal(mc.to_numpy(got), expected)  # a pure copy: exact


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape,geometry", CONV_CASES)
def test_col2im_equals_reference(kernels, x_shape, geometry, dtype, rng):
    cols = random(rng, conv_columns_shape(x_shape, geometry), dtype)
    expected = im2col_op.col2im.reference(cols, x_shape, *geometry)
    got = mc.to_numpy(kernels["col2im"](mc.asarray(cols), x_shape, *geometry))
    np.testing.assert_array_equal(got, expected)  # the reference's order of additions: exact


def test_im2col_reads_a_strided_input(kernels, rng):
    wide = random(rng, (2, 6, 7, 10), np.float64)
    x_host = wide[:, ::2, :, 1::2]  # every other channel and column: not contiguous
    x = mc.asarray(wide)[:, ::2, :, 1::2]
    geometry = (3, 3, 2, 1, 1, 1)
    shape = conv_columns_shape(x_host.shape, geometry)
    expected = im2col_op.im2col.reference(np.ascontiguousarray(x_host), *geometry, np.empty(shape))
    got = kernels["im2col"](x, *geometry, mc.get_backend().xp.empty(shape))
    np.testing.assert_array_equal(mc.to_numpy(got), expected)


# --- max pooling -----------------------------------------------------------------------------

# (x shape, kernel, stride, padding, ceil_mode)
POOL_CASES = [
    ((2, 3, 7, 6), 3, 2, 0, False),
    ((2, 3, 7, 6), 3, 2, 1, True),
    ((1, 2, 5, 5), 2, 2, 1, True),
    ((1, 2, 8, 7), 3, 3, 1, False),
    gpu_case((32, 96, 55, 55), 3, 2, 0, False),   # AlexNet pool1
    gpu_case((32, 256, 13, 13), 3, 2, 0, True),
]


def pool_sizes(x_shape, k, s, p, ceil):
    return (max_pool2d.pool_output_size(x_shape[2], k, s, p, ceil),
            max_pool2d.pool_output_size(x_shape[3], k, s, p, ceil))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape,k,s,p,ceil", POOL_CASES)
def test_max_pool_equals_reference(kernels, x_shape, k, s, p, ceil, dtype, rng):
    # distinct values, so the maximum of every window is unique (MatConvNet's rule)
    x = rng.permutation(int(np.prod(x_shape))).reshape(x_shape).astype(dtype)
    oh, ow = pool_sizes(x_shape, k, s, p, ceil)
    y_ref, arg_ref = max_pool2d.max_pool_forward.reference(x, k, k, s, s, p, p, oh, ow)
    y, arg = kernels["max_pool_forward"](mc.asarray(x), k, k, s, s, p, p, oh, ow)
    np.testing.assert_array_equal(mc.to_numpy(y), y_ref)
    assert mc.to_numpy(arg).dtype == np.int64
    np.testing.assert_array_equal(mc.to_numpy(arg), arg_ref)
    dy = random(rng, y_ref.shape, dtype)
    expected = max_pool2d.max_pool_backward.reference(dy, arg_ref, x_shape)
    assert_close(kernels["max_pool_backward"](mc.asarray(dy), arg, x_shape), expected)


def test_max_pool_ties_take_the_first_maximum(kernels, rng):
    x = rng.integers(0, 2, (2, 2, 6, 7)).astype(np.float32)  # ties everywhere
    oh, ow = pool_sizes(x.shape, 3, 2, 1, True)
    _, arg_ref = max_pool2d.max_pool_forward.reference(x, 3, 3, 2, 2, 1, 1, oh, ow)
    _, arg = kernels["max_pool_forward"](mc.asarray(x), 3, 3, 2, 2, 1, 1, oh, ow)
    np.testing.assert_array_equal(mc.to_numpy(arg), arg_ref)


# --- LRN ----------------------------------------------------------------------------------------

# (x shape, size); a large alpha so that a wrong window shows (MatConvNet's advice)
LRN_CASES = [((2, 7, 3, 4), 3), ((2, 7, 3, 4), 4), ((1, 6, 2, 3), 5),
             gpu_case((32, 96, 55, 55), 5)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape,size", LRN_CASES)
def test_lrn_equals_reference(kernels, x_shape, size, dtype, rng):
    alpha, beta, k = 0.5, 0.75, 2.0
    x = random(rng, x_shape, dtype)
    y_ref, scale_ref = lrn.lrn_forward.reference(x, size, alpha, beta, k)
    y, scale = kernels["lrn_forward"](mc.asarray(x), size, alpha, beta, k)
    assert_close(y, y_ref)
    assert_close(scale, scale_ref)
    dy = random(rng, x_shape, dtype)
    expected = lrn.lrn_backward.reference(x, y_ref, scale_ref, dy, size, alpha, beta)
    got = kernels["lrn_backward"](mc.asarray(x), y, scale, mc.asarray(dy), size, alpha, beta)
    assert_close(got, expected)


# --- element-wise: ReLU, dropout, SGD ------------------------------------------------------------

SIZES = [(3, 5, 2), gpu_case((64, 4096))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SIZES)
def test_relu_equals_reference(kernels, shape, dtype, rng):
    x = random(rng, shape, dtype)
    x.flat[:3] = 0.0  # the derivative at 0 is 0
    y = kernels["relu_forward"](mc.asarray(x))
    np.testing.assert_array_equal(mc.to_numpy(y), relu.relu_forward.reference(x))
    dy = random(rng, shape, dtype)
    dx = kernels["relu_backward"](y, mc.asarray(dy))
    expected = relu.relu_backward.reference(relu.relu_forward.reference(x), dy)
    np.testing.assert_array_equal(mc.to_numpy(dx), expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SIZES)
def test_dropout_apply_equals_reference(kernels, shape, dtype, rng):
    x = random(rng, shape, dtype)
    mask = (rng.random(shape) >= 0.5).astype(dtype) * dtype(2.0)
    got = kernels["dropout_apply"](mc.asarray(x), mc.asarray(mask))
    np.testing.assert_array_equal(mc.to_numpy(got), dropout.dropout_apply.reference(x, mask))


@pytest.mark.parametrize("weight_decay", [5e-4, 0.0])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 3), gpu_case((4096, 4096))])
def test_sgd_update_equals_reference(kernels, shape, dtype, weight_decay, rng):
    param, grad, velocity = (random(rng, shape, dtype) for _ in range(3))
    p, v = mc.asarray(param), mc.asarray(velocity)
    kernels["sgd_update"](p, mc.asarray(grad), v, 0.01, 0.9, weight_decay)
    optim.sgd_update.reference(param, grad, velocity, 0.01, 0.9, weight_decay)
    assert_close(p, param)
    assert_close(v, velocity)


# --- softmax cross-entropy ---------------------------------------------------------------------------

@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,k", [(5, 7), (3, 20), gpu_case(256, 1000)])
def test_softmax_xent_equals_reference(kernels, n, k, dtype, weighted, rng):
    logits = (3 * rng.standard_normal((n, k))).astype(dtype)
    labels = rng.integers(0, k, n)
    weights = rng.random(n).astype(dtype) if weighted else None
    loss_ref, grad_ref = softmax_xent.softmax_xent.reference(logits, labels, weights)
    loss, grad = kernels["softmax_xent"](mc.asarray(logits), mc.asarray(labels),
                                         None if weights is None else mc.asarray(weights))
    assert loss.shape == ()
    np.testing.assert_allclose(float(loss), float(loss_ref), rtol=RTOL[np.dtype(dtype)])
    assert_close(grad, grad_ref)


def test_softmax_xent_label_out_of_range_gives_nan(kernels, rng):
    """Device labels are not checked on the host (no sync per step): the loss reads NaN."""
    logits = rng.standard_normal((3, 4))
    loss, grad = kernels["softmax_xent"](mc.asarray(logits), mc.asarray(np.array([0, 4, 1])), None)
    assert np.isnan(float(loss))
    grad = mc.to_numpy(grad)
    assert np.isnan(grad[1]).all() and np.isfinite(grad[[0, 2]]).all()


def test_every_hot_path_has_a_cuda_kernel(kernels):
    import minicnn.kernels.cuda as cuda_kernels

    assert set(kernels) == set(cuda_kernels.__all__)
    assert {"im2col", "col2im", "max_pool_forward", "max_pool_backward", "relu_forward", "relu_backward",
            "lrn_forward", "lrn_backward", "dropout_apply", "softmax_xent", "sgd_update",
            "winograd_input_transform", "winograd_input_adjoint", "winograd_output_transform",
            "winograd_output_adjoint"} <= set(kernels)


# --- Winograd -----------------------------------------------------------------------------------

# (N, C, H, W), r, m, padding: odd sizes, H != W, padding above r - 1, batch 1
WINOGRAD_CASES = [
    ((2, 3, 7, 9), 3, 2, (1, 1)),
    ((2, 2, 9, 6), 3, 4, (1, 1)),
    ((1, 2, 6, 5), 3, 4, (0, 2)),
    ((2, 2, 8, 7), 5, 3, (2, 2)),
    ((2, 3, 5, 6), 3, 2, (3, 0)),
    gpu_case((16, 256, 13, 13), 3, 4, (1, 1)),   # AlexNet conv3-5
    gpu_case((16, 96, 27, 27), 5, 3, (2, 2)),    # conv2
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,r,m,padding", WINOGRAD_CASES)
@pytest.mark.parametrize("name", ["winograd_input_transform", "winograd_input_adjoint",
                                  "winograd_output_transform", "winograd_output_adjoint"])
def test_winograd_transforms_equal_reference(kernels, name, shape, r, m, padding, dtype, rng):
    N, C, H, W = shape
    O = 4
    AT, _, BT = winograd.matrices(m, r)
    n2 = (m + r - 1) ** 2
    OH, OW = H + 2 * padding[0] - r + 1, W + 2 * padding[1] - r + 1
    TH, TW = winograd.tiles_of(OH, m), winograd.tiles_of(OW, m)
    T = N * TH * TW
    args, out_shape = {
        "winograd_input_transform": ((random(rng, shape, dtype), BT, m, *padding, TH, TW), (n2, C, T)),
        "winograd_input_adjoint": ((random(rng, (n2, C, T), dtype), BT, m, *padding, TH, TW), shape),
        "winograd_output_transform": ((random(rng, (n2, O, T), dtype), AT, random(rng, O, dtype)),
                                      (N, O, OH, OW)),
        "winograd_output_adjoint": ((random(rng, (N, O, OH, OW), dtype), AT), (n2, O, T)),
    }[name]
    expected = getattr(winograd, name).reference(*args, np.full(out_shape, np.nan, dtype))
    xp = mc.get_backend().xp
    out = xp.full(out_shape, np.nan, dtype)
    # the (2-D) transform matrices stay NumPy arrays, as conv2d passes them
    device_args = [mc.asarray(a) if isinstance(a, np.ndarray) and a.ndim != 2 else a for a in args]
    assert kernels[name](*device_args, out) is out
    assert_close(out, expected)


def test_winograd_output_transform_without_bias(kernels, rng):
    AT = winograd.matrices(4, 3)[0]
    M = random(rng, (36, 3, 2 * 4), np.float64)
    expected = winograd.winograd_output_transform.reference(M, AT, None, np.empty((2, 3, 7, 8)))
    out = mc.get_backend().xp.empty((2, 3, 7, 8))
    got = kernels["winograd_output_transform"](mc.asarray(M), AT, None, out)
    assert_close(got, expected)


# (x shape, out channels, k, stride, padding, groups, chunked): F(4x4, 3x3), F(3x3, 5x5),
# and AlexNet's conv1 through space-to-depth, smaller; chunked: one image per batch chunk
CONVOLUTIONS = [
    ((2, 4, 9, 7), 6, 3, 1, 1, 2, False),
    ((3, 4, 9, 7), 6, 3, 1, 1, 2, True),
    ((2, 3, 8, 8), 4, 5, 1, 2, 1, False),
    ((2, 3, 23, 23), 5, 11, 4, 0, 1, False),
    gpu_case((8, 3, 227, 227), 96, 11, 4, 0, 1, False),
    gpu_case((8, 96, 27, 27), 256, 5, 1, 2, 2, False),
    gpu_case((8, 384, 13, 13), 384, 3, 1, 1, 2, False),
    gpu_case((8, 384, 13, 13), 256, 3, 1, 1, 2, True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,out,k,stride,padding,groups,chunked", CONVOLUTIONS)
def test_winograd_convolution_equals_the_direct_one(kernels, shape, out, k, stride, padding, groups,
                                                    chunked, dtype, rng, monkeypatch):
    """The whole convolution on "cuda" (transform kernels, batched cuBLAS products, the
    transformed input kept for the backward) against the numpy backend's definition."""
    x = random(rng, shape, dtype)
    weight = random(rng, (out, shape[1] // groups, k, k), dtype)
    bias = random(rng, out, dtype)
    OH = (shape[2] + 2 * padding - k) // stride + 1
    OW = (shape[3] + 2 * padding - k) // stride + 1
    dy = random(rng, (shape[0], out, OH, OW), dtype)
    mc.set_backend("numpy")
    expected = (conv_op.conv2d_forward(x, weight, bias, stride, padding, groups),) + conv_op.conv2d_backward(
        dy, x, weight, stride, padding, groups)
    if chunked:  # on a GPU too: CuPy's products then read chunks of the kept transformed input
        monkeypatch.setattr(conv_op, "WORKSPACE_BYTES", 1)
        monkeypatch.setattr(conv_op, "GPU_WORKSPACE_BYTES", 1)
    mc.set_backend("cuda")
    assert conv_op.winograd_tile(weight.shape, stride)
    X, Wt, B, DY = (mc.asarray(a) for a in (x, weight, bias, dy))
    keep = {}
    y = conv_op.conv2d_forward(X, Wt, B, stride, padding, groups, keep=keep)
    grads = conv_op.conv2d_backward(DY, X, Wt, stride, padding, groups, kept=keep)
    # float32 at realistic sizes: Winograd's rounding (1e-5 of the scale) and cuBLAS's order
    rtol = 2e-4 if dtype == np.float32 and shape[0] >= 8 else RTOL[np.dtype(dtype)]
    for name, got, want in zip(("y", "dx", "dw", "db"), (y,) + grads, expected, strict=True):
        assert_close(got, want, rtol=rtol), name
