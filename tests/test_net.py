import json

import numpy as np
import pytest

import minicnn as mc
from minicnn import layers as L
from minicnn.errors import InputError


def small_net(dtype=np.float32):
    return mc.Sequential(
        [L.Conv2D(3, 4, 3, padding=1, dtype=dtype), L.ReLU(), L.MaxPool2D(2), L.Flatten(),
         L.Linear(4 * 4 * 4, 3, dtype=dtype)],
        names=["conv1", "relu1", "pool1", "flatten", "fc"], input_shape=(3, 8, 8))


def test_named_params_order_and_lookup():
    net = small_net()
    names = [n for n, _, _ in net.named_params()]
    assert names == ["conv1.weight", "conv1.bias", "fc.weight", "fc.bias"]
    assert net["fc"] is net.layers[4] and net.names[0] == "conv1"
    with pytest.raises(KeyError, match="no layer named 'fc9'"):
        net["fc9"]


def test_save_load_round_trip(tmp_path, rng):
    net = small_net()
    net.meta["classes"] = ["a", "b", "c"]
    net.freeze(["conv1"])
    path = tmp_path / "net.npz"
    net.save(path)
    with np.load(path, allow_pickle=False) as f:  # no pickles inside
        arch = json.loads(str(f["__architecture__"]))
    assert arch["meta"]["classes"] == ["a", "b", "c"]
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    loaded = mc.Sequential.load(path)
    np.testing.assert_array_equal(loaded.forward(x, train=False), net.forward(x, train=False))
    assert loaded.names == net.names and loaded["conv1"].frozen and loaded.meta == net.meta
    other = small_net()
    other.load(path)
    np.testing.assert_array_equal(other["fc"].params["weight"], net["fc"].params["weight"])


def test_load_wrong_shape_names_the_layer(tmp_path):
    path = tmp_path / "net.npz"
    small_net().save(path)
    wrong = mc.Sequential([L.Conv2D(3, 5, 3, padding=1), L.ReLU(), L.MaxPool2D(2), L.Flatten(),
                           L.Linear(5 * 4 * 4, 3)], names=["conv1", "relu1", "pool1", "flatten", "fc"])
    with pytest.raises(InputError, match=r"layer 'conv1' parameter 'weight' has shape \(4, 3, 3, 3\)"):
        wrong.load(path)


def test_load_missing_or_corrupt_file_names_it(tmp_path):
    with pytest.raises(InputError, match="nope.npz: no such file"):
        mc.Sequential.load(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InputError, match=r"bad.npz: not an .npz file \(a NumPy zip .*import-weights`"):
        mc.Sequential.load(bad)


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "net.npz"
    small_net().save(path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError):
        small_net().save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["net.npz"]


def test_summary_reports_shapes_params_and_macs():
    text = small_net().summary()
    assert "4x8x8" in text and "4x4x4" in text
    assert "112" in text  # conv1: 4*3*3*3 + 4 parameters
    assert "6,912" in text  # conv1 MACs: 4*8*8 outputs * 27


def test_backward_stops_below_the_lowest_trainable_layer(rng):
    net = small_net(np.float64)
    net.freeze(["conv1"])
    x = rng.standard_normal((2, 3, 8, 8))
    loss, d = mc.losses.softmax_cross_entropy(net.forward(x), np.array([0, 2]))
    assert net.backward(d) is None
    assert "weight" not in net["conv1"].grads and net["fc"].grads["weight"].shape == (3, 64)
    net.freeze(["conv1"], frozen=False)
    dx = net.backward(d, input_grad=True)
    assert dx.shape == x.shape


def test_tiny_net_learns_a_separable_problem(rng):
    net = small_net()
    labels = rng.integers(0, 3, size=30)
    x = rng.standard_normal((30, 3, 8, 8)).astype(np.float32)
    x[np.arange(30), labels] += 1.0
    opt = mc.optim.SGD(net, lr=0.05, momentum=0.9, weight_decay=0.0)
    for _ in range(100):
        loss, d = mc.losses.softmax_cross_entropy(net.forward(x), labels)
        net.backward(d)
        opt.step()
    final, _ = mc.losses.softmax_cross_entropy(net.forward(x, train=False), labels)
    assert float(final) < 0.05
