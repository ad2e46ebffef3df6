"""Every backward pass against finite differences in float64 (max relative error <= 1e-6)."""

import numpy as np
import pytest

import minicnn as mc
from minicnn import gradcheck
from minicnn import layers as L

CASES = gradcheck.standard_cases()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_op_gradients_exhaustive(case):
    name, layer, x = case
    result = gradcheck.check_layer(layer, x, mode="exhaustive")
    assert result.passed(1e-6), f"{name}\n{result.table()}"
    assert sum(result.kinks.values()) == 0, "kinkless inputs must not hit a kink"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_op_gradients_directional(case):
    name, layer, x = case
    assert gradcheck.check_layer(layer, x, mode="directional").passed(1e-6), name


def test_tiny_alexnet_like_net_gradients():
    mc.seed(1)
    net = mc.models.tiny_alexnet(num_classes=4, input_size=8)
    x = gradcheck.kinkless_input((2, 3, 8, 8), np.random.default_rng(3))
    result = gradcheck.check_net(net, x, np.array([1, 3]), mode="exhaustive")
    assert result.passed(1e-6), result.table()
    assert set(result.errors) >= {"conv1.weight", "conv2.weight", "fc8.bias", "input"}
    assert gradcheck.check_net(net, x, np.array([1, 3]), mode="directional").passed(1e-6)


@pytest.mark.parametrize("weights", [None, np.array([1.0, 0.5, 0.0, 2.0])])
def test_softmax_cross_entropy_gradient(weights):
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((4, 5))
    result = gradcheck.check_loss(logits, np.array([0, 4, 2, 2]), weights, mode="exhaustive")
    assert result.passed(1e-6), result.table()
    assert sum(result.kinks.values()) == 0


def test_a_wrong_backward_is_caught():
    class BrokenReLU(L.ReLU):
        def backward(self, dy):
            return super().backward(dy) * 1.001

    x = gradcheck.kinkless_input((2, 5))
    result = gradcheck.check_layer(BrokenReLU(), x, mode="exhaustive")
    assert not result.passed(1e-6)
    assert result.worst_index["input"] is not None
    assert not gradcheck.check_layer(BrokenReLU(), x, mode="directional").passed(1e-6)


def test_kinks_are_reported_not_counted_as_errors():
    # the first element sits on ReLU's kink: within reach of even the h/64-stencil
    x = np.array([[1e-6, -0.5, 0.7]])
    result = gradcheck.check_layer(L.ReLU(), x, mode="exhaustive")
    assert result.kinks["input"] == 1
    assert result.passed(1e-6)


def test_a_kink_only_the_outermost_point_reaches_is_found_and_the_step_shrinks():
    # 2h - 1e-6 from ReLU's kink: only f(x - 2h) crosses it, and the h- and h/2-estimates
    # differ by 8e-5 of the slope, below kink_tol: the h-estimate erred by that, unnoticed
    x = np.array([[2e-3 - 1e-6, -0.5, 0.7]])
    result = gradcheck.check_layer(L.ReLU(), x, mode="exhaustive")
    assert result.kinks["input"] == 0, "the step shrinks until no forward leaves ReLU's piece"
    assert result.errors["input"] <= 1e-6, result.table()


def test_pieces_of_relu_clip_and_max_pool():
    relu, clip, pool = L.ReLU(), L.Clip(0.0, 1.0), L.MaxPool2D(2, 2)
    relu.forward(np.array([[-1.0, 0.0, 2.0]]))
    clip.forward(np.array([[-1.0, 0.5, 2.0]]))
    pool.forward(np.array([[[[1.0, 3.0], [2.0, 0.0]]]]))
    on_relu, clip_low, clip_high, argmax = gradcheck.pieces([relu, L.Flatten(), clip, pool])
    assert on_relu.tolist() == [[False, False, True]]
    assert clip_low.tolist() == [[True, False, False]] and clip_high.tolist() == [[False, False, True]]
    pool.forward(np.array([[[[1.0, 3.0], [4.0, 0.0]]]]))
    assert not np.array_equal(gradcheck.pieces([pool])[0], argmax)


