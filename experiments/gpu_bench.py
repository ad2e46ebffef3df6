"""GPU benchmark of the "cuda" backend, side by side with PyTorch + cuDNN, float32.

Reports in one run, and writes as JSON (--out):
  * AlexNet (227x227, groups 2, 1000 classes) training-step images/s at batch 128 and 256
    (forward, softmax cross-entropy, backward, SGD with momentum and weight decay);
  * FC7 feature extraction (conv1 .. relu7, evaluation mode) patches/s at batch 256;
  * the same for PyTorch with cuDNN in strict float32 (TF32 off, cudnn.benchmark on) when
    torch with CUDA is importable, and the ratio ours / PyTorch;
  * peak GPU memory of each measurement (ours: CuPy's pool; PyTorch: its allocator);
  * forward and backward time of each of our layers at the first batch size (CUDA events),
    host time spent queuing one step, and the largest logit difference against PyTorch
    with the same weights (a check that both compute the same network).
Inputs are random and already on the GPU: this measures the engine, not the data path.

    python experiments/gpu_bench.py --out gpu_bench.json
    NUMBA_ENABLE_CUDASIM=1 python experiments/gpu_bench.py --smoke   # tiny net, simulator: code paths only

Targets (issue 4): training step at least 0.5x PyTorch + cuDNN; FC7 at least 20,000 patches/s.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time

import numpy as np

TRAIN_RATIO_TARGET = 0.5
FC7_TARGET = 20000.0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, nargs="+", default=[128, 256], help="training batch sizes")
    p.add_argument("--fc7-batch", type=int, default=256, help="feature-extraction batch size")
    p.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (kernel compilation)")
    p.add_argument("--workspace-mb", type=float, default=None,
                   help="convolution workspace per batch chunk on the GPU, im2col's columns or "
                        "Winograd's transformed tiles (default: conv2d.GPU_WORKSPACE_BYTES, 1 GiB)")
    p.add_argument("--convolutions", choices=["default", "im2col"], default="default",
                   help="default: Winograd where minicnn.ops.conv2d picks it (3x3 and 5x5 filters, "
                        "conv1 after space-to-depth), im2col elsewhere; im2col: im2col + cuBLAS "
                        "for every convolution")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even when importable")
    p.add_argument("--smoke", action="store_true",
                   help="tiny net and sizes; runs under the simulator; checks the script, not speed")
    p.add_argument("--out", default=None, help="write the results here as JSON")
    return p.parse_args(argv)


# --- our engine ------------------------------------------------------------------------------

class PeakMemory:
    """Peak bytes in use in CuPy's default pool, through an allocator that records it."""

    def __init__(self, cupy):
        self.cupy, self.peak = cupy, 0
        if cupy is None:
            return
        pool = cupy.get_default_memory_pool()

        def allocate(size):
            memory = pool.malloc(size)
            self.peak = max(self.peak, pool.used_bytes())
            return memory

        cupy.cuda.set_allocator(allocate)

    def reset(self):
        if self.cupy is None:
            return
        gc.collect()  # a layer and its ParamDict refer to each other: dead nets wait for the collector
        self.cupy.get_default_memory_pool().free_all_blocks()
        self.peak = self.cupy.get_default_memory_pool().used_bytes()

    def read(self):
        return None if self.cupy is None else int(self.peak)


def build_net(mc, smoke):
    if smoke:
        return mc.models.tiny_alexnet(num_classes=5, input_size=16, dtype=np.float32)
    return mc.models.alexnet(num_classes=1000, input_size=227, groups=2)


def random_batch(mc, net, batch, seed=0):
    rng = np.random.default_rng(seed)
    classes = net.layers[-1].out_features
    x = rng.standard_normal((batch, *net.input_shape), dtype=np.float32)
    labels = rng.integers(0, classes, batch)
    return x, labels


