"""PyTorch as an optional, independent oracle (skipped when torch is not installed)."""

import numpy as np
import pytest

import minicnn as mc
from minicnn import layers as L

torch = pytest.importorskip("torch")
F = torch.nn.functional


def t(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("stride,padding,groups", [(1, 0, 1), (2, 1, 2), (4, 2, 1)])
def test_conv_forward_backward(stride, padding, groups, rng):
    conv = L.Conv2D(4, 6, 5, stride=stride, padding=padding, groups=groups, dtype=np.float64)
    conv.params["bias"] = rng.standard_normal(6)
    x = rng.standard_normal((2, 4, 11, 9))
    y = conv.forward(x)
    dy = rng.standard_normal(y.shape)
    dx = conv.backward(dy)
    xt, wt, bt = t(x), t(conv.params["weight"]), t(conv.params["bias"])
    yt = F.conv2d(xt, wt, bt, stride=stride, padding=padding, groups=groups)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(conv.grads["weight"], wt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(conv.grads["bias"], bt.grad.numpy(), rtol=1e-10)


@pytest.mark.parametrize("k,s,p,ceil", [(3, 2, 0, False), (3, 2, 0, True), (3, 2, 1, True),
                                        (2, 2, 1, True), (4, 3, 2, True), (3, 3, 1, False)])
@pytest.mark.parametrize("size", [6, 7, 13])
def test_max_pool_forward_backward(k, s, p, ceil, size, rng):
    pool = L.MaxPool2D(k, s, padding=p, ceil_mode=ceil)
    x = rng.standard_normal((2, 3, size, size + 2))
    y = pool.forward(x)
    dy = rng.standard_normal(y.shape)
    xt = t(x)
    yt = F.max_pool2d(xt, k, s, padding=p, ceil_mode=ceil)
    yt.backward(torch.tensor(dy))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_allclose(pool.backward(dy), xt.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 6])
def test_lrn_forward_backward(size, rng):
    lrn = L.LRN(size, alpha=0.5, beta=0.75, k=0.1)
    x = rng.standard_normal((2, 7, 3, 4))
    y = lrn.forward(x)
    dy = rng.standard_normal(y.shape)
    xt = t(x)
    yt = F.local_response_norm(xt, size, alpha=0.5, beta=0.75, k=0.1)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(lrn.backward(dy), xt.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_softmax_cross_entropy(rng):
    z = rng.standard_normal((5, 4)) * 10
    labels = np.array([0, 3, 1, 1, 2])
    loss, grad = mc.losses.softmax_cross_entropy(z, labels)
    zt = t(z)
    lt = F.cross_entropy(zt, torch.tensor(labels))
    lt.backward()
    assert float(loss) == pytest.approx(lt.item(), rel=1e-12)
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-10, atol=1e-14)
