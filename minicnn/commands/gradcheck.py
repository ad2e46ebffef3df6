"""Check every op's backward pass (and a tiny AlexNet-like net) against finite differences.

Runs in float64 on the chosen backend: for each op, a directional check (one random
direction through inputs and parameters) or an exhaustive per-element check, then the
whole-network check through the softmax loss. Prints the worst relative error per op;
exits 1 if any exceeds --tol.
"""

from __future__ import annotations


def add_arguments(p):
    p.add_argument("--mode", choices=("directional", "exhaustive"), default="exhaustive",
                   help="directional: one random direction (cheap); exhaustive: every element, "
                        "reporting the worst index (default)")
    p.add_argument("--backend", default="numpy", choices=("numpy", "cpu", "cuda"),
                   help="backend whose kernels are checked (default numpy)")
    p.add_argument("--op", action="append", default=None,
                   help="check only ops whose name starts with this (repeatable)")
    p.add_argument("--eps", type=float, default=1e-3,
                   help="step of the five-point stencil (default 1e-3)")
    p.add_argument("--tol", type=float, default=1e-6, help="largest accepted relative error")
    p.add_argument("--seed", type=int, default=0)


def run(args):
    import numpy as np

    import minicnn as mc
    from minicnn import gradcheck

    mc.set_backend(args.backend)
    mc.seed(args.seed)
    cases = gradcheck.standard_cases(np.random.default_rng(args.seed))
    if args.op:
        cases = [c for c in cases if any(c[0].startswith(o) for o in args.op)]
    worst = 0.0
    print(f"{'op':<26} {'max rel. error':>14}  kinks  tensor (worst index)")
    for name, layer, x in cases:
        res = gradcheck.check_layer(layer, x, mode=args.mode, eps=args.eps, seed=args.seed)
        tensor = max(res.errors, key=res.errors.get)
        where = res.worst_index.get(tensor)
        print(f"{name:<26} {res.max_error:>14.3e}  {sum(res.kinks.values()):>5}  "
              f"{tensor}{' ' + str(where) if where is not None else ''}")
        worst = max(worst, res.max_error)
    if not args.op or any("net".startswith(o) or o == "net" for o in args.op):
        net = mc.models.tiny_alexnet(num_classes=5, input_size=12)
        x = gradcheck.kinkless_input((2, 3, 12, 12), np.random.default_rng(args.seed))
        res = gradcheck.check_net(net, x, np.array([1, 3]), mode=args.mode, eps=args.eps,
                                  seed=args.seed)
        print(f"{'tiny AlexNet-like net':<26} {res.max_error:>14.3e}  {sum(res.kinks.values()):>5}  "
              f"{max(res.errors, key=res.errors.get)}")
        worst = max(worst, res.max_error)
    ok = worst <= args.tol
    print(f"worst relative error {worst:.3e}: {'PASS' if ok else 'FAIL'} (tol {args.tol:g})")
    return 0 if ok else 1
