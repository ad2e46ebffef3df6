import numpy as np
import pytest

import minicnn as mc
from minicnn import layers as L


def one_layer_net():
    return mc.Sequential([L.Linear(2, 1, dtype=np.float64)], names=["fc"])


def set_grads(net, gw, gb):
    net["fc"].grads = {"weight": np.full((1, 2), gw), "bias": np.full(1, gb)}


def test_sgd_momentum_and_weight_decay_follow_krizhevsky():
    net = one_layer_net()
    net["fc"].params["weight"] = [[1.0, 2.0]]
    net["fc"].params["bias"] = [0.5]
    opt = mc.optim.SGD(net, lr=0.1, momentum=0.9, weight_decay=0.01)
    set_grads(net, 1.0, 1.0)
    opt.step()
    v1 = -0.1 * (1.0 + 0.01 * np.array([1.0, 2.0]))
    np.testing.assert_allclose(net["fc"].params["weight"][0], [1.0, 2.0] + v1)
    np.testing.assert_allclose(net["fc"].params["bias"], [0.5 - 0.1])  # no decay on biases
    w1 = net["fc"].params["weight"][0].copy()
    opt.step()
    v2 = 0.9 * v1 - 0.1 * (1.0 + 0.01 * w1)
    np.testing.assert_allclose(net["fc"].params["weight"][0], w1 + v2)


def test_lr_mult_and_frozen_layers():
    net = mc.Sequential([L.Linear(2, 2, dtype=np.float64), L.Linear(2, 1, dtype=np.float64)],
                        names=["a", "b"])
    opt = mc.optim.SGD(net, lr=1.0, momentum=0.0, weight_decay=0.0, lr_mult={"b": 0.5})
    net.freeze(["a"])
    a0, b0 = net["a"].params["weight"].copy(), net["b"].params["weight"].copy()
    x = np.ones((1, 2))
    _ = net.forward(x)
    net.backward(np.ones((1, 1)))
    assert net["a"].grads == {}  # no gradient computed for a frozen layer
    opt.step()
    np.testing.assert_array_equal(net["a"].params["weight"], a0)
    np.testing.assert_allclose(net["b"].params["weight"], b0 - 0.5 * net["b"].grads["weight"])


def test_step_without_backward_is_an_error():
    with pytest.raises(RuntimeError, match="no gradient"):
        mc.optim.SGD(one_layer_net()).step()


def test_bad_hyperparameters_are_rejected():
    with pytest.raises(ValueError, match="momentum"):
        mc.optim.SGD(one_layer_net(), momentum=1.5)


def test_schedules():
    opt = mc.optim.SGD(one_layer_net(), lr=0.01)
    step = mc.optim.StepLR(opt, step_size=2, gamma=0.1)
    assert [round(step.step(), 6) for _ in range(4)] == [0.01, 0.001, 0.001, 0.0001]
    opt.lr = 0.01
    plateau = mc.optim.PlateauLR(opt, factor=0.1, patience=1, mode="min")
    for err in [0.5, 0.4, 0.4, 0.4]:
        plateau.step(err)
    assert opt.lr == pytest.approx(0.001)
    assert plateau.step(0.1) == pytest.approx(0.001)


def test_state_dict_round_trip():
    net = one_layer_net()
    opt = mc.optim.SGD(net, lr=0.1)
    set_grads(net, 1.0, 2.0)
    opt.step()
    state = opt.state_dict()
    other = mc.optim.SGD(net, lr=0.5)
    other.load_state_dict(state)
    assert other.lr == 0.1
    np.testing.assert_array_equal(other.velocity["fc.weight"], opt.velocity["fc.weight"])