def ours_train(mc, cupy, memory, smoke, batch, steps, warmup, sync):
    from minicnn.losses import softmax_cross_entropy

    mc.seed(0)
    net = build_net(mc, smoke)
    opt = mc.optim.SGD(net, lr=0.01, momentum=0.9, weight_decay=5e-4)
    x_host, labels_host = random_batch(mc, net, batch)
    x, labels = mc.asarray(x_host), mc.asarray(labels_host)
    memory.reset()

    def step():
        logits = net.forward(x, train=True)
        loss, dlogits = softmax_cross_entropy(logits, labels)
        net.backward(dlogits)
        opt.step()
        return loss

    for _ in range(warmup):
        step()
    sync()
    host = 0.0
    start = time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        loss = step()
        host += time.perf_counter() - t
    sync()
    seconds = time.perf_counter() - start
    loss = float(loss)
    if not np.isfinite(loss):
        raise RuntimeError(f"our training step gave a non-finite loss {loss} at batch {batch}")
    return dict(images_per_s=batch * steps / seconds, step_ms=1e3 * seconds / steps,
                host_queue_ms=1e3 * host / steps, loss=loss, peak_memory_bytes=memory.read()), net


def ours_fc7(mc, memory, net, batch, steps, warmup, sync):
    end = net.names.index("relu7") + 1
    x = mc.asarray(random_batch(mc, net, batch, seed=1)[0])
    memory.reset()

    def extract():
        h = x
        for layer in net.layers[:end]:
            h = layer.forward(h, train=False, keep_for_backward=False)
        return h

    for _ in range(warmup):
        extract()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        features = extract()
    sync()
    seconds = time.perf_counter() - start
    return dict(patches_per_s=batch * steps / seconds, batch_ms=1e3 * seconds / steps,
                feature_dim=int(features.shape[1]), peak_memory_bytes=memory.read())


def ours_layer_times(mc, cupy, net, batch):
    """Forward and backward milliseconds of each layer for one training step (CUDA events)."""
    if cupy is None:
        return None
    from minicnn.losses import softmax_cross_entropy

    x_host, labels_host = random_batch(mc, net, batch)
    h, labels = mc.asarray(x_host), mc.asarray(labels_host)

    def mark():
        event = cupy.cuda.Event()
        event.record()
        return event

    forward, backward = [], []
    before = mark()
    for layer in net.layers:
        h = layer.forward(h, train=True)
        after = mark()
        forward.append((before, after))
        before = after
    _, dy = softmax_cross_entropy(h, labels)
    lowest = min(i for i, layer in enumerate(net.layers) if layer.params and not layer.frozen)
    before = mark()
    for i in range(len(net.layers) - 1, lowest - 1, -1):
        net.layers[i].need_input_grad = i > lowest
        dy = net.layers[i].backward(dy)
        after = mark()
        backward.append((net.names[i], before, after))
        before = after
    after.synchronize()
    times = {name: {"forward_ms": cupy.cuda.get_elapsed_time(*forward[i])}
             for i, name in enumerate(net.names)}
    for name, b, a in backward:
        times[name]["backward_ms"] = cupy.cuda.get_elapsed_time(b, a)
    return times


# --- PyTorch -----------------------------------------------------------------------------------

def torch_model(torch, mc, net, device):
    """The same network in PyTorch, with our weights (minicnn.bench builds it), on ``device``."""
    from minicnn.bench import torch_model as build

    return build(net).to(device)


