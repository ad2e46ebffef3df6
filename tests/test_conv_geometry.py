"""Convolution with dilation, padding that differs per side, and depthwise groups: every
backend against PyTorch float64 (padding by F.pad, which pads each side on its own), the
kernels against the NumPy reference, float64 gradient checks, and the layer's config."""

import json

import numpy as np
import pytest
from cuda_support import assert_close, cuda_backend

import minicnn as mc
from minicnn import layers as L
from minicnn.gradcheck import check_layer, kinkless_input
from minicnn.ops import depthwise_conv2d as dw_op
from minicnn.ops import im2col as im2col_op

torch = pytest.importorskip("torch")
F = torch.nn.functional

# (in, out, kernel, stride, padding (top, left, bottom, right), dilation, groups, x shape)
CASES = [
    (3, 4, 3, 1, (1, 1, 1, 1), 2, 1, (2, 3, 9, 8)),          # dilated
    (3, 4, (3, 2), (2, 1), (0, 1, 1, 0), 1, 1, (2, 3, 8, 7)),  # TensorFlow's SAME, stride 2
    (2, 6, 3, 2, (1, 0, 2, 1), (2, 1), 2, (1, 2, 9, 9)),    # grouped, dilated, asymmetric
    (4, 4, 3, 1, (1, 1, 1, 1), 1, 4, (2, 4, 6, 5)),          # depthwise
    (4, 4, 3, 2, (0, 0, 1, 1), 1, 4, (2, 4, 8, 8)),          # depthwise stride 2, SAME
    (3, 6, 3, (1, 2), (2, 1, 0, 2), (2, 1), 3, (2, 3, 7, 9)),  # depthwise, 2 per channel
]


def torch_conv(x, w, b, stride, pads, dilation, groups):
    t, l, bo, r = pads
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    y = F.conv2d(F.pad(xt, (l, r, t, bo)), wt, bt, stride=stride, dilation=dilation, groups=groups)
    return y, (xt, wt, bt)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("case", CASES)
