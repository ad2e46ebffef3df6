"""Throughput and memory of minicnn's backends, with PyTorch CPU side by side when installed.

Usable as ``minicnn bench`` or ``python -m minicnn.bench`` (same options, see ``--help``).
This module measures; :mod:`minicnn.bench_report` describes the machine and prints.

What is measured, per model and batch size (float32):

* forward images/s (evaluation mode) and training-step images/s (forward, softmax loss,
  backward, SGD step with momentum and weight decay), for each minicnn backend asked for
  and for the same network in PyTorch (weights copied), all in one process. The
  contenders' runs are interleaved (one run each, in an order that rotates every round),
  so that a change in the machine's load hits all of them alike; each figure is the
  median of the timed rounds, after warm-up rounds.
* a per-layer table of forward and backward times (medians), minicnn's layers timed in a
  normal training step, PyTorch's module by module with the graph cut between modules.
* peak memory of a training step: each contender in a fresh subprocess (so that neither
  the other contenders nor the import of the other library count), builds the network and
  the batch, runs one step to warm up, then resets the kernel's peak-RSS mark
  (``/proc/self/clear_refs``) and runs one more step. The figure is that step's peak
  resident set (VmHWM) minus the resident set after the imports and before the network
  was built: parameters, gradients, momentum, data, activations and workspaces, without
  the libraries' code.
* the time of the first call of the Numba kernels (compilation, or loading from Numba's
  on-disk cache: the counts of both are printed), apart from the figures above, which
  are all taken after warm-up.

Thread counts are set equal for Numba, the BLAS (threadpoolctl) and PyTorch, and printed
with the BLAS library, its version and the CPU kernel it chose.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

import minicnn as mc
from minicnn.bench_report import environment, print_header, print_memory, print_run, ratios, write_json
from minicnn.torch_twin import torch_model

MODELS = ("small", "alexnet", "squeezenet", "resnet18", "mobilenet_v1")
# The SGD step runs in full, but with a learning rate small enough that the weights stay
# in range over the benchmark: random labels at a training rate make AlexNet diverge,
# and inf/NaN or denormal numbers would change the speed of the arithmetic.
LEARNING_RATE = 1e-5


# --- set-up -----------------------------------------------------------------------------

def build_model(name: str):
    """The benchmarked networks: AlexNet (227, groups 2, 1000 classes), SqueezeNet v1.0 (227,
    1000 classes: fire modules, the join layer), ResNet-18 and MobileNet v1 (224, 1000
    classes: residual sums, batch normalisation, depthwise convolutions) and the demo's small
    AlexNet for 32-pixel images (10 classes)."""
    if name == "alexnet":
        return mc.models.alexnet(num_classes=1000, input_size=227, groups=2)
    if name == "squeezenet":
        return mc.models.squeezenet("1.0", num_classes=1000)
    if name in ("resnet18", "mobilenet_v1"):  # 224 pixels, 1000 classes (minicnn.model_zoo)
        from minicnn import model_zoo

        return getattr(model_zoo, name)()
    if name == "small":
        return mc.models.small_alexnet(num_classes=10, input_size=32)
    raise ValueError(f"bench: unknown model {name!r}; choose from {', '.join(MODELS)}")


def make_batch(net, batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch,) + tuple(net.input_shape)).astype(np.float32)
    labels = rng.integers(0, net.output_shape(net.input_shape)[0], batch)
    return x, labels


def set_threads(threads: int) -> dict:
    """The same number of threads for Numba, the BLAS and PyTorch (when imported)."""
    import threadpoolctl

    mc.backend.set_kernel_threads(threads)
    threadpoolctl.threadpool_limits(limits=threads)  # applies now, for the whole process
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    return thread_counts()


def thread_counts() -> dict:
    import numba
    import threadpoolctl

    counts = {"numba": numba.get_num_threads(),
              "blas": [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
                       if lib["user_api"] == "blas"]}
    if "torch" in sys.modules:
        counts["torch"] = sys.modules["torch"].get_num_threads()
    return counts


# --- contenders -------------------------------------------------------------------------

class Ours:
    """A minicnn backend running ``net`` (shared by the backends: same math, same numbers)."""

    def __init__(self, backend: str, net, opt, x, labels):
        self.name, self.net, self.opt = backend, net, opt
        mc.set_backend(backend)
        self.x, self.labels = mc.asarray(x), mc.asarray(labels)

    def forward(self):
        mc.set_backend(self.name)
        self.net.forward(self.x, train=False, keep_for_backward=False)

    def train_step(self):
        mc.set_backend(self.name)
        loss, dlogits = mc.losses.softmax_cross_entropy(self.net.forward(self.x, train=True), self.labels)
        self.net.backward(dlogits)
        self.opt.step()
        return loss

    def layer_times(self) -> dict:
        """{layer: [forward s, backward s]} of one training step, each layer's methods
        wrapped by a timer for that step only."""
        times = {name: [0.0, 0.0] for name in self.net.names}

        def timed(name, slot, method):
            def run(*args, **kwargs):
                start = time.perf_counter()
                out = method(*args, **kwargs)
                times[name][slot] += time.perf_counter() - start
                return out
            return run

        for name, layer in zip(self.net.names, self.net.layers, strict=True):
            layer.forward = timed(name, 0, layer.forward)
            layer.backward = timed(name, 1, layer.backward)
        try:
            self.train_step()
        finally:
            for layer in self.net.layers:
                del layer.forward, layer.backward  # back to the class's methods
        return times


class Torch:
    """The same network in PyTorch (CPU), weights copied from ``net``."""

    name = "torch"

    def __init__(self, net, x, labels):
        import torch

        self.torch = torch
        self.names = list(net.names)
        self.model = torch_model(net)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LEARNING_RATE, momentum=0.9,
                                   weight_decay=5e-4)
        self.loss = torch.nn.CrossEntropyLoss()
        self.x, self.labels = torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))

    def forward(self):
        self.model.eval()
        with self.torch.no_grad():
            self.model(self.x)

    def train_step(self):
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(self.model(self.x), self.labels)
        loss.backward()
        self.opt.step()
        return loss

    def layer_times(self) -> dict:
        """{layer: [forward s, backward s]}: each module on its own, its input detached."""
        torch = self.torch
        self.model.train()
        times, inputs, outputs = {}, [], []
        h = self.x
        for i, (name, module) in enumerate(zip(self.names, self.model, strict=True)):
            h = h.detach().requires_grad_(i > 0)
            inputs.append(h)
            start = time.perf_counter()
            out = module(h)
            times[name] = [time.perf_counter() - start, 0.0]
            outputs.append(out)
            h = out
        logits = outputs[-1].detach().requires_grad_(True)
        grad = torch.autograd.grad(self.loss(logits, self.labels), logits)[0]
        for i in range(len(self.names) - 1, -1, -1):
            start = time.perf_counter()
            outputs[i].backward(grad)
            times[self.names[i]][1] = time.perf_counter() - start
            grad = inputs[i].grad
        self.opt.zero_grad(set_to_none=True)
        return times


def conv_algorithms(net, backend: str) -> dict:
    """{convolution layer: "im2col", "depthwise" or "winograd F(m x m, r x r)"}, as run on ``backend``."""
    from minicnn.ops import conv2d

    previous = mc.get_backend().name
    mc.set_backend(backend)
    try:
        algorithms = {}
        for name, layer in net.named_layers():
            if isinstance(layer, mc.layers.Conv2D):
                shape = layer.params["weight"].shape
                m = conv2d.winograd_tile(shape, layer.stride, layer.pads, layer.dilation, layer.groups)
                stride = layer.stride[0]
                r = -(-layer.kernel_size[0] // stride)
                via = f" after space-to-depth (stride {stride})" if stride > 1 else ""
                algorithms[name] = f"winograd F({m}x{m}, {r}x{r}){via}" if m else \
                    "depthwise" if conv2d.is_depthwise(shape, layer.groups) else "im2col"
        return algorithms
    finally:
        mc.set_backend(previous)


# --- measurement ------------------------------------------------------------------------

def interleaved(contenders, method: str, warmup: int, repeats: int) -> dict:
    """{name: [seconds of each timed round]}: one call of ``method`` per contender per round,
    the order rotating every round; the first ``warmup`` rounds are not kept."""
    times = {c.name: [] for c in contenders}
    for round_ in range(warmup + repeats):
        k = round_ % len(contenders)
        for c in contenders[k:] + contenders[:k]:
            start = time.perf_counter()
            getattr(c, method)()
            elapsed = time.perf_counter() - start
            if round_ >= warmup:
                times[c.name].append(elapsed)
    return times


def layer_table(contenders, repeats: int) -> dict:
    """{name: {layer: {"forward_ms", "backward_ms"}}}, medians over ``repeats`` interleaved rounds."""
    samples = {c.name: [] for c in contenders}
    for round_ in range(repeats):
        k = round_ % len(contenders)
        for c in contenders[k:] + contenders[:k]:
            samples[c.name].append(c.layer_times())
    table = {}
    for name, runs in samples.items():
        table[name] = {layer: {"forward_ms": 1e3 * statistics.median(r[layer][0] for r in runs),
                               "backward_ms": 1e3 * statistics.median(r[layer][1] for r in runs)}
                       for layer in runs[0]}
    return table


def numba_first_call(model: str) -> dict:
    """Time of the first training step on "cpu" (a batch of 2) beyond a later one: the
    kernels' compilation, or their loading from Numba's cache."""
    net = build_model(model)
    x, labels = make_batch(net, 2)
    ours = Ours("cpu", net, mc.optim.SGD(net, lr=LEARNING_RATE), x, labels)
    before = _kernel_cache_counts()
    start = time.perf_counter()
    ours.train_step()
    ours.forward()
    first = time.perf_counter() - start
    start = time.perf_counter()
    ours.train_step()
    ours.forward()
    again = time.perf_counter() - start
    after = _kernel_cache_counts()
    return {"seconds": max(first - again, 0.0), "first_call_s": first, "steady_s": again,
            "compiled": after["misses"] - before["misses"],
            "loaded_from_cache": after["hits"] - before["hits"],
            "cache_dir": after["cache_dir"]}


def _kernel_cache_counts() -> dict:
    """Compilations (cache misses) and cache loads so far, over every cpu kernel."""
    import importlib
    import pkgutil

    from numba.core.registry import CPUDispatcher

    import minicnn.kernels.cpu as package

    hits = misses = 0
    cache_dir = None
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, CPUDispatcher) and obj._cache is not None:
                hits += sum(obj.stats.cache_hits.values())
                misses += sum(obj.stats.cache_misses.values())
                cache_dir = cache_dir or obj.stats.cache_path
    return {"hits": hits, "misses": misses, "cache_dir": cache_dir}


def memory_probe(contender: str, model: str, batch: int, threads: int) -> dict:
    """Run in a fresh process: peak RSS of one warm training step (see the module doc)."""
    if contender == "torch":
        import torch  # noqa: F401  (imported before the baseline, like numba for ours)
    else:
        mc.backend.backend_named(contender)
    set_threads(threads)
    baseline = _status_kb("VmRSS")
    net = build_model(model)
    x, labels = make_batch(net, batch)
    if contender == "torch":
        runner = Torch(net, x, labels)
        del net  # PyTorch holds its own copy of the weights
    else:
        runner = Ours(contender, net, mc.optim.SGD(net, lr=LEARNING_RATE), x, labels)
    runner.train_step()
    before = _status_kb("VmRSS")
    reset = _reset_peak_rss()
    runner.train_step()
    peak = _status_kb("VmHWM")
    return {"baseline_mb": baseline / 1024, "before_step_mb": before / 1024, "peak_mb": peak / 1024,
            "training_mb": (peak - baseline) / 1024,
            "method": "VmHWM of the second step" if reset else "VmHWM of the whole run (no clear_refs)"}


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key}")


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_memory(contenders, model, batch, threads) -> dict:
    """Run :func:`memory_probe` for each contender in its own subprocess."""
    # `-m` puts the working directory first on the subprocess's path, where a clone named
    # minicnn would be imported (as an empty namespace package) instead of this minicnn:
    # run it from the folder that holds the package this process imported.
    home = os.path.dirname(os.path.dirname(os.path.abspath(mc.__file__)))
    result = {}
    for name in contenders:
        cmd = [sys.executable, "-m", "minicnn.bench", "--memory-probe", name, "--model", model,
               "--batch", str(batch), "--threads", str(threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=home)
        if out.returncode != 0:
            raise RuntimeError(f"bench: memory probe of {name} failed:\n{out.stderr[-2000:]}")
        result[name] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# --- the run ----------------------------------------------------------------------------

def run(args) -> int:
    if args.memory_probe:
        print(json.dumps(memory_probe(args.memory_probe, args.model[0], args.batch[0], args.threads)))
        return 0
    use_torch = not args.no_torch
    if use_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            use_torch = False
            print("PyTorch is not installed: minicnn's backends only (pip install torch for the comparison)")
    backends = list(dict.fromkeys(args.backends))
    for b in backends:
        mc.backend.backend_named(b)  # fails early, with the reason, if a backend cannot run
    threads = set_threads(args.threads)
    models = args.model
    full = args.full
    report = {"command": " ".join(sys.argv), "threads": threads, "repeats": args.repeats,
              "warmup": args.warmup, "runs": [], "memory": []}

    if "cpu" in backends:
        report["numba_first_call"] = {m: numba_first_call(m) for m in models}
    report["environment"] = environment()
    print_header(report)

    for model in models:
        batches = args.batch or ([32, 128] if model == "small" or full else [32])
        mc.seed(0)
        net = build_model(model)
        opt = mc.optim.SGD(net, lr=LEARNING_RATE, momentum=0.9, weight_decay=5e-4)
        for batch in batches:
            x, labels = make_batch(net, batch)
            contenders = [Ours(b, net, opt, x, labels) for b in backends]
            if use_torch:
                contenders.append(Torch(net, x, labels))
            entry = {"model": model, "batch": batch, "figures": {},
                     "convolutions": {b: conv_algorithms(net, b) for b in backends}}
            for figure, method in (("forward", "forward"), ("train", "train_step")):
                times = interleaved(contenders, method, args.warmup, args.repeats)
                entry["figures"][figure] = {
                    name: {"median_s": statistics.median(t), "images_per_s": batch / statistics.median(t),
                           "times_s": t} for name, t in times.items()}
            entry["ratios"] = ratios(entry["figures"])
            if not args.no_layers:
                entry["layers"] = layer_table(contenders, max(1, min(args.repeats, 3)))
            report["runs"].append(entry)
            print_run(entry)
            del contenders
        if not args.no_memory:
            batch = max(batches)
            names = backends + (["torch"] if use_torch else [])
            memory = {"model": model, "batch": batch,
                      "contenders": measure_memory(names, model, batch, args.threads)}
            if use_torch:
                memory["ratios"] = {f"{b}/torch": memory["contenders"][b]["training_mb"]
                                    / memory["contenders"]["torch"]["training_mb"] for b in backends}
            report["memory"].append(memory)
            print_memory(memory)
    if args.json:
        write_json(report, args.json)
    return 0


def main(argv=None) -> int:
    from minicnn.cli import main as cli_main

    return cli_main(["bench", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
