"""Forward images/s of ResNet-18 and MobileNet v1 (minicnn.model_zoo, 224x224, float32,
evaluation mode) on minicnn's cpu backend beside the same networks in PyTorch CPU (weights
copied by minicnn.torch_twin), in one process with the same thread count for Numba, the
BLAS and PyTorch. The contenders' rounds are interleaved; each figure is the median of the
timed rounds after a warm-up. The largest output difference is printed as a check that both
compute the same network.

    python experiments/zoo_bench.py --batch 8 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import minicnn as mc
from minicnn import model_zoo
from minicnn.bench import set_threads


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet18", "mobilenet_v1"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args()
    import torch

    from minicnn.torch_twin import torch_model

    # the cpu kernels first: they choose Numba's workqueue threading layer, which
    # numba.set_num_threads would otherwise fix to its default (OpenMP, whose idle threads spin)
    mc.backend.backend_named("cpu")
    print(f"threads {set_threads(args.threads)}, batch {args.batch}, 224x224, float32, "
          f"torch {torch.__version__}, {os.cpu_count()} CPUs")
    for name in args.models:
        bench(name, args, torch, torch_model)


def bench(name, args, torch, torch_model):
    mc.set_backend("cpu")
    net = getattr(model_zoo, name)()
    twin = torch_model(net).eval()
    x = np.random.default_rng(0).standard_normal((args.batch, 3, 224, 224)).astype(np.float32)
    xt = torch.from_numpy(x)

    def ours():
        return net.forward(x, train=False, keep_for_backward=False)

    def theirs():
        with torch.no_grad():
            return twin(xt).numpy()

    diff = float(np.abs(ours() - theirs()).max() / np.abs(theirs()).max())  # also the warm-up
    runs = {"minicnn cpu": (ours, []), "PyTorch CPU": (theirs, [])}
    for r in range(args.repeats):
        for label in sorted(runs, reverse=r % 2 == 1):  # the order alternates
            f, times = runs[label]
            start = time.perf_counter()
            f()
            times.append(time.perf_counter() - start)
    ours_rate, theirs_rate = (args.batch / statistics.median(runs[k][1]) for k in sorted(runs)[::-1])
    import numba

    print(f"{name:<14} minicnn cpu {ours_rate:6.1f} img/s   PyTorch CPU {theirs_rate:6.1f} img/s   "
          f"ratio {ours_rate / theirs_rate:.2f}   max rel. output difference {diff:.1e}   "
          f"(Numba's {numba.threading_layer()} threads)")


if __name__ == "__main__":
    main()