def test_conv_equals_pytorch(case, backend, rng):
    cin, cout, k, s, pads, d, g, shape = case
    mc.set_backend(backend)
    conv = L.Conv2D(cin, cout, k, stride=s, padding=pads, dilation=d, groups=g, dtype=np.float64)
    conv.params["bias"] = rng.standard_normal(cout)
    x = rng.standard_normal(shape)
    y = conv.forward(x)
    yt, (xt, wt, bt) = torch_conv(x, mc.to_numpy(conv.params["weight"]), mc.to_numpy(conv.params["bias"]),
                                  L.pair(s), pads, L.pair(d), g)
    assert y.shape[1:] == conv.output_shape(shape[1:])
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    dy = rng.standard_normal(y.shape)
    dx = conv.backward(dy)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(conv.grads["weight"], wt.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(conv.grads["bias"], bt.grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", CASES)
def test_conv_gradcheck(case):
    cin, cout, k, s, pads, d, g, shape = case
    conv = L.Conv2D(cin, cout, k, stride=s, padding=pads, dilation=d, groups=g, dtype=np.float64)
    result = check_layer(conv, kinkless_input(shape, np.random.default_rng(1)), mode="exhaustive")
    assert result.passed(1e-7), result.table()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", [(3, 3, 2, 1, 1, 0, 2, 1, 4, 3), (2, 3, 1, 2, 0, 2, 1, 2, 6, 4)])
def test_im2col_kernel_dilated_with_output_size(geometry, dtype, rng):
    """kh, kw, sh, sw, ph, pw, dil_h, dil_w, OH, OW (the padding after from OH, OW)."""
    kh, kw, sh, sw, ph, pw, dh, dw, oh, ow = geometry
    x = rng.standard_normal((2, 3, 7, 8)).astype(dtype)
    cpu = mc.set_backend("cpu").kernels
    shape = (3 * kh * kw, 2 * oh * ow)
    ref = im2col_op.im2col.reference(x, kh, kw, sh, sw, ph, pw, np.empty(shape, dtype), dh, dw, oh, ow)
    got = cpu["im2col"](x, kh, kw, sh, sw, ph, pw, np.empty(shape, dtype), dh, dw, oh, ow)
    np.testing.assert_array_equal(got, ref)
    cols = rng.standard_normal(shape).astype(dtype)
    ref = im2col_op.col2im.reference(cols, x.shape, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)
    np.testing.assert_array_equal(cpu["col2im"](cols, x.shape, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow), ref)


@pytest.mark.parametrize("case", [CASES[2], CASES[4], CASES[5]])
def test_cuda_kernels_equal_reference(case, rng):
    """im2col/col2im with dilation and the depthwise kernels in the simulator (tiny shapes)."""
    cin, cout, k, s, pads, d, g, shape = case
    kernels = cuda_backend().kernels
    (kh, kw), (sh, sw), (dh, dw) = L.pair(k), L.pair(s), L.pair(d)
    conv = L.Conv2D(cin, cout, k, stride=s, padding=pads, dilation=d, groups=g, dtype=np.float64)
    oh, ow = conv.output_shape(shape[1:])[1:]
    x = rng.standard_normal(shape)
    ph, pw = pads[:2]
    geo = (sh, sw, ph, pw, dh, dw)
    if g == 2:
        cshape = (cin * kh * kw, shape[0] * oh * ow)
        ref = im2col_op.im2col.reference(x, kh, kw, sh, sw, ph, pw, np.empty(cshape), dh, dw, oh, ow)
        assert_close(kernels["im2col"](x, kh, kw, sh, sw, ph, pw, np.empty(cshape), dh, dw, oh, ow), ref)
        cols = rng.standard_normal(cshape)
        assert_close(kernels["col2im"](cols, shape, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow),
                     im2col_op.col2im.reference(cols, shape, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow))
        return
    w, b = rng.standard_normal((cout, 1, kh, kw)), rng.standard_normal(cout)
    assert_close(kernels["depthwise_forward"](x, w, b, *geo, oh, ow),
                 dw_op.depthwise_forward.reference(x, w, b, *geo, oh, ow))
    dy = rng.standard_normal((shape[0], cout, oh, ow))
    assert_close(kernels["depthwise_backward_input"](dy, w, shape, *geo),
                 dw_op.depthwise_backward_input.reference(dy, w, shape, *geo))
    assert_close(kernels["depthwise_backward_weight"](dy, x, kh, kw, *geo),
                 dw_op.depthwise_backward_weight.reference(dy, x, kh, kw, *geo))


def test_cuda_layer_equals_numpy(rng):
    """A dilated, per-side padded depthwise Conv2D layer on the cuda backend (simulator)."""
    conv = L.Conv2D(3, 6, 3, stride=(1, 2), padding=(2, 1, 0, 2), dilation=(2, 1), groups=3,
                    dtype=np.float64)
    x = rng.standard_normal((1, 3, 6, 7))
    y = conv.forward(x)
    dy = rng.standard_normal(y.shape)
    dx = conv.backward(dy)
    expected = (y, dx, conv.grads["weight"])
    cuda_backend()
    conv.params["weight"] = mc.asarray(conv.params["weight"])
    conv.params["bias"] = mc.asarray(conv.params["bias"])
    got_y = conv.forward(mc.asarray(x))
    got_dx = conv.backward(mc.asarray(dy))
    for got, want in zip((got_y, got_dx, conv.grads["weight"]), expected, strict=True):
        assert_close(got, want)


def test_config_round_trip_and_old_files(tmp_path):
    net = mc.Sequential([L.Conv2D(3, 4, 3, padding=(0, 1, 1, 0), dilation=2), L.ReLU(),
                         L.Conv2D(4, 4, 3, padding=1, groups=4)], input_shape=(3, 9, 9))
    net.save(tmp_path / "n.npz")
    back = mc.Sequential.load(tmp_path / "n.npz")
    assert [x.config() for x in back.layers] == [x.config() for x in net.layers]
    assert back.layers[0].pads == (0, 1, 1, 0) and back.layers[0].dilation == (2, 2)
    x = np.random.default_rng(0).standard_normal((1, 3, 9, 9)).astype(np.float32)
    np.testing.assert_array_equal(back.forward(x, train=False), net.forward(x, train=False))
    # a symmetric, undilated convolution's config is what it was before these existed
    assert net.layers[2].config()["padding"] == [1, 1] and "dilation" not in net.layers[2].config()
    arch = json.loads(json.dumps(net.architecture()))
    assert arch["layers"][0]["config"]["padding"] == [0, 1, 1, 0]


def test_bad_geometry_refused():
    with pytest.raises(ValueError, match="padding"):
        L.Conv2D(3, 4, 3, padding=(1, 2, 3))
    with pytest.raises(ValueError, match="dilation"):
        L.Conv2D(3, 4, 3, dilation=0)
