"""BatchNorm2D (evaluation and training, running statistics as PyTorch's) and Clip (ReLU6):
PyTorch float64 parity, float64 gradient checks, the cpu and cuda kernels against the NumPy
reference, save/load of the running statistics, the PyTorch twin."""

import numpy as np
import pytest
from cuda_support import assert_close, cuda_backend

import minicnn as mc
from minicnn import layers as L
from minicnn.gradcheck import check_layer, kinkless_input
from minicnn.ops import batch_norm as bn_op
from minicnn.ops import clip as clip_op

torch = pytest.importorskip("torch")


def random_bn(C, rng, dtype=np.float64, momentum=0.1):
    bn = L.BatchNorm2D(C, eps=1e-3, momentum=momentum, dtype=dtype)
    bn.params["weight"] = rng.uniform(0.5, 2.0, C)
    bn.params["bias"] = rng.standard_normal(C)
    bn.buffers["running_mean"] = rng.standard_normal(C)
    bn.buffers["running_var"] = rng.uniform(0.5, 2.0, C)
    return bn


def torch_bn(bn):
    t = torch.nn.BatchNorm2d(bn.num_features, bn.eps, bn.momentum).double()
    with torch.no_grad():
        for k in ("weight", "bias"):
            getattr(t, k).copy_(torch.tensor(mc.to_numpy(bn.params[k])))
        for k in ("running_mean", "running_var"):
            getattr(t, k).copy_(torch.tensor(mc.to_numpy(bn.buffers[k])))
    return t


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("train", [False, True])
def test_batchnorm_equals_pytorch(train, backend, rng):
    mc.set_backend(backend)
    bn = random_bn(3, rng)
    t = torch_bn(bn).train(train)
    for _ in range(2):  # the running statistics of two training steps
        x = rng.standard_normal((4, 3, 5, 6)) * 3 + 1
        xt = torch.tensor(x, requires_grad=True)
        yt = t(xt)
        y = bn.forward(x, train=train)
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-10)
        dy = rng.standard_normal(y.shape)
        yt.backward(torch.tensor(dy))
        np.testing.assert_allclose(bn.backward(dy), xt.grad.numpy(), rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(bn.grads["weight"], t.weight.grad.numpy(), rtol=1e-9)
        np.testing.assert_allclose(bn.grads["bias"], t.bias.grad.numpy(), rtol=1e-9)
        t.zero_grad()
        for k in ("running_mean", "running_var"):
            np.testing.assert_allclose(bn.buffers[k], getattr(t, k).numpy(), rtol=1e-12, err_msg=k)


@pytest.mark.parametrize("train", [False, True])
def test_batchnorm_gradcheck(train):
    class Mode(L.BatchNorm2D):  # check_layer runs train=True; evaluation through this
        def forward(self, x, train=True, keep_for_backward=True):
            return super().forward(x, train=self.mode, keep_for_backward=keep_for_backward)

    rng = np.random.default_rng(3)
    bn = Mode(3, dtype=np.float64)
    bn.mode = train
    bn.params["weight"] = rng.uniform(0.5, 2, 3)
    bn.params["bias"] = rng.standard_normal(3)
    bn.buffers["running_var"] = rng.uniform(0.5, 2, 3)
    result = check_layer(bn, kinkless_input((2, 3, 3, 4), rng), mode="exhaustive")
    assert result.passed(1e-7), result.table()


def test_batchnorm_frozen_runs_on_running_statistics(rng):
    bn = random_bn(2, rng)
    net = mc.Sequential([bn], input_shape=(2, 3, 3))
    x = rng.standard_normal((3, 2, 3, 3))
    before = mc.to_numpy(bn.buffers["running_mean"]).copy()
    net.freeze([bn.name])
    y = net.forward(x, train=True)
    np.testing.assert_array_equal(bn.buffers["running_mean"], before)
    np.testing.assert_allclose(y, torch_bn(bn).eval()(torch.tensor(x)).detach().numpy(), rtol=1e-12)


def test_batchnorm_save_load_and_twin(tmp_path, rng):
    net = mc.Sequential([L.Conv2D(3, 4, 3, padding=1), L.BatchNorm2D(4), L.Clip(0, 6)],
                        names=["conv1", "bn1", "relu6"], input_shape=(3, 6, 6))
    x = rng.standard_normal((5, 3, 6, 6)).astype(np.float32)
    net.forward(x, train=True)  # running statistics moved off their start
    assert not np.allclose(net["bn1"].buffers["running_var"], 1.0)
    net.save(tmp_path / "n.npz")
    back = mc.Sequential.load(tmp_path / "n.npz")
    for k in ("running_mean", "running_var"):
        np.testing.assert_array_equal(back["bn1"].buffers[k], net["bn1"].buffers[k])
    np.testing.assert_array_equal(back.forward(x, train=False), net.forward(x, train=False))
    assert "bn1.running_mean" not in [n for n, _, _ in net.named_params()]  # never trained
    from minicnn.torch_twin import torch_model
    twin = torch_model(net).eval()
    np.testing.assert_allclose(twin(torch.tensor(x)).detach().numpy(), net.forward(x, train=False),
                               rtol=1e-5, atol=1e-5)


def test_sgd_leaves_running_statistics_alone(rng):
    net = mc.Sequential([L.Conv2D(2, 2, 1, dtype=np.float64), L.BatchNorm2D(2, dtype=np.float64)],
                        names=["c", "bn"])
    opt = mc.optim.SGD(net, lr=0.1, momentum=0.9, weight_decay=0.1)
    x = rng.standard_normal((3, 2, 2, 2))
    y = net.forward(x)
    net.backward(np.ones_like(y))
    mean = net["bn"].buffers["running_mean"].copy()
    opt.step()
    np.testing.assert_array_equal(net["bn"].buffers["running_mean"], mean)


@pytest.mark.parametrize("bounds", [(0.0, 6.0), (-1.0, None), (None, 0.5)])
@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_clip_equals_pytorch(bounds, backend, rng):
    mc.set_backend(backend)
    lo, hi = bounds
    clip = L.Clip(lo, hi)
    x = rng.standard_normal((2, 3, 4, 4)) * 5
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.hardtanh(xt, -np.inf if lo is None else lo, np.inf if hi is None else hi)
    np.testing.assert_array_equal(clip.forward(x), yt.detach().numpy())
    dy = rng.standard_normal(x.shape)
    yt.backward(torch.tensor(dy))
    np.testing.assert_array_equal(clip.backward(dy), xt.grad.numpy())
    result = check_layer(L.Clip(lo, hi), kinkless_input((2, 3, 4, 4), rng) * 4, mode="exhaustive")
    assert result.passed(1e-7), result.table()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_equal_reference(dtype, rng):
    x = (rng.standard_normal((2, 3, 4, 5)) * 4).astype(dtype)
    x[0, 0, 0, 0] = np.nan
    scale, shift = rng.standard_normal(3).astype(dtype), rng.standard_normal(3).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    y_ref = clip_op.clip_forward.reference(x, 0.0, 6.0)
    expected = [y_ref, clip_op.clip_backward.reference(y_ref, dy, 0.0, 6.0),
                bn_op.channel_affine.reference(x, scale, shift)]
    for name in ("cpu", "cuda"):
        kernels = mc.set_backend(name).kernels if name == "cpu" else cuda_backend().kernels
        y = kernels["clip_forward"](x, 0.0, 6.0)
        got = [y, kernels["clip_backward"](y_ref, dy, 0.0, 6.0), kernels["channel_affine"](x, scale, shift)]
        for g, e in zip(got, expected, strict=True):
            assert_close(np.nan_to_num(mc.to_numpy(g)), np.nan_to_num(e))
        assert np.isnan(mc.to_numpy(got[0])[0, 0, 0, 0])


def test_cuda_layers_equal_numpy():
    """Evaluation, a training step (running statistics) and its backward on the cuda backend."""
    x, dy = np.random.default_rng(1).standard_normal((2, 2, 3, 3, 3))

    def run():
        net = mc.Sequential([random_bn(3, np.random.default_rng(0)), L.Clip(0.0, 0.5)], names=["bn", "clip"])
        net.to(mc.get_backend().name)
        xs, dys = mc.asarray(x), mc.asarray(dy)
        out = [net.forward(xs, train=False), net.forward(xs, train=True)]
        out.append(net.backward(dys, input_grad=True))
        return out + [net["bn"].grads["weight"], net["bn"].buffers["running_var"]]

    expected = run()
    cuda_backend()
    for got, want in zip(run(), expected, strict=True):
        assert_close(got, want)


def test_bad_settings_refused():
    with pytest.raises(ValueError, match="min"):
        L.Clip(6, 0)
    with pytest.raises(ValueError, match="momentum"):
        L.BatchNorm2D(3, momentum=2)
    with pytest.raises(ValueError, match="more than one value"):
        L.BatchNorm2D(2).forward(np.zeros((1, 2, 1, 1), np.float32), train=True)


def test_checkpoint_resumes_running_statistics_exactly(tmp_path, rng):
    from minicnn.checkpoint import load_checkpoint, save_checkpoint
    from minicnn.training import _state_digest

    def build():
        return mc.Sequential([L.Conv2D(2, 3, 1), L.BatchNorm2D(3)], ["c", "bn"], input_shape=(2, 3, 3))

    net = build()
    opt = mc.optim.SGD(net, lr=0.1, momentum=0.9)
    net.forward(rng.standard_normal((4, 2, 3, 3)).astype(np.float32), train=True)
    save_checkpoint(tmp_path / "ck.npz", net, opt, {"epoch": 1})
    fresh = build()
    fresh_opt = mc.optim.SGD(fresh, lr=0.1, momentum=0.9)
    fresh.load_params({n: a for n, a in net.named_arrays().items() if "running" not in n}, strict=False)
    # ranks that differ in their running statistics only do not start from the same point
    assert _state_digest(fresh, fresh_opt, 1) != _state_digest(net, opt, 1)
    load_checkpoint(tmp_path / "ck.npz", fresh, fresh_opt)
    for k in ("running_mean", "running_var"):
        np.testing.assert_array_equal(fresh["bn"].buffers[k], net["bn"].buffers[k])
    assert _state_digest(fresh, fresh_opt, 1) == _state_digest(net, opt, 1)


@pytest.mark.parametrize("parts", [None, 2, 4])
def test_a_step_of_several_parts_updates_the_running_statistics_once_with_the_whole_batch(parts, rng):
    """fit with --batch-parts P: one update per global step, from the moments of the whole
    global batch pooled from the parts' (parts of 2, 2, 2 and 3 rows for P = 4: unequal), the
    same for any number of ranks; without parts, the whole batch's, as always."""
    from minicnn.training import SGDSettings, fit

    mc.set_backend("numpy")
    net = mc.Sequential([L.Conv2D(2, 3, 1), L.BatchNorm2D(3, momentum=0.25), L.Flatten(),
                         L.Linear(3 * 16, 2)], names=["conv", "bn", "flatten", "fc"], input_shape=(2, 4, 4))
    x = rng.standard_normal((9, 2, 4, 4)).astype(np.float32)
    labels = np.array([0, 1, 0, 1, 1, 0, 1, 0, 0])
    conv = net["conv"]
    w, b = (np.asarray(conv.params[k]).astype(np.float64) for k in ("weight", "bias"))
    feature = np.einsum("oc,nchw->nohw", w[:, :, 0, 0], x) + b[None, :, None, None]  # conv's output, by hand
    fit(net, lambda epoch: (1, [(x, labels, None)]),
        SGDSettings(epochs=1, batch_size=9, lr=1e-9, momentum=0.0, weight_decay=0.0, batch_parts=parts),
        log=lambda *a: None)
    bn = net["bn"]
    np.testing.assert_allclose(bn.buffers["running_mean"], 0.25 * feature.mean(axis=(0, 2, 3)), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(bn.buffers["running_var"], 0.75 + 0.25 * feature.var(axis=(0, 2, 3), ddof=1),
                               rtol=1e-5, atol=1e-6)
    assert bn.pending is None  # training outside fit updates at once again
