"""Check every op's backward pass (and a tiny AlexNet-like net) against finite differences.

Runs in float64 on the chosen backend: for each op, a directional check (one random
direction through inputs and parameters) or an exhaustive per-element check, then the
softmax cross-entropy (plain and with per-sample weights) with respect to its logits, then
the whole-network check through that loss. Prints the worst relative error per op;
exits 1 if any exceeds --tol.
"""

from __future__ import annotations


def add_arguments(p):
    p.add_argument("--mode", choices=("directional", "exhaustive"), default="exhaustive",
                   help="directional: one random direction (cheap); exhaustive: every element, "
                        "reporting the worst index")
    p.add_argument("--backend", default="numpy", choices=("numpy", "cpu", "cuda"),
                   help="backend whose kernels are checked")
    p.add_argument("--op", action="append", default=None,
                   help="check only the checks whose name starts with this (repeatable): conv2d, "
                        "max_pool2d, relu, lrn, dropout, linear, flatten, softmax_cross_entropy, net")
    p.add_argument("--eps", type=float, default=1e-3,
                   help="step of the five-point stencil, > 0")
    p.add_argument("--tol", type=float, default=1e-6,
                   help="largest accepted relative error, >= 0")
    p.add_argument("--seed", type=int, default=0, help="random seed, >= 0")


# the checks after the per-op ones (standard_cases); "tiny" also selects the whole net
LOSS_CHECKS = ("softmax_cross_entropy", "softmax_cross_entropy weighted")
NET_CHECK = "tiny AlexNet-like net"


def check_settings(args):
    """Refuse settings that would check nothing or cannot be computed, before any work."""
    import math

    from minicnn import gradcheck
    from minicnn.errors import InputError

    if not (args.eps > 0 and math.isfinite(args.eps)):
        raise InputError(f"--eps {args.eps:g}: the stencil's step must be a finite number > 0 (e.g. 1e-3)")
    if not (args.tol >= 0 and math.isfinite(args.tol)):
        raise InputError(f"--tol {args.tol:g}: the accepted relative error must be a finite number >= 0")
    if args.seed < 0:
        raise InputError(f"--seed {args.seed}: the seed must be an integer >= 0")
    names = [name for name, _, _ in gradcheck.standard_cases()] + [*LOSS_CHECKS, NET_CHECK]
    for op in args.op or ():
        if not any(name.startswith(op) for name in [*names, "net"]):
            raise InputError(f"--op {op!r} selects no check; the checks are {', '.join(names)} "
                             "(--op net selects the last)")


def run(args):
    import numpy as np

    import minicnn as mc
    from minicnn import gradcheck

    check_settings(args)
    mc.set_backend(args.backend)
    mc.seed(args.seed)

    def wanted(name):
        return not args.op or any(name.startswith(o) for o in args.op)

    def row(name, res):
        tensor = max(res.errors, key=res.errors.get)
        where = res.worst_index.get(tensor)
        print(f"{name:<30} {res.max_error:>14.3e}  {sum(res.kinks.values()):>5}  "
              f"{tensor}{' ' + str(where) if where is not None else ''}")
        return res.max_error

    worst = 0.0
    print(f"{'op':<30} {'max rel. error':>14}  kinks  tensor (worst index)")
    for name, layer, x in gradcheck.standard_cases(np.random.default_rng(args.seed)):
        if wanted(name):
            worst = max(worst, row(name, gradcheck.check_layer(layer, x, mode=args.mode, eps=args.eps,
                                                               seed=args.seed)))
    if wanted("softmax_cross_entropy"):
        rng = np.random.default_rng(args.seed)
        logits, labels = rng.standard_normal((4, 5)), np.array([0, 4, 2, 2])
        for name, weights in zip(LOSS_CHECKS, (None, np.array([1.0, 0.5, 0.0, 2.0])), strict=True):
            worst = max(worst, row(name, gradcheck.check_loss(logits, labels, weights, mode=args.mode,
                                                              eps=args.eps, seed=args.seed)))
    if wanted("net") or wanted("tiny"):
        net = mc.models.tiny_alexnet(num_classes=5, input_size=12)
        x = gradcheck.kinkless_input((2, 3, 12, 12), np.random.default_rng(args.seed))
        worst = max(worst, row(NET_CHECK,
                               gradcheck.check_net(net, x, np.array([1, 3]), mode=args.mode,
                                                   eps=args.eps, seed=args.seed)))
    ok = worst <= args.tol
    print(f"worst relative error {worst:.3e}: {'PASS' if ok else 'FAIL'} (tol {args.tol:g})")
    return 0 if ok else 1
