"""Run the main job on generated data (CPU): currently a tiny AlexNet-like net trained on a
separable toy problem, until the transfer pipeline lands."""

from __future__ import annotations


def add_arguments(p):
    p.add_argument("--backend", default="numpy", choices=("numpy", "cpu", "cuda"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=60)


def run(args):
    import numpy as np

    import minicnn as mc

    mc.set_backend(args.backend)
    mc.seed(args.seed)
    rng = np.random.default_rng(args.seed)
    net = mc.models.tiny_alexnet(num_classes=3, input_size=12, dtype=np.float32)
    labels = rng.integers(0, 3, size=48)
    x = rng.standard_normal((48, 3, 12, 12)).astype(np.float32) * 0.3
    x[np.arange(48), labels] += 1.0  # class c lights channel c
    opt = mc.optim.SGD(net, lr=0.05, momentum=0.9, weight_decay=0.0)
    for step in range(args.steps):
        loss, dlogits = mc.losses.softmax_cross_entropy(net.forward(mc.asarray(x)), mc.asarray(labels))
        net.backward(dlogits)
        opt.step()
        if step % 10 == 0 or step == args.steps - 1:
            print(f"step {step:3d}  loss {float(loss):.4f}")
    accuracy = float((mc.to_numpy(net.forward(mc.asarray(x), train=False)).argmax(1) == labels).mean())
    print(f"training accuracy {accuracy:.3f}")
    return 0