def test_alexnet_like_net_whose_h_stencils_straddle_kinks_alike():
    # (numpy and cpu) `minicnn gradcheck --seed 1`'s net: near conv1.weight[1, 0, 0, 2] the h- and
    # h/2-stencils both straddle ReLU kinks and agree to 7.5e-5, both 1.1e-3 off; the
    # forwards' pieces show the kinks, and the h/8-stencil misses them
    for backend in ("numpy", "cpu"):
        mc.set_backend(backend)
        mc.seed(1)
        net = mc.models.tiny_alexnet(num_classes=5, input_size=12)
        for name in ("conv2", "fc6", "fc7", "fc8"):
            net[name].frozen = True
        x = gradcheck.kinkless_input((2, 3, 12, 12), np.random.default_rng(1))
        result = gradcheck.check_net(net, x, np.array([1, 3]), mode="exhaustive", seed=1, check_input=False)
        assert result.passed(1e-6), f"{backend}\n{result.table()}"


def test_a_derivative_that_is_zero_but_moves_f_by_an_ulp_passes():
    # The cpu backend's Winograd convolution computes a whole output tile from its input
    # tile: an input that only dead (ReLU'd) outputs depend on still moves the loss by an
    # ulp or two. Here f = t[1] + (the rounding error of 3 + t[0]), 0.5 give or take 2 ulp:
    # df/dt[0] = 0, but the stencil's estimate is ~ulp/h, 1.5e-5 of the 1e-8 floor (this
    # failed); the estimate's round-off is now allowed for.
    t = np.array([0.123456789, 0.5])

    def f():
        return t[1] + (((3.0 + t[0]) - 3.0) - t[0])

    result = gradcheck._check(f, {"t": np.array([0.0, 1.0])}, {"t": t}, "exhaustive", 1e-3, 1e-4, 0)
    assert result.passed(1e-6), result.table()
    wrong = gradcheck._check(f, {"t": np.array([1e-10, 1.0])}, {"t": t}, "exhaustive", 1e-3, 1e-4, 0)
    assert not wrong.passed(1e-6), "a derivative wrong by 1e-10, 150 times the round-off, is caught"


def test_tiny_alexnet_like_net_gradients_on_the_cpu_backend():
    # `minicnn gradcheck --backend cpu`'s net (conv1 and the fully connected layers frozen to
    # keep it short): conv2.weight[3, 1, 0, 2] has a zero derivative (every output it feeds
    # is dead) that Winograd's tiles move the loss by an ulp: 5.9e-5 before the round-off
    # was allowed for, and 1/eps times more with a smaller step
    mc.set_backend("cpu")
    net = mc.models.tiny_alexnet(num_classes=5, input_size=12)
    for name in ("conv1", "fc6", "fc7", "fc8"):
        net[name].frozen = True
    x = gradcheck.kinkless_input((2, 3, 12, 12), np.random.default_rng(0))
    for eps in (1e-3, 1e-5):
        result = gradcheck.check_net(net, x, np.array([1, 3]), mode="exhaustive", eps=eps, check_input=False)
        assert result.passed(1e-6), f"eps {eps}\n{result.table()}"


@pytest.mark.slow
def test_whole_tiny_alexnet_like_net_gradients_on_the_cpu_backend():
    mc.set_backend("cpu")
    net = mc.models.tiny_alexnet(num_classes=4, input_size=6)
    x = gradcheck.kinkless_input((2, 3, 6, 6), np.random.default_rng(0))
    result = gradcheck.check_net(net, x, np.array([1, 3]), mode="exhaustive")
    assert result.passed(1e-6), result.table()


def test_gradcheck_requires_float64():
    with pytest.raises(ValueError, match="float64"):
        gradcheck.check_layer(L.Linear(3, 2), np.zeros((1, 3)))


def test_kinkless_input_is_distinct_and_away_from_zero():
    x = gradcheck.kinkless_input((3, 4, 5))
    assert len(np.unique(x)) == x.size
    assert np.abs(x).min() >= 0.005