def torch_sync(torch, device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def torch_train(torch, mc, net, device, batch, steps, warmup):
    model = torch_model(torch, mc, net, device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    x_host, labels_host = random_batch(mc, net, batch)
    x, labels = torch.from_numpy(x_host).to(device), torch.from_numpy(labels_host).to(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), labels)
        loss.backward()
        opt.step()
        return loss

    for _ in range(warmup):
        step()
    torch_sync(torch, device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    torch_sync(torch, device)
    seconds = time.perf_counter() - start
    peak = int(torch.cuda.max_memory_allocated()) if device.type == "cuda" else None
    return dict(images_per_s=batch * steps / seconds, step_ms=1e3 * seconds / steps,
                loss=float(loss.detach()), peak_memory_bytes=peak)


def torch_fc7(torch, mc, net, device, batch, steps, warmup):
    end = net.names.index("relu7") + 1
    model = torch_model(torch, mc, net, device)[:end].eval()
    x = torch.from_numpy(random_batch(mc, net, batch, seed=1)[0]).to(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        for _ in range(warmup):
            model(x)
        torch_sync(torch, device)
        start = time.perf_counter()
        for _ in range(steps):
            model(x)
        torch_sync(torch, device)
    seconds = time.perf_counter() - start
    peak = int(torch.cuda.max_memory_allocated()) if device.type == "cuda" else None
    return dict(patches_per_s=batch * steps / seconds, batch_ms=1e3 * seconds / steps, peak_memory_bytes=peak)


def logits_difference(torch, mc, net, device, batch=8):
    """max |ours - PyTorch| / max |PyTorch| of the logits in evaluation mode, same weights."""
    x_host = random_batch(mc, net, batch, seed=2)[0]
    logits = net.forward(mc.asarray(x_host), train=False, keep_for_backward=False)
    ours = mc.to_numpy(logits).astype(np.float64)
    model = torch_model(torch, mc, net, device).eval()
    with torch.no_grad():
        theirs = model(torch.from_numpy(x_host).to(device)).cpu().numpy().astype(np.float64)
    return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-30))


def import_torch(args, simulated):
    if args.no_torch:
        return None, None, "skipped (--no-torch)"
    try:
        import torch
    except ImportError:
        return None, None, "not installed"
    if torch.cuda.is_available() and not simulated:
        # strict float32 on both sides: cuDNN and cuBLAS would otherwise use TF32
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
        info = f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}"
        return torch, torch.device("cuda"), info
    if simulated:  # --smoke: exercise the PyTorch side on the CPU
        return torch, torch.device("cpu"), f"torch {torch.__version__} on the CPU (smoke run)"
    return None, None, "installed without CUDA"


# --- report --------------------------------------------------------------------------------------

def gib(n):
    return "-" if n is None else f"{n / 2**30:.2f}"


