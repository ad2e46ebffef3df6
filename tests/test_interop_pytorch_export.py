"""The way users hold these networks: ONNX files written by PyTorch's exporter (TorchScript
exporter, opset 13, evaluation mode) from the ResNet, MobileNet and GoogLeNet of
tests/test_model_zoo.py, with batch normalisation folded by the exporter or left to the
import, ReLU6 as Clip, TensorFlow's SAME as a Pad before the convolution, Flatten before the
classifier; each imported and run against onnxruntime. (GoogLeNet without its LRNs here:
PyTorch exports F.local_response_norm as a computation of its own, not ONNX's LRN, and
torchvision's GoogLeNet has none.)"""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from test_model_zoo import Basic, GoogLeNet, MobileNet, ResNet  # noqa: E402

from minicnn import interop  # noqa: E402
from minicnn import layers as L  # noqa: E402


class GoogLeNetWithoutLRN(GoogLeNet):
    def lrn(self, x):
        return x


def export(module, size, path, fold, dynamo=False):
    module.eval()
    for m in module.modules():  # batch-norm statistics off their start, so that folding shows
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:  # the exporter PyTorch uses by default today (it needs onnxscript)
            torch.onnx.export(module, (torch.zeros(1, 3, size, size),), str(path), dynamo=True,
                              input_names=["input"], output_names=["logits"], verbose=False)
        else:
            torch.onnx.export(module, torch.zeros(1, 3, size, size), str(path), dynamo=False,
                              opset_version=13, do_constant_folding=fold, input_names=["input"],
                              output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})


@pytest.mark.parametrize("fold", [True, False])
@pytest.mark.parametrize("family", ["resnet18", "mobilenet_v1", "googlenet"])
def test_pytorch_exports_import_and_equal_onnxruntime(family, fold, tmp_path, rng):
    torch.manual_seed(0)
    module, size = {"resnet18": (lambda: ResNet(Basic, (2, 2, 2, 2), 10), 32),
                    "mobilenet_v1": (lambda: MobileNet(0.25, 10), 32),
                    "googlenet": (lambda: GoogLeNetWithoutLRN(10), 64)}[family]
    path = tmp_path / f"{family}.onnx"
    export(module(), size, path, fold)
    net = interop.from_onnx(path)
    x = rng.standard_normal((2, 3, size, size)).astype(np.float32)
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    y = net.forward(x, train=False)
    assert float(np.abs(y - expected).max() / np.abs(expected).max()) < 1e-4
    kinds = [type(layer).__name__ for _, layer in net.named_layers()]
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    # every batch normalisation follows a convolution: folded by the exporter or by the import
    assert "BatchNorm2D" not in kinds
    folded = any("folded into the conv" in note for note in net.meta["import_notes"])
    assert ("BatchNormalization" in ops) == folded
    joins = [layer for layer in net.layers if isinstance(layer, L.Join)]
    assert len(joins) == {"resnet18": 8, "mobilenet_v1": 0, "googlenet": 9}[family]
    if family == "mobilenet_v1":
        assert "Pad" in ops and kinds.count("Clip") == 27


@pytest.mark.parametrize("family", ["resnet18", "mobilenet_v1", "googlenet"])
def test_dynamo_exports_import_and_equal_onnxruntime(family, tmp_path, rng):
    """torch.onnx.export(dynamo=True): opset 18+, ReduceMean for the global average pool, batch
    normalisation and F.pad folded into the convolutions by its optimiser."""
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    module, size = {"resnet18": (lambda: ResNet(Basic, (2, 2, 2, 2), 10), 32),
                    "mobilenet_v1": (lambda: MobileNet(0.25, 10), 32),
                    "googlenet": (lambda: GoogLeNetWithoutLRN(10), 64)}[family]
    path = tmp_path / f"{family}.onnx"
    export(module(), size, path, True, dynamo=True)
    net = interop.from_onnx(path)
    x = rng.standard_normal((1, 3, size, size)).astype(np.float32)  # the export fixed the batch at 1
    name = onnx.load(str(path)).graph.input[0].name
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {name: x})[0]
    assert float(np.abs(net.forward(x, train=False) - expected).max() / np.abs(expected).max()) < 1e-4
