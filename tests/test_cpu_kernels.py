"""Every Numba CPU kernel against its NumPy reference (the ``@hot_path``'s ``.reference``),
in float32 (rtol 1e-4) and float64 (rtol 1e-10), on odd shapes: stride > kernel, padding,
groups, ceil mode, batch 1, non-contiguous inputs. (gemm: tests/test_gemm.py, on every backend.)"""

import numpy as np
import pytest

import minicnn as mc
from minicnn import optim
from minicnn.ops import conv2d as conv_op
from minicnn.ops import dropout as dropout_op
from minicnn.ops import im2col as im2col_op
from minicnn.ops import lrn as lrn_op
from minicnn.ops import max_pool2d as pool_op
from minicnn.ops import relu as relu_op
from minicnn.ops import softmax_xent as xent_op
from minicnn.ops.im2col import conv_output_size

pytest.importorskip("numba")

KERNELS = mc.backend.backend_named("cpu").kernels
RTOL = {np.float32: 1e-4, np.float64: 1e-10}


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return request.param


def close(actual, expected, dtype):
    # atol covers entries that cancel to ~0 (sums of terms of either sign)
    rtol = RTOL[dtype]
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * 1e-2)


def non_contiguous(a):
    """The same values in a strided (non C-contiguous) array."""
    wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    wide[..., ::2] = a
    view = wide[..., ::2]
    assert not view.flags.c_contiguous
    return view


def both(name, *args):
    """(reference result, cpu kernel result) of the hot path ``name``."""
    hot = {"im2col": im2col_op.im2col, "col2im": im2col_op.col2im,
           "max_pool_forward": pool_op.max_pool_forward, "max_pool_backward": pool_op.max_pool_backward,
           "lrn_forward": lrn_op.lrn_forward, "lrn_backward": lrn_op.lrn_backward,
           "relu_forward": relu_op.relu_forward, "relu_backward": relu_op.relu_backward,
           "dropout_apply": dropout_op.dropout_apply, "softmax_xent": xent_op.softmax_xent,
           "nchw_to_cnhw": conv_op.nchw_to_cnhw, "cnhw_to_nchw": conv_op.cnhw_to_nchw}[name]
    return hot.reference(*args), KERNELS[name](*args)


# (n, C, H, W), (kh, kw), (sh, sw), (ph, pw)
CONV_CASES = [
    ((2, 3, 7, 9), (3, 3), (1, 1), (1, 1)),
    ((1, 2, 8, 5), (2, 3), (3, 4), (1, 0)),    # stride > kernel, batch 1
    ((3, 4, 11, 11), (5, 5), (2, 2), (2, 2)),
    ((2, 3, 6, 7), (1, 1), (2, 2), (0, 0)),
    ((1, 1, 4, 4), (4, 4), (1, 1), (3, 3)),    # padding wider than the input's border
]


@pytest.mark.parametrize("shape,k,s,p", CONV_CASES)
def test_im2col_col2im(shape, k, s, p, dtype, rng):
    (kh, kw), (sh, sw), (ph, pw) = k, s, p
    n, C, H, W = shape
    oh, ow = conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)
    x = non_contiguous(rng.standard_normal(shape).astype(dtype))
    out_ref, out_cpu = (np.full((C * kh * kw, n * oh * ow), np.nan, dtype) for _ in range(2))
    expected = im2col_op.im2col.reference(x, kh, kw, sh, sw, ph, pw, out_ref)
    got = KERNELS["im2col"](x, kh, kw, sh, sw, ph, pw, out_cpu)
    assert got is out_cpu
    np.testing.assert_array_equal(got, expected)  # a copy: exact
    cols = non_contiguous(rng.standard_normal(out_ref.shape).astype(dtype))
    expected, got = both("col2im", cols, shape, kh, kw, sh, sw, ph, pw)
    assert got.shape == shape and got.dtype == dtype
    np.testing.assert_array_equal(got, expected)  # same order of additions: exact


