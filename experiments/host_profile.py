"""Where the host's time goes in a training step: cProfile over a few AlexNet steps.

On the GPU a step only queues work, so the host's time per step (gpu_bench's host_queue_ms)
is Python and kernel-launch overhead; where it is as long as the step, the GPU waits for the
host, and this profile says on what. Each backend can be profiled; inputs are random and
already on the device, and the first steps (compilation) are left out.

    python experiments/host_profile.py --backend cuda --batch 128 --out profile.txt
    python experiments/host_profile.py --backend cpu --batch 8 --model tiny
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time

import numpy as np


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="cuda", help="minicnn backend (numpy, cpu, cuda)")
    p.add_argument("--model", choices=["alexnet", "tiny"], default="alexnet")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=5, help="profiled steps")
    p.add_argument("--warmup", type=int, default=2, help="unprofiled steps first (compilation)")
    p.add_argument("--top", type=int, default=40, help="functions listed per ordering")
    p.add_argument("--out", default=None, help="write the report here as well")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import minicnn as mc
    from minicnn.losses import softmax_cross_entropy

    try:
        backend = mc.set_backend(args.backend)
    except mc.BackendUnavailable as e:
        print(f"host_profile: {e}", file=sys.stderr)
        return 2
    mc.seed(0)
    if args.model == "tiny":
        net = mc.models.tiny_alexnet(num_classes=5, input_size=16, dtype=np.float32)
    else:
        net = mc.models.alexnet(num_classes=1000, input_size=227, groups=2)
    opt = mc.optim.SGD(net, lr=0.01, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(0)
    x = mc.asarray(rng.standard_normal((args.batch, *net.input_shape), dtype=np.float32))
    labels = mc.asarray(rng.integers(0, net.layers[-1].out_features, args.batch))

    def step():
        loss, dlogits = softmax_cross_entropy(net.forward(x, train=True), labels)
        net.backward(dlogits)
        opt.step()
        return loss

    for _ in range(args.warmup):
        step()
    float(step())  # waits for the device: the profiled steps start from an idle queue
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    for _ in range(args.steps):
        loss = step()
    profile.disable()
    host = (time.perf_counter() - start) / args.steps
    float(loss)
    wall = (time.perf_counter() - start) / args.steps

    text = io.StringIO()
    print(f"{args.model} batch {args.batch} on {args.backend}"
          f"{' (simulated)' if getattr(backend, 'simulated', False) else ''}: "
          f"host {1e3 * host:.1f} ms per step under the profiler, {1e3 * wall:.1f} ms until the "
          f"device finished; {args.steps} steps profiled, call counts are for all of them", file=text)
    stats = pstats.Stats(profile, stream=text)
    for order in ("tottime", "cumulative"):
        print(f"\n--- by {order} ---", file=text)
        stats.sort_stats(order).print_stats(args.top)
    report = text.getvalue()
    print(report)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
