"""GoogLeNet, ResNet-18/50 and MobileNet v1 (minicnn.model_zoo) against PyTorch float64 models
written here from the papers' layouts (torchvision's ResNet, BVLC's GoogLeNet, TensorFlow's
MobileNet with SAME padding computed from the input), random weights and batch-norm
statistics copied by name: the names are the sources' (torchvision's state_dict keys)."""

import numpy as np
import pytest

import minicnn as mc
from minicnn import layers as L
from minicnn import model_zoo

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional


# --- the PyTorch references -------------------------------------------------------------------
class Basic(nn.Module):
    expansion = 1

    def __init__(self, cin, width, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = None
        if stride != 1 or cin != width:
            self.downsample = nn.Sequential(nn.Conv2d(cin, width, 1, stride, bias=False),
                                            nn.BatchNorm2d(width))

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, width, stride):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, width * 4, 1, bias=False), nn.BatchNorm2d(width * 4)
        self.downsample = None
        if stride != 1 or cin != width * 4:
            self.downsample = nn.Sequential(nn.Conv2d(cin, width * 4, 1, stride, bias=False),
                                            nn.BatchNorm2d(width * 4))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn3(self.conv3(F.relu(self.bn2(self.conv2(y)))))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    def __init__(self, block, depths, classes):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        cin = 64
        for i, (width, depth) in enumerate(zip((64, 128, 256, 512), depths, strict=True), 1):
            blocks = []
            for j in range(depth):
                blocks.append(block(cin, width, 2 if j == 0 and i > 1 else 1))
                cin = width * block.expansion
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class MobileNet(nn.Module):
    def __init__(self, width, classes):
        super().__init__()
        ch = [max(8, int(c * width)) for c in [32] + [c for c, _ in model_zoo.MOBILENET_V1]]
        self.strides = [2] + [s for _, s in model_zoo.MOBILENET_V1]
        self.units = [("conv_0", 3, ch[0], 2, 1)]
        for i, s in enumerate(self.strides[1:], 1):
            self.units += [(f"conv_{i}_depthwise", ch[i - 1], ch[i - 1], s, ch[i - 1]),
                           (f"conv_{i}_pointwise", ch[i - 1], ch[i], 1, 1)]
        for name, cin, cout, s, groups in self.units:
            k = 1 if name.endswith("pointwise") else 3
            conv = nn.Conv2d(cin, cout, k, s, groups=groups, bias=False)
            self.add_module(name, nn.ModuleDict({"conv": conv, "bn": nn.BatchNorm2d(cout)}))
        self.fc = nn.Linear(ch[-1], classes)

    def forward(self, x):
        for name, _, _, s, _ in self.units:
            unit = getattr(self, name)
            k = unit["conv"].kernel_size[0]
            pads = []
            for size in (int(x.shape[3]), int(x.shape[2])):  # TensorFlow's SAME, from the input
                out = -(-size // s)
                total = max((out - 1) * s + k - size, 0)
                pads += [total // 2, total - total // 2]
            x = F.relu6(unit["bn"](unit["conv"](F.pad(x, pads))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Inception(nn.Module):
    def __init__(self, cin, c1, r3, c3, r5, c5, pp):
        super().__init__()
        self.convs = nn.ModuleDict({
            "1x1": nn.Conv2d(cin, c1, 1), "3x3_reduce": nn.Conv2d(cin, r3, 1),
            "3x3": nn.Conv2d(r3, c3, 3, padding=1), "5x5_reduce": nn.Conv2d(cin, r5, 1),
            "5x5": nn.Conv2d(r5, c5, 5, padding=2), "pool_proj": nn.Conv2d(cin, pp, 1)})

    def forward(self, x):
        c = self.convs
        return torch.cat([F.relu(c["1x1"](x)), F.relu(c["3x3"](F.relu(c["3x3_reduce"](x)))),
                          F.relu(c["5x5"](F.relu(c["5x5_reduce"](x)))),
                          F.relu(c["pool_proj"](F.max_pool2d(x, 3, 1, 1, ceil_mode=True)))], 1)


class GoogLeNet(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3)
        self.reduce, self.conv2 = nn.Conv2d(64, 64, 1), nn.Conv2d(64, 192, 3, padding=1)
        self.blocks = nn.ModuleDict()
        cin = 192
        for key, w in model_zoo.INCEPTION.items():
            self.blocks[key] = Inception(cin, *w)
            cin = w[0] + w[2] + w[4] + w[5]
        self.fc = nn.Linear(cin, classes)

    def lrn(self, x):
        return F.local_response_norm(x, 5, 1e-4, 0.75, 1.0)

    def forward(self, x):
        def pool(x):
            return F.max_pool2d(x, 3, 2, ceil_mode=True)

        lrn = self.lrn
        x = lrn(pool(F.relu(self.conv1(x))))
        x = pool(lrn(F.relu(self.conv2(F.relu(self.reduce(x))))))
        for key, block in self.blocks.items():
            x = block(x)
            if key in ("3b", "4e"):
                x = pool(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def names(self):
        """minicnn's name of each parameter of this module."""
        out = {"conv1.weight": "conv1.7x7_s2.weight", "conv1.bias": "conv1.7x7_s2.bias",
               "reduce.weight": "conv2.3x3_reduce.weight", "reduce.bias": "conv2.3x3_reduce.bias",
               "conv2.weight": "conv2.3x3.weight", "conv2.bias": "conv2.3x3.bias",
               "fc.weight": "loss3.classifier.weight", "fc.bias": "loss3.classifier.bias"}
        for key in model_zoo.INCEPTION:
            for conv in ("1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool_proj"):
                for p in ("weight", "bias"):
                    out[f"blocks.{key}.convs.{conv}.{p}"] = f"inception_{key}.{conv}.{p}"
        return out


# --- the checks --------------------------------------------------------------------------------
def randomise_batch_norm(net, rng):
    for _, layer in net.named_layers():
        if isinstance(layer, L.BatchNorm2D):
            C = layer.num_features
            layer.params["weight"] = rng.uniform(0.5, 1.5, C)
            layer.params["bias"] = rng.standard_normal(C) * 0.1
            layer.buffers["running_mean"] = rng.standard_normal(C) * 0.1
            layer.buffers["running_var"] = rng.uniform(0.5, 1.5, C)


def copy_into(module, net, rename=None):
    arrays = net.named_arrays()
    state = module.state_dict()
    rename = rename or {}
    for key in state:
        if key.endswith("num_batches_tracked"):
            continue
        state[key] = torch.tensor(mc.to_numpy(arrays[rename.get(key, key)]))
    module.load_state_dict(state)
    assert len([k for k in state if not k.endswith("num_batches_tracked")]) == len(arrays)


def relative_error(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def parity(net, module, rng, size, rename=None, train=False):
    module = module.double()
    copy_into(module, net, rename)
    x = rng.standard_normal((2, 3, size, size))
    module.train(train)
    xt = torch.tensor(x, requires_grad=True)
    yt = module(xt)
    y = net.forward(x, train=train)
    assert relative_error(y, yt.detach().numpy()) < 1e-10
    if train:
        dy = rng.standard_normal(y.shape)
        yt.backward(torch.tensor(dy))
        dx = net.backward(dy, input_grad=True)
        assert relative_error(dx, xt.grad.numpy()) < 1e-9
        grads = {name: g for name, _, g in net.named_params()}
        for key, p in module.named_parameters():
            assert relative_error(grads[(rename or {}).get(key, key)], p.grad.numpy()) < 1e-9, key
        for key, b in module.named_buffers():  # the running statistics of the step
            if "running" in key:
                np.testing.assert_allclose(net.named_arrays()[key], b.numpy(), rtol=1e-10, atol=1e-12)


def test_resnet18_equals_pytorch_in_evaluation_and_a_training_step(rng):
    net = model_zoo.resnet18(num_classes=10, input_size=32, dtype=np.float64)
    randomise_batch_norm(net, rng)
    assert sum(p.size for _, p, _ in model_zoo.resnet18().named_params()) == 11_689_512  # torchvision's
    parity(net, ResNet(Basic, (2, 2, 2, 2), 10), rng, 32)
    parity(net, ResNet(Basic, (2, 2, 2, 2), 10), rng, 32, train=True)


def test_resnet50_equals_pytorch(rng):
    net = model_zoo.resnet50(num_classes=10, input_size=32, dtype=np.float64)
    randomise_batch_norm(net, rng)
    assert sum(p.size for _, p, _ in net.named_params()) == 25_557_032 - 1000 * 2049 + 10 * 2049
    parity(net, ResNet(Bottleneck, (3, 4, 6, 3), 10), rng, 32)


@pytest.mark.parametrize("width,size", [(1.0, 32), (0.25, 40)])
def test_mobilenet_v1_equals_pytorch(rng, width, size):
    net = model_zoo.mobilenet_v1(width=width, num_classes=10, input_size=size, dtype=np.float64)
    randomise_batch_norm(net, rng)
    assert net["conv_1_depthwise.conv"].groups == net["conv_1_depthwise.conv"].in_channels
    parity(net, MobileNet(width, 10), rng, size)


def test_googlenet_equals_pytorch(rng):
    net = model_zoo.googlenet(num_classes=10, input_size=64, dtype=np.float64)
    for _, layer in net.named_layers():  # biases off zero
        if "bias" in layer.params:
            layer.params["bias"] = rng.standard_normal(layer.params["bias"].shape) * 0.1
    module = GoogLeNet(10)
    parity(net, module, rng, 64, rename=module.names())
    assert sum(p.size for _, p, _ in model_zoo.googlenet().named_params()) == 6_998_552  # BVLC's


def test_models_save_load_and_refuse_small_inputs(tmp_path, rng):
    net = model_zoo.mobilenet_v1(width=0.25, num_classes=3, input_size=32)
    randomise_batch_norm(net, rng)
    net.save(tmp_path / "m.npz")
    back = mc.Sequential.load(tmp_path / "m.npz")
    x = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(back.forward(x, train=False), net.forward(x, train=False))
    with pytest.raises(ValueError, match="too small"):
        model_zoo.googlenet(input_size=16)