def print_report(r):
    rows = [("measurement", "ours", "PyTorch", "ratio", "ours GiB", "PyTorch GiB")]
    for key, m in r["train"].items():
        rows.append((f"train batch {key} (img/s)", f"{m['ours']['images_per_s']:.0f}",
                     f"{m['torch']['images_per_s']:.0f}" if m.get("torch") else "-",
                     f"{m['ratio']:.2f}" if m.get("ratio") else "-",
                     gib(m["ours"]["peak_memory_bytes"]),
                     gib(m["torch"]["peak_memory_bytes"]) if m.get("torch") else "-"))
    f = r["fc7"]
    rows.append((f"fc7 batch {f['batch']} (patches/s)", f"{f['ours']['patches_per_s']:.0f}",
                 f"{f['torch']['patches_per_s']:.0f}" if f.get("torch") else "-",
                 f"{f['ratio']:.2f}" if f.get("ratio") else "-",
                 gib(f["ours"]["peak_memory_bytes"]),
                 gib(f["torch"]["peak_memory_bytes"]) if f.get("torch") else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(f"\n{r['network']} on {r['device']} ({r['torch']})")
    print("our convolutions: " + ", ".join(f"{layer} {a}" for layer, a in r["convolutions"].items()))
    for row in rows:
        cells = [c.ljust(w) if i == 0 else c.rjust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        print("  ".join(cells))
    if r.get("logits_max_rel_diff_vs_torch") is not None:
        print(f"logits vs PyTorch, same weights: max relative difference "
              f"{r['logits_max_rel_diff_vs_torch']:.2e}")
    for name, verdict in r["targets"].items():
        print(f"target {name}: {verdict}")
    if r.get("layers"):
        print(f"\nper layer at batch {r['layers_batch']} (ms): forward / backward")
        for name, t in r["layers"].items():
            print(f"  {name:<8} {t['forward_ms']:8.3f} / {t.get('backward_ms', float('nan')):8.3f}")


def main(argv=None):
    args = parse_args(argv)
    import minicnn as mc

    try:
        backend = mc.set_backend("cuda")
    except mc.BackendUnavailable as e:
        print(f"gpu_bench: {e}", file=sys.stderr)
        return 2
    if backend.simulated and not args.smoke:
        print("gpu_bench: the cuda backend runs in Numba's simulator (NUMBA_ENABLE_CUDASIM=1); its "
              "timings mean nothing: run on a GPU, or pass --smoke to check the script", file=sys.stderr)
        return 2
    if args.smoke:
        args.batches, args.fc7_batch = [2], 2
        args.steps, args.warmup = 1, 1
    from minicnn.ops import conv2d

    if args.workspace_mb is not None:
        conv2d.GPU_WORKSPACE_BYTES = int(args.workspace_mb * 2**20)
    if args.convolutions == "im2col":
        conv2d.WINOGRAD_BACKENDS = tuple(b for b in conv2d.WINOGRAD_BACKENDS if b != "cuda")

    cupy = None
    if not backend.simulated:
        import cupy

        def sync():
            cupy.cuda.get_current_stream().synchronize()

        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        device = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    else:
        def sync():
            pass

        device = "Numba CUDA simulator"
    memory = PeakMemory(cupy)
    torch, torch_device, torch_info = import_torch(args, backend.simulated)

    import numba

    from minicnn.bench import conv_algorithms

    result = {
        "network": ("tiny_alexnet (smoke)" if args.smoke
                    else "AlexNet 227x227, groups 2, 1000 classes, float32"),
        "device": device, "simulated": backend.simulated, "torch": torch_info,
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "numba": numba.__version__, "cupy": getattr(cupy, "__version__", None),
                     "torch": getattr(torch, "__version__", None)},
        "steps": args.steps, "warmup": args.warmup, "workspace_bytes": conv2d.GPU_WORKSPACE_BYTES,
        "train": {}, "fc7": {"batch": args.fc7_batch},
    }
    net = None
    for batch in args.batches:
        ours, net = ours_train(mc, cupy, memory, args.smoke, batch, args.steps, args.warmup, sync)
        entry = {"ours": ours}
        print(f"ours  train batch {batch}: {ours['images_per_s']:.1f} img/s", flush=True)
        if torch is not None:
            entry["torch"] = torch_train(torch, mc, net, torch_device, batch, args.steps, args.warmup)
            entry["ratio"] = ours["images_per_s"] / entry["torch"]["images_per_s"]
            print(f"torch train batch {batch}: {entry['torch']['images_per_s']:.1f} img/s", flush=True)
        result["train"][str(batch)] = entry
    # FC7 on a fresh net, so that its peak memory is inference's alone (the trained nets hold
    # their last step's activations, gradients and momentum)
    mc.seed(0)
    net = build_net(mc, args.smoke)
    result["convolutions"] = conv_algorithms(net, "cuda")
    result["fc7"]["ours"] = ours_fc7(mc, memory, net, args.fc7_batch, args.steps, args.warmup, sync)
    result["layers_batch"] = args.batches[0]
    result["layers"] = ours_layer_times(mc, cupy, net, args.batches[0])
    print(f"ours  fc7 batch {args.fc7_batch}: {result['fc7']['ours']['patches_per_s']:.1f} patches/s",
          flush=True)
    if torch is not None:
        result["fc7"]["torch"] = torch_fc7(torch, mc, net, torch_device, args.fc7_batch, args.steps,
                                           args.warmup)
        result["fc7"]["ratio"] = (result["fc7"]["ours"]["patches_per_s"]
                                  / result["fc7"]["torch"]["patches_per_s"])
        result["logits_max_rel_diff_vs_torch"] = logits_difference(torch, mc, net, torch_device)

    ratios = [m["ratio"] for m in result["train"].values() if "ratio" in m]
    fc7 = result["fc7"]["ours"]["patches_per_s"]
    if ratios:
        worst = min(ratios)
        train_verdict = f"{'met' if worst >= TRAIN_RATIO_TARGET else 'missed'} (worst {worst:.2f})"
    else:
        train_verdict = "unmeasured (no PyTorch)"
    result["targets"] = {
        f"train >= {TRAIN_RATIO_TARGET}x PyTorch": train_verdict,
        f"fc7 >= {FC7_TARGET:.0f} patches/s": f"{'met' if fc7 >= FC7_TARGET else 'missed'} ({fc7:.0f})",
    }
    if args.smoke:
        result["targets"] = {k: "not judged (smoke run)" for k in result["targets"]}
    print_report(result)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
