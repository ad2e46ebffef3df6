"""Compile every numba.cuda kernel of the "cuda" backend to PTX with the real CUDA compiler
(NVVM), without a GPU, for the exact argument types its wrapper passes.

The simulator runs the kernels as plain Python, so it cannot catch what only the compiler
sees (typing errors, unsupported calls); this does. It needs numba-cuda and NVVM, which pip
provides without a GPU or driver:

    python3 -m venv /tmp/venv-ptx && /tmp/venv-ptx/bin/pip install "numba-cuda[cu12]" \\
        && /tmp/venv-ptx/bin/pip install --no-deps -e .
    /tmp/venv-ptx/bin/python experiments/cuda_ptx_check.py [--cc 9.0] [--show _im2col]

Each wrapper is called on tiny NumPy arrays with its launch replaced by a compile step.
Without a GPU, numba-cuda cannot ask the device for its compute capability when a kernel
calls a device function, so that one query is answered with --cc (a dev-tool patch of
numba-cuda's dispatcher module, not something the engine does).
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import types

import numpy as np


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cc", default="9.0", help="compute capability to compile for (default 9.0, Hopper)")
    p.add_argument("--show", default=None, help="print the PTX of this kernel (e.g. _im2col)")
    args = p.parse_args(argv)
    cc = tuple(int(v) for v in args.cc.split("."))

    import numba
    import numba.cuda.dispatcher as dispatcher
    from numba import cuda

    dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=cc)
    from minicnn.kernels.cuda import launch

    if launch.SIMULATED:
        print("cuda_ptx_check: unset NUMBA_ENABLE_CUDASIM: the simulator compiles nothing", file=sys.stderr)
        return 2

    compiled = []

    def compile_launch(kernel, work, *kernel_args, **_):
        signature = numba.void(*[numba.typeof(a) for a in kernel_args])
        fastmath = kernel.targetoptions.get("fastmath", False)
        ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=cc, fastmath=fastmath)
        name = kernel.py_func.__name__
        divisions = len(re.findall(r"\bdiv\.s64|\brem\.s64", ptx))
        local = sum(int(b) for b in re.findall(r"\.local \.align \d+ \.b8 \s*\w+\[(\d+)\]", ptx))
        compiled.append(name)
        print(f"ok  {name:<20} {len(ptx.splitlines()):5d} PTX lines, {divisions:2d} 64-bit div/rem, "
              f"{local:4d} B local  {', '.join(str(t) for t in signature.args)}")
        if args.show == name:
            print(ptx)

    modules = {}
    for name in ("im2col", "max_pool2d", "lrn", "relu", "dropout", "sgd", "softmax_xent", "winograd"):
        module = importlib.import_module(f"minicnn.kernels.cuda.{name}")
        for attribute in ("launch", "launch_rows"):
            if hasattr(module, attribute):
                setattr(module, attribute, compile_launch)
        modules[name] = module

    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((2, 3, 7, 6)).astype(dtype)
        m = modules
        m["im2col"].im2col(x, 3, 3, 1, 1, 1, 1, np.empty((27, 2 * 42), dtype))
        m["im2col"].col2im(np.empty((27, 2 * 42), dtype), x.shape, 3, 3, 1, 1, 1, 1)
        y, argmax = m["max_pool2d"].max_pool_forward(x, 3, 3, 2, 2, 0, 0, 3, 2)
        m["max_pool2d"].max_pool_backward(y, argmax, x.shape)
        y, scale = m["lrn"].lrn_forward(x, 5, 1e-4, 0.75, 1.0)
        m["lrn"].lrn_backward(x, y, scale, x, 5, 1e-4, 0.75)
        m["relu"].relu_forward(x)
        m["relu"].relu_backward(x, x)
        m["dropout"].dropout_apply(x, x)
        param = np.zeros(5, dtype)
        m["sgd"].sgd_update(param, param.copy(), param.copy(), 0.1, 0.9, 5e-4)
        logits = rng.standard_normal((4, 6)).astype(dtype)
        m["softmax_xent"].softmax_xent(logits, np.arange(4), None)
        m["softmax_xent"].softmax_xent(logits, np.arange(4), np.ones(4, dtype))
        from minicnn.ops.winograd import matrices

        winograd = m["winograd"]
        for tile, r in ((4, 3), (3, 5)):  # AlexNet's: conv1 (after space-to-depth) and conv3-5; conv2
            AT, _, BT = matrices(tile, r)
            V = np.empty(((tile + r - 1) ** 2, 3, 2 * 4), dtype)  # 2 x 2 tiles per image
            winograd.winograd_input_transform(x, BT, tile, 1, 1, 2, 2, V)
            winograd.winograd_input_adjoint(V, BT, tile, 1, 1, 2, 2, np.empty_like(x))
            winograd.winograd_output_transform(V, AT, np.zeros(3, dtype), np.empty_like(x))
            winograd.winograd_output_adjoint(x, AT, V)
    print(f"{len(compiled)} kernel specialisations compiled for sm_{cc[0]}{cc[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
