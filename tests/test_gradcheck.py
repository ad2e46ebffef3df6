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
    x = np.array([[1e-4, -0.5, 0.7]])  # the first element sits on ReLU's kink
    result = gradcheck.check_layer(L.ReLU(), x, mode="exhaustive")
    assert result.kinks["input"] == 1
    assert result.passed(1e-6)


def test_gradcheck_requires_float64():
    with pytest.raises(ValueError, match="float64"):
        gradcheck.check_layer(L.Linear(3, 2), np.zeros((1, 3)))


def test_kinkless_input_is_distinct_and_away_from_zero():
    x = gradcheck.kinkless_input((3, 4, 5))
    assert len(np.unique(x)) == x.size
    assert np.abs(x).min() >= 0.005