def test_im2col_into_a_strided_out(rng):
    x = rng.standard_normal((1, 2, 5, 5))
    wide = np.zeros((2 * 9, 2 * 9))
    out = wide[:, ::2]
    KERNELS["im2col"](x, 3, 3, 1, 1, 0, 0, out)
    np.testing.assert_array_equal(out, im2col_op.im2col.reference(x, 3, 3, 1, 1, 0, 0, np.empty((18, 9))))
    assert not wide[:, 1::2].any()


def test_layout_changes(dtype, rng):
    x = non_contiguous(rng.standard_normal((3, 4, 5, 3)).astype(dtype))
    expected, got = both("nchw_to_cnhw", x, np.empty((4, 45), dtype))
    np.testing.assert_array_equal(got, expected)
    a = rng.standard_normal((4, 45)).astype(dtype)
    bias = rng.standard_normal(4).astype(dtype)
    for b in (bias, None):
        expected, got = both("cnhw_to_nchw", a, b, np.empty((3, 4, 5, 3), dtype))
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("k,s,p,ceil", [
    ((3, 3), (2, 2), (0, 0), False), ((3, 3), (2, 2), (0, 0), True), ((3, 3), (2, 2), (1, 1), True),
    ((2, 2), (2, 2), (1, 1), True), ((4, 3), (3, 2), (2, 1), True), ((2, 2), (3, 3), (0, 0), False),
    ((1, 2), (1, 3), (0, 1), True),
])
@pytest.mark.parametrize("shape", [(2, 3, 7, 8), (1, 1, 9, 6)])
def test_max_pool(k, s, p, ceil, shape, dtype, rng):
    (kh, kw), (sh, sw), (ph, pw) = k, s, p
    oh = pool_op.pool_output_size(shape[2], kh, sh, ph, ceil)
    ow = pool_op.pool_output_size(shape[3], kw, sw, pw, ceil)
    # distinct values (no ties) in a strided array, and a copy with ties
    x = non_contiguous(rng.permutation(np.prod(shape)).reshape(shape).astype(dtype))
    for inp in (x, np.round(x / 7)):
        (y_ref, a_ref), (y, a) = both("max_pool_forward", inp, kh, kw, sh, sw, ph, pw, oh, ow)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(a, a_ref)
        assert a.dtype == np.int64
        dy = non_contiguous(rng.standard_normal(y.shape).astype(dtype))
        dx_ref, dx = both("max_pool_backward", dy, a_ref, shape)
        assert dx.shape == shape and dx.dtype == dtype
        close(dx, dx_ref, dtype)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 6, 9])
@pytest.mark.parametrize("beta", [0.75, 0.6])
def test_lrn(size, beta, dtype, rng):
    # a large alpha so that a wrong window shows; C = 7 < size 9 covers a window wider
    # than the channels
    shape = (2, 7, 5, 3) if size != 2 else (1, 4, 3, 6)
    x = non_contiguous(rng.standard_normal(shape).astype(dtype) * 2)
    alpha, k = 0.8, 0.5
    (y_ref, s_ref), (y, s) = both("lrn_forward", x, size, alpha, beta, k)
    close(y, y_ref, dtype)
    close(s, s_ref, dtype)
    dy = non_contiguous(rng.standard_normal(shape).astype(dtype))
    dx_ref, dx = both("lrn_backward", x, y_ref, s_ref, dy, size, alpha, beta)
    close(dx, dx_ref, dtype)


def test_lrn_running_sum_does_not_drift(dtype, rng):
    """Large values entering and leaving the window early must not spoil the small sums
    further along the channels."""
    x = rng.standard_normal((1, 64, 2, 2)).astype(dtype) * 1e-2
    x[:, :4] *= 1e5
    (y_ref, s_ref), (y, s) = both("lrn_forward", x, 5, 1.0, 0.75, 1e-3)
    close(s, s_ref, dtype)
    close(y, y_ref, dtype)
    dy = np.ones_like(x)
    dy[:, :4] = 1e5
    dx_ref, dx = both("lrn_backward", x, y_ref, s_ref, dy, 5, 1.0, 0.75)
    close(dx, dx_ref, dtype)


