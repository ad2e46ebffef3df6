"""Export a minicnn network (.npz) as an ONNX model.

One ONNX node per layer, named as the layer (Conv, Gemm, Relu, LRN, MaxPool, AveragePool,
Dropout, Flatten; opset 13), parameters as float32 initializers, input "input" (N, C, H, W),
output "logits". The model passes onnx.checker; when onnxruntime is installed the command
also runs it on a random batch and prints its largest difference from the network's own
forward. The architecture and metadata travel in the model's metadata, so that
`minicnn import-weights` of the export gives the same network back.

Example:
  minicnn export-onnx --weights runs/pre/source.npz --out source.onnx
"""

from __future__ import annotations


def add_arguments(p):
    p.add_argument("--weights", required=True, help="a network saved by minicnn (.npz)")
    p.add_argument("--out", required=True, help="the ONNX model to write (.onnx)")
    p.add_argument("--opset", type=int, default=13, help="ONNX opset")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")


def run(args) -> int:
    import numpy as np

    from minicnn import backend, interop
    from minicnn.net import Sequential

    net = Sequential.load(args.weights)
    interop.to_onnx(net, args.out, opset=args.opset)
    print(f"wrote {args.out} ({len(net.layers)} layers)")
    if args.no_check or not net.input_shape:
        return 0
    try:
        import onnxruntime
    except ImportError:
        print("onnxruntime not installed: the export was checked by onnx.checker only")
        return 0
    x = np.random.default_rng(0).uniform(-1, 1, (2, *net.input_shape)).astype(np.float32)
    for _, layer in net.named_layers():  # the leaves: a block holds its layers' weights
        if "weight" in layer.params:
            dtype = layer.params["weight"].dtype
            break
    else:
        dtype = np.float32
    ours = backend.to_numpy(net.forward(backend.asarray(x.astype(dtype)), train=False))
    session = onnxruntime.InferenceSession(args.out, providers=["CPUExecutionProvider"])
    theirs = session.run(None, {"input": x})[0]
    error = float(np.abs(theirs - ours).max() / max(float(np.abs(ours).max()), 1e-30))
    print(f"onnxruntime vs minicnn forward on a random batch of 2: max relative difference {error:.2e}")
    return 0
