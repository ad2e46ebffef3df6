import numpy as np
import pytest

import minicnn as mc
from minicnn import layers as L


def test_conv_weight_shapes_follow_groups():
    conv = L.Conv2D(96, 256, 5, padding=2, groups=2)
    assert conv.params["weight"].shape == (256, 48, 5, 5)
    assert conv.params["bias"].shape == (256,)
    assert conv.params["weight"].dtype == np.float32
    with pytest.raises(ValueError, match="divisible by groups"):
        L.Conv2D(3, 4, 3, groups=2)


def test_param_replacement_checks_shape():
    lin = L.Linear(3, 2)
    lin.params["weight"] = np.ones((2, 3))
    assert lin.params["weight"].dtype == np.float32 and lin.params["weight"].sum() == 6
    lin.name = "fc9"
    with pytest.raises(ValueError, match=r"'fc9'.*\(2, 3\)"):
        lin.params["weight"] = np.ones((3, 2))
    with pytest.raises(KeyError, match="no parameter 'gamma'"):
        lin.params["gamma"] = np.ones(2)


@pytest.mark.parametrize("layer,x,pattern", [
    (L.Conv2D(3, 4, 3), np.zeros((2, 4, 5, 5), np.float32),
     r"'conv2d'.*\(N, 3, H, W\).*3 channels.*got shape \(2, 4, 5, 5\)"),
    (L.Conv2D(3, 4, 3), np.zeros((3, 5, 5), np.float32), r"\(N, 3, H, W\).*rank-4"),
    (L.Conv2D(3, 4, 3), np.zeros((1, 3, 5, 5), np.float64), r"float32 input like its parameters"),
    (L.Conv2D(3, 4, 3), np.zeros((1, 3, 5, 5), np.int32), r"float32 or float64 input"),
    (L.Linear(6, 2), np.zeros((2, 5), np.float32), r"'linear'.*\(N, 6\).*6 channels/features"),
    (L.MaxPool2D(2), np.zeros((2, 5), np.float32), r"'maxpool2d'.*\(N, C, H, W\)"),
    (L.LRN(), np.zeros((2, 5)), r"'lrn'.*rank-4"),
])
def test_bad_input_names_layer_and_expected_shape(layer, x, pattern):
    with pytest.raises(ValueError, match=pattern):
        layer.forward(x)


def test_conv_input_smaller_than_kernel_is_an_error():
    with pytest.raises(ValueError, match="smaller than the kernel"):
        L.Conv2D(3, 4, 5).forward(np.zeros((1, 3, 3, 3), np.float32))


def test_dropout_preserves_mean_and_reuses_mask(rng):
    drop = L.Dropout(0.5)
    x = np.ones((200, 500), np.float32)
    y = drop.forward(x, train=True)
    # kept fraction ~ Binomial(1e5, 0.5): 6 sigma is 0.0095 of the mean
    assert abs(float(y.mean()) - 1.0) < 0.02
    assert set(np.unique(y)) == {0.0, 2.0}
    dy = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_array_equal(drop.backward(dy), dy * (y / x))
    assert drop.forward(x, train=False) is x
    assert drop.backward(dy) is dy


def test_dropout_masks_repeat_with_the_seed():
    drop = L.Dropout(0.3)
    x = np.ones((4, 50))
    mc.seed(7)
    a = drop.forward(x)
    mc.seed(7)
    np.testing.assert_array_equal(drop.forward(x), a)
    assert not np.array_equal(drop.forward(x), a)


def test_float64_layers_keep_float64(rng):
    conv = L.Conv2D(2, 3, 3, padding=1, dtype=np.float64)
    y = conv.forward(rng.standard_normal((1, 2, 4, 4)))
    assert y.dtype == np.float64
    conv.backward(np.ones_like(y))
    assert conv.grads["weight"].dtype == np.float64


def small_net(dtype=np.float64):
    mc.seed(0)
    return mc.Sequential([L.Conv2D(2, 4, 3, padding=1, dtype=dtype), L.ReLU(), L.LRN(3),
                          L.MaxPool2D(2), L.Flatten(), L.Dropout(0.5), L.Linear(16, 3, dtype=dtype)])


def test_evaluation_mode_still_supports_backward(rng):
    """train=False turns dropout off but keeps what backward needs (saliency maps in
    evaluation mode): the input gradient equals the one through an explicit dropout-free net."""
    net = small_net()
    x = rng.standard_normal((2, 2, 4, 4))
    y = net.forward(x, train=False)
    dx = net.backward(np.ones_like(y), input_grad=True)
    plain = mc.Sequential([layer for layer in net.layers if not isinstance(layer, L.Dropout)])
    np.testing.assert_allclose(dx, plain.backward(np.ones_like(plain.forward(x)), input_grad=True))


def test_inference_keeps_nothing_for_backward(rng):
    net = small_net(np.float32)
    x = rng.standard_normal((2, 2, 4, 4)).astype(np.float32)
    y_kept = net.forward(x, train=False)
    y = net.forward(x, train=False, keep_for_backward=False)
    np.testing.assert_array_equal(y, y_kept)
    assert all(layer._saved is None for layer in net.layers)
    with pytest.raises(RuntimeError, match=r"layer 'linear6' \(Linear\): backward needs a forward.*"
                                           r"keep_for_backward=False"):
        net.backward(np.ones_like(y))


def test_inference_lets_the_winograd_buffers_go(rng):
    """A training step keeps conv's transformed input for the weight gradient, in buffers it
    reuses from step to step; an inference forward frees them."""
    mc.set_backend("cpu")  # Winograd runs on the kernel backends
    conv = L.Conv2D(2, 4, 3, padding=1)
    x = rng.standard_normal((2, 2, 8, 8)).astype(np.float32)
    conv.backward(np.ones_like(conv.forward(x, train=True)))
    assert conv.__dict__.get("_kept_for_backward")
    conv.forward(x, train=False, keep_for_backward=False)
    assert "_kept_for_backward" not in conv.__dict__
