"""Throughput and memory of each backend on AlexNet, SqueezeNet and the demo's small model, PyTorch
side by side.

Forward and training-step images/s at batch 32 (and 128 for the small model; --full adds
AlexNet at 128), medians of interleaved runs after warm-up, a per-layer time table, the
peak memory of a training step (each contender in a fresh process), and the first-call
time of the Numba kernels, reported apart. Threads are set equal for Numba, the BLAS and
PyTorch. Run it on an otherwise idle machine; see docs/performance.md.
Also usable as `python -m minicnn.bench`.
"""

from __future__ import annotations

import argparse
import os


def add_arguments(p):
    p.add_argument("--model", action="append",
                   choices=("small", "alexnet", "squeezenet", "resnet18", "mobilenet_v1"), default=None,
                   help="model to run (repeatable; default: small, then alexnet; squeezenet: v1.0, "
                        "1000 classes, 227 pixels; resnet18, mobilenet_v1: 1000 classes, 224 pixels)")
    p.add_argument("--batch", type=int, action="append", default=None,
                   help="batch size (repeatable; default 32 and 128 for small, 32 for alexnet)")
    p.add_argument("--backends", nargs="+", default=["numpy", "cpu"], choices=("numpy", "cpu", "cuda"),
                   help="minicnn backends to run")
    p.add_argument("--full", action="store_true",
                   help="also AlexNet at batch 128, with its memory (several minutes more)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for Numba, the BLAS and PyTorch alike (default: all CPUs)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds per figure")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out even if installed")
    p.add_argument("--no-layers", action="store_true", help="skip the per-layer table")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument("--json", metavar="PATH", help="write every figure to PATH as JSON")
    p.add_argument("--memory-probe", metavar="CONTENDER", help=argparse.SUPPRESS)


def run(args):
    from minicnn.bench import run as run_bench

    if args.threads is None:
        args.threads = os.cpu_count() or 1
    if args.threads < 1 or args.repeats < 1 or args.warmup < 0 or any(b < 1 for b in args.batch or []):
        from minicnn.errors import InputError

        raise InputError("bench: --threads, --repeats and --batch must be >= 1, --warmup >= 0")
    args.model = args.model or ["small", "alexnet"]
    return run_bench(args)
