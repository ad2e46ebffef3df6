"""Forward passes against naive loops written in tests/naive.py."""

import naive
import numpy as np
import pytest

import minicnn as mc
from minicnn import layers as L
from minicnn.ops import max_pool2d as pool_op


@pytest.mark.parametrize("stride,padding,groups,shape", [
    ((1, 1), (0, 0), 1, (2, 3, 6, 5)),
    ((2, 2), (1, 1), 1, (2, 2, 7, 7)),
    ((2, 1), (2, 0), 2, (1, 4, 6, 7)),
    ((3, 3), (1, 2), 4, (2, 8, 8, 9)),   # stride > kernel on one axis
])
def test_conv2d_matches_naive(stride, padding, groups, shape, rng):
    C = shape[1]
    conv = L.Conv2D(C, 2 * groups, (3, 2), stride=stride, padding=padding, groups=groups,
                    dtype=np.float64)
    conv.params["bias"] = rng.standard_normal(2 * groups)
    x = rng.standard_normal(shape)
    expected = naive.conv2d(x, conv.params["weight"], conv.params["bias"], stride, padding, groups)
    np.testing.assert_allclose(conv.forward(x), expected, rtol=1e-12, atol=1e-12)


def test_conv2d_chunks_give_the_same_result(rng, monkeypatch):
    from minicnn.ops import conv2d as conv_op

    conv = L.Conv2D(3, 4, 3, padding=1, dtype=np.float64)
    x = rng.standard_normal((5, 3, 6, 6))
    y_one_chunk = conv.forward(x)
    dy = rng.standard_normal(y_one_chunk.shape)
    dx_one = conv.backward(dy)
    dw_one = conv.grads["weight"].copy()
    monkeypatch.setattr(conv_op, "WORKSPACE_BYTES", 1)  # one image per chunk
    np.testing.assert_allclose(conv.forward(x), y_one_chunk, rtol=1e-13)
    np.testing.assert_allclose(conv.backward(dy), dx_one, rtol=1e-13)
    np.testing.assert_allclose(conv.grads["weight"], dw_one, rtol=1e-13)


@pytest.mark.parametrize("k,s,p,ceil_mode,size", [
    (3, 2, 0, False, 7), (3, 2, 0, True, 6), (3, 2, 1, True, 6), (2, 2, 1, False, 5),
    (3, 3, 1, True, 8), (2, 3, 0, True, 7), (3, 2, 1, False, 9),
])
def test_max_pool_matches_naive(k, s, p, ceil_mode, size, rng):
    x = rng.standard_normal((2, 3, size, size + 1))
    pool = L.MaxPool2D(k, s, padding=p, ceil_mode=ceil_mode)
    y = pool.forward(x)
    np.testing.assert_array_equal(y, naive.max_pool2d(x, k, s, p, ceil_mode))
    assert y.shape[1:] == pool.output_shape(x.shape[1:])


@pytest.mark.parametrize("size,k,s,p,floor_out,ceil_out", [
    (55, 3, 2, 0, 27, 27), (27, 3, 2, 0, 13, 13), (13, 3, 2, 0, 6, 6),
    (6, 3, 2, 0, 2, 3), (5, 2, 2, 1, 3, 3), (6, 2, 2, 1, 4, 4), (7, 3, 3, 1, 3, 3), (4, 3, 2, 1, 2, 3)
])
def test_pool_output_sizes_follow_pytorch(size, k, s, p, floor_out, ceil_out):
    # values worked out from PyTorch's rule, including the ceil-mode correction
    # (the last window must start inside the input or left padding)
    assert pool_op.pool_output_size(size, k, s, p, False) == floor_out
    assert pool_op.pool_output_size(size, k, s, p, True) == ceil_out


def test_max_pool_first_maximum_wins_ties():
    x = np.zeros((1, 1, 2, 2))
    pool = L.MaxPool2D(2)
    pool.forward(x)
    dx = pool.backward(np.ones((1, 1, 1, 1)))
    np.testing.assert_array_equal(dx[0, 0], [[1, 0], [0, 0]])


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_lrn_matches_naive_with_large_alpha(size, rng):
    # alpha = 0.5 and k = 0.1 make the window's sum dominate: a wrong window must show
    x = rng.standard_normal((2, 7, 3, 2)) * 2
    y = L.LRN(size, alpha=0.5, beta=0.75, k=0.1).forward(x)
    np.testing.assert_allclose(y, naive.lrn(x, size, 0.5, 0.75, 0.1), rtol=1e-12)


def test_lrn_even_window_reaches_back_further():
    # size 2: channel c normalises by x[c-1]^2 + x[c]^2 (PyTorch's padding), not x[c+1]
    x = np.zeros((1, 3, 1, 1))
    x[0, :, 0, 0] = [1.0, 2.0, 4.0]
    y = L.LRN(2, alpha=1.0, beta=1.0, k=0.0).forward(x)[0, :, 0, 0]
    np.testing.assert_allclose(y, [1 / 0.5, 2 / 2.5, 4 / 10.0])


def test_softmax_loss_matches_naive_and_survives_extreme_logits():
    z = np.array([[1000.0, -1000.0, 0.0], [-1e4, -1e4 + 1, -1e4 + 2], [3.0, 1.0, 0.2]])
    t = np.array([0, 1, 2])
    loss, grad = mc.losses.softmax_cross_entropy(z, t)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    assert float(loss) == pytest.approx(naive.softmax_xent(z, t), rel=1e-12)
    np.testing.assert_allclose(grad.sum(axis=1), 0, atol=1e-15)
    big, _ = mc.losses.softmax_cross_entropy(np.array([[0.0, 1e4]], dtype=np.float32), np.array([0]))
    assert float(big) == pytest.approx(1e4)


def test_softmax_loss_weights_scale_each_sample(rng):
    z, t = rng.standard_normal((4, 3)), np.array([0, 2, 1, 1])
    w = np.array([1.0, 0.0, 2.0, 0.5])
    loss, grad = mc.losses.softmax_cross_entropy(z, t, weights=w)
    per_sample = [naive.softmax_xent(z[i : i + 1], t[i : i + 1]) for i in range(4)]
    assert float(loss) == pytest.approx(np.dot(w, per_sample) / 4)
    np.testing.assert_array_equal(grad[1], 0)


def test_softmax_loss_rejects_bad_labels():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        mc.losses.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="labels must have shape"):
        mc.losses.softmax_cross_entropy(np.zeros((2, 3)), np.array([0]))


def test_relu_and_linear_and_flatten(rng):
    x = rng.standard_normal((3, 4))
    np.testing.assert_array_equal(L.ReLU().forward(x), np.where(x > 0, x, 0))
    lin = L.Linear(4, 2, dtype=np.float64)
    lin.params["bias"] = [1.0, -1.0]
    np.testing.assert_allclose(lin.forward(x), x @ lin.params["weight"].T + [1.0, -1.0])
    f = L.Flatten()
    x4 = rng.standard_normal((2, 3, 2, 2))
    assert f.forward(x4).shape == (2, 12)
    assert f.backward(np.ones((2, 12))).shape == (2, 3, 2, 2)