def test_relu_and_dropout(dtype, rng):
    x = non_contiguous(rng.standard_normal((3, 4, 5, 2)).astype(dtype))
    x[0, 0, 0, 0] = 0.0
    expected, got = both("relu_forward", x)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == dtype and got.shape == x.shape
    y = expected
    dy = non_contiguous(rng.standard_normal(x.shape).astype(dtype))
    expected, got = both("relu_backward", y, dy)
    np.testing.assert_array_equal(got, expected)
    mask = dropout_op.dropout_mask(x.shape, 0.3, np.dtype(dtype))
    expected, got = both("dropout_apply", x, mask)
    np.testing.assert_array_equal(got, expected)
    fc = rng.standard_normal((4, 9)).astype(dtype)  # the (N, features) of a linear layer
    np.testing.assert_array_equal(KERNELS["relu_forward"](fc), np.maximum(fc, 0))


def test_relu_keeps_nan():
    x = np.array([np.nan, -1.0, 2.0])
    np.testing.assert_array_equal(KERNELS["relu_forward"](x), relu_op.relu_forward.reference(x))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n,k", [(1, 3), (6, 11)])
def test_softmax_xent(n, k, weighted, dtype, rng):
    logits = non_contiguous(rng.standard_normal((n, k)).astype(dtype) * 4)
    logits[0, 0] = 60  # a large logit: exp must be taken after the shift
    labels = rng.integers(0, k, n)
    weights = rng.random(n).astype(dtype) if weighted else None
    (loss_ref, d_ref), (loss, d) = both("softmax_xent", logits, labels, weights)
    close(loss, loss_ref, dtype)
    close(d, d_ref, dtype)
    assert np.asarray(loss).shape == () and np.asarray(loss).dtype == dtype and d.dtype == dtype


@pytest.mark.parametrize("weight_decay", [0.0, 5e-4])
def test_sgd_update_in_place(weight_decay, dtype, rng):
    param = rng.standard_normal((5, 3)).astype(dtype)
    grad = rng.standard_normal((5, 3)).astype(dtype)
    velocity = rng.standard_normal((5, 3)).astype(dtype)
    p_ref, v_ref = param.copy(), velocity.copy()
    for _ in range(2):
        optim.sgd_update.reference(p_ref, grad, v_ref, 0.01, 0.9, weight_decay)
        assert KERNELS["sgd_update"](param, grad, velocity, 0.01, 0.9, weight_decay) is None
    # same operations in the same precision and order: exact
    np.testing.assert_array_equal(param, p_ref)
    np.testing.assert_array_equal(velocity, v_ref)
    # a strided parameter is updated in place too
    wide = np.zeros((5, 6), dtype)
    view, vel = wide[:, ::2], np.zeros((5, 3), dtype)
    KERNELS["sgd_update"](view, grad, vel, 0.5, 0.0, 0.0)
    np.testing.assert_array_equal(wide[:, ::2], -0.5 * grad)
    assert not wide[:, 1::2].any()


def test_max_pool_nan_wins_like_numpy_argmax():
    x = np.arange(2 * 7 * 7, dtype=np.float64).reshape(1, 2, 7, 7)
    x[0, 0, 1, 1] = x[0, 0, 2, 2] = np.nan  # two NaNs in one window: the first wins
    x[0, 1, 6, 6] = np.nan  # in the clipped corner window of ceil mode
    (y_ref, a_ref), (y, a) = both("max_pool_forward", x, 3, 3, 2, 2, 0, 0, 4, 4)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(a, a_ref)
    assert np.isnan(y[0, 0, 0, 0]) and a[0, 0, 0, 0] == 1 * 7 + 1
